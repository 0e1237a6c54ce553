"""The course's modules against PyTorch's built-ins, weights mapped across (a benchmark).

    python bench/module_bench.py [--quick] [--out module.json]

Float32, two threads, B = 8, T = 512, D = 256, H = 8, F = 1024, inference (eval mode,
``torch.no_grad()``). Pairs, each computing the same function (checked with assert_close):

    mha     reference_impl.attention.MultiHeadAttention  vs  nn.MultiheadAttention (to_torch_mha)
    block   reference_impl.blocks.TransformerBlock       vs  nn.TransformerEncoderLayer(norm_first=True,
                                                              dropout=0) (to_torch_encoder_layer)

Forward time: median of >= 5 interleaved repetitions after a warm-up. Peak extra memory of one
forward: measured in a fresh child process (VmHWM after a reset minus VmRSS before). It also
times forward + backward in training mode (no target; PyTorch's inference fast path does not
apply there). Target: ours / PyTorch forward time <= 1.3 for both pairs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

import torch  # noqa: E402

from bench import THREADS, interleaved_medians, measure_peak_here, run_child_json, set_conditions, target, write_out  # noqa: E402
from reference_impl.attention import MultiHeadAttention, to_torch_mha  # noqa: E402
from reference_impl.blocks import TransformerBlock, to_torch_encoder_layer  # noqa: E402

FULL = {"B": 8, "T": 512, "D": 256, "H": 8, "F": 1024}
QUICK = {"B": 2, "T": 64, "D": 64, "H": 4, "F": 128}
RATIO_TARGET = 1.3


def build(pair: str, size: dict, seed: int = 0):
    """(ours, theirs, x): two eval-mode modules computing the same function, and an input (B, T, D)."""
    torch.manual_seed(seed)
    if pair == "mha":
        ours = MultiHeadAttention(size["D"], size["H"])
        ref = to_torch_mha(ours)
        theirs = lambda x: ref(x, x, x, need_weights=False)[0]  # noqa: E731
        modules = (ours, ref)
    else:
        ours = TransformerBlock(size["D"], size["H"], size["F"])
        ref = to_torch_encoder_layer(ours)
        theirs = ref
        modules = (ours, ref)
    for m in modules:
        m.eval()
    x = torch.randn(size["B"], size["T"], size["D"], generator=torch.Generator().manual_seed(seed + 1))
    return ours, theirs, modules, x


def child(spec: str, threads: int) -> None:
    """In a fresh process: peak extra memory of one no-grad forward for each ``pair:side:quick``."""
    set_conditions(threads)
    rows = {}
    for job in spec.split(","):
        pair, side, quick = job.split(":")
        ours, theirs, _, x = build(pair, QUICK if quick == "1" else FULL)
        fn = ours if side == "ours" else theirs
        with torch.no_grad():
            fn(x[:1, :8])  # first-call set-up (kernels, tables) not counted
            rows[f"{pair}:{side}"] = measure_peak_here(lambda: fn(x))
        del ours, theirs, x, fn
    print(json.dumps(rows))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, a smoke test (verdicts meaningless)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument("--threads", type=int, default=THREADS, help=f"torch threads (default {THREADS})")
    p.add_argument("--child-memory", help=argparse.SUPPRESS)  # internal: pair:side:quick,...
    args = p.parse_args(argv)
    if args.child_memory:
        child(args.child_memory, args.threads)
        return 0
    set_conditions(args.threads)
    size = QUICK if args.quick else FULL
    figures, targets = {"size": size, "threads": args.threads}, []
    # Peak memory: a fresh child per measurement (quick: one child for all four).
    jobs = [f"{pair}:{side}:{int(args.quick)}" for pair in ("mha", "block") for side in ("ours", "torch")]
    memory = {}
    for batch in [jobs] if args.quick else [[job] for job in jobs]:
        memory.update(run_child_json(Path(__file__), ["--child-memory", ",".join(batch), "--threads", str(args.threads)]))
    for pair in ("mha", "block"):
        ours, theirs, modules, x = build(pair, size)
        with torch.no_grad():
            max_err = (ours(x) - theirs(x)).abs().max().item()
            torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-4)
            fwd = interleaved_medians({"ours": lambda: ours(x), "torch": lambda: theirs(x)})
        for m in modules:
            m.train()
        xg = x.clone().requires_grad_(True)
        train = interleaved_medians(
            {"ours": lambda: ours(xg).sum().backward(), "torch": lambda: theirs(xg).sum().backward()}
        )
        mem = {side: memory[f"{pair}:{side}"]["peak_extra_mb"] for side in ("ours", "torch")}
        ratio = fwd["ours"]["median_s"] / fwd["torch"]["median_s"]
        figures[pair] = {
            "forward_s": {k: v["median_s"] for k, v in fwd.items()},
            "forward_times_s": {k: v["times_s"] for k, v in fwd.items()},
            "forward_ratio": ratio,
            "train_step_s": {k: v["median_s"] for k, v in train.items()},
            "train_step_ratio": train["ours"]["median_s"] / train["torch"]["median_s"],
            "peak_extra_mb": mem,
            "max_abs_err": max_err,
        }
        label = "MultiHeadAttention" if pair == "mha" else "TransformerBlock"
        targets.append(target(f"{label} forward time / PyTorch's", ratio, "<=", RATIO_TARGET, "x"))
        print(
            f"{label:<19} forward ours {fwd['ours']['median_s'] * 1e3:8.2f} ms  torch {fwd['torch']['median_s'] * 1e3:8.2f} ms"
            f"  ratio {ratio:5.2f} | fwd+bwd ratio {figures[pair]['train_step_ratio']:5.2f}"
            f" | peak MB ours {mem['ours']:.1f} torch {mem['torch']:.1f} | max err {max_err:.1e}",
            flush=True,
        )
    write_out(args.out, figures, targets, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
