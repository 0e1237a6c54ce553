"""The built book in headless Chromium: offline, complete, and its interactive parts work.

Builds the book with ``course.book.build`` (execution cached, so quick when fresh), serves
_build/html on 127.0.0.1 and opens every page. Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import nbformat
import pytest
import yaml

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("book")]

ROOT = Path(__file__).resolve().parents[2]
CHAPTER_2 = "book/02_self_attention.html"


def toc_pages() -> list[str]:
    """Every page listed in _toc.yml, as its path in the built site (book/intro.html ...)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                pages.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc.get("parts", []) + toc.get("chapters", []))
    return [str(Path(p).with_suffix(".html")) for p in pages]


PAGES = toc_pages()
# Every HTML page a reader can reach: the toc's pages plus the generated ones.
ALL_PAGES = ["index.html", "search.html", "genindex.html"] + PAGES


def open_page(page, site: str, path: str):
    response = page.goto(urljoin(site, path), wait_until="load")
    assert response is not None and response.ok, f"{path}: HTTP {response and response.status}"
    page.wait_for_load_state("networkidle")
    # MathJax typesets after load; wait for it where a page has math.
    page.wait_for_function(
        "() => !window.MathJax || !document.querySelector('.math') || !!document.querySelector('mjx-container')",
        timeout=15_000,
    )
    return response


def test_toc_pages_were_built(built_book: Path):
    missing = [p for p in PAGES if not (built_book / p).exists()]
    assert not missing, f"pages in _toc.yml without HTML: {missing}"
    assert (built_book / "index.html").exists()


@pytest.mark.parametrize("path", ALL_PAGES)
def test_page_is_offline_and_clean(page, site: str, path: str, screenshots: Path):
    open_page(page, site, path)
    page.screenshot(path=str(screenshots / (path.replace("/", "__").replace(".html", ".png"))))
    assert not page.log.problems(), f"{path}:\n" + "\n".join(page.log.problems())

    images = page.evaluate(
        "() => Array.from(document.images).map(i => ({src: i.currentSrc.slice(0, 80), ok: i.complete && i.naturalWidth > 0}))"
    )
    broken = [i["src"] for i in images if not i["ok"]]
    assert not broken, f"{path}: images not loaded: {broken}"

    # Embedded widgets (static state) must render with the offline widget manager.
    n_views = page.locator("script[type='application/vnd.jupyter.widget-view+json']").count()
    if n_views:
        page.wait_for_function(
            f"() => document.querySelectorAll('.jupyter-widgets').length >= {n_views}", timeout=15_000
        )
    # A static page must never show controls that need a kernel.
    dead = page.locator(".widget-slider, .widget-play, .jupyter-widgets button").count()
    assert dead == 0, f"{path}: {dead} widget controls that cannot work without a kernel"
    # Rendered math has no errors.
    assert page.locator("mjx-merror").count() == 0, f"{path}: MathJax error"
    if path in PAGES:
        assert page.locator(".dropdown-download-buttons").count() == 1, f"{path}: no download button"


def test_chapter_pages_have_launch_buttons(page, site: str):
    open_page(page, site, CHAPTER_2)
    launch = page.locator(".dropdown-launch-buttons a").evaluate_all("els => els.map(e => e.href)")
    for provider in ("mybinder.org", "colab.research.google.com", "/hub/user-redirect/git-pull"):
        assert any(provider in href for href in launch), f"no {provider} launch button: {launch}"


def test_sidebar_links_reach_every_page(page, site: str):
    open_page(page, site, "index.html")  # a redirect to the root page
    hrefs = page.locator("nav.bd-docs-nav a.reference.internal").evaluate_all("els => els.map(e => e.href)")
    reached = set()
    for href in hrefs:
        response = page.request.get(href)
        assert response.ok, f"sidebar link {href}: HTTP {response.status}"
        reached.add(urlsplit(href).path.lstrip("/"))
    root = PAGES[0]
    assert set(PAGES) - {root} <= reached, f"sidebar misses {sorted(set(PAGES) - {root} - reached)}"
    # and the logo / title leads back to the root page
    assert page.url.endswith(root)


def test_search_finds_attention(page, site: str, screenshots: Path):
    open_page(page, site, "search.html?q=attention")
    results = page.locator("#search-results ul.search li")
    results.first.wait_for(timeout=15_000)
    links = results.locator("a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    page.screenshot(path=str(screenshots / "search_attention.png"))
    assert any("02_self_attention" in href for href in links), links
    assert not page.log.problems(), "\n".join(page.log.problems())


def test_chapter2_animation_plays_and_scrubs(page, site: str, screenshots: Path):
    open_page(page, site, CHAPTER_2)
    player = page.locator("div.animation").first
    player.scroll_into_view_if_needed()
    img = page.locator("img[id^=_anim_img]").first
    slider = page.locator("input[id^=_anim_slider]").first
    n_frames = int(slider.get_attribute("max") or slider.evaluate("s => s.max")) + 1
    assert n_frames >= 5

    page.locator("button[title=Pause]").first.click()
    first = img.get_attribute("src")
    page.locator("button[title=Play]").first.click()
    page.wait_for_function(
        "([el, src]) => el.getAttribute('src') !== src", arg=[img.element_handle(), first], timeout=10_000
    )
    page.locator("button[title=Pause]").first.click()
    player.screenshot(path=str(screenshots / "chapter2_animation_playing.png"))

    def scrub(frame: int) -> str:
        slider.evaluate("(s, f) => { s.value = f; s.dispatchEvent(new Event('input')); }", frame)
        return img.get_attribute("src")

    last = scrub(n_frames - 1)
    assert int(slider.input_value()) == n_frames - 1
    assert last != first
    assert scrub(0) == first  # scrubbing back shows exactly the first frame again
    scrub(n_frames // 2)
    player.screenshot(path=str(screenshots / "chapter2_animation_scrubbed.png"))
    assert not page.log.problems(), "\n".join(page.log.problems())


def test_chapter2_figures_and_widgets_render(page, site: str, screenshots: Path):
    open_page(page, site, CHAPTER_2)
    figures = page.locator(".cell_output img[src$='.png']")
    assert figures.count() >= 5, "chapter 2 should show its figures (heatmaps, scaling, mask)"
    assert page.locator("mjx-container").count() > 10  # equations typeset offline
    # The training progress bar is an embedded (static) widget: it renders without a kernel.
    page.locator(".jupyter-widgets.widget-hprogress, .jupyter-widgets .widget-hprogress").first.wait_for(timeout=15_000)
    figures.nth(figures.count() - 2).scroll_into_view_if_needed()
    page.screenshot(path=str(screenshots / "chapter2_heatmaps.png"))


def test_chapter_exercise_links_download_notebooks(page, site: str):
    chapters = [p for p in PAGES if re.match(r"book/\d\d_", p)]
    assert CHAPTER_2 in chapters
    for path in chapters:
        open_page(page, site, path)
        links = page.locator("a.download[href$='.ipynb']").evaluate_all("els => els.map(e => e.href)")
        assert links, f"{path}: no exercise notebook link"
        for href in links:
            response = page.request.get(href)
            assert response.ok, f"{href}: HTTP {response.status}"
            nb = nbformat.reads(response.text(), as_version=nbformat.NO_CONVERT)
            assert nb.nbformat == 4
            nbformat.validate(nb)
            assert json.loads(response.text())["cells"], f"{href}: an empty notebook"
