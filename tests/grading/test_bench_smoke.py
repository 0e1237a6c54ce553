"""The grading benchmark runs end to end and prints its ratio line (tiny fake course)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fake_course import REPO

pytestmark = [pytest.mark.slow, pytest.mark.nbgrader]


def test_bench_quick_prints_the_ratio():
    out = subprocess.run([sys.executable, str(REPO / "bench" / "grading_bench.py"), "--quick", "--course", "fake"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "ratio:" in out.stdout and "x faster" in out.stdout
    assert "scores: identical" in out.stdout
