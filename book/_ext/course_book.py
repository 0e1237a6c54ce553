"""Local Sphinx extension for the course book: keep the built site offline and tidy.

- ``config-inited``: make sure the offline JavaScript (widgets, require.js, MathJax) is
  fetched and laid out (``course.book.prepare_assets``), so even a bare
  ``jupyter-book build .`` finds the static paths _config.yml names.
- ``html-page-context``: drop duplicated ``<script>``/``<link>`` entries. sphinx-thebe
  registers its inline configuration script twice, which is a page error on every page
  ("Identifier 'THEBE_JS_URL' has already been declared").
- ``build-finished``: audit every HTML page for resources (scripts, stylesheets, images,
  fonts, iframes) that would be fetched from outside the site, and warn (``-W`` turns the
  warning into a failed build). Hyperlinks (``<a href>``) are fine: they are not fetched.
"""

from __future__ import annotations

import re
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

# Attributes whose URL the browser fetches by itself, on tags that fetch.
_RESOURCE = re.compile(
    r"<(?:script|img|iframe|source|video|audio|embed)\b[^>]*?\bsrc\s*=\s*[\"']([^\"']+)[\"']"
    r"|<link\b(?=[^>]*\brel\s*=\s*[\"'](?:stylesheet|icon|shortcut icon|preload|modulepreload|manifest)[\"'])"
    r"[^>]*?\bhref\s*=\s*[\"']([^\"']+)[\"']"
    r"|url\(\s*[\"']?((?:https?:)?//[^)\"']+)",
    re.IGNORECASE,
)


def _prepare_assets(app: Sphinx, config) -> None:
    from course.book import prepare_assets

    prepare_assets()
    # pydata-sphinx-theme reports "Got invalid theme mode" (a console error) on a fresh
    # browser profile unless a default mode is set. Light suits the white-background figures.
    config.html_context.setdefault("default_mode", "light")  # a template variable, not a theme option


def _dedupe(items: list) -> list:
    seen, out = set(), []
    for item in items:
        # sphinx-thebe's copy is registered once with filename None and once with '': same script.
        key = (getattr(item, "filename", str(item)) or "", repr(sorted(getattr(item, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _dedupe_assets(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    for key in ("script_files", "css_files"):
        if key in context:
            context[key] = _dedupe(list(context[key]))


def external_resources(html: str) -> list[str]:
    """The URLs in ``html`` a browser would fetch from another host (http(s):// or //host)."""
    found = []
    for match in _RESOURCE.finditer(html):
        url = next(g for g in match.groups() if g)
        if re.match(r"^(?:https?:)?//", url.strip(), re.IGNORECASE):
            found.append(url)
    return found


def _audit(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    for page in sorted(outdir.rglob("*.html")):
        urls = external_resources(page.read_text(encoding="utf-8", errors="replace"))
        for url in sorted(set(urls)):
            logger.warning(
                "%s loads %s from outside the site (the book must work offline)",
                page.relative_to(outdir), url, type="course_book", subtype="external",
            )


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _prepare_assets)
    app.connect("html-page-context", _dedupe_assets, priority=900)  # after everyone adds theirs
    app.connect("build-finished", _audit)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
