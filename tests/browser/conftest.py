"""Fixtures for the browser tests: the built book, served on 127.0.0.1, and headless Chromium.

Chromium is the Debian package at /usr/bin/chromium (`make chromium`), driven through the
playwright package; `playwright install` is never needed. Every request the pages make is
recorded; any request to a host other than the local server is blocked and recorded.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@dataclass
class PageLog:
    """What went wrong while a page was open."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # request failures and HTTP >= 400
    external: list[str] = field(default_factory=list)  # requests to any other host (blocked)

    def problems(self) -> list[str]:
        return (
            [f"console error: {m}" for m in self.console_errors]
            + [f"page error: {m}" for m in self.page_errors]
            + [f"failed request: {m}" for m in self.failed]
            + [f"external request: {m}" for m in self.external]
        )

    def clear(self) -> None:
        for items in (self.console_errors, self.page_errors, self.failed, self.external):
            items.clear()


@pytest.fixture(scope="session")
def built_book() -> Path:
    """Build the book through course.book (cached execution: quick when nothing changed)."""
    if not CHROMIUM.exists():
        pytest.skip("needs Chromium at /usr/bin/chromium (make chromium)")
    from course import book

    book.build(quiet=True)  # raises CalledProcessError with the log's tail on failure
    return book.HTML_DIR


@pytest.fixture(scope="session")
def site(built_book: Path) -> str:
    """Base URL of the built site, served by a thread on a free port of 127.0.0.1."""
    from course.book import make_server

    server = make_server(0, directory=built_book)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="session")
def browser(site: str):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, site: str):
    """A fresh browser context and page; ``page.log`` collects errors and stray requests."""
    host = urlsplit(site).netloc
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    log = PageLog()

    def route(r):
        url = r.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about") or parts.netloc == host:
            r.continue_()
        else:
            log.external.append(url)
            r.abort()

    context.route("**/*", route)
    pg = context.new_page()
    pg.on("console", lambda m: log.console_errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: log.page_errors.append(str(e)))
    pg.on("requestfailed", lambda r: log.failed.append(f"{r.url} ({r.failure})"))
    pg.on("response", lambda r: log.failed.append(f"{r.url} (HTTP {r.status})") if r.status >= 400 else None)
    pg.log = log
    yield pg
    context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
