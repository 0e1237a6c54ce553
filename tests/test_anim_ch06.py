"""Chapter 6's animation (course.chapters.ch06), drawn and driven headless."""

import re

import matplotlib

matplotlib.use("agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course import anim  # noqa: E402
from course.chapters import ch06  # noqa: E402

FIGSIZE, DPI = (6.0, 2.2), 40


def pixels(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def story(attention=None, probs=None, patch_size=2, layers=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(8, 8, generator=g)
    n = (8 // patch_size) ** 2
    if attention is None:
        attention = torch.softmax(3 * torch.randn(layers, n + 1, generator=g), -1)
    if probs is None:
        probs = torch.softmax(3 * torch.randn(10, generator=g), -1)
    return ch06.photo_story(image, patch_size, attention, probs)


def test_frame_count_follows_grid_and_layers():
    # photo, cut, one deal per grid row, flatten, tags, lead, one gather per layer, report
    assert story(patch_size=2, layers=2)[1] == 2 + 4 + 3 + 2 + 1
    assert story(patch_size=4, layers=3)[1] == 2 + 2 + 3 + 3 + 1


def test_every_frame_draws_and_differs_from_the_previous_one():
    import matplotlib.pyplot as plt

    draw, n_steps = story()
    before = len(plt.get_fignums())
    frames = [pixels(anim.render(draw, s, figsize=FIGSIZE, dpi=DPI)) for s in range(n_steps)]
    for a, b in zip(frames, frames[1:]):
        assert not np.array_equal(a, b)
    assert len(plt.get_fignums()) == before


def test_gathering_frames_show_the_attention_passed_in():
    n = 16
    focused = torch.full((2, n + 1), 0.01)
    focused[:, 5] = 1.0 - 0.01 * n  # the lead detective reads card 5 almost only
    draw_a, n_steps = story(attention=focused)
    draw_b, _ = story(attention=torch.full((2, n + 1), 1.0 / (n + 1)))  # reads everyone equally
    gather = n_steps - 2  # the last layer's gathering frame
    a = pixels(anim.render(draw_a, gather, figsize=FIGSIZE, dpi=DPI))
    b = pixels(anim.render(draw_b, gather, figsize=FIGSIZE, dpi=DPI))
    assert not np.array_equal(a, b)
    again = pixels(anim.render(story(attention=focused)[0], gather, figsize=FIGSIZE, dpi=DPI))
    assert np.array_equal(a, again)  # deterministic


def test_report_names_the_most_probable_class():
    probs = torch.zeros(10)
    probs[7] = 1.0
    draw, n_steps = story(probs=probs)
    fig = anim.render(draw, n_steps - 1, figsize=FIGSIZE, dpi=DPI)
    assert "'7'" in fig.axes[0].get_title(loc="left")


def test_rejects_inconsistent_inputs():
    with pytest.raises(ValueError):
        ch06.photo_story(torch.rand(8, 8), 3, torch.rand(2, 5), torch.rand(10))  # 8 not a multiple of 3
    with pytest.raises(ValueError):
        ch06.photo_story(torch.rand(8, 8), 2, torch.rand(2, 16), torch.rand(10))  # needs N + 1 = 17
    with pytest.raises(ValueError):
        ch06.photo_story(torch.rand(1, 8, 8), 2, torch.rand(2, 17), torch.rand(10))


def test_live_widget_steps_through_the_story():
    draw, n_steps = story()
    w = anim.live(draw, n_steps, figsize=FIGSIZE, dpi=DPI)
    slider = w.kwargs_widgets[0]
    assert (slider.min, slider.max) == (0, n_steps - 1)
    titles = []
    for step in range(n_steps):
        slider.value = step
        titles.append(w.result.axes[0].get_title(loc="left"))
    assert titles[0].startswith("The crime-scene photo")
    assert titles[-1].startswith("The report")
    assert len(set(titles)) == n_steps  # every frame says what it shows
    w.play.value = 1  # the Play button drives the same slider
    assert slider.value == 1 and w.result.axes[0].get_title(loc="left") == titles[1]


def test_player_is_offline_with_every_frame():
    draw, n_steps = story(patch_size=4, layers=1)
    html = anim.jshtml(draw, n_steps, figsize=(5, 2), dpi=30)
    assert len(re.findall(r"data:image/png;base64,", html)) == n_steps
    assert "<link" not in html
