"""Chapter 1's animation: gathering evidence (pick a card from the table, stamp it, file it).

``evidence_animation(token_ids, table, vocab)`` returns ``(draw, n_frames)`` for
``course.anim.player`` / ``live`` with three panels. Frame by frame, for each position
``p`` of one case:

- *pick*: the one-hot vector of token ``p`` selects its row of the embedding table (left);
  the middle panel shows that row scaled by ``sqrt(D)``, the evidence;
- *stamp*: the position's sinusoidal wave ``PE[p]`` is added, giving the card;
- the card joins the case file (right), which ends as the model's input ``X (T, D)``.

The numbers are real: ``evidence_cards`` computes them with ``reference_impl.embedding``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from reference_impl.embedding import embed_tokens, input_embedding, sinusoidal_positions

INK, ACCENT, MUTED = "#2b4c7e", "#e0a526", "#9aa5b1"
CMAP = "RdBu_r"
VMAX = 2.5  # colour scale of every panel (entries of the scaled rows are about +-1 to 2)


def evidence_cards(token_ids: torch.Tensor, table: torch.Tensor) -> dict:
    """The parts of each card of one case, all (T, D) float tensors.

    token_ids: (T,) LongTensor; table: (V, D). Returns ``{"evidence": table rows * sqrt(D),
    "stamp": sinusoidal_positions(T, D), "card": input_embedding(...)}``: the card is the
    evidence plus the stamp, exactly what ``input_embedding`` feeds the model.
    """
    T, D = token_ids.shape[-1], table.shape[-1]
    with torch.no_grad():
        evidence = embed_tokens(token_ids, table) * math.sqrt(D)  # (T, D)
        stamp = sinusoidal_positions(T, D)  # (T, D)
        card = input_embedding(token_ids.unsqueeze(0), table)[0]  # (T, D)
    return {"evidence": evidence, "stamp": stamp, "card": card}


def evidence_animation(token_ids: torch.Tensor, table: torch.Tensor, vocab) -> tuple:
    """``(draw, n_frames)``: draw(axes, step) draws frame ``step`` on three axes.

    token_ids: (T,) LongTensor of one case; table: (V, D) embedding table; vocab: the V
    token names. Frames: an overview, then *pick* and *stamp* for each of the T positions,
    then the finished case file: ``2 * T + 2`` frames.
    """
    token_ids = torch.as_tensor(token_ids)
    parts = evidence_cards(token_ids, table)
    evidence, stamp, card = (parts[k].numpy() for k in ("evidence", "stamp", "card"))
    scaled_table = (table.detach() * math.sqrt(table.shape[-1])).numpy()  # (V, D)
    T, D = card.shape
    V = scaled_table.shape[0]
    words = [vocab[int(t)] for t in token_ids]
    frames = [("intro", None)] + [(phase, p) for p in range(T) for phase in ("pick", "stamp")] + [("file", None)]

    def draw_table(ax, phase, p):
        ax.imshow(scaled_table, cmap=CMAP, vmin=-VMAX, vmax=VMAX, aspect="auto", extent=(0, D, V, 0))
        onehot = np.zeros((V, 1))
        if p is not None:
            onehot[int(token_ids[p]), 0] = 1.0
        ax.imshow(onehot, cmap="Greys", vmin=0, vmax=1, aspect="auto", extent=(-2.6, -0.6, V, 0))
        ax.add_patch(_rectangle((-2.6, 0), 2.0, V, MUTED, lw=0.8))
        ax.text(-1.6, -0.6, "one-hot", ha="center", va="bottom", fontsize=6.5, color=MUTED)
        ax.set_xlim(-3.0, D), ax.set_ylim(V, -3.0)
        ax.set_yticks([]), ax.set_xticks([0, D // 2, D])
        ax.set_xlabel(f"D = {D} features", fontsize=7.5)
        ax.tick_params(labelsize=6.5)
        if p is None:
            ax.set_title(f"embedding table: V = {V} rows", fontsize=8.5)
            return
        row = int(token_ids[p])
        ax.add_patch(_rectangle((0, row), D, 1, ACCENT if phase == "pick" else MUTED))
        ax.annotate("", xy=(0, row + 0.5), xytext=(-0.6, row + 0.5),
                    arrowprops=dict(arrowstyle="->", color=ACCENT, lw=1.2))
        ax.set_title(f"pick row {row}: {words[p]}", fontsize=8.5, color=INK)

    def draw_card(ax, phase, p):
        if p is None:
            ax.axis("off")
            text = "one case file, one card per\npiece of evidence:\n\n" + "\n".join(
                f"  {q}: {w}" for q, w in enumerate(words))
            if phase == "file":
                text = "every card =\n  evidence (row x sqrt(D))\n  + time stamp PE[p]\n\n" \
                       "added, not attached:\nthe stamp shares the card's\nD numbers with the evidence"
            ax.text(0.02, 0.5, text, va="center", fontsize=7.5, family="monospace", transform=ax.transAxes)
            return
        blank = np.full(D, np.nan)
        strips = np.stack([evidence[p], stamp[p] if phase == "stamp" else blank,
                           card[p] if phase == "stamp" else blank])  # (3, D)
        ax.imshow(np.ma.masked_invalid(strips), cmap=CMAP, vmin=-VMAX, vmax=VMAX, aspect="auto",
                  extent=(0, D, 3, 0))
        ax.set_facecolor("#f2f2f2")
        ax.set_yticks([0.5, 1.5, 2.5], ["evidence", f"+ stamp PE[{p}]", "= card"], fontsize=7)
        ax.set_xticks([0, D // 2, D]), ax.tick_params(labelsize=6.5)
        ax.set_xlabel("features", fontsize=7.5)
        title = f"position {p}: {words[p]}"
        ax.set_title(title + (" (x sqrt(D))" if phase == "pick" else ", stamped"), fontsize=8.5)

    def draw_file(ax, phase, p):
        done = T if phase in ("file",) else (0 if p is None else p + (phase == "stamp"))
        shown = np.full((T, D), np.nan)
        shown[:done] = card[:done]
        ax.imshow(np.ma.masked_invalid(shown), cmap=CMAP, vmin=-VMAX, vmax=VMAX, aspect="auto",
                  extent=(0, D, T, 0))
        ax.set_facecolor("#f2f2f2")
        ax.set_yticks(np.arange(T) + 0.5, [f"{q} {w}" for q, w in enumerate(words)], fontsize=6.5)
        ax.set_xticks([0, D // 2, D]), ax.tick_params(labelsize=6.5)
        ax.set_xlabel("features", fontsize=7.5)
        ax.set_title("the case file X (T x D)" if phase == "file" else f"case file: {done}/{T} cards", fontsize=8.5)

    def draw(axes, step):
        left, middle, right = axes
        phase, p = frames[step]
        draw_table(left, phase, p)
        draw_card(middle, phase, p)
        draw_file(right, phase, p)

    return draw, len(frames)


def _rectangle(xy, width, height, colour, lw=2.0):
    from matplotlib.patches import Rectangle

    return Rectangle(xy, width, height, fill=False, edgecolor=colour, lw=lw)
