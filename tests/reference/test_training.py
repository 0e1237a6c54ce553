"""The tiny training loop: correct accuracy, reproducible runs, quiet when asked, and it learns."""

import time

import pytest
import torch
import torch.nn as nn

from reference_impl.training import accuracy, train_classifier


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one thread; two threads on a busy 2-core machine crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)



def _blobs(n=300, seed=0):
    """Three well separated Gaussian blobs in 2-D."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(3, (n,), generator=g)
    centres = torch.tensor([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]])
    return centres[y] + torch.randn(n, 2, generator=g), y


def test_accuracy_counts_argmax_hits_and_restores_mode():
    model = nn.Linear(3, 4)
    X, y = torch.randn(50, 3), torch.randint(4, (50,))
    expected = (model(X).argmax(-1) == y).float().mean().item()
    model.train()
    assert accuracy(model, X, y, batch_size=7) == pytest.approx(expected)
    assert model.training
    model.eval()
    accuracy(model, X, y)
    assert not model.training


def test_train_classifier_learns_and_reports(one_thread):
    X, y = _blobs()
    Xv, yv = _blobs(100, seed=1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
    history = train_classifier(model, X, y, epochs=5, batch_size=32, lr=1e-2, X_val=Xv, y_val=yv, progress=False)
    assert set(history) == {"loss", "train_acc", "val_acc", "seconds"}
    assert len(history["loss"]) == len(history["train_acc"]) == len(history["val_acc"]) == 5
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_acc"][-1] == pytest.approx(accuracy(model, Xv, yv))
    assert history["val_acc"][-1] > 0.95
    assert model.training  # left ready for more training
    assert "val_acc" not in train_classifier(model, X, y, epochs=1, progress=False)


def test_train_classifier_is_reproducible(one_thread):
    X, y = _blobs()
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(0)  # same initial weights every time
        model = nn.Linear(2, 3)
        history = train_classifier(model, X, y, epochs=2, batch_size=16, lr=1e-2, seed=seed, progress=False)
        runs.append((history["loss"], model.weight.detach().clone()))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
    assert runs[0][0] != runs[2][0]  # another seed shuffles the batches differently


def test_train_classifier_quiet_without_progress_and_leaves_threads(capsys):
    X, y = _blobs(64)
    threads = torch.get_num_threads()
    train_classifier(nn.Linear(2, 3), X, y, epochs=2, progress=False)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert torch.get_num_threads() == threads
    train_classifier(nn.Linear(2, 3), X, y, epochs=2, progress=True)
    assert "training" in capsys.readouterr().err  # the tqdm bar (text outside Jupyter)


@pytest.mark.slow
def test_sequence_classifier_solves_the_case_task(one_thread):
    from reference_impl.data import CASE_VOCAB, make_case_dataset
    from reference_impl.model import SequenceClassifier

    X, y = make_case_dataset(2000, seed=0)
    X_test, y_test = make_case_dataset(1000, seed=1)
    torch.manual_seed(0)
    model = SequenceClassifier(len(CASE_VOCAB), 4, d_model=32, n_heads=4, d_ff=64, n_layers=1, readout="first")
    cpu = time.process_time()
    train_classifier(model, X, y, epochs=4, batch_size=64, lr=3e-3, progress=False)
    assert time.process_time() - cpu < 20  # CPU seconds (~1-2 measured)
    assert accuracy(model, X_test, y_test) >= 0.95
