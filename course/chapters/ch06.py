"""Chapter 6's animation: the crime-scene photo cut into evidence cards, read by the lead detective.

``photo_story(image, patch_size, cls_attention, probs)`` returns ``(draw, n_steps)`` where
``draw(ax, step)`` draws frame ``step`` on ONE axes (a "case board" in data coordinates):
the photo on the left, the row of seats (class token + one card per patch) on the right.
The cards are ``reference_impl.vit.patchify`` of the image, so the animation shows exactly
what the model receives; the lead detective's lines and the heat map over the photo are the
class token's attention weights passed in (row 0 of ``VisionTransformer.attention_maps``),
and the report is the probabilities passed in. Use with ``course.anim.player`` / ``live``
(one panel, e.g. ``figsize=(8.4, 3.0)``).

Frames: the photo; the grid cut; the cards dealt row by row; flattened and projected; the
position tags; the lead detective takes seat 0; one frame per layer of gathering; the report.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.colors import to_rgb
from matplotlib.patches import Circle, Rectangle

from reference_impl.vit import patchify

INK, ACCENT, MUTED, RED = "#2b4c7e", "#e0a526", "#9aa5b1", "#b03a2e"

# The case board, in data units: photo in [0, 4] x [0.5, 4.5], seats along y = 0.6.
PHOTO = (0.0, 4.0, 0.5, 4.5)  # x0, x1, y0, y1
ROW_X0, ROW_X1, ROW_Y = 5.2, 16.2, 0.6
LEAD = (10.7, 3.9)  # the lead detective's chair
XLIM, YLIM = (-0.3, 16.5), (-0.75, 5.3)


def _as_numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def photo_story(image, patch_size, cls_attention, probs, class_names=None):
    """Frames of the chapter 6 story for one image.

    image (H, W) grey levels in [0, 1] (H, W multiples of patch_size); cls_attention
    (L, N+1): for each layer, the class token's attention weights over [itself, patch 1..N]
    (each row sums to 1); probs (n_classes,) the model's report. Returns (draw, n_steps).
    """
    image = _as_numpy(image).astype(float)
    if image.ndim != 2:
        raise ValueError(f"image must be (H, W), got shape {image.shape}")
    H, W = image.shape
    p = int(patch_size)
    if H % p or W % p:
        raise ValueError(f"image size {H}x{W} is not a multiple of patch_size {p}")
    nh, nw = H // p, W // p
    n = nh * nw
    attn = _as_numpy(cls_attention).astype(float)
    if attn.ndim != 2 or attn.shape[1] != n + 1:
        raise ValueError(f"cls_attention must be (n_layers, {n + 1}), got shape {attn.shape}")
    probs = _as_numpy(probs).astype(float)
    names = list(class_names) if class_names is not None else [str(c) for c in range(len(probs))]
    # The cards are what the model gets: patchify's rows, reshaped back to p x p for display.
    cards = patchify(torch.as_tensor(image, dtype=torch.float32)[None, None], p)[0].view(n, p, p).numpy()

    pitch = (ROW_X1 - ROW_X0) / (n + 1)
    size = 0.82 * pitch

    def seat_x(i):  # left edge of seat i (0 = class token, 1..N = cards)
        return ROW_X0 + i * pitch

    frames = [("photo", None), ("cut", None)]
    frames += [("deal", r) for r in range(nh)]
    frames += [("flatten", None), ("tags", None), ("lead", None)]
    frames += [("gather", layer) for layer in range(len(attn))]
    frames += [("report", None)]

    def draw_photo(ax, kind, arg):
        x0, x1, y0, y1 = PHOTO
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=1, extent=(x0, x1, y0, y1), zorder=1)
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=INK, lw=1.2, zorder=3))
        if kind == "photo":
            return
        cw, ch = (x1 - x0) / nw, (y1 - y0) / nh
        for r in range(1, nh):
            ax.plot([x0, x1], [y1 - r * ch] * 2, color=RED, lw=1.0, zorder=3)
        for c in range(1, nw):
            ax.plot([x0 + c * cw] * 2, [y0, y1], color=RED, lw=1.0, zorder=3)
        if kind == "cut":
            for i in range(n):
                r, c = divmod(i, nw)
                ax.text(x0 + (c + 0.5) * cw, y1 - (r + 0.5) * ch, str(i + 1), ha="center", va="center",
                        fontsize=7, color=RED, zorder=4, weight="bold",
                        bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.7))
        if kind == "deal":  # rows already dealt are greyed out on the photo
            ax.add_patch(Rectangle((x0, y1 - (arg + 1) * ch), x1 - x0, (arg + 1) * ch, color="white",
                                   alpha=0.75, zorder=2))
        if kind == "gather":
            heat = attn[arg, 1:].reshape(nh, nw)
            glow = np.zeros((nh, nw, 4))  # the accent colour, as opaque as the card's weight
            glow[..., :3] = to_rgb(ACCENT)
            glow[..., 3] = 0.85 * heat / max(heat.max(), 1e-9)
            ax.imshow(glow, extent=(x0, x1, y0, y1), zorder=2, interpolation="nearest")

    def draw_card(ax, i, faded=False):
        x = seat_x(i + 1)
        ax.imshow(cards[i], cmap="gray_r", vmin=0, vmax=1, extent=(x, x + size, ROW_Y, ROW_Y + size),
                  zorder=2, alpha=0.35 if faded else 1.0)
        ax.add_patch(Rectangle((x, ROW_Y), size, size, fill=False, ec=INK, lw=0.8, zorder=3))

    def draw_lead_seat(ax):
        x = seat_x(0)
        ax.add_patch(Rectangle((x, ROW_Y), size, size, color=ACCENT, zorder=2))
        ax.text(x + size / 2, ROW_Y + size / 2, "C", ha="center", va="center", fontsize=7, color="white",
                weight="bold", zorder=3)

    def draw_lead(ax, label=True):
        ax.add_patch(Circle(LEAD, 0.45, color=ACCENT, zorder=4))
        ax.text(*LEAD, "lead", ha="center", va="center", fontsize=7.5, color="white", weight="bold", zorder=5)
        if label:
            ax.text(LEAD[0] + 0.6, LEAD[1] + 0.25, "lead detective\n(class token, seat 0)", ha="left",
                    va="center", fontsize=7, color=INK)

    def draw(ax, step):
        kind, arg = frames[step]
        ax.set_xlim(*XLIM), ax.set_ylim(*YLIM)
        ax.set_aspect("equal"), ax.axis("off")
        draw_photo(ax, kind, arg)
        if kind in ("photo", "cut"):
            dealt = 0
        elif kind == "deal":
            dealt = (arg + 1) * nw
        else:
            dealt = n
        for i in range(dealt):
            draw_card(ax, i, faded=kind == "report")
        mid = ROW_X0 + (ROW_X1 - ROW_X0) / 2
        if kind == "photo":
            title = f"The crime-scene photo: {H}x{W} pixels"
            ax.text(mid, 2.5, "Cut it into cards, one per detective,\nand let them hold a meeting.",
                    ha="center", va="center", fontsize=9, color=INK)
        elif kind == "cut":
            title = f"Cut into {p}x{p}-pixel cards: N = {nh}x{nw} = {n} pieces of evidence"
            ax.text(mid, 2.5, "patchify: no overlap, reading order\n(left to right, then top to bottom)",
                    ha="center", va="center", fontsize=9, color=INK)
        elif kind == "deal":
            title = f"Dealt in reading order: row {arg + 1} of {nh} (seats {arg * nw + 1}-{(arg + 1) * nw})"
        elif kind == "flatten":
            title = f"Each card: flattened to C*p*p = {p * p} numbers, projected by one shared E"
            for i in range(n):
                x = seat_x(i + 1)
                strip = cards[i].reshape(1, -1)
                ax.imshow(strip, cmap="gray_r", vmin=0, vmax=1, aspect="auto", zorder=2,
                          extent=(x, x + size, ROW_Y - 0.55, ROW_Y - 0.3))
            ax.text(mid, 2.2, r"card $x_p^i$ (flattened)  $\rightarrow$  $x_p^i E$ : the detective's notes",
                    ha="center", va="center", fontsize=9, color=INK)
        elif kind == "tags":
            title = "Plus a learned position tag per seat: where the card was cut"
            for i in range(n + 1):
                x = seat_x(i)
                ax.text(x + size / 2, ROW_Y + size + 0.22, str(i), ha="center", va="center", fontsize=6.5,
                        color=RED)
            ax.text(mid, 2.5, r"$z_0 = [\,x_{class};\ x_p^1E;\ \dots;\ x_p^NE\,] + E_{pos}$", ha="center",
                    va="center", fontsize=10, color=INK)
        if kind in ("lead", "gather", "report"):
            draw_lead_seat(ax)
        if kind == "lead":
            title = "The lead detective takes seat 0: a learned vector, no evidence"
            draw_lead(ax)
            ax.plot([LEAD[0], seat_x(0) + size / 2], [LEAD[1] - 0.45, ROW_Y + size], color=ACCENT, lw=1.5,
                    ls=":", zorder=3)
        elif kind == "gather":
            weights = attn[arg]
            title = f"Layer {arg + 1}: the lead detective reads the cards (width = weight)"
            draw_lead(ax)
            top = max(weights[1:].max(), 1e-9)
            for i in range(n):
                w = weights[i + 1]
                x = seat_x(i + 1) + size / 2
                ax.plot([x, LEAD[0]], [ROW_Y + size, LEAD[1] - 0.45], color=ACCENT,
                        lw=0.3 + 5.0 * w / top, alpha=0.25 + 0.75 * w / top, zorder=3)
            ax.text(seat_x(0), 2.9, f"to himself: {weights[0]:.2f}\nlargest card: {weights[1:].max():.2f}",
                    ha="left", va="center", fontsize=7, color=INK)
        elif kind == "report":
            best = int(probs.argmax())
            title = f"The report, read from seat 0 only: '{names[best]}' (p = {probs[best]:.2f})"
            draw_lead(ax, label=False)
            k = len(probs)
            bx0, bx1, base, height = 12.0, 16.2, 1.9, 2.9
            bw = (bx1 - bx0) / k
            for c in range(k):
                ax.add_patch(Rectangle((bx0 + c * bw + 0.05 * bw, base), 0.9 * bw, height * probs[c],
                                       color=ACCENT if c == best else MUTED, zorder=3))
                ax.text(bx0 + (c + 0.5) * bw, base - 0.2, names[c], ha="center", va="top", fontsize=7)
            ax.annotate("", xy=(bx0 - 0.1, base + 1.2), xytext=(LEAD[0] + 0.5, LEAD[1] - 0.2),
                        arrowprops=dict(arrowstyle="->", color=INK, lw=1.2))
        ax.set_aspect("equal")  # again: imshow(aspect="auto") of the strips resets it
        ax.set_title(title, fontsize=9, loc="left", color=INK)
        ax.text(XLIM[1], YLIM[0] + 0.1, f"frame {step + 1}/{len(frames)}", ha="right", va="bottom", fontsize=7,
                color=MUTED)

    return draw, len(frames)
