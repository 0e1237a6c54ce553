"""What the chapters' small models learn within a CPU-minute each (a benchmark, not a test).

    python bench/learning_bench.py [--quick] [--out learning.json]

Float32, two threads, seeded. Three tasks, each trained with reference_impl.training.train_classifier
(AdamW, cosine decay) and scored on held-out data:

    vit     VisionTransformer(8, 4, 1, 10, d_model=64, n_heads=4, n_layers=2, d_ff=128) on the 8x8
            digits (load_digits_split: 75% / 25% stratified), 12 epochs, batch 64, lr 3e-3;
            beside it an sklearn SVC (RBF, defaults) on the same split, the classical baseline.
    recall  associative recall with 8 pairs (make_recall_dataset(16000, seed=0), held out:
            4000 sequences with seed=1): CausalTransformerClassifier(32, 16, d_model=32, n_heads=4,
            d_ff=64, n_layers=2) against a GRU RecurrentClassifier(32, 16, hidden=52) of similar
            size, 6 epochs, batch 64, lr 3e-3 each.

Reported per model: held-out accuracy, wall and CPU seconds (process CPU time, both threads
together, so spinning threads on a loaded machine count too), parameters, and the peak extra
resident memory of the training run, measured (VmHWM after a reset minus VmRSS before).
Targets: ViT >= 95%; 2-layer Transformer >= 95%; GRU <= 40%; each training <= 60 CPU-seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

import torch  # noqa: E402

from bench import THREADS, reset_peak, set_conditions, status_kb, target, write_out  # noqa: E402
from reference_impl.data import load_digits_split, make_recall_dataset  # noqa: E402
from reference_impl.rnn import CausalTransformerClassifier, RecurrentClassifier  # noqa: E402
from reference_impl.training import accuracy, train_classifier  # noqa: E402
from reference_impl.vit import VisionTransformer  # noqa: E402

CPU_BUDGET_S = 60.0
FULL = {"vit_epochs": 12, "vit_train_n": None, "recall_n": 16000, "recall_test_n": 4000, "recall_epochs": 6}
QUICK = {"vit_epochs": 1, "vit_train_n": 256, "recall_n": 512, "recall_test_n": 256, "recall_epochs": 1}


def measured(fn):
    """Run fn(); returns (its result, {"wall_s", "cpu_s", "peak_extra_mb"})."""
    reset = reset_peak()
    before = status_kb("VmRSS") if reset else status_kb("VmHWM")
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    stats = {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "peak_extra_mb": max(0, status_kb("VmHWM") - before) / 1024,
    }
    return result, stats


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def train_and_score(make_model, X, y, X_test, y_test, epochs, seed=0):
    torch.manual_seed(seed)
    model = make_model()

    def fit():
        train_classifier(model, X, y, epochs=epochs, batch_size=64, lr=3e-3, seed=seed, progress=False)
        return accuracy(model, X_test, y_test)

    acc, stats = measured(fit)
    return {"accuracy": acc, "params": n_params(model), "epochs": epochs, **stats}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny runs, a smoke test (verdicts meaningless)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument("--threads", type=int, default=THREADS, help=f"torch threads (default {THREADS})")
    args = p.parse_args(argv)
    set_conditions(args.threads)
    cfg = QUICK if args.quick else FULL
    figures = {"config": cfg, "threads": args.threads}

    def log(name, row):
        print(
            f"{name:<12} accuracy {row['accuracy'] * 100:6.2f}%  wall {row['wall_s']:6.1f} s  cpu {row['cpu_s']:6.1f} s"
            f"  params {row.get('params', '-')}  peak +{row['peak_extra_mb']:.1f} MB",
            flush=True,
        )

    # ---- the 8x8 digits: a tiny ViT beside an SVC on the same split
    X, y, X_test, y_test = load_digits_split()
    X, y = X[: cfg["vit_train_n"]], y[: cfg["vit_train_n"]]  # the whole training split unless --quick
    figures["vit"] = train_and_score(
        lambda: VisionTransformer(8, 4, 1, 10, d_model=64, n_heads=4, n_layers=2, d_ff=128),
        X, y, X_test, y_test, cfg["vit_epochs"],
    )
    log("vit", figures["vit"])
    from sklearn.svm import SVC

    def svc():
        clf = SVC().fit(X.reshape(len(X), -1).numpy(), y.numpy())
        return float((clf.predict(X_test.reshape(len(X_test), -1).numpy()) == y_test.numpy()).mean())

    acc, stats = measured(svc)
    figures["svc"] = {"accuracy": acc, **stats}
    log("svc", figures["svc"])
    figures["digits_split"] = {"train": len(X), "test": len(X_test)}

    # ---- associative recall, 8 pairs: two-layer Transformer against a GRU of similar size
    Xr, yr = make_recall_dataset(cfg["recall_n"], seed=0)
    Xr_test, yr_test = make_recall_dataset(cfg["recall_test_n"], seed=1)
    figures["recall_transformer"] = train_and_score(
        lambda: CausalTransformerClassifier(32, 16, d_model=32, n_heads=4, d_ff=64, n_layers=2),
        Xr, yr, Xr_test, yr_test, cfg["recall_epochs"],
    )
    log("transformer", figures["recall_transformer"])
    figures["recall_gru"] = train_and_score(
        lambda: RecurrentClassifier(32, 16, 52, kind="gru"), Xr, yr, Xr_test, yr_test, cfg["recall_epochs"]
    )
    log("gru", figures["recall_gru"])
    figures["recall_split"] = {"train": cfg["recall_n"], "test": cfg["recall_test_n"], "chance": 1 / 16}

    targets = [
        target("ViT held-out accuracy, 8x8 digits", figures["vit"]["accuracy"], ">=", 0.95),
        target("2-layer Transformer accuracy, recall (8 pairs)", figures["recall_transformer"]["accuracy"], ">=", 0.95),
        target("GRU accuracy, recall (8 pairs)", figures["recall_gru"]["accuracy"], "<=", 0.40),
    ]
    for key, label in (("vit", "ViT"), ("recall_transformer", "Transformer (recall)"), ("recall_gru", "GRU (recall)")):
        targets.append(target(f"{label} training CPU seconds", figures[key]["cpu_s"], "<=", CPU_BUDGET_S, "s"))
    write_out(args.out, figures, targets, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
