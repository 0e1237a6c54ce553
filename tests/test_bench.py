"""Smoke test of the benchmarks: `bench/run_all.py --quick` runs and writes well-formed results.

Benchmarks are not timed tests: this only checks that they run on tiny sizes and that
results.json has the documented shape (the verdicts of a --quick run mean nothing).
The book rebuild and the grading comparison are left out here (they take minutes).
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUN = ["module", "learning", "attention"]


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cmd = [sys.executable, str(REPO / "bench" / "run_all.py"), "--quick", "--out-dir", str(out)]
    cmd += [arg for name in RUN for arg in ("--only", name)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text())


@pytest.mark.slow
@pytest.mark.xdist_group("bench")
def test_quick_run_writes_well_formed_results(quick_results):
    out, r = quick_results
    assert r["schema"] == 1 and r["quick"] is True
    assert {"date", "machine", "versions", "conditions", "benchmarks", "targets", "load_average_start", "load_average_end"} <= set(r)
    assert r["machine"]["cores"] >= 1 and r["machine"]["cpu_model"]
    assert len(r["load_average_start"]) == 3 and len(r["load_average_end"]) == 3
    assert r["versions"]["torch"] and r["versions"]["python"]
    for name in RUN:
        assert r["benchmarks"][name]["status"] == "ok", r["benchmarks"][name]
    assert r["benchmarks"]["grading"]["status"] == "skipped"
    assert r["benchmarks"]["book"]["status"] == "skipped"
    names = {t["benchmark"] for t in r["targets"]}
    assert set(RUN) <= names
    for t in r["targets"]:
        assert t["op"] in ("<=", ">=") and t["verdict"] in ("PASS", "MISS", "N/A")
        if t["verdict"] != "N/A":
            assert math.isfinite(t["value"]) and math.isfinite(t["threshold"])
            passed = t["value"] <= t["threshold"] if t["op"] == "<=" else t["value"] >= t["threshold"]
            assert (t["verdict"] == "PASS") == passed
            assert (t["miss_by"] == 0) == passed
    for png in r["plots"]:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.xdist_group("bench")
def test_quick_figures_are_measured(quick_results):
    _, r = quick_results
    mod = r["benchmarks"]["module"]["figures"]
    for pair in ("mha", "block"):
        assert mod[pair]["forward_s"]["ours"] > 0 and mod[pair]["forward_s"]["torch"] > 0
        assert mod[pair]["max_abs_err"] < 1e-4  # the same function, weights mapped across
        assert all(v >= 0 for v in mod[pair]["peak_extra_mb"].values())
    learn = r["benchmarks"]["learning"]["figures"]
    for key in ("vit", "svc", "recall_transformer", "recall_gru"):
        assert 0.0 <= learn[key]["accuracy"] <= 1.0 and learn[key]["wall_s"] > 0
