"""nbgrader's Validator on the chapter 4 and chapter 5 notebooks.

The solution notebook passes; the released stub (exercises/, produced by
`nbgrader generate_assignment`) fails in every autograded test cell with the stub's
NotImplementedError and asks for the written answer. The notebooks' cells follow the
course contract: a locked setup cell first, each graded item's test cell right after it,
hidden checks only inside the hidden-tests block, no outputs committed.
"""

import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

pytestmark = [pytest.mark.nbgrader, pytest.mark.xdist_group("nbgrader_validate_04_05")]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ASSIGNMENTS = {
    # assignment: (graded items in order, written answers)
    "04_output": (("stable_softmax", "cross_entropy", "top_k_filter", "greedy_decode"),
                  ("written_verdict_analogy",)),
    "05_rnn_contrast": (("rnn_forward", "input_gradient_norms"), ("written_relay_analogy",)),
}


def nbgrader_ids(nb) -> list[str]:
    return [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]


def validate(path: Path) -> dict:
    from nbgrader.validator import Validator

    old_path = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{BIN}{os.pathsep}{old_path}"  # the kernel is started through `jupyter`
    try:
        return Validator().validate(str(path))
    finally:
        os.environ["PATH"] = old_path


@pytest.mark.parametrize("assignment", sorted(ASSIGNMENTS))
def test_cells_follow_the_contract(assignment):
    items, written = ASSIGNMENTS[assignment]
    nb = nbformat.read(REPO / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    assert nbgrader_ids(nb) == ["setup"] + [g for item in items for g in (item, f"test_{item}")] + list(written)
    setup = next(c for c in nb.cells if c.cell_type == "code")
    assert setup.metadata["nbgrader"]["grade_id"] == "setup" and setup.metadata["nbgrader"]["locked"]
    for line in ("import math", "import torch", "import torch.nn as nn", "import torch.nn.functional as F",
                 "from course.checks import check"):
        assert line in setup.source
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        assert not cell.get("outputs") and cell.get("execution_count") is None, "committed without outputs"
        assert "progress=True" not in cell.source  # tqdm bars write to stderr (scored 0 by nbgrader)
        if gid.startswith("test_"):
            item = gid[len("test_"):]
            visible, _, hidden = cell.source.partition("### BEGIN HIDDEN TESTS")
            assert f'check("{item}", {item})' in visible and "hidden=True" not in visible
            assert f'check("{item}", {item}, hidden=True)' in hidden and cell.metadata["nbgrader"]["points"] > 0
        if gid.startswith("written_"):
            meta = cell.metadata["nbgrader"]
            assert cell.cell_type == "markdown" and meta["grade"] and meta["solution"] and meta["points"] > 0


@pytest.mark.parametrize("assignment", sorted(ASSIGNMENTS))
def test_validator_accepts_the_source_and_rejects_the_stub(assignment, tmp_path):
    items, written = ASSIGNMENTS[assignment]
    shutil.copy(REPO / "solutions" / assignment / f"{assignment}.ipynb", tmp_path / "source.ipynb")
    shutil.copy(REPO / "exercises" / assignment / f"{assignment}.ipynb", tmp_path / "stub.ipynb")
    assert validate(tmp_path / "source.ipynb") == {}
    failed = validate(tmp_path / "stub.ipynb").get("failed", [])
    assert sum("NotImplementedError" in f["error"] for f in failed) == len(items)  # every test cell
    assert sum("did not provide a response" in f["error"] for f in failed) == len(written)
