"""Chapter 4's animation: making the prediction (notes -> scores -> softmax -> verdict).

``draw_prediction(axes, step)`` draws frame ``step`` of ``N_FRAMES`` onto two axes: on the
left the chief's pipeline with the current stage lit, on the right the numbers of that
stage. The numbers are real: scores are dot products of the final notes ``NOTES`` with
each suspect's card (a row of ``CARDS``, the tied embedding table) and every probability
comes from ``reference_impl.output``. Use it with ``course.anim.player`` / ``live``
(two panels).
"""

from __future__ import annotations

import torch

from reference_impl.output import stable_softmax, top_k_filter

SUSPECTS = ("butler", "maid", "cook", "gardener", "chauffeur")
FEATURES = ("at the scene", "motive", "alibi")
# Each suspect's card: the same row introduces them as input (chapter 1) and scores them here.
CARDS = torch.tensor(
    [
        [1.0, 0.6, 0.2],  # butler
        [0.4, 1.0, 0.5],  # maid
        [0.2, 0.3, 1.0],  # cook
        [-0.3, 0.5, 0.4],  # gardener
        [-0.5, -0.4, 0.6],  # chauffeur
    ]
)  # (V, D)
NOTES = torch.tensor([1.6, 0.9, -0.5])  # (D,) the last detective's final notes
LOGITS = CARDS @ NOTES  # (V,) one score per suspect

TEMPERATURES = (0.25, 0.5, 1.0, 2.0, 4.0)
TOP_KS = (3, 1)
N_DRAWS = 200  # the sampling frame's number of verdicts drawn

STAGES = (
    "final notes h",
    "scores z = E h",
    "divide by temperature",
    "keep the top k",
    "subtract max z",
    "exp",
    "divide by the sum: p",
    "verdict: argmax or draw",
)
# Each frame: (kind, parameter, lit stages).
FRAMES = (
    [("notes", None, (0,)), ("scores", None, (1,)), ("shift", None, (4,)), ("exp", None, (5,)), ("verdict", None, (6, 7))]
    + [("temperature", t, (2, 4, 5, 6)) for t in TEMPERATURES]
    + [("top_k", k, (3, 4, 5, 6)) for k in TOP_KS]
    + [("sample", N_DRAWS, (7,))]
)
N_FRAMES = len(FRAMES)

INK, ACCENT, MUTED, RED = "#2b4c7e", "#e0a526", "#9aa5b1", "#b03a2e"


def entropy(p):
    """Entropy in nats of a probability vector (0 log 0 = 0)."""
    p = p[p > 0]
    return float(-(p * p.log()).sum())


def frame_probabilities(step):
    """The probability vector the right panel shows at ``step`` (None before the softmax)."""
    kind, param, _ = FRAMES[step]
    if kind in ("verdict", "sample"):
        return stable_softmax(LOGITS)
    if kind == "temperature":
        return stable_softmax(LOGITS, temperature=param)
    if kind == "top_k":
        return stable_softmax(top_k_filter(LOGITS, param))
    return None


