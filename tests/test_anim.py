"""course.anim: the offline HTML player and the live widget, driven headless."""

import re

import matplotlib

matplotlib.use("agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from course import anim  # noqa: E402

N_STEPS = 4


def draw_bars(ax, step):
    """A frame that depends on step: bar `step` is tall."""
    heights = [1.0] * N_STEPS
    heights[step] = 3.0
    ax.bar(range(N_STEPS), heights)
    ax.set_ylim(0, 3.5)
    ax.set_title(f"step {step}")


def pixels(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # figures closed from pyplot keep no drawable canvas
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def test_render_changes_with_step_and_closes_figures():
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    a, b = anim.render(draw_bars, 0), anim.render(draw_bars, 2)
    assert not np.array_equal(pixels(a), pixels(b))
    assert a.axes[0].get_title() == "step 0" and b.axes[0].get_title() == "step 2"
    assert len(plt.get_fignums()) == before  # nothing left open in pyplot


def test_jshtml_is_offline_and_has_every_frame():
    html = anim.jshtml(draw_bars, N_STEPS, figsize=(2, 1.5), dpi=40)
    # no URL the browser would fetch: no http(s):// or protocol-relative resource at all
    assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.IGNORECASE), "external URL in player"
    assert "font-awesome" not in html and "<link" not in html
    assert "fa fa-" not in html  # icons replaced by text labels
    frames = re.findall(r"data:image/png;base64,", html)
    assert len(frames) == N_STEPS
    for title in ("Play", "Pause", "Next frame", "Previous frame"):
        assert f'title="{title}"' in html
    assert re.search(r'<input[^>]*id="_anim_slider', html)


def test_offline_html_strips_external_stylesheet():
    raw = '<link rel="stylesheet"\nhref="https://maxcdn.example.com/fa.css">\n<button><i class="fa fa-play"></i></button>'
    out = anim.offline_html(raw)
    assert "https://" not in out and "<link" not in out
    assert "&#9654;" in out  # the play button has a visible label


def test_animation_rejects_zero_steps():
    with pytest.raises(ValueError):
        anim.animation(draw_bars, 0)


def test_two_panel_draw_receives_a_list_of_axes():
    seen = []

    def draw(axes, step):
        seen.append(len(axes))
        for ax in axes:
            ax.plot([0, step])

    anim.render(draw, 1, n_panels=2)
    assert seen == [2]


def test_live_widget_redraws_when_driven():
    w = anim.live(draw_bars, N_STEPS, figsize=(2, 1.5), dpi=40)
    slider = w.kwargs_widgets[0]
    assert (slider.min, slider.max, slider.value) == (0, N_STEPS - 1, 0)
    first = pixels(w.result)

    slider.value = 2  # what dragging the slider does: interactive calls draw again
    assert w.result.axes[0].get_title() == "step 2"
    assert not np.array_equal(first, pixels(w.result))

    w.play.value = 3  # the Play button drives the same slider
    assert slider.value == 3
    assert w.result.axes[0].get_title() == "step 3"

    slider.value = 0
    assert np.array_equal(first, pixels(w.result))  # back to the first frame exactly
