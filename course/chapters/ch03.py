"""Chapter 3's animation: rounds of meetings (attention, private work, notes, round after round).

``trace_rounds(model, token_ids)`` follows one case through a trained
``reference_impl.model.SequenceClassifier`` sublayer by sublayer, and
``rounds_animation(trace, labels, class_names, answer)`` returns ``(draw, n_frames)`` for
``course.anim.player`` / ``live`` with two panels:

- left, the room: the detectives in a row. In a *meeting* frame (the attention sublayer)
  arrows show whom each detective listened to most; in a *private work* frame (the
  feed-forward sublayer, the same network for everyone) bars show how much each one
  added to their notes;
- right, the chief's reading: the class probabilities the model would give if the case
  were closed at that moment (final norm, mean over positions, head), the true answer
  highlighted. The last frame plots the answer's probability over the whole trace.
"""

from __future__ import annotations

import torch

INK, ACCENT, MUTED, RED = "#2b4c7e", "#e0a526", "#9aa5b1", "#b03a2e"


@torch.no_grad()
def chief_reading(model, stream: torch.Tensor) -> torch.Tensor:
    """Class probabilities (n_classes,) the model's readout gives for a stream (T, D).

    Exactly what ``model`` does after its last block: final norm, pooling (``model.readout``:
    mean over positions or the first position), ``head``, then a softmax.
    """
    h = model.stack.norm(stream)  # (T, D)
    pooled = h.mean(dim=0) if model.readout == "mean" else h[0]  # (D,)
    return torch.softmax(model.head(pooled), dim=-1)  # (n_classes,)


@torch.no_grad()
def own_reading(model, stream: torch.Tensor) -> torch.Tensor:
    """The same readout applied to each detective's notes alone: (T, D) -> (T, n_classes).

    Row i is what the chief would conclude from position i only (final norm, head, softmax).
    """
    return torch.softmax(model.head(model.stack.norm(stream)), dim=-1)  # (T, n_classes)


@torch.no_grad()
def trace_rounds(model, token_ids: torch.Tensor) -> dict:
    """One case through every sublayer of a ``SequenceClassifier`` (no mask, like its forward).

    token_ids: (T,) LongTensor. Returns a dict with
    - ``"names"``: ``2 * L + 1`` step names ("cards", "round 1: meeting", "round 1: private work", ...);
    - ``"streams"``: the residual stream after each step, ``2 * L + 1`` tensors (T, D);
      ``streams[2 * l]`` equals ``model.hidden_states(ids)[l]``;
    - ``"added"``: what each step added to each detective's notes, norms (2 * L + 1, T)
      (row 0, the cards themselves, holds the norms of the cards);
    - ``"attention"``: L tensors (H, T, T), the weights of each meeting;
    - ``"probs"``: (2 * L + 1, n_classes), ``chief_reading`` of each stream (the last row is
      ``softmax(model(ids))``);
    - ``"own"``: (2 * L + 1, T, n_classes), ``own_reading`` of each stream.
    """
    from reference_impl.attention import attention_weights

    x = model.embed(token_ids.unsqueeze(0))  # (1, T, D)
    names, streams, added, attention = ["cards"], [x[0]], [x[0].norm(dim=-1)], []
    for layer, block in enumerate(model.stack.blocks, start=1):
        attention.append(attention_weights(block.attn, block.norm1(x))[0])  # (H, T, T)
        heard = block.attn(block.norm1(x))  # (1, T, D): the meeting's contribution
        x = x + heard
        names.append(f"round {layer}: meeting")
        streams.append(x[0]), added.append(heard[0].norm(dim=-1))
        worked = block.ff(block.norm2(x))  # (1, T, D): private work, the same FFN for all
        x = x + worked
        names.append(f"round {layer}: private work")
        streams.append(x[0]), added.append(worked[0].norm(dim=-1))
    probs = torch.stack([chief_reading(model, s) for s in streams])  # (2L + 1, n_classes)
    own = torch.stack([own_reading(model, s) for s in streams])  # (2L + 1, T, n_classes)
    return {"names": names, "streams": streams, "added": torch.stack(added), "attention": attention,
            "probs": probs, "own": own}


