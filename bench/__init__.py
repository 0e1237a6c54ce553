"""Benchmarks of the course (figures and ratios measured side by side in one run, not tests).

    python bench/run_all.py [--quick]     # `make bench`: every benchmark -> bench-results/

Shared helpers for the benchmark scripts: the measuring conditions (float32, two threads),
interleaved median timing, peak memory measured in a fresh child process, and a description of
the machine. Each benchmark script prints a readable table and, with ``--out FILE``, writes
``{"figures": {...}, "targets": [{"name", "value", "op", "threshold", "unit"}, ...]}``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
THREADS = 2
REPEATS = 5  # timed repetitions per candidate (after one warm-up), interleaved


def set_conditions(threads: int = THREADS) -> None:
    """float32 everywhere, ``threads`` intra-op threads."""
    import torch

    torch.set_num_threads(threads)
    torch.set_default_dtype(torch.float32)


def interleaved_medians(calls: dict, repeats: int = REPEATS, warmup: int = 1) -> dict:
    """Time every callable ``repeats`` times, interleaved, after ``warmup`` untimed calls each.

    The order rotates every round so that no candidate always goes first (a loaded machine
    drifts; interleaving spreads the drift over all candidates). Returns
    ``{name: {"median_s": float, "times_s": [float, ...]}}``.
    """
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            calls[name]()
    times = {name: [] for name in names}
    for rep in range(repeats):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    return {name: {"median_s": statistics.median(ts), "times_s": ts} for name, ts in times.items()}


# ----------------------------------------------------------------------------- peak memory


def status_kb(field: str) -> int:
    """A field of /proc/self/status in kB (VmRSS, VmHWM, ...)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0). False if the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_peak_here(call) -> dict:
    """Peak extra resident memory of one ``call()`` in THIS process (run it in a fresh child).

    Baseline = resident size right before the call (after a VmHWM reset); peak = VmHWM after.
    """
    reset = reset_peak()
    before = status_kb("VmRSS") if reset else status_kb("VmHWM")
    out = call()
    peak = status_kb("VmHWM")
    del out
    return {"peak_extra_mb": max(0, peak - before) / 1024, "hwm_reset": reset}


def run_child_json(script: Path, args: list[str]) -> object:
    """Run ``python script *args`` in a fresh process; its last stdout line is JSON."""
    # glibc hands large freed blocks straight back to the OS, so RSS tracks live tensors.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()),
    }


def versions() -> dict:
    """Python and the libraries the figures depend on (None when not installed)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("torch", "numpy", "scikit-learn", "matplotlib", "jupyter-book", "nbgrader", "ipywidgets"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def target(name: str, value, op: str, threshold: float, unit: str = "") -> dict:
    """One target row as the benchmark scripts report it; ``run_all`` adds the verdict."""
    assert op in ("<=", ">=")
    return {"name": name, "value": value, "op": op, "threshold": threshold, "unit": unit}


def write_out(path, figures: dict, targets: list, quick: bool, **extra) -> None:
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"quick": quick, "figures": figures, "targets": targets, **extra}, indent=2))
