"""Chapter 1's animation (course.chapters.ch01): real numbers, and the widget driven headless."""

import math

import matplotlib

matplotlib.use("agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course import anim  # noqa: E402
from course.chapters import ch01  # noqa: E402
from reference_impl.data import CASE_VOCAB, make_case_dataset  # noqa: E402
from reference_impl.embedding import input_embedding, sinusoidal_positions  # noqa: E402

D = 8


@pytest.fixture
def case():
    tokens, _ = make_case_dataset(1, seed=5, n_evidence=4)  # (1, 5)
    table = torch.randn(len(CASE_VOCAB), D) / math.sqrt(D)  # (V, D)
    return tokens[0], table


def pixels(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def test_cards_are_evidence_plus_stamp(case):
    tokens, table = case
    parts = ch01.evidence_cards(tokens, table)
    T = len(tokens)
    torch.testing.assert_close(parts["evidence"], table[tokens] * math.sqrt(D))
    torch.testing.assert_close(parts["stamp"], sinusoidal_positions(T, D))
    torch.testing.assert_close(parts["card"], parts["evidence"] + parts["stamp"])
    torch.testing.assert_close(parts["card"], input_embedding(tokens.unsqueeze(0), table)[0])


def test_frames_pick_then_stamp_each_position(case):
    tokens, table = case
    draw, n_frames = ch01.evidence_animation(tokens, table, CASE_VOCAB)
    T = len(tokens)
    assert n_frames == 2 * T + 2
    fig = anim.render(draw, 1, n_panels=3)  # pick position 0
    left, middle, _ = fig.axes[:3]
    assert CASE_VOCAB[int(tokens[0])] in left.get_title()
    assert "x sqrt(D)" in middle.get_title()
    fig = anim.render(draw, 2, n_panels=3)  # stamp position 0
    assert "stamped" in fig.axes[1].get_title()
    fig = anim.render(draw, n_frames - 1, n_panels=3)
    assert fig.axes[2].get_title() == "the case file X (T x D)"


def test_live_widget_steps_through_the_case(case):
    tokens, table = case
    draw, n_frames = ch01.evidence_animation(tokens, table, CASE_VOCAB)
    w = anim.live(draw, n_frames, n_panels=3, figsize=(6, 2), dpi=40)
    slider = w.kwargs_widgets[0]
    assert (slider.min, slider.max) == (0, n_frames - 1)
    first = pixels(w.result)

    slider.value = 3  # pick position 1
    assert CASE_VOCAB[int(tokens[1])] in w.result.axes[0].get_title()
    assert w.result.axes[2].get_title() == f"case file: 1/{len(tokens)} cards"
    assert not np.array_equal(first, pixels(w.result))

    w.play.value = 4  # the Play button drives the same slider: stamp position 1
    assert slider.value == 4
    assert w.result.axes[2].get_title() == f"case file: 2/{len(tokens)} cards"

    slider.value = 0
    assert np.array_equal(first, pixels(w.result))


def test_player_is_offline_with_every_frame(case):
    tokens, table = case
    draw, n_frames = ch01.evidence_animation(tokens[:2], table, CASE_VOCAB)  # a short case: 6 frames
    html = anim.jshtml(draw, n_frames, n_panels=3, figsize=(6, 2), dpi=30)
    assert html.count("data:image/png;base64,") == n_frames
    assert "https://" not in html
