"""The book's own speed: a no-change rebuild, and how fast the live widgets redraw (a benchmark).

    python bench/book_bench.py [--quick] [--no-build] [--out book.json]

1. Rebuild: runs ``python -m course.book build`` in this checkout twice. The first run brings
   the execution cache up to date (it may execute pages whose code changed: reported as
   ``first_build_s``, not a target); the second, with nothing changed, is the figure
   ``rebuild_s`` (one sample: a build takes tens of seconds; numbers move with the load).
   A clean build of the whole book (every page executed) is not run here: too slow for
   a routine benchmark.
2. Widget latency: builds each chapter's live widget (``course.anim.live``, the same drawing
   functions, sizes and resolution as the book's pages) and drives it headless by setting the
   slider's value through every frame (``interactive`` redraws on each change, as in a
   kernel); the latency of one change is the time until the callback has returned its
   Figure. Median and worst per widget, over >= 5 interleaved passes after a warm-up pass.
   ``--quick`` drives two widgets, one pass, at low resolution.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from bench import REPEATS, REPO, set_conditions, write_out  # noqa: E402


# ------------------------------------------------------------------------------ the widgets


def widget_specs() -> dict:
    """name -> (draw, n_steps, live kwargs): the chapters' live widgets as their pages make them.

    Chapters 2 and 3 are left out: their drawings are defined inside the page (ch 2) or need
    a trained model (ch 3); chapter 6's attention and report are random stand-ins here (the
    page uses a trained ViT's; the drawing work is the same).
    """
    import math

    from course.chapters import ch01, ch04, ch05, ch06, ch07, ch08
    from reference_impl.challenges import CASE_FILES, DocumentStore
    from reference_impl.data import CASE_VOCAB, make_case_dataset
    from reference_impl.scalable import lsh_n_buckets, random_rotations

    specs = {}
    cases, _ = make_case_dataset(1, seed=3)
    torch.manual_seed(0)
    table = torch.randn(len(CASE_VOCAB), 16) / math.sqrt(16)
    draw, n = ch01.evidence_animation(cases[0], table, CASE_VOCAB)
    specs["ch01 evidence"] = (draw, n, {"n_panels": 3, "figsize": (9, 3.0)})
    specs["ch04 prediction"] = (ch04.draw_prediction, ch04.N_FRAMES, {"n_panels": 2, "figsize": (7.2, 2.9)})
    specs["ch05 relay"] = (ch05.draw_relay, ch05.N_FRAMES, {"n_panels": 2, "figsize": (8.4, 2.5)})
    g = torch.Generator().manual_seed(0)
    image = torch.rand(8, 8, generator=g)
    attention = torch.softmax(3 * torch.randn(2, 17, generator=g), -1)
    probs = torch.softmax(3 * torch.randn(10, generator=g), -1)
    draw, n = ch06.photo_story(image, 2, attention, probs)
    specs["ch06 photo"] = (draw, n, {"figsize": (8.4, 3.0)})
    scores = torch.tensor([0.5, 1.2, 0.3, 0.9, 2.4, 1.0, 0.2, 1.6, 0.4, 3.1, 0.8, 1.1])
    v = torch.randn(12, 2, generator=torch.Generator().manual_seed(0))
    draw, n = ch07.online_softmax_story(torch.ones(1), scores[:, None], v, chunk_size=3)
    specs["ch07 reading"] = (draw, n, {"n_panels": 2, "figsize": (8.4, 2.9)})
    g = torch.Generator().manual_seed(3)
    angles = torch.cat([a + 0.25 * torch.randn(4, generator=g) for a in (0.3, 1.9, 3.4, 4.8)])
    squad = 2.0 * torch.stack([angles.cos(), angles.sin()], dim=-1)
    rounds = random_rotations(2, 2, lsh_n_buckets(16, 4), generator=g)
    draw, n = ch07.lsh_tables_story(squad, 4, rounds, focus=0)
    specs["ch07 tables"] = (draw, n, {"n_panels": 2, "figsize": (8.4, 3.0)})
    draw, n = ch08.archive_story(
        DocumentStore(CASE_FILES), ["Who owns size 44 boots?", "Who stole the crown jewels?"], k=2
    )
    specs["ch08 archive"] = (draw, n, {"n_panels": 2, "figsize": (8.4, 3.2)})
    return specs


def drive(widget, n_steps: int) -> list[float]:
    """Seconds per slider change, through every frame (0 -> 1 -> ... -> n-1 -> 0)."""
    slider = widget.kwargs_widgets[0]
    out = []
    for step in list(range(1, n_steps)) + [0]:
        start = time.perf_counter()
        # interactive calls the drawing callback synchronously; without a front end its
        # Output area writes terminal escape codes to stdout: swallowed.
        with contextlib.redirect_stdout(io.StringIO()):
            slider.value = step
        out.append(time.perf_counter() - start)
        plt.close("all")
    return out


def widget_latency(quick: bool, log) -> dict:
    from course import anim

    specs = widget_specs()
    if quick:
        specs = dict(list(specs.items())[:2])
    widgets = {}
    for name, (draw, n, kw) in specs.items():
        if quick:
            kw = {**kw, "dpi": 30}
        with contextlib.redirect_stdout(io.StringIO()):
            widgets[name] = (anim.live(draw, n, **kw), n)
        plt.close("all")
    passes = 1 if quick else REPEATS
    names = list(widgets)
    times = {name: [] for name in names}
    if not quick:
        for name in names:  # warm-up pass (font cache, first draws)
            drive(*widgets[name])
    for rep in range(passes):
        log(f"[widgets] pass {rep + 1}/{passes}")
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            times[name] += drive(*widgets[name])
    result = {}
    for name in names:
        ts = times[name]
        result[name] = {
            "frames": widgets[name][1],
            "changes": len(ts),
            "median_ms": statistics.median(ts) * 1e3,
            "max_ms": max(ts) * 1e3,
        }
        log(f"  {name:<16} median {result[name]['median_ms']:7.1f} ms   worst {result[name]['max_ms']:7.1f} ms")
    return result


# ------------------------------------------------------------------------------ the rebuild


def book_build(log) -> float:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "course.book", "build"], cwd=REPO, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise RuntimeError(f"`python -m course.book build` failed ({proc.returncode}):\n{tail}")
    log(f"[book] build took {seconds:.1f} s")
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="two widgets, one pass, no book build")
    p.add_argument("--no-build", action="store_true", help="skip the book rebuild (widgets only)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)
    set_conditions()
    start = time.perf_counter()

    def log(msg):
        print(f"{time.perf_counter() - start:6.1f}s {msg}", flush=True)

    figures = {"widgets": widget_latency(args.quick, log)}
    lat = [w["median_ms"] for w in figures["widgets"].values()]
    figures["widget_median_ms_overall"] = statistics.median(lat)
    figures["widget_worst_median_ms"] = max(lat)
    if not (args.quick or args.no_build):
        figures["first_build_s"] = book_build(log)
        figures["rebuild_s"] = book_build(log)
    write_out(args.out, figures, [], args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
