"""Chapter 8's animation: the squad consults its archive (search -> knowledge -> response).

``archive_story(store, questions, k)`` returns ``(draw, n_steps)`` where ``draw(axes, step)``
draws frame ``step`` on TWO axes: on the left the archive (one drawer per document of the
``reference_impl.challenges.DocumentStore``, with the search scores as bars), on the right
the squad's side of the three steps. Everything shown is computed by the store: the
question's TF-IDF vector (``store.embed``), the cosine scores against every drawer
(``store.keys``), and ``answer_with_retrieval``'s knowledge and response. Use with
``course.anim.player`` / ``live`` (``n_panels=2``).

Frames: an overview, then for each question: ask, search, knowledge, response.
"""

from __future__ import annotations

import re
import textwrap

from matplotlib.patches import Circle, FancyBboxPatch, Rectangle

from reference_impl.challenges import answer_with_retrieval

INK, ACCENT, MUTED, RED = "#2b4c7e", "#e0a526", "#9aa5b1", "#b03a2e"
STAGES = ("search", "knowledge", "response")


def drawer_label(document, n_words=4):
    """A drawer's label: the document's first words."""
    words = document.split()
    return " ".join(words[:n_words]) + (" ..." if len(words) > n_words else "")


def archive_story(store, questions, k=2):
    """Frames of the archive consultation for each question in ``questions`` (a list of str).

    store: a ``DocumentStore``; k: how many documents the search returns. Returns (draw, n_steps).
    """
    questions = list(questions)
    if not questions:
        raise ValueError("give at least one question")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    m = len(store.documents)
    cases = []
    for q in questions:
        query = store.embed([q])[0]  # (vocab,) unit TF-IDF vector
        scores = (store.keys @ query).tolist()  # (M,) cosine similarity with every drawer
        result = answer_with_retrieval(store, q, k)
        hit_ids = [store.documents.index(doc) for score, doc in result["search"] if score > 0]
        known = sorted(((float(query[i]), store.vocab[i]) for i in query.nonzero().flatten().tolist()), reverse=True)
        unknown = [w for w in dict.fromkeys(re.findall(r"[a-z0-9]+", q.lower())) if w not in store.index]
        cases.append(dict(question=q, scores=scores, hits=hit_ids, known=known, unknown=unknown, **result))
    frames = [("intro", None)] + [(stage, c) for c in range(len(cases)) for stage in ("ask",) + STAGES]
    labels = [drawer_label(doc) for doc in store.documents]

    def draw_archive(ax, stage, case):
        ax.set_xlim(0, 1.25), ax.set_ylim(-0.6, m + 0.2), ax.axis("off")
        show_scores = case is not None and stage in STAGES
        hits = case["hits"] if case is not None and stage in ("knowledge", "response") else []
        top = max(max(case["scores"]), 1e-9) if show_scores else 1.0
        for i, label in enumerate(labels):
            y = m - 1 - i
            shift = 0.12 if i in hits else 0.0  # retrieved drawers are pulled out
            ax.add_patch(Rectangle((shift, y), 1.0, 0.8, fc="#f4f1ea", ec=ACCENT if i in hits else MUTED,
                                   lw=2.0 if i in hits else 0.8))
            if show_scores:
                s = case["scores"][i]
                ax.add_patch(Rectangle((shift, y), max(s, 0.0) / top, 0.8, fc=ACCENT, alpha=0.45, ec="none"))
                ax.text(shift + 1.02, y + 0.4, f"{s:.2f}", va="center", fontsize=7, color=INK)
            ax.text(shift + 0.03, y + 0.4, label, va="center", fontsize=6.8, color=INK)
        ax.set_title("the archive: one drawer per case file", fontsize=8.5, color=INK)

    def draw_squad(ax, stage, case):
        ax.set_xlim(0, 1), ax.set_ylim(0, 1), ax.axis("off")
        now = STAGES.index(stage) if stage in STAGES else -1
        for j, name in enumerate(STAGES):  # the three steps: done in ink, the current one lit
            colour = ACCENT if j == now else (INK if j < now else MUTED)
            ax.text(0.02 + 0.33 * j, 0.95, name, fontsize=9, ha="left", va="center", color=colour,
                    weight="bold" if j == now else "normal")
            if j < 2:
                ax.text(0.26 + 0.33 * j, 0.95, "->", fontsize=9, ha="center", va="center", color=MUTED)
        for j in range(3):  # the squad
            ax.add_patch(Circle((0.05 + 0.075 * j, 0.1), 0.03, color=INK))
        if case is None:
            ax.text(0.02, 0.6, "A squad's memory is its weights: whatever it\nlearned in training, nothing newer.\n\n"
                    "So before answering, it can consult an archive:\nsearch it, read what comes back, then answer.",
                    fontsize=8.5, va="center", color=INK)
            return
        if stage == "ask":
            ax.add_patch(FancyBboxPatch((0.3, 0.08), 0.66, 0.22, boxstyle="round,pad=0.02", fc="white", ec=INK))
            ax.text(0.32, 0.19, textwrap.fill(case["question"], 42), fontsize=8.5, va="center", color=INK)
            ax.text(0.02, 0.6, "A question the squad was not trained on.\nIts weights alone would have to guess.",
                    fontsize=8.5, va="center", color=INK)
        elif stage == "search":
            words = case["known"][:6]
            ax.text(0.02, 0.83, "the question as a query: known words, TF-IDF weight", fontsize=8, color=INK)
            for r, (w, word) in enumerate(words):
                y = 0.72 - 0.085 * r
                ax.add_patch(Rectangle((0.3, y - 0.03), 0.6 * w / max(words[0][0], 1e-9), 0.06, fc=ACCENT, alpha=0.7))
                ax.text(0.28, y, word, ha="right", va="center", fontsize=7.5, color=INK)
                ax.text(0.31, y, f"{w:.2f}", va="center", fontsize=7, color=INK)
            if not words:
                ax.text(0.3, 0.6, "(no word the archive knows)", fontsize=8, color=RED)
            if case["unknown"]:
                ax.text(0.02, 0.2, textwrap.fill("not in the archive's vocabulary: " + ", ".join(case["unknown"]), 55),
                        fontsize=7, color=MUTED, va="center")
        elif stage == "knowledge":
            text = case["knowledge"] or "(nothing: every drawer scored 0)"
            ax.text(0.02, 0.83, f"knowledge: the best {k} drawers, read in full", fontsize=8, color=INK)
            ax.text(0.02, 0.52, textwrap.fill(text, 58), fontsize=7.5, va="center", color=INK)
        elif stage == "response":
            ax.add_patch(FancyBboxPatch((0.3, 0.1), 0.66, 0.56, boxstyle="round,pad=0.02", fc="white", ec=ACCENT))
            ax.text(0.32, 0.38, textwrap.fill(case["response"], 44), fontsize=7.5, va="center", color=INK)
            ax.text(0.02, 0.83, "response: the answer, grounded in what was read", fontsize=8, color=INK)
            ax.text(0.32, 0.02, f"(best search score: {max(case['scores']):.2f})", fontsize=7, color=MUTED)

    def draw(axes, step):
        left, right = axes
        stage, c = frames[step]
        case = None if c is None else cases[c]
        draw_archive(left, stage, case)
        draw_squad(right, stage, case)
        title = "the squad and its archive" if case is None else f"question {c + 1}: {stage}"
        right.set_title(f"{title}   (frame {step + 1}/{len(frames)})", fontsize=8.5, loc="left", color=INK)

    return draw, len(frames)
