"""A tiny nbgrader course for the grading tests: assignment ``fake_double`` and its submissions.

The source notebook has a locked setup cell, two answers graded by registered checks
(``double``: a function; ``Scaler``: a class), one answer graded by a plain assert test cell
(``triple``), and one written answer (``explain``). Hidden tests carry markers the feedback
test looks for.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ASSIGNMENT = "fake_double"
HIDDEN_MARKERS = ("HIDDEN_MARKER_DOUBLE", "HIDDEN_MARKER_TRIPLE")
CHECK_MODULES = ("fake_checks",)
CHECK_PATHS = (str(HERE),)

SETUP = """import math
import torch
import torch.nn as nn
import torch.nn.functional as F
import fake_checks  # registers this assignment's checks
from course.checks import check"""

SOLUTIONS = {
    "double": '''def double(x):
    """Return 2 * x (a new tensor)."""
    ### BEGIN SOLUTION
    return x * 2
    ### END SOLUTION''',
    "Scaler": '''class Scaler(nn.Module):
    """Multiply by a fixed factor."""
    def __init__(self, factor):
        super().__init__()
        ### BEGIN SOLUTION
        self.factor = factor
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        return x * self.factor
        ### END SOLUTION''',
    "triple": '''def triple(n):
    """Return 3 * n."""
    ### BEGIN SOLUTION
    return 3 * n
    ### END SOLUTION''',
}

TESTS = {
    "test_double": '''check("double", double)
### BEGIN HIDDEN TESTS
check("double", double, hidden=True)  # HIDDEN_MARKER_DOUBLE
### END HIDDEN TESTS''',
    "test_Scaler": '''check("Scaler", Scaler)
### BEGIN HIDDEN TESTS
check("Scaler", Scaler, hidden=True)
### END HIDDEN TESTS''',
    "test_triple": '''assert triple(1) == 3
### BEGIN HIDDEN TESTS
assert triple(-2) == -6  # HIDDEN_MARKER_TRIPLE
### END HIDDEN TESTS''',
}

# what a learner types into the answer cells of the released notebook
GOOD = {
    "double": "def double(x):\n    return x * 2",
    "Scaler": (
        "class Scaler(nn.Module):\n    def __init__(self, factor):\n        super().__init__()\n"
        "        self.factor = factor\n\n    def forward(self, x):\n        return x * self.factor"
    ),
    "triple": "def triple(n):\n    return 3 * n",
    "explain": "Doubling twice is quadrupling.",
}


def _nbg(grade_id: str, *, grade=False, solution=False, locked=False, points=None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    return {"nbgrader": meta}


def source_notebook() -> nbformat.NotebookNode:
    nb = new_notebook(metadata={"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}})
    nb.cells = [
        new_markdown_cell("# Fake assignment: doubling"),
        new_code_cell(SETUP, metadata=_nbg("setup", locked=True)),
        new_markdown_cell("Write `double(x)`."),
        new_code_cell(SOLUTIONS["double"], metadata=_nbg("double", solution=True)),
        new_code_cell(TESTS["test_double"], metadata=_nbg("test_double", grade=True, locked=True, points=2)),
        new_markdown_cell("Write `Scaler`."),
        new_code_cell(SOLUTIONS["Scaler"], metadata=_nbg("Scaler", solution=True)),
        new_code_cell(TESTS["test_Scaler"], metadata=_nbg("test_Scaler", grade=True, locked=True, points=1)),
        new_markdown_cell("Write `triple(n)`."),
        new_code_cell(SOLUTIONS["triple"], metadata=_nbg("triple", solution=True)),
        new_code_cell(TESTS["test_triple"], metadata=_nbg("test_triple", grade=True, locked=True, points=1)),
        new_markdown_cell("What does doubling twice do?", metadata={}),
        new_markdown_cell("### BEGIN SOLUTION\nIt quadruples.\n### END SOLUTION",
                          metadata=_nbg("explain", grade=True, solution=True, points=1)),
    ]
    return nb


def make_course(root: Path) -> Path:
    """Write the course (config + source notebook) under ``root``; return ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    src = root / "solutions" / ASSIGNMENT
    src.mkdir(parents=True, exist_ok=True)
    nbformat.write(source_notebook(), str(src / f"{ASSIGNMENT}.ipynb"))
    return root


def released(root: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(root / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"), as_version=4)


def answered(root: Path, answers: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The released notebook with ``answers`` typed into the answer cells (default: all correct)."""
    nb = released(root)
    answers = GOOD if answers is None else answers
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    return nb


def submit(root: Path, student: str, content: nbformat.NotebookNode | bytes | str,
           filename: str | None = None, timestamp: str | None = "2030-01-01 12:00:00") -> Path:
    folder = root / "submitted" / student / ASSIGNMENT
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    path = folder / (filename or f"{ASSIGNMENT}.ipynb")
    if isinstance(content, (bytes, str)):
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    else:
        nbformat.write(content, str(path))
    if timestamp:
        (folder / "timestamp.txt").write_text(timestamp)
    return path


def cell_index(nb, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def with_answers(root: Path, **answers: str) -> nbformat.NotebookNode:
    return answered(root, {**GOOD, **answers})


def edited(root: Path, edit: Callable[[nbformat.NotebookNode], None], **answers: str) -> nbformat.NotebookNode:
    nb = with_answers(root, **answers)
    edit(nb)
    return nb
