"""Run every benchmark of the course and collect the results (`make bench`).

    python bench/run_all.py                      # everything (tens of minutes on 2 cores)
    python bench/run_all.py --quick              # tiny sizes, a smoke test (verdicts meaningless)
    python bench/run_all.py --skip book --skip grading
    python bench/run_all.py --only module --only learning

Each benchmark runs in its own fresh process (float32, two threads, medians of >= 5
interleaved repetitions after a warm-up; peak memory measured in fresh child processes):

    module     bench/module_bench.py     our MultiHeadAttention / TransformerBlock vs PyTorch's
    learning   bench/learning_bench.py   ViT on digits (vs SVC), recall: Transformer vs GRU
    attention  bench/attention_bench.py  chapter 7's attention variants vs naive and SDPA
    grading    bench/grading_bench.py    `course grade` vs sequential `nbgrader autograde`
    book       bench/book_bench.py       no-change book rebuild, live-widget latency

Writes ``bench-results/results.json`` (date, machine, load average at start and end, versions,
every figure, every target with value / threshold / PASS|MISS and by how much a miss misses)
and PNG plots beside it. Progress: each benchmark's own log is streamed, prefixed with its name.
A benchmark that fails is recorded as failed (its log tail kept); the others still run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from bench import REPO, machine, versions  # noqa: E402

BENCH = Path(__file__).resolve().parent
NAMES = ("module", "learning", "attention", "grading", "book")
SCRIPTS = {name: BENCH / f"{name}_bench.py" for name in NAMES}
SCHEMA = 1


# ------------------------------------------------------------------------------ running


def stream(cmd: list[str], name: str, t0: float) -> tuple[int, list[str]]:
    """Run cmd, echoing each output line as `[elapsed] name | line`; returns (rc, lines)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        line = line.rstrip("\n").replace("\x1b[2K", "")
        lines.append(line)
        print(f"[{time.perf_counter() - t0:7.1f}s] {name:<9}| {line}", flush=True)
    return proc.wait(), lines


def command(name: str, quick: bool, out: Path) -> list[str]:
    cmd = [sys.executable, str(SCRIPTS[name])]
    if quick:
        cmd.append("--quick")
    if name in ("attention", "module", "learning") and quick:
        # attention_bench's own advice for the smoke test: two threads fighting other
        # processes for two cores turn every small op into a wait.
        cmd += ["--threads", "1"]
    if name != "grading":  # grading_bench prints its figures; parsed below
        cmd += ["--out", str(out)]
    return cmd


def parse_grading(lines: list[str], quick: bool) -> dict:
    """Figures and targets from grading_bench's printed report."""
    text = "\n".join(lines)
    figures = {}
    m = re.search(r"batch: (\d+) students x (\d+) assignments = (\d+) submissions", text)
    if m:
        figures.update(students=int(m[1]), assignments=int(m[2]), submissions=int(m[3]))
    m = re.search(r"nbgrader autograde \(sequential\):\s*([\d.]+) s\s*=\s*([\d.]+) s/submission", text)
    if m:
        figures.update(nbgrader_s=float(m[1]), nbgrader_s_per_submission=float(m[2]))
    m = re.search(r"course grade\s*:\s*([\d.]+) s\s*=\s*([\d.]+) s/submission", text)
    if m:
        figures.update(course_grade_s=float(m[1]), course_grade_s_per_submission=float(m[2]))
    m = re.search(r"ratio: ([\d.]+)x", text)
    figures["ratio"] = float(m[1]) if m else None
    figures["scores_identical"] = "scores: identical" in text
    m = re.search(r"one complete submission .*?: ([\d.]+) s", text)
    figures["one_submission_s"] = float(m[1]) if m else None
    targets = [
        {"name": "grading speed-up, course grade vs sequential nbgrader", "value": figures["ratio"], "op": ">=",
         "threshold": 3.0, "unit": "x"},
        {"name": "same scores as nbgrader autograde (1 = identical)", "value": float(figures["scores_identical"]),
         "op": ">=", "threshold": 1.0, "unit": ""},
    ]
    if not quick:
        targets.append({"name": "one complete submission graded (all assignments)", "value": figures["one_submission_s"],
                        "op": "<=", "threshold": 40.0, "unit": "s"})
    return {"figures": figures, "targets": targets}


def from_attention(report: dict) -> dict:
    """attention_bench's JSON -> figures and targets in this file's format."""
    targets = [
        {"name": t["name"], "value": t["value"], "op": t["op"], "threshold": t["target"], "unit": ""}
        for t in report.get("targets", [])
    ]
    figures = {k: v for k, v in report.items() if k not in ("targets", "quick")}
    return {"figures": figures, "targets": targets}


