"""What `course grade` leaves behind is what `nbgrader autograde` leaves: gradebook, notebooks, export."""

from __future__ import annotations

import csv
import subprocess
import sys

import nbformat
import pytest
from nbgrader.api import Gradebook

import fake_course as fc
import faults
from course.cli import main as course_main
from course.grading.coursedir import Course
from helpers import copy_course, kernel_env

pytestmark = [pytest.mark.nbgrader]

GRADED = ("test_double", "test_Scaler", "test_triple", "explain")


def _grades(course, student):
    with Gradebook(course.db_url, course.course_id) as gb:
        sub = gb.find_submission_notebook(fc.ASSIGNMENT, fc.ASSIGNMENT, student)
        grades = {g.name: (g.auto_score, g.needs_manual_grade) for g in sub.grades}
        comments = {c.name: c.auto_comment for c in sub.comments}
        return grades, comments, sub.score, sub.max_score


def _nbgrader_meta(course, student):
    path = course.path("autograded", student, fc.ASSIGNMENT) / f"{fc.ASSIGNMENT}.ipynb"
    nb = nbformat.read(str(path), as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"] for c in nb.cells if "nbgrader" in c.metadata}


def test_gradebook_contents(batch):
    course, _ = batch
    grades, comments, score, max_score = _grades(course, "good")
    assert grades == {"test_double": (2.0, False), "test_Scaler": (1.0, False), "test_triple": (1.0, False),
                      "explain": (None, True)}
    assert comments == {"double": None, "Scaler": None, "triple": None, "explain": None}
    assert (score, max_score) == (4.0, 5.0)
    grades, comments, score, _ = _grades(course, "stub")
    assert grades == {"test_double": (0.0, False), "test_Scaler": (0.0, False), "test_triple": (0.0, False),
                      "explain": (0.0, False)}  # an untouched written answer scores 0, as with nbgrader
    assert set(comments.values()) == {"No response."}
    with Gradebook(course.db_url, course.course_id) as gb:
        sub = gb.find_submission(fc.ASSIGNMENT, "good")
        assert sub.timestamp is not None and sub.timestamp.year == 2030


def test_same_as_nbgrader_autograde(batch, template, tmp_path):
    """Grade the same notebooks with nbgrader's own autograde and compare everything it records."""
    course, _ = batch
    theirs = Course.at(copy_course(template, tmp_path / "course"))
    students = ["good", "stub"]  # every check passing; every check failing and no written answer
    for s in students:
        content, filename = faults.SUBMISSIONS[s](theirs.root)
        fc.submit(theirs.root, s, content, filename)
    out = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", fc.ASSIGNMENT], cwd=theirs.root,
                         env=kernel_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    for s in students:
        ours_grades, ours_comments, ours_score, _ = _grades(course, s)
        their_grades, their_comments, their_score, _ = _grades(theirs, s)
        assert ours_grades == their_grades, s
        assert ours_comments == their_comments, s
        assert ours_score == their_score, s
        ours_meta, their_meta = _nbgrader_meta(course, s), _nbgrader_meta(theirs, s)
        assert ours_meta == their_meta, s


def test_nbgrader_export_and_course_report(batch, tmp_path, capsys):
    course, rows = batch
    root = copy_course(course.root, tmp_path / "course")
    out = subprocess.run([sys.executable, "-m", "nbgrader", "export"], cwd=root, env=kernel_env(),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    with open(root / "grades.csv") as fh:
        exported = {r["student_id"]: float(r["score"]) for r in csv.DictReader(fh) if r["assignment"] == fc.ASSIGNMENT}
    assert exported == {s: r.score for s, r in rows.items()}

    assert course_main(["--course-dir", str(root), "report", "--csv", str(tmp_path / "report.csv")]) == 0
    printed = capsys.readouterr().out
    assert "invalid_json" in printed and "ungradable" in printed and "4/5" in printed
    with open(tmp_path / "report.csv") as fh:
        reported = {r["student"]: r for r in csv.DictReader(fh)}
    assert {s: float(r["score"]) for s, r in reported.items()} == exported
    assert reported["segfault"]["state"] == "graded" and reported["not_utf8"]["state"] == "ungradable"
