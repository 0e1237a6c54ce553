"""Reading and sanitising submissions against the source notebook (no processes, no nbgrader CLI)."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

import fake_course as fc
from course.grading.coursedir import load_config
from course.grading.notebook import Ungradable, build_spec, choose_notebook, prepare, resolve_checks


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    root = fc.make_course(tmp_path_factory.mktemp("spec") / "course")
    path = root / "solutions" / fc.ASSIGNMENT / f"{fc.ASSIGNMENT}.ipynb"
    return resolve_checks(build_spec(path, fc.ASSIGNMENT, None, load_config(root)), {"double", "Scaler"})


@pytest.fixture(scope="module")
def released_nb(spec, tmp_path_factory):
    """The student version, made in memory the way generate_assignment makes it."""
    root = fc.REPO
    nb = fc.source_notebook()
    cfg = load_config(root)
    nb, _ = ClearSolutions(config=cfg).preprocess(nb, {})
    nb, _ = ClearHiddenTests(config=cfg).preprocess(nb, {})
    return nb


def _answered(released_nb, **answers):
    nb = nbformat.from_dict(json.loads(json.dumps(released_nb)))
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in {**fc.GOOD, **answers}:
            cell.source = {**fc.GOOD, **answers}[gid]
    return nb


def _prepare(spec, nb):
    return prepare({f"{fc.ASSIGNMENT}.ipynb": nbformat.writes(nb).encode()}, spec)


def _steps(prepared):
    return [(s.kind, s.role, s.grade_id) for s in prepared.steps]


def test_spec_matches_the_source(spec):
    kinds = {c.grade_id: c.kind for c in spec.cells if c.grade_id}
    assert kinds == {"setup": "locked", "double": "answer", "test_double": "test", "Scaler": "answer",
                     "test_Scaler": "test", "triple": "answer", "test_triple": "test", "explain": "written"}
    assert spec.checks == ["double", "Scaler"]  # test_triple has no registered check: it runs as code
    assert spec.max_score == 5.0
    assert "HIDDEN_MARKER_DOUBLE" in spec.by_id["test_double"].source
    assert "HIDDEN_MARKER_DOUBLE" not in spec.by_id["test_double"].visible_source
    assert "BEGIN SOLUTION" not in spec.by_id["double"].source  # solutions cleared, as in the gradebook


def test_plan_runs_source_setup_then_learner_cells(spec, released_nb):
    nb = _answered(released_nb)
    nb.cells[1].source = "import os  # the learner edited the locked setup cell"
    p = _prepare(spec, nb)
    assert p.steps[0].role == "setup" and p.steps[0].source == spec.setup.source
    assert _steps(p)[1:] == [("exec", "code", "double"), ("check", "check", "test_double"),
                             ("exec", "code", "Scaler"), ("check", "check", "test_Scaler"),
                             ("exec", "code", "triple"), ("exec", "test", "test_triple")]
    assert any("locked cell 'setup' was edited" in w for w in p.warnings)
    # the test cell runs the source's text, hidden tests included
    assert "HIDDEN_MARKER_TRIPLE" in p.steps[-1].source


def test_learner_cannot_unlock_a_test_cell(spec, released_nb):
    nb = _answered(released_nb)
    i = fc.cell_index(nb, "test_triple")
    nb.cells[i].metadata["nbgrader"].update(solution=True, grade=False, locked=False)
    nb.cells[i].source = "pass  # no tests here"
    p = _prepare(spec, nb)
    step = next(s for s in p.steps if s.grade_id == "test_triple")
    assert step.role == "test" and "assert triple(1) == 3" in step.source


@pytest.mark.filterwarnings("ignore:Non-unique cell id")  # nbformat, while the test writes it
def test_duplicates_keep_the_last(spec, released_nb):
    nb = _answered(released_nb)
    i = fc.cell_index(nb, "double")
    nb.cells.insert(i, nbformat.from_dict(json.loads(json.dumps(nb.cells[i]))))
    p = _prepare(spec, nb)
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in p.nb.cells]
    assert ids.count("double") == 1 and ids.index("double") == i + 1
    assert len({c.get("id") for c in p.nb.cells}) == len(p.nb.cells)  # cell ids made unique


def test_unknown_ids_lose_their_metadata(spec, released_nb):
    nb = _answered(released_nb)
    nb.cells.append(nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": {"grade": True, "grade_id": "bonus", "points": 99, "locked": True, "solution": False}}))
    p = _prepare(spec, nb)
    assert "nbgrader" not in p.nb.cells[-1].metadata
    assert sum(c.metadata.get("nbgrader", {}).get("points", 0) or 0 for c in p.nb.cells) == 5


def test_stripped_metadata_matching(spec, released_nb):
    nb = _answered(released_nb)
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    nb.cells.insert(3, nbformat.v4.new_code_cell("import numpy as np  # a scratch cell"))
    p = _prepare(spec, nb)
    by_id = {c.metadata["nbgrader"]["grade_id"]: c for c in p.nb.cells if "nbgrader" in c.metadata}
    assert set(by_id) == set(spec.by_id)
    assert "def double" in by_id["double"].source and "Doubling twice" in by_id["explain"].source
    assert not any("was missing" in w for w in p.warnings)


def test_missing_cells_are_added_back_in_place(spec, released_nb):
    nb = _answered(released_nb)
    del nb.cells[fc.cell_index(nb, "test_double")]
    del nb.cells[fc.cell_index(nb, "explain")]
    p = _prepare(spec, nb)
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in p.nb.cells]
    assert ids.index("test_double") == ids.index("double") + 1
    assert ids[-1] == "explain"
    assert "was missing from the submission" in p.nb.cells[ids.index("test_double")].source


def test_choose_notebook():
    spec_like = type("S", (), {"notebook": "a", "by_id": {"x": None}})()
    assert choose_notebook({"a.ipynb": b"1", "b.ipynb": b"2"}, spec_like)[0] == "a.ipynb"
    name, _, warnings = choose_notebook({"b.ipynb": b"2"}, spec_like)
    assert name == "b.ipynb" and "renamed" in warnings[0]
    with pytest.raises(Ungradable, match="no notebook"):
        choose_notebook({}, spec_like)
    with pytest.raises(Ungradable, match="unclear which"):
        choose_notebook({"b.ipynb": b"{", "c.ipynb": b"{"}, spec_like)


@pytest.mark.parametrize("data, why", [
    (b"{oops", "invalid JSON"),
    (b'{"cells": 3, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}', "not a valid notebook"),
    (b"\xff\xfe", "UTF-8"),
])
def test_unreadable(spec, data, why):
    with pytest.raises(Ungradable, match=why):
        prepare({f"{fc.ASSIGNMENT}.ipynb": data}, spec)