def verdict(t: dict) -> dict:
    """Adds verdict PASS|MISS (N/A when not measured) and, for a miss, by how much."""
    v, thr = t["value"], t["threshold"]
    if v is None:
        return {**t, "verdict": "N/A", "miss_by": None, "miss_by_rel": None}
    passed = v <= thr if t["op"] == "<=" else v >= thr
    miss = 0.0 if passed else abs(v - thr)
    return {**t, "verdict": "PASS" if passed else "MISS", "miss_by": miss, "miss_by_rel": miss / abs(thr) if thr else None}


# ------------------------------------------------------------------------------ plots


def plots(results: dict, out_dir: Path) -> list[str]:
    """PNG figures of whatever ran; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        written.append(name)

    b = results["benchmarks"]
    att = b.get("attention", {}).get("figures", {}).get("results")
    if att:
        fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
        for method, rows in att.items():
            Ls = [r["L"] for r in rows]
            ax_t.loglog(Ls, [r["time_s"] for r in rows], "o-", label=method)
            mem = [(r["L"], r["peak_extra_mb"]) for r in rows if r.get("peak_extra_mb")]
            if mem:
                ax_m.loglog(*zip(*mem), "o-", label=method)
        ax_t.set(xlabel="sequence length L", ylabel="median time [s]", title="attention: time")
        ax_m.set(xlabel="sequence length L", ylabel="peak extra memory [MB]", title="attention: memory (measured)")
        ax_t.legend(fontsize=8)
        save(fig, "attention.png")
    mod = b.get("module", {}).get("figures", {})
    if "mha" in mod:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        pairs = [("mha", "MultiHeadAttention"), ("block", "TransformerBlock")]
        xs = range(len(pairs))
        ax.bar([x - 0.2 for x in xs], [mod[p]["forward_s"]["ours"] * 1e3 for p, _ in pairs], 0.4, label="course (reference_impl)")
        ax.bar([x + 0.2 for x in xs], [mod[p]["forward_s"]["torch"] * 1e3 for p, _ in pairs], 0.4, label="PyTorch built-in")
        for x, (p, _) in zip(xs, pairs):
            ax.annotate(f"{mod[p]['forward_ratio']:.2f}x", (x, mod[p]["forward_s"]["ours"] * 1e3), ha="center", va="bottom")
        ax.set_xticks(list(xs), [label for _, label in pairs])
        s = mod.get("size", {})
        ax.set(ylabel="forward time [ms]", title=f"forward, B={s.get('B')} T={s.get('T')} D={s.get('D')}")
        ax.legend(fontsize=8)
        save(fig, "modules.png")
    learn = b.get("learning", {}).get("figures", {})
    if "vit" in learn:
        fig, ax = plt.subplots(figsize=(6.5, 3.5))
        rows = [("ViT\ndigits", "vit"), ("SVC\ndigits", "svc"), ("Transformer\nrecall", "recall_transformer"), ("GRU\nrecall", "recall_gru")]
        accs = [learn[k]["accuracy"] * 100 for _, k in rows]
        bars = ax.bar([label for label, _ in rows], accs, color=["#2b4c7e", "#9aa5b1", "#2b4c7e", "#b03a2e"])
        for bar, (_, k) in zip(bars, rows):
            ax.annotate(f"{learn[k]['accuracy'] * 100:.1f}%\n{learn[k]['cpu_s']:.0f} CPU-s", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)
        ax.axhline(95, ls="--", color="#e0a526", lw=1)
        ax.axhline(40, ls=":", color="#b03a2e", lw=1)
        ax.set(ylabel="held-out accuracy [%]", ylim=(0, 115), title="what the small models learn")
        save(fig, "learning.png")
    targets = [t for t in results["targets"] if t["value"] is not None and t["threshold"]]
    if targets:
        fig, ax = plt.subplots(figsize=(8, 0.32 * len(targets) + 1.2))
        # value / threshold: for "<=" targets below 1 is good; flip ">=" ones so that left of 1 is always good
        score = [(t["value"] / t["threshold"]) if t["op"] == "<=" else (t["threshold"] / t["value"] if t["value"] else float("inf")) for t in targets]
        colours = ["#4f9d69" if t["verdict"] == "PASS" else "#b03a2e" for t in targets]
        ax.barh(range(len(targets)), [min(s, 10) for s in score], color=colours)
        ax.axvline(1, color="k", lw=1)
        ax.set_yticks(range(len(targets)), [f"{t['benchmark']}: {t['name']}" for t in targets], fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set(xlabel="measured / target (left of 1 = met; '>=' targets inverted)", title="targets")
        save(fig, "targets.png")
    return written


# ------------------------------------------------------------------------------ main


def save(results: dict, names: list[str], out_dir: Path, t0: float, complete: bool) -> None:
    """Write results.json (and, once complete, the plots). ``complete`` False: a partial file."""
    for name in NAMES:
        if name not in results["benchmarks"]:
            results["benchmarks"][name] = {"status": "skipped" if name not in names else "not run (interrupted)"}
    results["complete"] = complete
    results["load_average_end"] = list(os.getloadavg())
    results["wall_s"] = time.perf_counter() - t0
    results["plots"] = plots(results, out_dir) if complete else []
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    if not complete:  # the next benchmark fills its own entry
        for name in names:
            if results["benchmarks"][name].get("status") == "not run (interrupted)":
                del results["benchmarks"][name]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, a smoke test (verdicts meaningless)")
    p.add_argument("--skip", action="append", default=[], choices=NAMES, help="leave this benchmark out (repeatable)")
    p.add_argument("--only", action="append", default=[], choices=NAMES, help="run only these (repeatable)")
    p.add_argument("--out-dir", type=Path, default=REPO / "bench-results")
    p.add_argument("--note", default="", help="free text stored in results.json (e.g. what else loaded the machine)")
    args = p.parse_args(argv)
    names = [n for n in NAMES if (not args.only or n in args.only) and n not in args.skip]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = {
        "schema": SCHEMA,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "note": args.note,
        "machine": machine(),
        "load_average_start": list(os.getloadavg()),
        "versions": versions(),
        "conditions": {
            "dtype": "float32",
            "torch_threads": 2,
            "timing": "median of >= 5 interleaved repetitions after a warm-up",
            "memory": "peak RSS of a fresh child process minus its baseline (VmHWM after a reset minus VmRSS before)",
        },
        "benchmarks": {},
        "targets": [],
    }
    print(f"benchmarks: {', '.join(names)}{' (quick)' if args.quick else ''}; load average {results['load_average_start']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for i, name in enumerate(names, 1):
            print(f"\n=== [{i}/{len(names)}] {name} ({SCRIPTS[name].name}) at {time.perf_counter() - t0:.0f} s", flush=True)
            out = Path(tmp) / f"{name}.json"
            start = time.perf_counter()
            rc, lines = stream(command(name, args.quick, out), name, t0)
            entry = {"status": "ok" if rc == 0 else "failed", "seconds": time.perf_counter() - start,
                     "load_average_end": list(os.getloadavg())}
            try:
                if rc != 0:
                    raise RuntimeError(f"exit status {rc}")
                if name == "grading":
                    part = parse_grading(lines, args.quick)
                elif name == "attention":
                    part = from_attention(json.loads(out.read_text()))
                else:
                    part = json.loads(out.read_text())
                entry.update(figures=part["figures"])
                for t in part["targets"]:
                    results["targets"].append(verdict({"benchmark": name, **t}))
            except (RuntimeError, OSError, ValueError, KeyError) as exc:
                entry.update(status="failed", error=str(exc), log_tail=lines[-20:])
            results["benchmarks"][name] = entry
            print(f"=== {name}: {entry['status']} in {entry['seconds']:.0f} s", flush=True)
            save(results, names, args.out_dir, t0, complete=False)  # an interrupted run keeps what it has
    save(results, names, args.out_dir, t0, complete=True)
    path = args.out_dir / "results.json"

    print(f"\ntargets{'  (--quick: verdicts meaningless)' if args.quick else ''}")
    for t in results["targets"]:
        value = "n/a" if t["value"] is None else f"{t['value']:.4g}"
        miss = f"  (missed by {t['miss_by']:.3g})" if t["verdict"] == "MISS" else ""
        print(f"  {t['verdict']:<4} {t['benchmark']:<9} {t['name']:<55} {value:>10} {t['op']} {t['threshold']:g}{miss}")
    n_pass = sum(t["verdict"] == "PASS" for t in results["targets"])
    failed = [n for n, e in results["benchmarks"].items() if e["status"] == "failed"]
    print(f"\n{n_pass}/{len(results['targets'])} targets met; failed benchmarks: {failed or 'none'}; "
          f"{results['wall_s']:.0f} s; load average {results['load_average_start']} -> {results['load_average_end']}")
    print(f"wrote {path} and {len(results['plots'])} plots")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
