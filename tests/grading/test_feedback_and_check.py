"""Feedback without hidden tests; `course check` prints exactly what `course grade` decided."""

from __future__ import annotations

import subprocess
import sys

import pytest

import fake_course as fc
from course.cli import format_check
from course.grading.coursedir import Course
from course.grading.gradebook import load_log
from course.grading.pipeline import check, feedback
from helpers import TEST_LIMITS, copy_course, kernel_env

pytestmark = [pytest.mark.nbgrader]


def test_feedback_has_no_hidden_tests(batch, tmp_path):
    """nbgrader 0.9.6's generate_feedback keeps the hidden tests that autograde restored into the
    test cells (checked by hand: they show in its HTML); `course feedback` adds ClearHiddenTests."""
    course, _ = batch
    root = copy_course(course.root, tmp_path / "course")
    feedback(Course.at(root))
    html = {p.parts[-3]: p.read_text() for p in (root / "feedback").glob(f"*/{fc.ASSIGNMENT}/{fc.ASSIGNMENT}.html")}
    assert set(html) == set(batch[1])
    for student, text in html.items():
        for marker in fc.HIDDEN_MARKERS:
            assert marker not in text, (student, marker)
    assert "your result is 3 * x" in html["wrong"]  # the judge's message is the test cell's output
    assert "not a valid notebook" in html["invalid_json"]  # and an ungradable one says why


def _expected_lines(course, student):
    log = load_log(course, student, fc.ASSIGNMENT)
    return [f"{'PASS' if i['passed'] else 'FAIL'}  {i['grade_id']}: {i['message']}" for i in log.items]


def test_course_check_command_prints_the_grade_messages(batch):
    course, _ = batch
    path = course.path("submitted", "wrong", fc.ASSIGNMENT) / f"{fc.ASSIGNMENT}.ipynb"
    out = subprocess.run([sys.executable, "-m", "course.cli", "--course-dir", str(course.root), "check", str(path),
                          "--timeout-cell", "3"], env=kernel_env(), capture_output=True, text=True)
    assert out.returncode == 1, out.stderr[-3000:]  # something fails
    for line in _expected_lines(course, "wrong"):
        assert line in out.stdout


def test_check_function_equals_grade(batch):
    course, _ = batch
    student = "segfault"  # a child dies on the way: check() goes through the same retries
    folder = course.path("submitted", student, fc.ASSIGNMENT)
    res = check(folder / f"{fc.ASSIGNMENT}.ipynb", course, fc.ASSIGNMENT, TEST_LIMITS,
                modules=tuple(dict.fromkeys(("course.checks",) + fc.CHECK_MODULES)))
    graded = load_log(course, student, fc.ASSIGNMENT)
    assert [(i["grade_id"], i["passed"], i["message"]) for i in res.items] == \
        [(i["grade_id"], i["passed"], i["message"]) for i in graded.items]
    printed = format_check(res)
    for line in _expected_lines(course, student):
        assert line in printed


@pytest.fixture
def fake_checks_here():
    """Register the fake checks in this process for one test, then take them out again (other
    tests of the suite may look at the registry)."""
    from course.checks import REGISTRY, core

    before = set(REGISTRY)
    import fake_checks  # noqa: F401 (registers the fake checks)

    yield
    for name in set(REGISTRY) - before:
        REGISTRY.pop(name)
        core._PRIVATE.pop(name, None)  # the registry's private copy (no public way to unregister)
    sys.modules.pop("fake_checks", None)


def test_in_kernel_messages_match(batch, fake_checks_here):
    """The learner's own test cell (course.checks.check) words a failure as `course grade` does."""
    from course.checks import CheckFailed, run_check

    course, _ = batch
    graded = {i["grade_id"]: i["message"] for i in load_log(course, "wrong", fc.ASSIGNMENT).items}
    with pytest.raises(CheckFailed) as info:
        run_check("double", lambda x: x * 3)
    assert str(info.value) == graded["test_double"]
    import torch

    forbidden = {i["grade_id"]: i["message"] for i in load_log(course, "forbidden", fc.ASSIGNMENT).items}
    with pytest.raises(CheckFailed) as info:
        run_check("double", lambda x: torch.mul(x, 2))
    assert str(info.value) == forbidden["test_double"]


def test_nbgrader_validate_still_works(batch, monkeypatch):
    from nbgrader.validator import Validator

    course, _ = batch
    for key, value in kernel_env().items():
        monkeypatch.setenv(key, value)
    path = course.path("submitted", "wrong", fc.ASSIGNMENT) / f"{fc.ASSIGNMENT}.ipynb"
    result = Validator().validate(str(path))
    failed = " ".join(str(f) for f in result.get("failed", []))
    assert "your result is 3 * x" in failed
