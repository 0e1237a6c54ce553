"""nbgrader's Validator on the chapter 7 notebook (07_scalable_attention).

The solution notebook passes; the released stub (exercises/, produced by
`nbgrader generate_assignment`) fails in every autograded test cell with the stub's
NotImplementedError and asks for the written answer. The cells follow the course
contract: a locked setup cell first, each graded item's test cell right after it, hidden
checks only inside the hidden-tests block, items in rising difficulty.
"""

import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

pytestmark = [pytest.mark.nbgrader, pytest.mark.xdist_group("nbgrader_validate_07")]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ASSIGNMENTS = {
    # assignment: (graded items in order, written answers)
    "07_scalable_attention": (("sliding_window_mask", "lsh_buckets", "linear_attention", "chunked_attention"),
                              ("written_scaling_analogy",)),
}


def nbgrader_ids(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
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
    source = REPO / "solutions" / assignment / f"{assignment}.ipynb"
    assert nbgrader_ids(source) == ["setup"] + [g for item in items for g in (item, f"test_{item}")] + list(written)
    nb = nbformat.read(source, as_version=4)
    setup = nb.cells[[c.cell_type for c in nb.cells].index("code")]
    assert setup.metadata["nbgrader"]["grade_id"] == "setup" and setup.metadata["nbgrader"]["locked"]
    for module in ("import math", "import torch", "import torch.nn as nn", "import torch.nn.functional as F",
                   "from course.checks import check"):
        assert module in setup.source
    points = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        assert not cell.get("outputs"), "solution notebooks are committed without outputs"
        if meta.get("grade_id", "").startswith("test_"):
            item = meta["grade_id"][len("test_"):]
            visible, _, hidden = cell.source.partition("### BEGIN HIDDEN TESTS")
            assert f'check("{item}", {item})' in visible and "hidden=True" not in visible
            assert f'check("{item}", {item}, hidden=True)' in hidden and meta["points"] > 0
            points.append(meta["points"])
        if meta.get("grade_id", "").startswith("written_"):
            assert cell.cell_type == "markdown" and meta["grade"] and meta["solution"] and meta["points"] > 0
    assert points == sorted(points), "items come in rising difficulty (and points)"
    assert "the meeting grows quadratically with the squad" in nb.cells[2].source.lower(), "the recap's analogy"


@pytest.mark.parametrize("assignment", sorted(ASSIGNMENTS))
def test_validator_accepts_the_source_and_rejects_the_stub(assignment, tmp_path):
    items, written = ASSIGNMENTS[assignment]
    shutil.copy(REPO / "solutions" / assignment / f"{assignment}.ipynb", tmp_path / "source.ipynb")
    shutil.copy(REPO / "exercises" / assignment / f"{assignment}.ipynb", tmp_path / "stub.ipynb")
    assert validate(tmp_path / "source.ipynb") == {}
    failed = validate(tmp_path / "stub.ipynb").get("failed", [])
    assert sum("NotImplementedError" in f["error"] for f in failed) == len(items)  # every test cell
    assert sum("did not provide a response" in f["error"] for f in failed) == len(written)
