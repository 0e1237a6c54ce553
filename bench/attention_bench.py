"""Benchmark chapter 7's attention variants against full attention (a benchmark, not a test).

    python bench/attention_bench.py [--quick] [--out results.json] [--threads 2]

Float32, B = H = 1, d = 64, two threads. For each sequence length L it times

    naive    softmax(Q K^T / sqrt(d)) V, the whole (L, L) matrix in memory
    sdpa     F.scaled_dot_product_attention (PyTorch's fused kernel)
    chunked  reference_impl.scalable.chunked_attention (exact, online softmax)
    linear   linear_attention (phi = elu + 1)
    sliding  sliding_window_attention, window 256
    lsh      lsh_attention (Reformer), 2 hashes, buckets of 64

as the median of >= 5 interleaved repetitions after a warm-up, for L = 1k .. 16k (32k for
the sub-quadratic ones). Peak extra memory is *measured*: every (method, L) runs once more
in a fresh child process, which resets its peak-RSS counter (``/proc/self/clear_refs``)
right before the call and reads ``VmHWM`` after it (extra = peak - resident size before).
It then fits log-log slopes (time ~ L^slope), measures how Reformer's error falls with more
hash rounds on clustered data, and checks everything against the targets in ``TARGETS``.
``--quick`` runs tiny sizes in seconds (a smoke test: its PASS/MISS verdicts mean nothing;
the test suite runs it with ``--threads 1``, as two threads fighting other processes for two
cores turn every small op into a wait).
A full run takes a few minutes on two cores; numbers move with the machine's load.
"""

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install
from reference_impl.scalable import (  # noqa: E402
    chunked_attention,
    linear_attention,
    lsh_attention,
    lsh_n_buckets,
    random_rotations,
    shared_qk_attention,
    sliding_window_attention,
)

THREADS = 2
D = 64
CHUNK = 512  # key block of chunked_attention (queries go in blocks of 512 too, its default)
WINDOW = 256
LSH_HASHES, LSH_BUCKET = 2, 64
REPEATS = 5

QUADRATIC = ("naive", "sdpa", "chunked")
SUBQUADRATIC = ("linear", "sliding", "lsh")
METHODS = QUADRATIC + SUBQUADRATIC
EXACT = ("naive", "chunked")  # compared with SDPA element by element

FULL_SIZES = {"quadratic": [1024, 2048, 4096, 8192, 16384], "subquadratic": [1024, 2048, 4096, 8192, 16384, 32768]}
QUICK_SIZES = {"quadratic": [128, 256], "subquadratic": [128, 256, 512]}


def sizes_for(method, sizes):
    return sizes["quadratic" if method in QUADRATIC else "subquadratic"]


# ------------------------------------------------------------------------------ the methods


def make_inputs(L, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, 1, L, D, generator=g) for _ in range(3))  # (B, H, L, d)
    return q, k, v


def make_call(method, q, k, v):
    """A zero-argument function running ``method`` on (q, k, v) (set-up done outside)."""
    if method == "naive":
        return lambda: torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(D), dim=-1) @ v
    if method == "sdpa":
        return lambda: F.scaled_dot_product_attention(q, k, v)
    if method == "chunked":
        return lambda: chunked_attention(q, k, v, CHUNK)
    if method == "linear":
        return lambda: linear_attention(q, k, v)
    if method == "sliding":
        return lambda: sliding_window_attention(q, k, v, WINDOW)
    if method == "lsh":
        L = q.shape[-2]
        R = random_rotations(D, LSH_HASHES, lsh_n_buckets(L, LSH_BUCKET), torch.Generator().manual_seed(1))
        return lambda: lsh_attention(q, v, LSH_HASHES, LSH_BUCKET, rotations=R)  # queries double as keys
    raise ValueError(method)


# --------------------------------------------------------------------------------- timing


def time_all(sizes, log):
    """{method: {L: [seconds, ...]}} and {method: max |out - sdpa|}, interleaving the methods."""
    times = {m: {} for m in METHODS}
    errors = {m: 0.0 for m in EXACT}
    all_L = sorted({L for m in METHODS for L in sizes_for(m, sizes)})
    for n, L in enumerate(all_L, 1):
        active = [m for m in METHODS if L in sizes_for(m, sizes)]
        log(f"[time {n}/{len(all_L)}] L={L}: {', '.join(active)}")
        q, k, v = make_inputs(L)
        calls = {m: make_call(m, q, k, v) for m in active}
        with torch.no_grad():
            outputs = {m: calls[m]() for m in active}  # warm-up, and the outputs to compare
            if "sdpa" in outputs:
                for m in EXACT:
                    if m in outputs:
                        errors[m] = max(errors[m], (outputs[m] - outputs["sdpa"]).abs().max().item())
            del outputs
            for m in active:
                times[m][L] = []
            for rep in range(REPEATS):
                order = active[rep % len(active) :] + active[: rep % len(active)]  # rotate who goes first
                for m in order:
                    start = time.perf_counter()
                    calls[m]()
                    times[m][L].append(time.perf_counter() - start)
    return times, errors


