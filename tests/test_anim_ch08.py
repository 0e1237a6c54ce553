"""Chapter 8's animation (course.chapters.ch08), drawn and driven headless."""

import re

import matplotlib

matplotlib.use("agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from course import anim  # noqa: E402
from course.chapters import ch08  # noqa: E402
from reference_impl.challenges import CASE_FILES, DocumentStore  # noqa: E402

FIGSIZE, DPI = (6.0, 2.4), 40
DOCS = [
    "The vase was broken by the cat.",
    "The butler polished the silver spoons.",
    "Rain fell all night on the garden.",
]


def pixels(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def texts(fig):
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts)


def test_one_overview_frame_then_four_per_question():
    store = DocumentStore(DOCS)
    assert ch08.archive_story(store, ["who broke the vase?"], k=1)[1] == 1 + 4
    assert ch08.archive_story(store, ["vase?", "spoons?", "rain?"], k=2)[1] == 1 + 12


def test_every_frame_draws_and_differs_from_the_previous_one():
    import matplotlib.pyplot as plt

    draw, n_steps = ch08.archive_story(DocumentStore(CASE_FILES), ["Who owns size 44 boots?", "arsenic"], k=2)
    before = len(plt.get_fignums())
    frames = [pixels(anim.render(draw, s, n_panels=2, figsize=FIGSIZE, dpi=DPI)) for s in range(n_steps)]
    for a, b in zip(frames, frames[1:]):
        assert not np.array_equal(a, b)
    assert len(plt.get_fignums()) == before


def test_frames_show_what_the_store_computes():
    store = DocumentStore(DOCS)
    draw, n_steps = ch08.archive_story(store, ["Who broke the vase?"], k=1)
    search, knowledge, response = (anim.render(draw, s, n_panels=2, figsize=FIGSIZE, dpi=DPI) for s in (2, 3, 4))
    assert "vase" in texts(search) and "who" in texts(search)  # a known word, and an unknown one listed
    scores = (store.keys @ store.embed(["Who broke the vase?"])[0]).tolist()
    assert f"{max(scores):.2f}" in texts(search)  # the drawers show the real cosine scores
    assert DOCS[0] in texts(knowledge).replace("\n", " ")  # the best drawer is read in full
    assert DOCS[1] not in texts(knowledge).replace("\n", " ")  # k = 1: only one
    assert "According to the case files" in texts(response)


def test_a_question_with_no_known_word_retrieves_nothing():
    draw, _ = ch08.archive_story(DocumentStore(DOCS), ["xyzzy plugh"], k=2)
    knowledge = anim.render(draw, 3, n_panels=2, figsize=FIGSIZE, dpi=DPI)
    response = anim.render(draw, 4, n_panels=2, figsize=FIGSIZE, dpi=DPI)
    assert "nothing" in texts(knowledge)
    assert "say nothing" in texts(response)


def test_rejects_bad_arguments():
    store = DocumentStore(DOCS)
    with pytest.raises(ValueError):
        ch08.archive_story(store, [], k=1)
    with pytest.raises(ValueError):
        ch08.archive_story(store, ["vase"], k=0)


def test_live_widget_and_player():
    draw, n_steps = ch08.archive_story(DocumentStore(DOCS), ["vase", "spoons"], k=1)
    w = anim.live(draw, n_steps, n_panels=2, figsize=FIGSIZE, dpi=DPI)
    slider = w.kwargs_widgets[0]
    assert (slider.min, slider.max) == (0, n_steps - 1)
    titles = []
    for step in range(n_steps):
        slider.value = step
        titles.append(w.result.axes[1].get_title(loc="left"))
    assert len(set(titles)) == n_steps
    assert titles[2].startswith("question 1: search") and titles[-1].startswith("question 2: response")
    w.play.value = 3
    assert slider.value == 3 and w.result.axes[1].get_title(loc="left") == titles[3]
    html = anim.jshtml(draw, n_steps, n_panels=2, figsize=(5, 2), dpi=30)
    assert len(re.findall(r"data:image/png;base64,", html)) == n_steps and "<link" not in html
