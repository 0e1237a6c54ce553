"""Chapter 5's animation: a relay race (RNN) versus a group discussion (Transformer).

``draw_relay(axes, step)`` draws frame ``step`` of ``N_FRAMES`` onto two axes. Left, the
relay: runner ``t`` receives the baton (the hidden state) after ``t`` hand-overs, and each
earlier runner is shaded by how much the baton still carries of their evidence. Right, the
discussion: every detective is linked to every earlier one at once, shaded the same way.
The shading is measured, not drawn by hand: ``influence()`` applies
``reference_impl.rnn.input_gradient_norms`` to a small untrained tanh RNN (run with
``rnn_forward``) and to a small causal Transformer. The last frame compares the two
profiles for the last position. Use it with ``course.anim.player`` / ``live`` (two panels).
"""

from __future__ import annotations

import functools

import matplotlib.patches as mpatches
import numpy as np
import torch
import torch.nn as nn

from reference_impl.rnn import TransformerEncoder, input_gradient_norms, rnn_forward

N_RUNNERS = 8
N_FRAMES = N_RUNNERS + 1  # one frame per runner, then the comparison
INK, ACCENT, MUTED, RED = "#2b4c7e", "#e0a526", "#9aa5b1", "#b03a2e"


@functools.lru_cache(maxsize=4)
def influence(n=N_RUNNERS, seed=0):
    """Measured influence of each input on each step's output, two (n, n) arrays.

    ``relay[t, s]`` (tanh RNN) and ``discussion[t, s]`` (causal Transformer) are the norms of
    the gradient of output t (summed over features) with respect to input s <= t, from
    ``input_gradient_norms`` on the first t + 1 inputs. Each row is divided by its largest
    entry among the *earlier* inputs s < t, so the most audible colleague reads 1, and the
    own input (s = t, always loud, in both models) is set to 1; entries s > t are 0.
    Untrained models, seeded: the RNN is ``nn.RNN(4, 16)``'s initialisation run through ``rnn_forward``, the
    Transformer ``TransformerEncoder(4, 16, 2, 32, 1, causal=True)``.
    """
    with torch.random.fork_rng():  # seeded without disturbing the caller's random state
        torch.manual_seed(seed)
        rnn = nn.RNN(4, 16, batch_first=True)
        transformer = TransformerEncoder(4, 16, 2, 32, 1, causal=True)
        x = torch.randn(16, n, 4)  # (B, T, I)
    h0 = torch.zeros(16, 16)  # (B, H)

    def run_rnn(inputs):
        outputs, _ = rnn_forward(inputs, h0, rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)
        return outputs  # (B, T, H)

    relay, discussion = np.zeros((n, n)), np.zeros((n, n))
    for t in range(n):
        for table, model in ((relay, run_rnn), (discussion, transformer)):
            norms = input_gradient_norms(model, x[:, : t + 1]).detach().numpy()  # (t + 1,)
            table[t, :t] = norms[:t] / norms[:t].max() if t else norms[:t]
            table[t, t] = 1.0
    return relay, discussion


def _runner_row(ax, values, current, y):
    """Circles 0..n-1 at height y, filled in proportion to values[s] for s <= current."""
    for s in range(N_RUNNERS):
        done = s <= current
        ax.add_patch(_circle((s, y), 0.3, fc=INK if done else "white", alpha=0.15 + 0.85 * values[s] if done else 1.0,
                             ec=INK if done else MUTED))
        ax.text(s, y, f"x{s}", ha="center", va="center", fontsize=7, color="white" if done and values[s] > 0.4 else INK)


def _circle(xy, r, **kw):
    return mpatches.Circle(xy, r, lw=0.8, **kw)