# ------------------------------------------------------------------- memory, in a child process


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak():
    """Reset VmHWM to the current RSS (Linux >= 4.0). False if the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child_measure(jobs, threads):
    """Runs in the child: for each (method, L), the peak extra resident memory of one call."""
    torch.set_num_threads(threads)
    results = []
    for method, L in jobs:
        with torch.no_grad():
            make_call(method, *make_inputs(128))()  # first-call set-up (kernels, tables) not counted
            q, k, v = make_inputs(L)
            call = make_call(method, q, k, v)
            reset = _reset_peak()
            before = _status_kb("VmRSS") if reset else _status_kb("VmHWM")
            out = call()
            peak = _status_kb("VmHWM")
            del out, call, q, k, v  # freed at once (reference counting)
        extra_mb = max(0, peak - before) / 1024
        results.append({"method": method, "L": L, "peak_extra_mb": extra_mb, "hwm_reset": reset})
    print(json.dumps(results))


def measure_memory(sizes, quick, threads, log):
    """{method: {L: MB}}. Full run: one fresh child per (method, L); quick: one child for all."""
    jobs = [(m, L) for m in METHODS for L in sizes_for(m, sizes)]
    batches = [jobs] if quick else [[job] for job in jobs]
    # Make glibc hand large freed blocks straight back to the OS, so RSS tracks live tensors.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    memory, reset_ok = {m: {} for m in METHODS}, True
    for n, batch in enumerate(batches, 1):
        log(f"[memory {n}/{len(batches)}] " + ", ".join(f"{m} L={L}" for m, L in batch))
        spec = ",".join(f"{m}:{L}" for m, L in batch)
        command = [sys.executable, __file__, "--child-memory", spec, "--threads", str(threads)]
        proc = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        for row in json.loads(proc.stdout.strip().splitlines()[-1]):
            memory[row["method"]][row["L"]] = row["peak_extra_mb"]
            reset_ok &= row["hwm_reset"]
    return memory, reset_ok


# ------------------------------------------------------------------- LSH error vs hash rounds


def clustered_qk(T, n_clusters, seed, sharpness=10.0, noise=0.3):
    """Shared query-keys around ``n_clusters`` random directions; a token scores about
    ``sharpness`` with its cluster mates, so attention stays mostly inside the cluster.
    Values depend on the cluster, so missing the mates shows up in the output."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(n_clusters, D, generator=g), dim=-1)
    labels = torch.randint(n_clusters, (T,), generator=g)
    x = F.normalize(centres[labels] + noise / math.sqrt(D) * torch.randn(T, D, generator=g), dim=-1)
    v = torch.randn(n_clusters, D, generator=g)[labels] + 0.1 * torch.randn(T, D, generator=g)
    return sharpness * math.sqrt(D) * x, v


