"""Parallel workers, a Dask cluster, and identical results when regrading."""

from __future__ import annotations

import pytest
from nbgrader.api import Gradebook

import fake_course as fc
from course.grading.coursedir import Course
from course.grading.gradebook import load_log
from course.grading.pipeline import grade
from helpers import copy_course, options

pytestmark = [pytest.mark.nbgrader]

SOME = ["good", "wrong", "stub", "segfault", "memory_bomb", "stripped"]


def _verdicts(course, students):
    out = {}
    with Gradebook(course.db_url, course.course_id) as gb:
        for s in students:
            log = load_log(course, s, fc.ASSIGNMENT)
            grades = {g.name: g.auto_score for nb in gb.find_submission(fc.ASSIGNMENT, s).notebooks for g in nb.grades}
            out[s] = (log.state, [(i["grade_id"], i["passed"], i["message"]) for i in log.items], grades)
    return out


def test_batch_used_two_worker_processes(batch):
    course, rows = batch
    workers = {load_log(course, s, fc.ASSIGNMENT).worker for s in rows}
    assert len(workers) == 2


def test_regrading_gives_identical_results(batch, tmp_path):
    course, _ = batch
    again = Course.at(copy_course(course.root, tmp_path / "course"))
    before = _verdicts(again, SOME)
    skipped = grade(again, None, options(students=SOME))
    assert {r.state for r in skipped} == {"skipped"}  # nbgrader's rule: graded ones are skipped...
    rows = grade(again, None, options(students=SOME, force=True))  # ...unless forced
    assert {r.student for r in rows} == set(SOME) and "skipped" not in {r.state for r in rows}
    assert _verdicts(again, SOME) == before


def test_dask_local_cluster(batch, tmp_path):
    distributed = pytest.importorskip("distributed")
    course, _ = batch
    again = Course.at(copy_course(course.root, tmp_path / "course"))
    students = ["good", "wrong", "exit_in_function"]
    before = _verdicts(again, students)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        rows = grade(again, None, options(scheduler=cluster.scheduler_address, students=students, force=True))
    assert [r.state for r in rows] == ["graded"] * 3
    assert _verdicts(again, students) == before
    workers = {load_log(again, s, fc.ASSIGNMENT).worker for s in students}
    assert all(w.split(":")[0] for w in workers)