def _draw_relay_panel(ax, t, relay):
    ax.set_xlim(-0.7, N_RUNNERS - 0.3), ax.set_ylim(-1.4, 1.5), ax.set_aspect("equal"), ax.axis("off")
    _runner_row(ax, relay[t], t, 0)
    for s in range(t):  # the hand-overs so far
        ax.annotate("", xy=(s + 0.68, 0), xytext=(s + 0.32, 0), arrowprops=dict(arrowstyle="->", color=ACCENT, lw=1.4))
    ax.add_patch(_baton(t))
    ax.text(t, 0.62, "baton", ha="center", fontsize=6.5, color=ACCENT)
    ax.text((N_RUNNERS - 1) / 2, 1.3, f"relay race (RNN): {t} hand-over{'' if t == 1 else 's'}, {t + 1} step{'' if t == 0 else 's'} in a row",
            ha="center", fontsize=8, color=INK)
    ax.text((N_RUNNERS - 1) / 2, -0.75, f"shade = what runner {t}'s baton still carries of each x",
            ha="center", fontsize=7, color=INK)
    ax.text((N_RUNNERS - 1) / 2, -1.2, _loudness(t, relay[t]), ha="center", fontsize=7,
            color=RED if t and relay[t, 0] < 0.1 else INK)


def _loudness(t, row):
    if t == 0:
        return "nobody earlier to hear"
    return f"x0 is heard at {row[0]:.2g} of the loudest earlier x"


def _baton(t):
    return mpatches.FancyBboxPatch((t - 0.2, 0.36), 0.4, 0.14, boxstyle="round,pad=0.02", fc=ACCENT, ec=ACCENT)


def _draw_discussion_panel(ax, t, discussion):
    ax.set_xlim(-0.7, N_RUNNERS - 0.3), ax.set_ylim(-1.4, 1.5), ax.set_aspect("equal"), ax.axis("off")
    for i in range(N_RUNNERS):  # everyone's links, faint: they all happen in the same round
        for j in range(i):
            ax.annotate("", xy=(i, 0.3), xytext=(j, 0.3),
                        arrowprops=dict(arrowstyle="-", color=MUTED, lw=0.3, alpha=0.5, connectionstyle="arc3,rad=-0.35"))
    for j in range(t):  # detective t's own links, in colour
        ax.annotate("", xy=(t, 0.3), xytext=(j, 0.3),
                    arrowprops=dict(arrowstyle="->", color=ACCENT, lw=0.6 + 2.0 * discussion[t, j],
                                    connectionstyle="arc3,rad=-0.35"))
    _runner_row(ax, discussion[t], t, 0)
    ax.text((N_RUNNERS - 1) / 2, 1.3, "group discussion (Transformer): 1 round, all at once",
            ha="center", fontsize=8, color=INK)
    ax.text((N_RUNNERS - 1) / 2, -0.75, f"shade = how much detective {t} hears each x",
            ha="center", fontsize=7, color=INK)
    ax.text((N_RUNNERS - 1) / 2, -1.2, _loudness(t, discussion[t]), ha="center", fontsize=7,
            color=INK)


def _draw_comparison(axes, relay, discussion):
    left, right = axes
    distance = np.arange(1, N_RUNNERS)  # how many positions back from the last one
    for ax, row, name, colour in ((left, relay[-1], "relay (RNN)", RED), (right, discussion[-1], "discussion (Transformer)", INK)):
        ax.bar(distance, row[-2::-1], color=colour)
        ax.set_yscale("log"), ax.set_ylim(1e-4, 2)
        ax.set_xticks(distance), ax.tick_params(labelsize=7)
        ax.set_xlabel("distance back from the last position", fontsize=8)
        ax.set_title(f"{name}: how loud is each earlier input?", fontsize=8.5)
    left.set_ylabel("gradient norm (loudest = 1)", fontsize=8)


def draw_relay(axes, step):
    """Frame ``step`` (0 .. N_FRAMES-1): runner ``step`` holds the baton; the last frame compares."""
    relay, discussion = influence()
    if step == N_FRAMES - 1:
        _draw_comparison(axes, relay, discussion)
        return
    left, right = axes
    _draw_relay_panel(left, step, relay)
    _draw_discussion_panel(right, step, discussion)
    left.set_title(f"frame {step + 1}/{N_FRAMES}", fontsize=8, loc="left", color=MUTED)
