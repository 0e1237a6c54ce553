"""Chapter 3's animation (course.chapters.ch03): the trace is the model's own computation,
and the widget can be driven headless."""

import matplotlib

matplotlib.use("agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course import anim  # noqa: E402
from course.chapters import ch03  # noqa: E402
from reference_impl.data import CASE_VOCAB, SUSPECTS, make_case_dataset  # noqa: E402
from reference_impl.model import SequenceClassifier  # noqa: E402

N_LAYERS = 2


def make_model(readout="mean"):
    return SequenceClassifier(len(CASE_VOCAB), 4, d_model=16, n_heads=2, d_ff=32, n_layers=N_LAYERS, readout=readout)


@pytest.fixture
def case():
    tokens, culprit = make_case_dataset(1, seed=2)  # (1, 7), (1,)
    return tokens[0], int(culprit[0])


def pixels(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


@pytest.mark.parametrize("readout", ["mean", "first"])
def test_trace_is_the_models_computation(case, readout):
    tokens, _ = case
    model = make_model(readout).eval()
    trace = ch03.trace_rounds(model, tokens)
    n_steps = 2 * N_LAYERS + 1
    assert len(trace["names"]) == len(trace["streams"]) == n_steps
    hidden = model.hidden_states(tokens.unsqueeze(0))  # N_LAYERS + 1 tensors (1, T, D)
    for layer, h in enumerate(hidden):
        torch.testing.assert_close(trace["streams"][2 * layer], h[0])
    with torch.no_grad():
        final = torch.softmax(model(tokens.unsqueeze(0))[0], dim=-1)
    torch.testing.assert_close(trace["probs"][-1], final)
    # what each step added is the difference of consecutive streams
    for k in range(1, n_steps):
        torch.testing.assert_close(trace["added"][k], (trace["streams"][k] - trace["streams"][k - 1]).norm(dim=-1))
    maps = model.attention_maps(tokens.unsqueeze(0))
    for a, b in zip(trace["attention"], maps):
        torch.testing.assert_close(a, b[0])
    assert trace["own"].shape == (n_steps, len(tokens), 4)
    torch.testing.assert_close(trace["own"].sum(-1), torch.ones(n_steps, len(tokens)))


def test_live_widget_walks_through_the_rounds(case):
    tokens, culprit = case
    model = make_model().eval()
    trace = ch03.trace_rounds(model, tokens)
    labels = [CASE_VOCAB[int(t)] for t in tokens]
    draw, n_frames = ch03.rounds_animation(trace, labels, SUSPECTS[:4], culprit, threshold=0.0)
    assert n_frames == 2 * N_LAYERS + 2
    w = anim.live(draw, n_frames, n_panels=2, figsize=(5, 2), dpi=40)
    slider = w.kwargs_widgets[0]
    assert (slider.min, slider.max) == (0, n_frames - 1)
    first = pixels(w.result)

    slider.value = 1  # round 1: the meeting, with an arrow per (listener, colleague) pair
    texts = [t.get_text() for t in w.result.axes[0].texts]
    assert any(t.startswith("round 1: meeting") for t in texts)
    assert len(w.result.axes[0].patches) >= len(tokens) and not np.array_equal(first, pixels(w.result))

    w.play.value = 2  # private work
    assert slider.value == 2
    assert any("private work" in t.get_text() for t in w.result.axes[0].texts)

    slider.value = n_frames - 1  # summary: P(true culprit) over every step
    (line,) = w.result.axes[1].get_lines()
    np.testing.assert_allclose(line.get_ydata(), trace["probs"][:, culprit].numpy())

    slider.value = 0
    assert np.array_equal(first, pixels(w.result))