def draws(n=N_DRAWS, seed=0):
    """Counts per suspect of ``n`` verdicts drawn from softmax(LOGITS) with a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    picks = torch.multinomial(stable_softmax(LOGITS), n, replacement=True, generator=g)
    return torch.bincount(picks, minlength=len(SUSPECTS))


def _pipeline(ax, lit, caption):
    ax.set_xlim(0, 1), ax.set_ylim(-0.5, len(STAGES) + 0.2), ax.axis("off")
    for i, name in enumerate(STAGES):
        y = len(STAGES) - 1 - i
        on = i in lit
        ax.text(0.5, y, name, ha="center", va="center", fontsize=7.5, color="white" if on else INK,
                bbox=dict(boxstyle="round,pad=0.3", fc=ACCENT if on else "white", ec=INK if on else MUTED, lw=0.8))
        if i:
            ax.annotate("", xy=(0.5, y + 0.3), xytext=(0.5, y + 0.7), arrowprops=dict(arrowstyle="-", color=MUTED, lw=0.6))
    ax.text(0.5, -0.55, caption, ha="center", va="top", fontsize=7.5, color=INK, wrap=True)


def _suspect_axis(ax):
    ax.set_xticks(range(len(SUSPECTS)), SUSPECTS, fontsize=7, rotation=20)
    ax.tick_params(axis="y", labelsize=7)


def draw_prediction(axes, step):
    """Frame ``step`` (0 .. N_FRAMES-1) of the chief's verdict, on two axes."""
    left, right = axes
    kind, param, lit = FRAMES[step]
    x = range(len(SUSPECTS))
    best = int(LOGITS.argmax())
    if kind == "notes":
        right.bar(range(len(FEATURES)), NOTES.tolist(), color=INK)
        right.set_xticks(range(len(FEATURES)), FEATURES, fontsize=7.5)
        right.axhline(0, color=MUTED, lw=0.6)
        right.set_title("the last detective's final notes h", fontsize=9)
        caption = "the chief reads one vector of notes"
    elif kind == "scores":
        right.bar(x, LOGITS.tolist(), color=[INK if v >= 0 else RED for v in LOGITS])
        right.axhline(0, color=MUTED, lw=0.6)
        right.set_title("scores $z_i = e_i \\cdot h$ (any real number)", fontsize=9)
        caption = "each suspect's card is compared with the notes"
    elif kind == "shift":
        right.bar(x, (LOGITS - LOGITS.max()).tolist(), color=RED)
        right.axhline(0, color=MUTED, lw=0.6)
        right.set_title("$z_i - \\max_j z_j$: all $\\leq 0$, same verdict", fontsize=9)
        caption = "shifting all scores changes nothing but keeps exp finite"
    elif kind == "exp":
        right.bar(x, torch.exp(LOGITS - LOGITS.max()).tolist(), color=INK)
        right.set_ylim(0, 1.05)
        right.set_title("$e^{z_i - \\max z}$: between 0 and 1", fontsize=9)
        caption = "exp makes every score positive"
    elif kind == "sample":
        p = frame_probabilities(step)
        counts = draws()
        right.bar(x, (counts / N_DRAWS).tolist(), color=ACCENT, label=f"{N_DRAWS} verdicts drawn")
        right.plot(x, p.tolist(), "o", color=INK, ms=4, label="p")
        right.set_ylim(0, 1.12)
        right.legend(fontsize=7, frameon=False)
        right.set_title("sampling: draw the verdict from p", fontsize=9)
        caption = "a draw names the butler most often, not always"
    else:
        p = frame_probabilities(step)
        colours = [ACCENT if i == best else INK for i in x]
        right.bar(x, p.tolist(), color=colours)
        right.set_ylim(0, 1.12)
        if kind == "verdict":
            right.set_title("softmax: the verdict distribution p (sums to 1)", fontsize=9)
            caption = f"greedy verdict: the {SUSPECTS[best]} (p = {p[best]:.2f})"
        elif kind == "temperature":
            right.set_title(f"temperature $\\tau$ = {param:g}: entropy {entropy(p):.2f} nats", fontsize=9)
            caption = "cold: sure of one suspect; hot: anyone might have done it"
        else:
            dropped = LOGITS < torch.topk(LOGITS, param).values[-1]
            base = stable_softmax(LOGITS)
            right.bar([i for i in x if dropped[i]], base[dropped].tolist(), fill=False, ec=MUTED, hatch="//", lw=0.6)
            right.set_title(f"top-k with k = {param}: the others get $-\\infty$", fontsize=9)
            caption = f"only the {param} likeliest suspects stay in the running"
        for i in x:
            if p[i] > 0:
                right.text(i, p[i] + 0.02, f"{p[i]:.2f}", ha="center", fontsize=6.5)
    if kind != "notes":
        _suspect_axis(right)
    _pipeline(left, lit, caption)
    left.set_title(f"frame {step + 1}/{N_FRAMES}", fontsize=8, loc="left", color=MUTED)


def verdict_probabilities(logits, temperature=1.0, k=None):
    """softmax(top_k_filter(logits, k) / temperature), every entry of ``logits`` kept when k is None."""
    if k is not None:
        logits = top_k_filter(logits, k)
    return stable_softmax(logits, temperature=temperature)


def draw_verdict(ax, logits, labels, temperature=1.0, k=None, n_shown=None, colour=INK):
    """Bars of the verdict distribution for one position of a language model.

    logits: (V,) scores; labels: V names. The ``n_shown`` likeliest tokens at temperature 1
    get a bar each (all V when None); the remaining tokens share one last bar, "other".
    Returns the probabilities drawn, in bar order (they sum to 1).
    """
    p = verdict_probabilities(logits, temperature, k)  # (V,)
    order = torch.argsort(logits, descending=True)
    n_shown = len(labels) if n_shown is None else n_shown
    shown = order[:n_shown]
    heights = p[shown].tolist()
    names = [labels[i] for i in shown]
    if n_shown < len(labels):
        heights.append(float(p[order[n_shown:]].sum()))
        names.append(f"other {len(labels) - n_shown}")
    ax.bar(range(len(heights)), heights, color=colour)
    ax.set_xticks(range(len(heights)), names, fontsize=7, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.tick_params(axis="y", labelsize=7)
    kept = "all" if k is None else k
    ax.set_title(f"$\\tau$ = {temperature:g}, top-k: {kept}; entropy {entropy(p):.2f}", fontsize=8)
    return heights


def verdict_widget(logits, labels, n_shown=None):
    """ipywidgets ``interactive`` with a temperature slider (log scale) and a top-k slider
    (V = keep all) driving ``draw_verdict``. ``w.result`` is the Figure of the current setting;
    in a kernel it is also displayed. Needs a kernel to be interactive."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython import get_ipython
    from IPython.display import display

    V = len(labels)
    temperature = widgets.FloatLogSlider(value=1.0, base=10, min=-1, max=1, step=0.05, description="temperature")
    top_k = widgets.IntSlider(value=V, min=1, max=V, description="top-k")

    def show(temperature, top_k):
        fig, ax = plt.subplots(figsize=(5.5, 2.6), dpi=80, layout="constrained")
        draw_verdict(ax, logits, labels, temperature, None if top_k >= V else top_k, n_shown)
        plt.close(fig)
        if get_ipython() is not None:
            display(fig)
        return fig

    return widgets.interactive(show, temperature=temperature, top_k=top_k)
