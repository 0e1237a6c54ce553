"""Animate a chapter's analogy: one drawing function, two ways to play it.

A chapter writes ``draw(ax, step)`` (or ``draw(axes, step)`` for several panels) that
draws frame ``step`` (0 .. n_steps-1) onto freshly cleared axes, and then gets

- ``player(draw, n_steps)``: a self-contained HTML player (matplotlib's
  ``FuncAnimation.to_jshtml``: play, pause, step, scrub). Every frame is an inline PNG and
  the controls are plain JavaScript, so it plays in the static book with no kernel and no
  network (the Font Awesome stylesheet matplotlib links to is stripped; the buttons keep
  their text labels). This is what the book shows.
- ``live(draw, n_steps)``: an ipywidgets ``interactive`` with a ``Play`` button linked to
  an ``IntSlider`` over ``step``, redrawn by the kernel. This is for Jupyter; in the book
  its cell carries the ``remove-output`` tag, so a reader of the static HTML never sees
  controls that cannot work there.

Keep frames light: the defaults (5 x 2.8 inches at 80 dpi, a few dozen steps) give pages
of a few hundred kB.
"""

from __future__ import annotations

import re
from typing import Callable

import matplotlib.pyplot as plt
from matplotlib.animation import FuncAnimation

DrawFn = Callable[..., object]

DEFAULT_FIGSIZE = (5.0, 2.8)
DEFAULT_DPI = 80

# matplotlib's to_jshtml() starts with <link rel="stylesheet" href="https://.../font-awesome...">
_EXTERNAL_LINK = re.compile(r"<link\b[^>]*\bhref=[\"'](?:https?:)?//[^\"']*[\"'][^>]*>\s*", re.IGNORECASE)
_FA_ICON = re.compile(r"<i class=[\"']fa ([^\"']*)[\"']></i>")


def _figure(n_panels: int, figsize, dpi, subplot_kw):
    # Constrained layout is recomputed at every draw, so each frame's labels fit.
    fig, axes = plt.subplots(
        1, n_panels, figsize=figsize, dpi=dpi, subplot_kw=subplot_kw, squeeze=False, layout="constrained"
    )
    axes = axes[0]
    return fig, (axes[0] if n_panels == 1 else list(axes))


def _clear(axes) -> None:
    for ax in axes if isinstance(axes, list) else [axes]:
        ax.clear()


def render(draw: DrawFn, step: int, n_panels: int = 1, figsize=DEFAULT_FIGSIZE, dpi=DEFAULT_DPI, subplot_kw=None):
    """One frame as a new Figure (closed from pyplot, so nothing accumulates)."""
    fig, axes = _figure(n_panels, figsize, dpi, subplot_kw)
    draw(axes, step)
    plt.close(fig)
    return fig


def animation(
    draw: DrawFn,
    n_steps: int,
    n_panels: int = 1,
    interval: int = 1000,
    figsize=DEFAULT_FIGSIZE,
    dpi=DEFAULT_DPI,
    subplot_kw=None,
) -> FuncAnimation:
    """A ``FuncAnimation`` calling ``draw(axes, step)`` on cleared axes for step = 0..n_steps-1."""
    if n_steps < 1:
        raise ValueError("n_steps must be at least 1")
    fig, axes = _figure(n_panels, figsize, dpi, subplot_kw)

    def update(step):
        _clear(axes)
        draw(axes, step)
        return []

    update(0)
    anim = FuncAnimation(fig, update, frames=n_steps, interval=interval, blit=False, repeat=True)
    plt.close(fig)  # the player holds the frames; do not also show the bare figure
    return anim


def offline_html(html: str) -> str:
    """Strip ``to_jshtml`` output of anything fetched from elsewhere (the Font Awesome CSS).

    Without that stylesheet the ``<i class="fa ...">`` icons would be empty boxes, so each
    button gets a short text label (its title is kept for tooltips and tests).
    """
    html = _EXTERNAL_LINK.sub("", html)
    labels = {
        "fa-minus": "&minus;", "fa-plus": "+", "fa-fast-backward": "|&#9664;&#9664;",
        "fa-step-backward": "|&#9664;", "fa-play fa-flip-horizontal": "&#9664;", "fa-pause": "&#10074;&#10074;",
        "fa-play": "&#9654;", "fa-step-forward": "&#9654;|", "fa-fast-forward": "&#9654;&#9654;|",
    }

    def label(match: re.Match) -> str:
        return labels.get(match.group(1).strip(), "")

    return _FA_ICON.sub(label, html)


def jshtml(draw: DrawFn, n_steps: int, default_mode: str = "loop", **kwargs) -> str:
    """The offline HTML player for ``draw`` (a string; see ``player`` to display it)."""
    anim = animation(draw, n_steps, **kwargs)
    return offline_html(anim.to_jshtml(default_mode=default_mode))


def player(draw: DrawFn, n_steps: int, **kwargs):
    """Display-ready offline player (``IPython.display.HTML``) for the book and Jupyter."""
    from IPython.display import HTML

    return HTML(jshtml(draw, n_steps, **kwargs))


def live(
    draw: DrawFn,
    n_steps: int,
    n_panels: int = 1,
    interval: int = 1000,
    figsize=DEFAULT_FIGSIZE,
    dpi=DEFAULT_DPI,
    subplot_kw=None,
    description: str = "step",
):
    """A live ipywidgets version: ``interactive`` over ``step`` with a Play button.

    Returns the ``interactive`` widget; ``w.kwargs_widgets[0]`` is the IntSlider,
    ``w.play`` the Play button (linked kernel-side, so setting either value redraws), and
    ``w.result`` the Figure of the current step. Needs a kernel: run it in Jupyter.
    """
    import ipywidgets as widgets
    from IPython import get_ipython
    from IPython.display import display

    slider = widgets.IntSlider(value=0, min=0, max=n_steps - 1, description=description, continuous_update=True)
    play = widgets.Play(value=0, min=0, max=n_steps - 1, interval=interval, description="play")
    widgets.link((play, "value"), (slider, "value"))

    def show(step):
        fig = render(draw, step, n_panels=n_panels, figsize=figsize, dpi=dpi, subplot_kw=subplot_kw)
        if get_ipython() is not None:  # in a kernel: show it in the widget's output area
            display(fig)
        return fig

    w = widgets.interactive(show, step=slider)
    w.play = play
    w.children = (widgets.HBox([play, slider]),) + tuple(c for c in w.children if c is not slider)
    return w
