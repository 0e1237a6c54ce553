"""Chapter 5's animation (relay race vs group discussion), driven headless through its callbacks."""

import matplotlib

matplotlib.use("agg")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from course import anim  # noqa: E402
from course.chapters import ch05  # noqa: E402


def pixels(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def test_influence_is_measured_causal_and_normalised():
    relay, discussion = ch05.influence()
    n = ch05.N_RUNNERS
    for table in (relay, discussion):
        assert table.shape == (n, n)
        assert np.all(np.triu(table, 1) == 0)  # nobody hears the future
        assert np.all(np.diag(table) == 1)
        for t in range(1, n):
            assert table[t, :t].max() == 1.0  # the loudest earlier input reads 1
    # The relay fades with distance, the discussion does not.
    assert relay[-1, 0] < 0.1 < discussion[-1, 0]
    assert relay[-1, -2] == 1.0  # the previous runner is the loudest
    # Seeded and deterministic, and the caller's random state is left alone.
    state = torch.random.get_rng_state()
    ch05.influence.cache_clear()
    again, _ = ch05.influence()
    assert np.array_equal(relay, again)
    assert torch.equal(state, torch.random.get_rng_state())


def test_frames_draw_the_baton_and_the_comparison():
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    frames = [anim.render(ch05.draw_relay, s, n_panels=2, figsize=(6, 2), dpi=30) for s in range(ch05.N_FRAMES)]
    assert len(plt.get_fignums()) == before
    for step, fig in enumerate(frames[:-1]):
        left, right = fig.axes
        texts = " ".join(t.get_text() for t in left.texts)
        assert f"{step} hand-over" in texts
        assert "1 round" in " ".join(t.get_text() for t in right.texts)
    relay, discussion = ch05.influence()
    left, right = frames[-1].axes
    assert np.allclose([p.get_height() for p in left.patches], relay[-1, -2::-1])
    assert np.allclose([p.get_height() for p in right.patches], discussion[-1, -2::-1])


def test_live_widget_follows_the_slider():
    w = anim.live(ch05.draw_relay, ch05.N_FRAMES, n_panels=2, figsize=(6, 2), dpi=30)
    slider = w.kwargs_widgets[0]
    first = pixels(w.result)
    slider.value = 3
    assert "3 hand-overs" in " ".join(t.get_text() for t in w.result.axes[0].texts)
    assert not np.array_equal(first, pixels(w.result))
    w.play.value = ch05.N_FRAMES - 1
    assert slider.value == ch05.N_FRAMES - 1
    assert w.result.axes[0].get_yscale() == "log"  # the comparison frame
