"""Shared helpers of the grading tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import fake_course as fc
from course.grading.pipeline import GradeOptions, default_modules
from course.grading.sandbox import Limits

HERE = Path(__file__).resolve().parent

# Small budgets: the infinite-loop cases cost a few seconds, not minutes.
TEST_LIMITS = Limits(timeout_cell=4.0, timeout_notebook=40.0, memory_mb=768)


def options(**kw) -> GradeOptions:
    base = dict(workers=2, limits=TEST_LIMITS, progress=False, modules=default_modules() + fc.CHECK_MODULES,
                paths=fc.CHECK_PATHS)
    base.update(kw)
    return GradeOptions(**base)


def kernel_env() -> dict[str, str]:
    """Environment for nbgrader / `course` subprocesses: the fake checks importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["COURSE_GRADING_CHECKS"] = ",".join(fc.CHECK_MODULES)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def copy_course(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest
