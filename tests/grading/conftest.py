"""Fixtures of the grading tests: a released fake course and one graded batch of submissions.

Both are built once per test run and shared through the file system, also across xdist workers.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import fake_course as fc  # noqa: E402
import faults  # noqa: E402

from course.grading.coursedir import Course  # noqa: E402
from course.grading.gradebook import GradebookWriter  # noqa: E402
from course.grading.pipeline import grade, release  # noqa: E402
from helpers import copy_course, options  # noqa: E402


def _shared_dir(tmp_path_factory, name: str, build) -> Path:
    """A directory built once per test run, even across xdist workers (a file lock on the run's
    shared base temp dir): the first worker builds it, the others wait and reuse it."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    target = base / f"shared-{name}"
    with open(base / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / ".done").exists():
            if target.exists():
                shutil.rmtree(target)
            build(target)
            (target / ".done").touch()
    return target


def _release(root: Path) -> None:
    fc.make_course(root)
    release(Course.at(root))


def _grade_batch(template: Path):
    def build(root: Path) -> None:
        copy_course(template, root)
        for student, make in faults.SUBMISSIONS.items():
            content, filename = make(root)
            fc.submit(root, student, content, filename)
        grade(Course.at(root), None, options())

    return build


@pytest.fixture(scope="session")
def template(tmp_path_factory) -> Path:
    """The fake course, released with `nbgrader generate_assignment` (via `course release`)."""
    return _shared_dir(tmp_path_factory, "template", _release)


@pytest.fixture(scope="session")
def batch(template, tmp_path_factory):
    """Every submission of faults.SUBMISSIONS graded once (two worker processes); read-only:
    tests that change it work on a copy."""
    course = Course.at(_shared_dir(tmp_path_factory, "batch", _grade_batch(template)))
    writer = GradebookWriter(course)
    return course, {s: writer.row(s, fc.ASSIGNMENT) for s in faults.SUBMISSIONS}
