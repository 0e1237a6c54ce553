"""nbgrader's Validator on every chapter's notebook, and the course contract of its cells.

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

pytestmark = [pytest.mark.nbgrader]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ASSIGNMENTS = {
    # assignment: (graded items in order, written answers)
    "01_embedding": (("embed_tokens", "sinusoidal_positions", "input_embedding"), ("written_positions_analogy",)),
    "02_self_attention": (("causal_mask", "scaled_dot_product_attention", "MultiHeadAttention"),
                          ("written_attention_analogy",)),
    "03_ffn_stacking": (("layer_norm", "FeedForward", "TransformerBlock", "TransformerStack"),
                        ("written_pooling_analogy",)),
    "04_output": (("stable_softmax", "cross_entropy", "top_k_filter", "greedy_decode"),
                  ("written_verdict_analogy",)),
    "05_rnn_contrast": (("rnn_forward", "input_gradient_norms"), ("written_relay_analogy",)),
    "06_vit": (("patchify", "vit_embed", "VisionTransformer", "train_vit"), ("written_vit_analogy",)),
    "07_scalable_attention": (("sliding_window_mask", "lsh_buckets", "linear_attention", "chunked_attention"),
                              ("written_scaling_analogy",)),
    "08_open_challenges": (("transformer_param_count", "repetition_penalty", "knn_memory_attention"),
                           ("written_limits_analogy",)),
}


def test_every_assignment_is_covered():
    assert sorted(p.name for p in (REPO / "solutions").iterdir() if p.is_dir()) == sorted(ASSIGNMENTS)


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


def test_the_vit_training_cell_is_graded_by_the_check_alone():
    nb = nbformat.read(REPO / "solutions" / "06_vit" / "06_vit.ipynb", as_version=4)
    setup = next(c for c in nb.cells if c.cell_type == "code")
    assert "torch.set_num_threads(1)" in setup.source and "train_classifier" in setup.source
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
    answer, test = cells["train_vit"], cells["test_train_vit"]
    assert "progress=False" in answer.source and "VisionTransformer(" in answer.source
    visible = test.source.partition("### BEGIN HIDDEN TESTS")[0]
    assert "y_test" not in test.source and "accuracy(" not in visible  # no accuracy the learner could fake
    released = nbformat.read(REPO / "exercises" / "06_vit" / "06_vit.ipynb", as_version=4)
    stub = next(c for c in released.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "train_vit")
    assert "raise NotImplementedError()" in stub.source and "VisionTransformer(" not in stub.source