def lsh_error_vs_hashes(quick, log):
    T, bucket, seeds = (256, 16, 1) if quick else (2048, LSH_BUCKET, 3)
    log(f"[lsh] relative error vs full shared-QK attention on clustered data, T={T}, bucket {bucket}")
    errors = {}
    with torch.no_grad():
        for n_hashes in (1, 2, 4, 8):
            rel = []
            for seed in range(seeds):
                qk, v = clustered_qk(T, T // bucket, seed)  # clusters about one bucket big
                full = shared_qk_attention(qk, v)
                out = lsh_attention(qk, v, n_hashes, bucket, generator=torch.Generator().manual_seed(100 + seed))
                rel.append(float((out - full).norm() / full.norm()))
            errors[n_hashes] = statistics.mean(rel)
    return {"T": T, "bucket_size": bucket, "seeds": seeds, "rel_error": errors}


# ------------------------------------------------------------------------------ the report


def loglog_slope(points):
    """Least-squares slope of log(time) against log(L)."""
    xs = [math.log(L) for L, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def targets(med, memory, slopes, errors, lsh, L_ref):
    """(name, value, op, target) rows; value None when it could not be measured."""

    def ratio(a, b):
        return a / b if a is not None and b else None

    t = {m: med[m].get(L_ref) for m in METHODS}
    mem = {m: memory[m].get(L_ref) for m in METHODS}
    e = lsh["rel_error"]
    return [
        (f"chunked time / sdpa time, L={L_ref}", ratio(t["chunked"], t["sdpa"]), "<=", 2.0),
        (f"chunked time / naive time, L={L_ref}", ratio(t["chunked"], t["naive"]), "<=", 0.5),
        (f"chunked peak memory / naive's, L={L_ref}", ratio(mem["chunked"], mem["naive"]), "<=", 0.05),
        ("chunked max |error| vs sdpa (all L)", errors["chunked"], "<=", 1e-5),
        ("slope linear", slopes["linear"], "<=", 1.3),
        ("slope sliding", slopes["sliding"], "<=", 1.3),
        ("slope lsh", slopes["lsh"], "<=", 1.5),
        ("slope naive", slopes["naive"], ">=", 1.8),
        (f"speed-up linear vs sdpa, L={L_ref}", ratio(t["sdpa"], t["linear"]), ">=", 20.0),
        (f"speed-up sliding vs sdpa, L={L_ref}", ratio(t["sdpa"], t["sliding"]), ">=", 4.0),
        (f"speed-up lsh vs sdpa, L={L_ref}", ratio(t["sdpa"], t["lsh"]), ">=", 2.0),
        ("lsh error(8 hashes) / error(1 hash), clustered", ratio(e[8], e[1]), "<=", 0.6),
    ]


def fmt(x):
    if x is None:
        return "-"
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    return f"{x:.2e}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke test")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--threads", type=int, default=THREADS, help=f"torch threads (default {THREADS})")
    parser.add_argument("--child-memory", help=argparse.SUPPRESS)  # internal: METHOD:L,METHOD:L,...
    args = parser.parse_args(argv)
    if args.child_memory:
        jobs = [(m, int(L)) for m, L in (job.split(":") for job in args.child_memory.split(","))]
        child_measure(jobs, args.threads)
        return 0

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    load_before = os.getloadavg()

    def log(msg):
        print(f"{time.perf_counter() - start:6.1f}s {msg}", file=sys.stderr, flush=True)

    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    times, errors = time_all(sizes, log)
    memory, reset_ok = measure_memory(sizes, args.quick, args.threads, log)
    lsh = lsh_error_vs_hashes(args.quick, log)

    med = {m: {L: statistics.median(ts) for L, ts in times[m].items()} for m in METHODS}
    slopes = {m: loglog_slope(sorted(med[m].items())) for m in METHODS}
    L_ref = max(sizes["quadratic"])
    rows = targets(med, memory, slopes, errors, lsh, L_ref)

    # ---- readable table
    all_L = sorted({L for m in METHODS for L in med[m]})
    print(f"\nmedian time [ms] / peak extra memory [MB]  (float32, B=H=1, d={D}, {args.threads} threads)")
    print(f"{'method':<9}" + "".join(f"{'L=' + str(L):>19}" for L in all_L) + f"{'slope':>8}")
    for m in METHODS:
        cells = [
            f"{fmt(med[m][L] * 1e3)} / {fmt(memory[m].get(L))}" if L in med[m] else "" for L in all_L
        ]
        print(f"{m:<9}" + "".join(f"{c:>19}" for c in cells) + f"{slopes[m]:>8.2f}")
    e = lsh["rel_error"]
    print(
        f"\nmax |out - sdpa|: naive {fmt(errors['naive'])}, chunked {fmt(errors['chunked'])};  "
        f"lsh relative error by hash rounds (T={lsh['T']}): " + ", ".join(f"{n}: {fmt(x)}" for n, x in e.items())
    )
    if not reset_ok:
        print("warning: could not reset VmHWM; memory figures are lower bounds")
    busy = max(load_before[0], os.getloadavg()[0]) > (os.cpu_count() or 1)
    if busy:
        print(
            f"warning: the machine was busy (load average {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f} "
            f"on {os.cpu_count()} cores); timings are unreliable, with several threads most of all "
            "(every parallel op waits for a descheduled thread)"
        )
    print("\ntargets" + ("  (--quick: sizes far too small, verdicts are meaningless)" if args.quick else ""))
    report_targets = []
    for name, value, op, target in rows:
        passed = value is not None and (value <= target if op == "<=" else value >= target)
        report_targets.append({"name": name, "value": value, "op": op, "target": target, "passed": passed})
        print(f"  {'PASS' if passed else 'MISS'}  {name:<48} {fmt(value):>10} {op} {fmt(target)}")
    wall = time.perf_counter() - start
    print(f"\n{sum(t['passed'] for t in report_targets)}/{len(report_targets)} targets met in {wall:.0f} s")

    if args.out:
        report = {
            "quick": args.quick,
            "config": {
                "threads": args.threads,
                "dtype": "float32",
                "B": 1,
                "H": 1,
                "d": D,
                "chunk_size": CHUNK,
                "window": WINDOW,
                "lsh_hashes": LSH_HASHES,
                "lsh_bucket_size": LSH_BUCKET,
                "repeats": REPEATS,
                "sizes": sizes,
                "torch": torch.__version__,
                "python": platform.python_version(),
                "cpu_count": os.cpu_count(),
                "load_average_before": load_before,
                "load_average_after": os.getloadavg(),
                "busy_machine": busy,
                "memory_method": "fresh child process, VmHWM after a clear_refs reset minus VmRSS before"
                if reset_ok
                else "fresh child process, VmHWM after minus VmHWM before (reset not allowed)",
            },
            "results": {
                m: [
                    {"L": L, "time_s": med[m][L], "times_s": times[m][L], "peak_extra_mb": memory[m].get(L)}
                    for L in sorted(med[m])
                ]
                for m in METHODS
            },
            "slopes": slopes,
            "max_abs_err": errors,
            "lsh_clustered": lsh,
            "targets": report_targets,
            "wall_s": wall,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
