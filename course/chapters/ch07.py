"""Chapter 7's animations: reading the reports in batches, and detectives sent to LSH tables.

``online_softmax_trace(q, k, v, chunk_size)`` follows ONE detective (query) who reads the
reports (keys and values) ``chunk_size`` at a time and keeps only three things: the running
maximum ``m`` of the match scores, the running sum ``l`` of ``exp(score - m)``, and the
output so far. ``online_softmax_story(q, k, v, chunk_size)`` turns that trace into
``(draw, n_steps)`` for ``course.anim.player`` / ``live`` with two panels:

- left, the reports: one bar per report (its match score), read batch by batch; unread
  reports are outlines; the dashed line is the running maximum;
- right, the insights: each report's value as a point in the plane (``d_v = 2``), sized by
  its current weight; the star is the output so far, its path the earlier outputs; the last
  frame adds the output of full attention, which the star has reached exactly.

``lsh_tables_story(x, bucket_size, rotations)`` animates Reformer's hashing for 2-D shared
query-keys ``x``: each hash round cuts the circle of directions into sectors (the buckets
of ``reference_impl.scalable.lsh_buckets``), the detectives take their seats sorted by
bucket, the seats are cut into tables of ``bucket_size`` and each detective may talk to
its own table and the previous one. Who may talk to whom is read off
``reference_impl.scalable.lsh_attention`` itself (with the identity as values, its output
*is* the weight matrix), so the animation shows exactly what the reference computes.

Everything is computed with the reference implementation; this module only draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.patches import Circle, Rectangle, Wedge

from reference_impl.scalable import chunked_attention, lsh_attention, lsh_buckets, lsh_n_buckets

INK, ACCENT, MUTED, RED = "#2b4c7e", "#e0a526", "#9aa5b1", "#b03a2e"
TABLE_COLOURS = ["#2b4c7e", "#e0a526", "#4f9d69", "#b03a2e", "#8e6bb3", "#3fa7b5", "#c7742e", "#7a7a7a"]


# ------------------------------------------------------------------------------------------
# Online softmax, one detective reading the reports batch by batch
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadingStep:
    """The detective's state after reading reports ``[0, end)`` (the batch ``[start, end)``)."""

    start: int
    end: int
    m: float  # running maximum of the scores read so far
    l: float  # running sum of exp(score - m) over the reports read so far
    rescale: float  # exp(m_before - m): what the old sum (and output numerator) was multiplied by
    out: torch.Tensor  # (d_v,) output so far = softmax average of the values read so far


def _check_reading(q, k, v, chunk_size):
    if q.dim() != 1 or k.dim() != 2 or v.dim() != 2:
        shapes = ", ".join(str(tuple(x.shape)) for x in (q, k, v))
        raise ValueError(f"need q (d,), k (T, d), v (T, d_v); got {shapes}")
    if k.shape[1] != q.shape[0] or k.shape[0] != v.shape[0] or k.shape[0] < 1:
        raise ValueError(f"inconsistent shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")


@torch.no_grad()
def online_softmax_trace(q, k, v, chunk_size):
    """What one query keeps while reading the keys ``chunk_size`` at a time.

    q (d,), k (T, d), v (T, d_v) -> (scores (T,), [ReadingStep, ...] one per batch).
    ``scores = k q / sqrt(d)``; after batch ``[start, end)``: ``m = max(scores[:end])``,
    ``l = sum(exp(scores[:end] - m))`` and ``out`` = ``chunked_attention`` of the query over
    the first ``end`` keys. They satisfy the online-softmax recurrence
    ``l_new = l_old * rescale + sum(exp(new scores - m_new))``, ``rescale = exp(m_old - m_new)``.
    """
    _check_reading(q, k, v, chunk_size)
    scores = k @ q / math.sqrt(q.shape[0])  # (T,)
    steps, m_old = [], float("-inf")
    for start in range(0, k.shape[0], chunk_size):
        end = min(start + chunk_size, k.shape[0])
        m = scores[:end].max().item()
        l = torch.exp(scores[:end] - m).sum().item()
        out = chunked_attention(q[None], k[:end], v[:end], chunk_size)[0]  # (d_v,)
        steps.append(ReadingStep(start, end, m, l, math.exp(m_old - m), out))
        m_old = m
    return scores, steps


