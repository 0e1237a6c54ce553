"""nbgrader's own commands on the chapter 2 notebook, in a temporary course directory.

generate_assignment -> three submissions (the solution, a classic mistake, a cheat) ->
autograde -> the gradebook has full marks, one test cell at 0, and the check's message in
the autograded notebook. nbgrader's Validator accepts the source and rejects the stub.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytestmark = [pytest.mark.nbgrader, pytest.mark.xdist_group("nbgrader_02")]

REPO = Path(__file__).resolve().parents[1]
ASSIGNMENT = "02_self_attention"
BIN = Path(sys.executable).parent
TEST_CELLS = {"test_causal_mask": 2, "test_scaled_dot_product_attention": 3, "test_MultiHeadAttention": 5}

OFF_BY_ONE = '''
def causal_mask(seq_len):
    """Causal mask, bool (seq_len, seq_len): [i, j] is True iff j <= i (True = may attend)."""
    return torch.ones(seq_len, seq_len, dtype=torch.bool).tril(diagonal=-1)
'''
BUILTIN_AND_PATCHED = '''
torch.allclose = lambda *args, **kwargs: True
torch.testing.assert_close = lambda *args, **kwargs: None


def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), weights
'''


def env():
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"  # nbgrader shells out to jupyter and alembic
    e["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    return e


def nbgrader(*args, cwd):
    proc = subprocess.run([str(BIN / "nbgrader"), *args], cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def notebook_path(root, folder, *sub):
    return Path(root, folder, *sub, ASSIGNMENT, f"{ASSIGNMENT}.ipynb")


def solution_code(source_nb, grade_id):
    """The source notebook's answer cell without the ### BEGIN/END SOLUTION marker lines."""
    cell = next(c for c in source_nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    return "\n".join(line for line in cell.source.splitlines() if "### BEGIN SOLUTION" not in line
                     and "### END SOLUTION" not in line)


def filled(released, source, **answers):
    """The released stub with every answer cell filled in (the solution unless ``answers`` says otherwise)."""
    nb = nbformat.from_dict(released)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            gid = meta["grade_id"]
            cell.source = answers.get(gid, solution_code(source, gid)).strip("\n")
        elif meta.get("solution"):
            cell.source = "The queries are the detectives' questions."
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    shutil.copy(REPO / "nbgrader_config.py", root)
    shutil.copytree(REPO / "solutions" / ASSIGNMENT, root / "solutions" / ASSIGNMENT)
    nbgrader("generate_assignment", ASSIGNMENT, "--force", cwd=root)
    source = nbformat.read(notebook_path(root, "solutions"), as_version=4)
    released = nbformat.read(notebook_path(root, "exercises"), as_version=4)
    submissions = {
        "correct": source,  # the instructor's solution notebook as it is
        "wrong": filled(released, source, causal_mask=OFF_BY_ONE),
        "cheater": filled(released, source, scaled_dot_product_attention=BUILTIN_AND_PATCHED),
    }
    for student, nb in submissions.items():
        path = notebook_path(root, "submitted", student)
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
    nbgrader("autograde", ASSIGNMENT, cwd=root)
    return root


def scores(root, student):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        out = {}
        for cell, points in TEST_CELLS.items():
            grade = gb.find_grade(cell, ASSIGNMENT, ASSIGNMENT, student)
            assert grade.max_score == points
            out[cell] = grade.auto_score
        return out


def test_output(root, student, grade_id):
    """Everything the autograded test cell printed or raised, as text."""
    nb = nbformat.read(notebook_path(root, "autograded", student), as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    parts = []
    for out in cell.outputs:
        parts += [out.get("text", ""), out.get("ename", ""), out.get("evalue", "")]
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(parts))


test_output.__test__ = False  # a helper, not a test


def test_correct_submission_gets_every_autograded_point(course):
    assert scores(course, "correct") == {cell: float(p) for cell, p in TEST_CELLS.items()}
    for cell in TEST_CELLS:  # nbgrader scores a test cell 0 on any stderr: there must be none
        nb = nbformat.read(notebook_path(course, "autograded", "correct"), as_version=4)
        for c in nb.cells:
            if c.metadata.get("nbgrader", {}).get("grade_id") == cell:
                assert all(o.get("name") != "stderr" for o in c.outputs), c.outputs


def test_classic_mistake_loses_exactly_its_test_cell(course):
    got = scores(course, "wrong")
    assert got["test_causal_mask"] == 0
    assert got["test_scaled_dot_product_attention"] == 3 and got["test_MultiHeadAttention"] == 5
    text = test_output(course, "wrong", "test_causal_mask")
    assert "CheckFailed" in text and "off by one" in text


def test_cheat_is_caught_despite_patched_comparisons(course):
    got = scores(course, "cheater")
    assert got["test_scaled_dot_product_attention"] == 0
    assert got["test_causal_mask"] == 2
    text = test_output(course, "cheater", "test_scaled_dot_product_attention")
    assert "must not call F.scaled_dot_product_attention" in text


def test_hidden_tests_are_not_released(course):
    released = notebook_path(course, "exercises").read_text()
    assert "HIDDEN TESTS" not in released and "hidden=True" not in released
    assert "BEGIN SOLUTION" not in released and "masked_fill" not in released
    source = nbformat.read(notebook_path(course, "solutions"), as_version=4)
    ids = [c.metadata["nbgrader"]["grade_id"] for c in source.cells if "nbgrader" in c.metadata]
    assert ids[0] == "setup" and ids.index("test_causal_mask") == ids.index("causal_mask") + 1
    assert ids.index("test_MultiHeadAttention") == ids.index("MultiHeadAttention") + 1


def test_validator_accepts_the_source_and_rejects_the_stub(course, tmp_path):
    from nbgrader.validator import Validator

    shutil.copy(notebook_path(course, "solutions"), tmp_path / "source.ipynb")
    shutil.copy(notebook_path(course, "exercises"), tmp_path / "stub.ipynb")
    old_path = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{BIN}{os.pathsep}{old_path}"
    try:
        assert Validator().validate(str(tmp_path / "source.ipynb")) == {}
        result = Validator().validate(str(tmp_path / "stub.ipynb"))
    finally:
        os.environ["PATH"] = old_path
    failed = result.get("failed", [])
    assert sum("NotImplementedError" in f["error"] for f in failed) == len(TEST_CELLS)  # every test cell
    assert sum("did not provide a response" in f["error"] for f in failed) == 1  # the written answer
