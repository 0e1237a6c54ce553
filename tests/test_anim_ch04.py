"""Chapter 4's animation and verdict widget, driven headless through their callbacks."""

import matplotlib

matplotlib.use("agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch.testing import assert_close  # noqa: E402

from course import anim  # noqa: E402
from course.chapters import ch04  # noqa: E402
from reference_impl.output import stable_softmax  # noqa: E402


def pixels(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def bar_heights(ax):
    """Heights of the first bar container of an axes (the frame's main bars)."""
    return torch.tensor([patch.get_height() for patch in ax.containers[0]], dtype=torch.float32)


def frame_index(kind, param=None):
    return next(i for i, (k, p, _) in enumerate(ch04.FRAMES) if k == kind and p == param)


def test_scores_are_the_cards_times_the_notes():
    assert_close(ch04.LOGITS, torch.stack([card @ ch04.NOTES for card in ch04.CARDS]))
    right = anim.render(ch04.draw_prediction, frame_index("scores"), n_panels=2, dpi=30).axes[1]
    assert_close(bar_heights(right), ch04.LOGITS)


@pytest.mark.parametrize("temperature", ch04.TEMPERATURES)
def test_temperature_frames_show_the_softmax_at_that_temperature(temperature):
    right = anim.render(ch04.draw_prediction, frame_index("temperature", temperature), n_panels=2, dpi=30).axes[1]
    heights = bar_heights(right)
    assert_close(heights, stable_softmax(ch04.LOGITS, temperature=temperature))
    assert heights.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_hotter_is_flatter():
    entropies = [ch04.entropy(ch04.frame_probabilities(frame_index("temperature", t))) for t in ch04.TEMPERATURES]
    assert all(a < b for a, b in zip(entropies, entropies[1:]))


@pytest.mark.parametrize("k", ch04.TOP_KS)
def test_top_k_frames_keep_k_suspects(k):
    right = anim.render(ch04.draw_prediction, frame_index("top_k", k), n_panels=2, dpi=30).axes[1]
    heights = bar_heights(right)
    assert int((heights > 0).sum()) == k
    assert heights.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert int(heights.argmax()) == int(ch04.LOGITS.argmax())


def test_sampling_frame_draws_from_the_verdict():
    counts = ch04.draws()
    assert int(counts.sum()) == ch04.N_DRAWS
    assert torch.equal(counts, ch04.draws())  # seeded
    assert int(counts.argmax()) == int(ch04.LOGITS.argmax())


def test_every_frame_differs_and_the_live_widget_follows_the_slider():
    frames = [pixels(anim.render(ch04.draw_prediction, s, n_panels=2, figsize=(4, 1.6), dpi=30)) for s in range(ch04.N_FRAMES)]
    for a, b in zip(frames, frames[1:]):
        assert not np.array_equal(a, b)
    w = anim.live(ch04.draw_prediction, ch04.N_FRAMES, n_panels=2, dpi=30)
    slider = w.kwargs_widgets[0]
    assert (slider.min, slider.max) == (0, ch04.N_FRAMES - 1)
    step = frame_index("verdict")
    slider.value = step
    assert_close(bar_heights(w.result.axes[1]), stable_softmax(ch04.LOGITS))
    w.play.value = frame_index("top_k", 1)
    assert slider.value == frame_index("top_k", 1)
    assert int((bar_heights(w.result.axes[1]) > 0).sum()) == 1


def test_verdict_widget_redraws_for_temperature_and_top_k():
    torch.manual_seed(0)
    logits = torch.randn(12) * 3
    labels = [f"w{i}" for i in range(12)]
    w = ch04.verdict_widget(logits, labels, n_shown=5)
    temperature, top_k = w.kwargs_widgets
    assert top_k.value == top_k.max == 12  # keep everything by default

    def shown():
        return bar_heights(w.result.axes[0])

    at_one = shown()
    assert len(at_one) == 6  # five tokens and "other"
    assert at_one.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert_close(at_one[:5], stable_softmax(logits).sort(descending=True).values[:5])

    temperature.value = 5.0
    assert ch04.entropy(shown()) > ch04.entropy(at_one)
    top_k.value = 2
    hot_top2 = shown()
    assert int((hot_top2 > 0).sum()) == 2 and hot_top2[-1].item() == 0.0  # "other" is empty
    assert "top-k: 2" in w.result.axes[0].get_title()


def test_draw_verdict_returns_what_it_draws():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    heights = ch04.draw_verdict(ax, logits, list("abcd"), temperature=0.5, k=3)
    plt.close(fig)
    assert_close(torch.tensor(heights), ch04.verdict_probabilities(logits, 0.5, 3))
    assert heights[-1] == 0.0