def online_softmax_story(q, k, v, chunk_size, names=None):
    """Frames of one detective reading reports in batches. q (d,), k (T, d), v (T, 2).

    Returns (draw, n_steps); ``draw(axes, step)`` draws on two axes. Frames: the task; per
    batch a *read* frame (new scores, new maximum) and a *fold* frame (rescale, add, the
    output moves); the check against full attention.
    """
    _check_reading(q, k, v, chunk_size)
    if v.shape[1] != 2:
        raise ValueError(f"the insights are drawn in the plane: v must be (T, 2), got {tuple(v.shape)}")
    scores, steps = online_softmax_trace(q, k, v, chunk_size)
    T = k.shape[0]
    names = list(names) if names is not None else [f"r{j + 1}" for j in range(T)]
    s = scores.numpy()
    vals = v.detach().numpy()
    with torch.no_grad():
        full = torch.softmax(scores, -1) @ v  # (2,) full attention, in one go
    full = full.numpy()
    frames = [("task", None)] + [(kind, c) for c in range(len(steps)) for kind in ("read", "fold")]
    frames += [("check", None)]
    lo, hi = min(0.0, s.min()) - 0.3, s.max() + 0.6
    pad = 0.25 * max(np.ptp(vals[:, 0]), np.ptp(vals[:, 1]), 1e-3)
    vlim = (vals[:, 0].min() - pad, vals[:, 0].max() + pad), (vals[:, 1].min() - pad, vals[:, 1].max() + pad)

    def state(kind, c):
        """(reports read, index of the step whose statistics are shown or None)."""
        if kind == "task":
            return 0, None
        if kind == "read":
            return steps[c].end, (c - 1 if c else None)  # new scores seen, statistics not yet folded
        if kind == "fold":
            return steps[c].end, c
        return T, len(steps) - 1

    def draw_reports(ax, kind, c):
        read, shown = state(kind, c)
        for j in range(T):
            if j < read:
                new = kind in ("read", "fold") and j >= steps[c].start
                ax.bar(j, s[j], color=ACCENT if new else INK, width=0.75, zorder=2)
            else:
                ax.bar(j, hi - 0.35, bottom=0, color="none", edgecolor=MUTED, ls=":", width=0.75, zorder=2)
                ax.text(j, 0.5 * (hi - 0.35), "?", ha="center", va="center", color=MUTED, fontsize=8)
        for b in range(chunk_size, T, chunk_size):
            ax.axvline(b - 0.5, color=MUTED, lw=0.8)
        if kind != "task":
            m_now = steps[c].m if kind != "check" else steps[-1].m
            ax.axhline(m_now, color=RED, ls="--", lw=1.2, zorder=3)
            ax.text(T - 0.4, m_now, f" m = {m_now:.2f}", color=RED, fontsize=7.5, va="bottom", ha="right")
        ax.set_xlim(-0.6, T - 0.4), ax.set_ylim(lo, hi)
        ax.set_xticks(range(T), names, fontsize=6.5)
        ax.set_ylabel("match score $q\\cdot k_j/\\sqrt{d}$", fontsize=7.5)
        ax.tick_params(labelsize=7)
        if kind == "task":
            title = f"{T} reports, read {chunk_size} at a time"
        elif kind == "read":
            st = steps[c]
            old = f"{steps[c - 1].m:.2f}" if c else "-inf"
            grew = " (it grew)" if c == 0 or st.m > steps[c - 1].m else " (unchanged)"
            title = f"batch {c + 1}: read scores, max {old} -> {st.m:.2f}{grew}"
        elif kind == "fold":
            st = steps[c]
            title = f"batch {c + 1}: old sum x exp(m_old - m) = x{st.rescale:.2f}, then add"
        else:
            title = "all reports read"
        ax.set_title(title, fontsize=8.5, loc="left", color=INK)
        return shown

    def draw_insights(ax, kind, c, shown):
        read = state(kind, c)[0]
        if shown is not None:
            st = steps[shown]
            weights = np.exp(s[: st.end] - st.m) / st.l  # current softmax weights of the reports read
        for j in range(T):
            if j < read and shown is not None and j < steps[shown].end:
                size = 20 + 400 * weights[j]
                ax.scatter(*vals[j], s=size, color=INK, alpha=0.75, zorder=2, edgecolors="white", linewidths=0.5)
            elif j < read:  # read but not yet folded in
                ax.scatter(*vals[j], s=20, color=ACCENT, zorder=2)
            else:
                ax.scatter(*vals[j], s=20, facecolors="none", edgecolors=MUTED, zorder=2)
            ax.annotate(names[j], vals[j], xytext=(3, 3), textcoords="offset points", fontsize=6, color=MUTED)
        if shown is not None:
            path = np.stack([steps[i].out.numpy() for i in range(shown + 1)])
            ax.plot(path[:, 0], path[:, 1], color=ACCENT, lw=1.2, zorder=3)
            ax.scatter(*path[-1], marker="*", s=220, color=ACCENT, edgecolors=INK, linewidths=0.8, zorder=4)
        if kind == "check":
            ax.scatter(*full, s=420, facecolors="none", edgecolors=RED, linewidths=1.5, zorder=5)
            err = float(np.abs(steps[-1].out.numpy() - full).max())
            title = f"red ring: full attention in one go; |star - ring| = {err:.1e}"
        elif shown is None:
            title = "insights (values); nothing known yet" if kind == "task" else "new scores not yet folded in"
        elif kind == "read":
            st = steps[shown]
            title = f"not yet folded in: still the mean of {st.end} reports"
        else:
            st = steps[shown]
            title = f"l = {st.l:.2f}; output = weighted mean of {st.end} reports"
        ax.set_xlim(*vlim[0]), ax.set_ylim(*vlim[1])
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(title, fontsize=8.5, loc="left", color=INK)

    def draw(axes, step):
        left, right = axes
        kind, c = frames[step]
        shown = draw_reports(left, kind, c)
        draw_insights(right, kind, c, shown)
        right.text(1.0, -0.02, f"frame {step + 1}/{len(frames)}", transform=right.transAxes, ha="right",
                   va="top", fontsize=6.5, color=MUTED)

    return draw, len(frames)