def rounds_animation(trace: dict, labels, class_names, answer: int | None = None, threshold: float = 0.3) -> tuple:
    """``(draw, n_frames)``: draw(axes, step) draws frame ``step`` on two axes.

    trace: from ``trace_rounds``; labels: the T token names; class_names: the classes'
    names; answer: index of the true class (highlighted), if known. A meeting frame draws
    an arrow j -> i when detective i gives colleague j (j != i) at least ``threshold`` of
    its attention, averaged over heads. Frames: one per step of the trace, then a summary:
    ``2 * L + 2`` frames.
    """
    import matplotlib

    names, probs, added = trace["names"], trace["probs"].numpy(), trace["added"].numpy()
    own = trace["own"].numpy()  # (steps, T, n_classes)
    shade = matplotlib.colormaps["YlOrBr"]
    T = len(labels)
    n_steps = len(names)
    attention = [a.mean(dim=0).numpy() for a in trace["attention"]]  # L arrays (T, T), heads averaged

    def draw_room(ax, step):
        ax.set_xlim(-0.7, T - 0.3), ax.set_ylim(-1.9, 2.3), ax.axis("off")
        name = names[step]
        meeting, working = name.endswith("meeting"), name.endswith("private work")
        for i, label in enumerate(labels):
            # Fill: how sure this detective's own notes are of the true answer (white = not at all).
            sure = own[step, i, answer] if answer is not None else 0.0
            ax.add_patch(_circle((i, 0), 0.3, shade(0.85 * sure), edge=ACCENT if working else INK))
            ax.text(i, 0, f"D{i}", ha="center", va="center", color="white" if sure > 0.6 else INK,
                    fontsize=7, weight="bold")
            ax.text(i, -0.45, label, ha="right", va="top", rotation=40, fontsize=6.5, rotation_mode="anchor")
        if meeting:
            weights = attention[(step - 1) // 2]  # (T, T): listener i, colleague j
            for i in range(T):
                for j in range(T):
                    if j != i and weights[i, j] >= threshold:
                        rad = -0.5 if j < i else 0.5
                        ax.annotate("", xy=(i, 0.33), xytext=(j, 0.33),
                                    arrowprops=dict(arrowstyle="->", color=ACCENT, lw=0.4 + 4 * weights[i, j],
                                                    alpha=0.85, connectionstyle=f"arc3,rad={rad}"))
            ax.text(-0.6, 2.2, f"{name}: arrows = who listened to whom (weight >= {threshold})",
                    fontsize=7.5, va="top", color=INK)
        elif working:
            heights = added[step] / max(added[1:].max(), 1e-9)  # (T,) common scale over all steps
            for i in range(T):
                ax.add_patch(_bar(i, 0.4, 1.5 * heights[i], ACCENT))
            ax.text(-0.6, 2.2, f"{name}: each detective alone, same FFN;\nbars = how much they add to their notes",
                    fontsize=7.5, va="top", color=INK)
        else:
            ax.text(-0.6, 2.2, "the cards of chapter 1: nobody has met yet", fontsize=7.5, va="top", color=INK)
        if answer is not None:
            ax.text(-0.6, -1.85, "fill: how sure each detective's own notes are of the culprit",
                    fontsize=6.5, va="bottom", color=MUTED)

    def draw_reading(ax, step):
        k = len(class_names)
        colours = [ACCENT if c == answer else INK for c in range(k)]
        ax.bar(range(k), probs[step], color=colours)
        ax.set_xticks(range(k), class_names, fontsize=7.5)
        ax.set_ylim(0, 1.0), ax.tick_params(labelsize=7)
        ax.set_ylabel("probability", fontsize=7.5)
        ax.set_title("the chief's reading of the notes now", fontsize=8.5)

    def draw_summary(axes):
        left, right = axes
        left.axis("off")
        left.text(0.0, 0.5, "Every round: a meeting (attention),\nthen private work (feed-forward),\n"
                  "each adding to the detectives'\nown notes (the residual stream).\n\n"
                  "The chief can read the notes\nafter any step (right).", va="center", fontsize=8.5)
        shown = probs[:, answer] if answer is not None else probs.max(axis=1)
        right.plot(range(n_steps), shown, "o-", color=ACCENT)
        right.set_xticks(range(n_steps), [_short(n) for n in names], rotation=45, ha="right", fontsize=6.5)
        right.set_ylim(0, 1.05), right.tick_params(labelsize=7)
        right.set_ylabel("P(true answer)" if answer is not None else "largest probability", fontsize=7.5)
        right.set_title("the answer, step by step", fontsize=8.5)

    def draw(axes, step):
        if step == n_steps:
            draw_summary(axes)
            return
        left, right = axes
        draw_room(left, step)
        draw_reading(right, step)

    return draw, n_steps + 1


def _short(name: str) -> str:
    return name.replace("round ", "R").replace(": meeting", " meet").replace(": private work", " work")


def _circle(xy, radius, fill, edge):
    import matplotlib.pyplot as plt

    return plt.Circle(xy, radius, facecolor=fill, edgecolor=edge, lw=1.8)


def _bar(x, y, height, colour):
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.15, y), 0.3, height, color=colour, alpha=0.8)
