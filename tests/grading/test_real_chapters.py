"""Every chapter in solutions/ grades end to end in the sandbox: its solution gets every automatic
point (a guard for new chapters and their checks: e.g. a check that needs a module the sandbox
lacks, or a time budget too small for a single-threaded child)."""

from __future__ import annotations

import shutil

import nbformat
import pytest

from course.grading.coursedir import Course
from course.grading.gradebook import load_log
from course.grading.pipeline import GradeOptions, grade, release
from fake_course import REPO

pytestmark = [pytest.mark.slow, pytest.mark.nbgrader]

CHAPTERS = sorted(p.name for p in (REPO / "solutions").iterdir() if p.is_dir() and any(p.glob("*.ipynb"))) \
    if (REPO / "solutions").is_dir() else []


@pytest.mark.skipif(not CHAPTERS, reason="no chapter in solutions/ yet")
def test_solutions_get_full_marks(tmp_path):
    root = tmp_path / "course"
    root.mkdir()
    shutil.copy(REPO / "nbgrader_config.py", root)
    for a in CHAPTERS:
        shutil.copytree(REPO / "solutions" / a, root / "solutions" / a)
    course = Course.at(root)
    release(course, CHAPTERS)
    for a in CHAPTERS:
        dest = root / "submitted" / "solution" / a
        dest.mkdir(parents=True)
        nb = nbformat.read(str(root / "solutions" / a / f"{a}.ipynb"), as_version=4)
        nbformat.write(nb, str(dest / f"{a}.ipynb"))
    rows = {r.assignment: r for r in grade(course, CHAPTERS, GradeOptions(workers=2, progress=False))}
    for a in CHAPTERS:
        log = load_log(course, "solution", a)
        assert log.state == "graded" and log.items, a
        assert all(i["passed"] for i in log.items), [i["message"] for i in log.items if not i["passed"]]
        assert rows[a].state == "graded"