# ------------------------------------------------------------------------------------------
# Reformer: detectives with similar questions sit at the same table
# ------------------------------------------------------------------------------------------


@torch.no_grad()
def lsh_seating(x, bucket_size, rotations):
    """One seating per hash round, as ``lsh_attention`` makes it.

    x (T, 2) shared query-keys, rotations (n_rounds, 2, n_buckets // 2) with
    ``n_buckets = lsh_n_buckets(T, bucket_size)``. Returns a list of dicts, one per round:
    ``buckets`` (T,), ``order`` (T,) positions sorted by (bucket, position), and ``talks``
    (T, T) bool: who may listen to whom in that round (read off ``lsh_attention`` with one
    hash round and the identity as values: its output is the weight matrix, and a weight is
    0 exactly where the pair was never compared).
    """
    T = x.shape[0]
    n_buckets = lsh_n_buckets(T, bucket_size)
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"x must be (T, 2), got {tuple(x.shape)}")
    if n_buckets < 2 or rotations.dim() != 3 or tuple(rotations.shape[1:]) != (2, n_buckets // 2):
        raise ValueError(f"rotations must be (n_rounds, 2, {n_buckets // 2}) for T={T}, bucket_size={bucket_size}")
    eye = torch.eye(T)
    rounds = []
    for r in range(rotations.shape[0]):
        R = rotations[r : r + 1]  # (1, 2, n_buckets // 2)
        buckets = lsh_buckets(x, R[0])  # (T,)
        order = (buckets * T + torch.arange(T)).argsort()  # (T,)
        weights = lsh_attention(x, eye, n_hashes=1, bucket_size=bucket_size, rotations=R)  # (T, T)
        rounds.append({"buckets": buckets, "order": order, "talks": weights > 0})
    return rounds


def lsh_tables_story(x, bucket_size, rotations, focus=0):
    """Frames of Reformer's seating for 2-D shared query-keys x (T, 2).

    Returns (draw, n_steps); ``draw(axes, step)`` draws on two axes: left, the circle of
    directions cut into buckets; right, the seats in sorted order cut into tables. Frames:
    the squad; per round *hash* (sectors and buckets), *seat* (sorted into tables) and
    *talk* (whom detective ``focus`` may listen to); finally all rounds together against
    the colleagues ``focus`` would listen to most in full attention.
    """
    rounds = lsh_seating(x, bucket_size, rotations)
    T = x.shape[0]
    if not 0 <= focus < T:
        raise ValueError(f"focus must be a position in [0, {T}), got {focus}")
    xs = x.detach().numpy()
    angle = np.arctan2(xs[:, 1], xs[:, 0])
    n_tables = T // bucket_size
    frames = [("squad", None)] + [(kind, r) for r in range(len(rounds)) for kind in ("hash", "seat", "talk")]
    frames += [("union", None)]
    # The colleagues `focus` would listen to most in full shared-QK attention: the closest directions.
    cos = np.cos(angle - angle[focus])
    cos[focus] = -np.inf
    nearest = set(np.argsort(-cos)[: bucket_size - 1].tolist())  # as many as fill the rest of a table
    grid = torch.linspace(-math.pi, math.pi, 721)
    directions = torch.stack([grid.cos(), grid.sin()], dim=-1)  # (721, 2)

    def colour(b):
        return TABLE_COLOURS[int(b) % len(TABLE_COLOURS)]

    def draw_circle(ax, kind, r):
        ax.set_xlim(-1.45, 1.45), ax.set_ylim(-1.3, 1.3), ax.set_aspect("equal"), ax.axis("off")
        if kind in ("hash", "seat", "talk"):
            sector = lsh_buckets(directions, rotations[r]).numpy()  # bucket of every direction
            starts = np.flatnonzero(np.r_[True, sector[1:] != sector[:-1]])
            ends = np.r_[starts[1:], len(grid) - 1]
            for a, b in zip(starts, ends):
                ax.add_patch(Wedge((0, 0), 1.22, math.degrees(grid[a]), math.degrees(grid[b]),
                                   color=colour(sector[a]), alpha=0.18, lw=0))
        ax.add_patch(Circle((0, 0), 1.0, fill=False, ec=MUTED, lw=0.8))
        talks = rounds[r]["talks"][focus].numpy() if kind == "talk" else None
        for j in range(T):
            px, py = math.cos(angle[j]), math.sin(angle[j])
            if kind == "squad" or kind == "union":
                c = ACCENT if j == focus else INK
            else:
                c = colour(rounds[r]["buckets"][j])
            if kind == "talk" and j != focus and talks[j]:
                ax.plot([math.cos(angle[focus]), px], [math.sin(angle[focus]), py], color=RED, lw=1.0, zorder=2)
            if kind == "union" and j in nearest:
                ax.scatter(px, py, s=190, facecolors="none", edgecolors=RED, linewidths=1.2, zorder=4)
            ax.scatter(px, py, s=110 if j == focus else 70, color=c, edgecolors="white", linewidths=0.8, zorder=3)
            ax.text(1.12 * px, 1.12 * py, str(j), ha="center", va="center", fontsize=6.5, color=INK)
        rn = r + 1 if r is not None else 0
        titles = {
            "squad": f"{T} detectives: the direction of each one's question",
            "hash": f"round {rn}: a random rotation cuts the circle into {2 * rotations.shape[2]} buckets",
            "seat": f"round {rn}: same colour = same bucket",
            "talk": f"round {rn}: detective {focus} may listen to the red lines",
            "union": f"red rings: the {len(nearest)} colleagues closest to detective {focus}",
        }
        ax.set_title(titles[kind], fontsize=8.5, loc="left", color=INK)

    def draw_tables(ax, kind, r):
        ax.set_xlim(-0.7, T - 0.3), ax.set_ylim(-1.6, 1.5), ax.axis("off")
        if kind == "squad":
            ax.text(T / 2 - 0.5, 0.2, "Full attention: everyone scores everyone,\n"
                    f"{T} x {T} = {T * T} pairs.\nReformer: hash, sort, and talk only\n"
                    "at your own table and the one before.", ha="center", va="center", fontsize=9, color=INK)
            return
        if kind == "union":
            heard = np.zeros(T, dtype=bool)
            for rnd in rounds:
                heard |= rnd["talks"][focus].numpy()
            heard[focus] = False
            found = len(nearest & set(np.flatnonzero(heard).tolist()))
            for j in range(T):
                c = RED if heard[j] else "white"
                ax.add_patch(Rectangle((j - 0.4, -0.4), 0.8, 0.8, color=c, ec=INK, lw=0.6, alpha=0.85))
                ax.text(j, 0, str(j), ha="center", va="center", fontsize=7, color="white" if heard[j] else INK)
                if j in nearest:
                    ax.text(j, 0.6, "*", ha="center", va="center", fontsize=11, color=RED)
            ax.text(-0.5, -1.0, f"{len(rounds)} rounds together: detective {focus} compared with "
                    f"{int(heard.sum())} of {T - 1} colleagues,\nincluding {found} of the {len(nearest)} "
                    "closest (*). More rounds: fewer misses.", fontsize=8, color=INK, va="center")
            ax.set_title("who was heard in at least one round (red)", fontsize=8.5, loc="left", color=INK)
            return
        rnd = rounds[r]
        order = rnd["order"].numpy() if kind != "hash" else np.arange(T)
        talks = rnd["talks"][focus].numpy()
        for slot, j in enumerate(order):
            c = colour(rnd["buckets"][j])
            edge = ACCENT if j == focus else "white"
            ax.scatter(slot, 0, s=150, color=c, edgecolors=edge, linewidths=2.0 if j == focus else 0.8, zorder=3)
            ax.text(slot, 0, str(j), ha="center", va="center", fontsize=6.5, color="white", zorder=4)
            if kind == "talk" and j != focus and talks[j]:
                ax.scatter(slot, -0.5, marker="^", s=40, color=RED, zorder=3)
        if kind == "hash":
            ax.text(-0.5, 1.0, "in original order: colours are mixed", fontsize=8, color=INK)
        else:
            for t in range(n_tables):
                ax.add_patch(Rectangle((t * bucket_size - 0.45, -0.45), bucket_size - 0.1, 0.9, fill=False,
                                       ec=INK, lw=1.0, zorder=2))
                ax.text((t + 0.5) * bucket_size - 0.5, 0.75, f"table {t + 1}", ha="center", fontsize=7, color=INK)
            if kind == "seat":
                ax.text(-0.5, -1.1, f"sorted by bucket, then cut into tables of {bucket_size} seats",
                        fontsize=8, color=INK)
            else:
                ax.text(-0.5, -1.1, f"detective {focus}: own table + previous one (the first wraps to the last)",
                        fontsize=8, color=INK)
        titles = {"hash": "the squad, hashed", "seat": "sorted and seated", "talk": "who meets whom"}
        ax.set_title(titles[kind], fontsize=8.5, loc="left", color=INK)

    def draw(axes, step):
        left, right = axes
        kind, r = frames[step]
        draw_circle(left, kind, r)
        draw_tables(right, kind, r)
        right.text(1.0, 0.0, f"frame {step + 1}/{len(frames)}", transform=right.transAxes, ha="right",
                   va="bottom", fontsize=6.5, color=MUTED)

    return draw, len(frames)

