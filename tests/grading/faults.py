"""The submissions of the graded test batch: one student per behaviour (good, wrong, faulty...).

Each maker returns ``(content, filename)``; ``filename=None`` means the expected name.
"""

from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell

import fake_course as fc


def _insert_after(nb, grade_id: str, source: str) -> None:
    nb.cells.insert(fc.cell_index(nb, grade_id) + 1, new_code_cell(source))


def good(root):
    return fc.answered(root), None


def wrong(root):
    return fc.with_answers(root, double="def double(x):\n    return x * 3", triple="def triple(n):\n    return n"), None


def stub(root):
    return fc.released(root), None


def invalid_json(root):
    return b'{"cells": [ {"cell_type": "code", oops', None


def not_utf8(root):
    return b"\xff\xfe\x00garbage", None


def deleted_cells(root):
    def edit(nb):
        del nb.cells[fc.cell_index(nb, "test_double")]
        del nb.cells[fc.cell_index(nb, "Scaler")]

    return fc.edited(root, edit), None


def duplicated(root):
    def edit(nb):
        i = fc.cell_index(nb, "double")
        first = nbformat.from_dict(nb.cells[i])
        first.source = "def double(x):\n    return x * 3  # an old attempt"
        first["id"] = "old-attempt"
        nb.cells.insert(i, first)  # the LAST copy (the good one) keeps the id
        j = fc.cell_index(nb, "test_double")
        copy = nbformat.from_dict(nb.cells[j])
        copy["id"] = "copied-test"
        nb.cells.insert(j, copy)

    return fc.edited(root, edit), None


def changed_types(root):
    def edit(nb):
        cell = nb.cells[fc.cell_index(nb, "double")]
        cell.cell_type = "markdown"
        cell.pop("outputs", None)
        cell.pop("execution_count", None)
        test = nb.cells[fc.cell_index(nb, "test_Scaler")]
        test.cell_type = "raw"
        test.pop("outputs", None)
        test.pop("execution_count", None)

    return fc.edited(root, edit), None


def stripped(root):
    def edit(nb):
        for cell in nb.cells:
            cell.metadata.pop("nbgrader", None)

    return fc.edited(root, edit), None


def renamed(root):
    return fc.answered(root), "my attempt (1).ipynb"


def exit_at_import(root):
    def edit(nb):
        _insert_after(nb, "double", "import os\nos._exit(3)")

    return fc.edited(root, edit), None


def exit_in_function(root):
    return fc.with_answers(root, double="def double(x):\n    import os\n    os._exit(1)"), None


def sys_exit(root):
    def edit(nb):
        _insert_after(nb, "triple", "import sys\nsys.exit(2)")

    scaler = fc.GOOD["Scaler"].replace("return x * self.factor", "import sys\n        sys.exit(0)")
    return fc.edited(root, edit, Scaler=scaler), None


def segfault(root):
    return fc.with_answers(root, double="def double(x):\n    import ctypes\n    ctypes.string_at(0)\n    return 2 * x"), None


def loop_at_import(root):
    def edit(nb):
        _insert_after(nb, "double", "while True:\n    pass")

    return fc.edited(root, edit), None


def loop_in_function(root):
    return fc.with_answers(root, double="def double(x):\n    while True:\n        pass"), None


def flood(root):
    def edit(nb):
        _insert_after(nb, "double", "for _ in range(100_000):\n    print('spam ' * 40)")

    double = "def double(x):\n    for _ in range(10_000):\n        print('noise ' * 20)\n    return 2 * x"
    return fc.edited(root, edit, double=double), None


def memory_bomb(root):
    def edit(nb):
        _insert_after(nb, "triple", "hog = []\nwhile True:\n    hog.append(bytearray(50_000_000))")

    double = "def double(x):\n    big = torch.ones(30_000, 30_000)\n    return 2 * x"
    return fc.edited(root, edit, double=double), None


def forbidden(root):
    return fc.with_answers(root, double="def double(x):\n    return torch.mul(x, 2)"), None


SUBMISSIONS = {f.__name__: f for f in (
    good, wrong, stub, invalid_json, not_utf8, deleted_cells, duplicated, changed_types, stripped, renamed,
    exit_at_import, exit_in_function, sys_exit, segfault, loop_at_import, loop_in_function, flood,
    memory_bomb, forbidden,
)}
