"""Chapter 7's animations (course.chapters.ch07), computed, drawn and driven headless."""

import math
import re

import matplotlib

matplotlib.use("agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from course import anim  # noqa: E402
from course.chapters import ch07  # noqa: E402
from reference_impl.scalable import lsh_n_buckets, random_rotations, shared_qk_attention  # noqa: E402

FIGSIZE, DPI = (6.0, 2.2), 40


def pixels(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def reading(T=10, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(d, generator=g), torch.randn(T, d, generator=g), torch.randn(T, 2, generator=g)


# ------------------------------------------------------------------ the online softmax trace


@pytest.mark.parametrize("chunk_size", [1, 3, 4, 10, 25])
def test_trace_follows_the_online_softmax_recurrence(chunk_size):
    q, k, v = reading(T=10)
    scores, steps = ch07.online_softmax_trace(q, k, v, chunk_size)
    assert len(steps) == math.ceil(10 / chunk_size)
    assert steps[-1].end == 10 and [s.start for s in steps] == list(range(0, 10, chunk_size))
    torch.testing.assert_close(scores, k @ q / 2.0)  # / sqrt(d)
    m_old, l_old = float("-inf"), 0.0
    for st in steps:
        new = scores[st.start : st.end]
        assert st.m == pytest.approx(max(m_old, new.max().item()))  # running maximum
        assert st.rescale == pytest.approx(math.exp(m_old - st.m))  # 0 for the first batch
        assert st.l == pytest.approx(l_old * st.rescale + torch.exp(new - st.m).sum().item(), rel=1e-5)
        m_old, l_old = st.m, st.l
    # the last output is full softmax attention, computed independently in float64
    full = torch.softmax(scores.double(), -1) @ v.double()
    torch.testing.assert_close(steps[-1].out.double(), full, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(steps[-1].out, F.scaled_dot_product_attention(q[None], k, v)[0])


def test_trace_output_so_far_is_attention_over_the_reports_read():
    q, k, v = reading(T=9)
    scores, steps = ch07.online_softmax_trace(q, k, v, 4)
    for st in steps:
        partial = torch.softmax(scores[: st.end], -1) @ v[: st.end]
        torch.testing.assert_close(st.out, partial)


def test_reading_rejects_bad_inputs():
    q, k, v = reading()
    with pytest.raises(ValueError):
        ch07.online_softmax_trace(q, k, v, 0)
    with pytest.raises(ValueError):
        ch07.online_softmax_trace(q[:3], k, v, 2)  # d mismatch
    with pytest.raises(ValueError):
        ch07.online_softmax_story(q, k, torch.randn(10, 3), 2)  # insights must be 2-D points


# ------------------------------------------------------------------ the reading animation


def test_reading_story_frames_draw_and_differ():
    import matplotlib.pyplot as plt

    q, k, v = reading(T=6)
    draw, n_steps = ch07.online_softmax_story(q, k, v, 2)
    assert n_steps == 1 + 2 * 3 + 1  # task, (read, fold) per batch, check
    before = len(plt.get_fignums())
    frames = [pixels(anim.render(draw, s, n_panels=2, figsize=FIGSIZE, dpi=DPI)) for s in range(n_steps)]
    for a, b in zip(frames, frames[1:]):
        assert not np.array_equal(a, b)
    assert len(plt.get_fignums()) == before


def test_reading_story_check_frame_reports_agreement_with_full_attention():
    q, k, v = reading(T=6)
    draw, n_steps = ch07.online_softmax_story(q, k, v, 4)
    fig = anim.render(draw, n_steps - 1, n_panels=2, figsize=FIGSIZE, dpi=DPI)
    title = fig.axes[1].get_title(loc="left")
    err = float(re.search(r"= ([0-9.e+-]+)$", title).group(1))
    assert err < 1e-6


def test_reading_live_widget_steps_through_the_story():
    q, k, v = reading(T=6)
    draw, n_steps = ch07.online_softmax_story(q, k, v, 3)
    w = anim.live(draw, n_steps, n_panels=2, figsize=FIGSIZE, dpi=DPI)
    slider = w.kwargs_widgets[0]
    assert (slider.min, slider.max) == (0, n_steps - 1)
    titles = []
    for step in range(n_steps):
        slider.value = step
        titles.append(w.result.axes[0].get_title(loc="left"))
    assert titles[0].startswith("6 reports") and titles[-1] == "all reports read"
    assert titles[1].startswith("batch 1: read") and titles[2].startswith("batch 1: old sum")
    w.play.value = 2  # the Play button drives the same slider
    assert slider.value == 2 and w.result.axes[0].get_title(loc="left") == titles[2]


# ------------------------------------------------------------------ Reformer's seating


def squad(T=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    angles = torch.rand(T, generator=g) * 2 * math.pi
    x = 2.0 * torch.stack([angles.cos(), angles.sin()], dim=-1)  # (T, 2)
    rotations = random_rotations(2, 2, lsh_n_buckets(T, 4), generator=g)  # (2, 2, 2)
    return x, rotations


def test_seating_matches_the_lsh_rule():
    x, rotations = squad()
    T, c = 16, 4
    rounds = ch07.lsh_seating(x, c, rotations)
    assert len(rounds) == 2
    for rnd in rounds:
        buckets, order, talks = rnd["buckets"], rnd["order"], rnd["talks"]
        assert sorted(order.tolist()) == list(range(T))
        keys = (buckets[order] * T + order).tolist()
        assert keys == sorted(keys)  # sorted by (bucket, position)
        slot = order.argsort()  # seat of each detective
        table = slot // c
        for i in range(T):
            allowed = {j for j in range(T) if j != i and table[j] in (table[i], (table[i] - 1) % (T // c))}
            assert set(torch.nonzero(talks[i]).flatten().tolist()) == allowed


def test_one_table_means_everyone_meets_everyone():
    # T = 2 tables of 2: own table + previous = everyone, so LSH attention is full shared-QK attention
    x = torch.tensor([[1.0, 0.2], [0.3, 1.0], [-1.0, 0.1], [0.2, -1.0]])  # (4, 2)
    rotations = random_rotations(2, 1, lsh_n_buckets(4, 2), generator=torch.Generator().manual_seed(0))
    talks = ch07.lsh_seating(x, 2, rotations)[0]["talks"]
    assert torch.equal(talks, ~torch.eye(4, dtype=torch.bool))
    assert torch.allclose(shared_qk_attention(x, torch.eye(4)) > 0, talks)


def test_seating_rejects_bad_inputs():
    x, rotations = squad()
    with pytest.raises(ValueError):
        ch07.lsh_seating(torch.randn(16, 3), 4, rotations)  # not 2-D questions
    with pytest.raises(ValueError):
        ch07.lsh_seating(x, 4, rotations[:, :, :1])  # wrong number of buckets
    with pytest.raises(ValueError):
        ch07.lsh_tables_story(x, 4, rotations, focus=16)


def test_tables_story_frames_draw_differ_and_play_offline():
    import matplotlib.pyplot as plt

    x, rotations = squad()
    draw, n_steps = ch07.lsh_tables_story(x, 4, rotations, focus=2)
    assert n_steps == 1 + 3 * 2 + 1  # squad, (hash, seat, talk) per round, union
    before = len(plt.get_fignums())
    frames = [pixels(anim.render(draw, s, n_panels=2, figsize=FIGSIZE, dpi=DPI)) for s in range(n_steps)]
    for a, b in zip(frames, frames[1:]):
        assert not np.array_equal(a, b)
    assert len(plt.get_fignums()) == before
    draw_one, n_one = ch07.lsh_tables_story(x, 4, rotations[:1], focus=2)  # one round: fewer frames
    html = anim.jshtml(draw_one, n_one, n_panels=2, figsize=FIGSIZE, dpi=30)
    assert len(re.findall(r"data:image/png;base64,", html)) == n_one == 5
    assert "<link" not in html


def test_tables_live_widget_and_union_count():
    x, rotations = squad()
    rounds = ch07.lsh_seating(x, 4, rotations)
    heard = (rounds[0]["talks"][0] | rounds[1]["talks"][0]).sum().item()
    draw, n_steps = ch07.lsh_tables_story(x, 4, rotations, focus=0)
    w = anim.live(draw, n_steps, n_panels=2, figsize=FIGSIZE, dpi=DPI)
    w.kwargs_widgets[0].value = n_steps - 1
    texts = " ".join(t.get_text() for t in w.result.axes[1].texts)
    assert f"compared with {heard} of 15 colleagues" in texts
    w.kwargs_widgets[0].value = 3  # round 1, who meets whom
    assert w.result.axes[0].get_title(loc="left").startswith("round 1: detective 0 may listen")
