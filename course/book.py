"""Build driver for the course book (Jupyter Book 1.x), fully offline.

    python -m course.book build [--all] [--no-vendor]   # `make book`
    python -m course.book serve [--port 8000]           # serve _build/html on 127.0.0.1

What `build` does:
1. Fetches the browser-side JavaScript the pages need from the npm registry, once
   (`npm pack` into .cache/npm, extracted; never committed): the ipywidgets HTML manager
   (embed-amd.js + its fonts), require.js, and MathJax 3. It lays out the few files the
   site serves in .cache/book_static (copied to _build/html/_static/vendor/) and
   .cache/book_extra (copied to the site root). The local Sphinx extension
   ``book/_ext/course_book.py`` points myst-nb and MathJax at them.
2. Re-executes a page when the course code it imports changed: the execution cache is
   keyed on the notebook's text only, so for each page we hash the reference_impl/ and
   course/ modules it imports (transitively) and drop that page's cached outputs when the
   hash moves. Other pages keep theirs.
3. Runs ``jupyter-book build . --builder html -W -n --keep-going`` and streams its log.
   Notebooks execute with ``execute_notebooks: cache`` (_build/.jupyter_cache): a rebuild
   with nothing changed re-executes nothing.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD_DIR = ROOT / "_build"
HTML_DIR = BUILD_DIR / "html"
EXECUTION_CACHE = BUILD_DIR / ".jupyter_cache"
NPM_CACHE = ROOT / ".cache" / "npm"
STATIC_DIR = ROOT / ".cache" / "book_static"  # -> _build/html/_static/  (html_static_path)
EXTRA_DIR = ROOT / ".cache" / "book_extra"  # -> _build/html/           (html_extra_path)
CODE_HASH_FILE = BUILD_DIR / ".code-hashes.json"  # page -> hash of the course code it imports

# name -> version; fetched with `npm pack name@version`.
NPM_PACKAGES = {
    "@jupyter-widgets/html-manager": "1.0.6",  # what myst-nb 1.x embeds widgets with
    "requirejs": "2.3.4",
    "mathjax": "3.2.2",
}
# Site paths (relative to _static/) that myst-nb and Sphinx's MathJax extension load.
REQUIRE_JS = "vendor/require.js"
EMBED_AMD_JS = "vendor/embed-amd.js"
MATHJAX_JS = "vendor/mathjax/tex-mml-chtml.js"
# Where the widget manager asks for its icon fonts: relative to the page, at
# "@jupyter-widgets/html-manager/dist/<hash>.woff2" (measured in Chromium). Pages live at the
# site root (index, search) and in book/, so the fonts are served under both.
WIDGET_FONT_DIRS = ("@jupyter-widgets/html-manager/dist", "book/@jupyter-widgets/html-manager/dist")
WIDGET_FONT_SUFFIXES = {".woff2", ".woff", ".ttf"}  # what browsers ask for; not .eot/.svg
# Imports of the course's own packages, whose changes must invalidate cached outputs.
OWN_PACKAGES = ("reference_impl", "course")
_FROM_IMPORT = re.compile(r"^\s*from\s+(\.*[\w.]*)\s+import\s+(\([^)]*\)|[^\n]*)", re.MULTILINE)
_IMPORT = re.compile(r"^\s*import\s+([\w.]+)", re.MULTILINE)


def _log(msg: str) -> None:
    print(f">>> {msg}", flush=True)


def _package_dir(name: str, version: str) -> Path:
    return NPM_CACHE / f"{name.replace('@', '').replace('/', '-')}-{version}"


def fetch_npm_package(name: str, version: str) -> Path:
    """`npm pack name@version` into .cache/npm and extract it; returns the `package/` folder.

    Skipped when already extracted. Needs `npm` and access to the npm registry once.
    """
    target = _package_dir(name, version)
    done = target / ".complete"
    if done.exists():
        return target / "package"
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed once to fetch the widget/MathJax JavaScript (apt-get install npm)")
    NPM_CACHE.mkdir(parents=True, exist_ok=True)
    _log(f"fetching {name}@{version} from the npm registry")
    out = subprocess.run(
        [npm, "pack", f"{name}@{version}", "--pack-destination", str(NPM_CACHE), "--silent"],
        check=True, capture_output=True, text=True, cwd=NPM_CACHE,
    ).stdout.strip().splitlines()
    tgz = NPM_CACHE / out[-1]
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    with tarfile.open(tgz) as tar:
        tar.extractall(target, filter="data")
    done.touch()
    return target / "package"


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists() or dst.stat().st_size != src.stat().st_size:
        shutil.copy2(src, dst)


def prepare_assets() -> None:
    """Fetch (once) and lay out every browser asset the offline site serves. Idempotent, fast."""
    widgets = fetch_npm_package("@jupyter-widgets/html-manager", NPM_PACKAGES["@jupyter-widgets/html-manager"])
    requirejs = fetch_npm_package("requirejs", NPM_PACKAGES["requirejs"])
    mathjax = fetch_npm_package("mathjax", NPM_PACKAGES["mathjax"])

    _copy(requirejs / "require.js", STATIC_DIR / REQUIRE_JS)
    _copy(widgets / "dist" / "embed-amd.js", STATIC_DIR / EMBED_AMD_JS)
    for font in (widgets / "dist").iterdir():
        if font.suffix in WIDGET_FONT_SUFFIXES:
            for folder in WIDGET_FONT_DIRS:
                _copy(font, EXTRA_DIR / folder / font.name)
    # MathJax: the combined component plus what it may load lazily (TeX extensions via
    # autoload, CHTML fonts, the menu and its accessibility parts). Not the other bundles.
    es5 = mathjax / "es5"
    mj_out = STATIC_DIR / Path(MATHJAX_JS).parent
    keep_top = {"tex-mml-chtml.js", "core.js", "loader.js", "startup.js", "latest.js"}
    for path in es5.rglob("*"):
        if not path.is_file():
            continue
        rel = path.relative_to(es5)
        top = rel.parts[0]
        if (len(rel.parts) == 1 and top in keep_top) or top in {"input", "ui", "a11y", "sre", "adaptors"} or (
            top == "output" and "svg" not in rel.parts
        ):
            _copy(path, mj_out / rel)


def _module_file(name: str) -> Path | None:
    path = ROOT.joinpath(*name.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def _package_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])


def code_dependencies(page: Path) -> list[Path]:
    """The reference_impl/ and course/ modules ``page`` imports, directly or through them."""
    seen: set[Path] = set()
    todo = [page]
    while todo:
        source = todo.pop()
        text = source.read_text(encoding="utf-8")
        names = list(_IMPORT.findall(text))
        for base, imported in _FROM_IMPORT.findall(text):
            if base.startswith("."):  # relative import inside a package module
                base = _package_of(source) + ("." + base.lstrip(".") if base.strip(".") else "")
            names.append(base)
            imported = re.sub(r"#[^\n]*", "", imported).strip("() \n")
            names += [f"{base}.{n.split()[0]}" for n in imported.replace("\n", ",").split(",") if n.strip()]
        for name in names:
            if name.split(".")[0] in OWN_PACKAGES and (f := _module_file(name)) and f not in seen:
                seen.add(f)
                todo.append(f)
    return sorted(seen)


def _pages() -> list[Path]:
    """Source files of the pages in _toc.yml."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            files.extend([node["file"]] if "file" in node else [])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    found = []
    for name in files:
        for suffix in ("", ".md", ".ipynb"):
            if (ROOT / f"{name}{suffix}").is_file():
                found.append(ROOT / f"{name}{suffix}")
                break
    return found


_DATA_FILE = re.compile(r"\bdata/([\w.-]+\.(?:json|csv|npz))")


def data_dependencies(page: Path) -> list[Path]:
    """The committed files under book/data/ that ``page`` names (e.g. the benchmark results)."""
    names = set(_DATA_FILE.findall(page.read_text(encoding="utf-8")))
    return sorted(f for n in names if (f := ROOT / "book" / "data" / n).is_file())


def _code_hash(page: Path) -> str:
    h = hashlib.sha256()
    for path in code_dependencies(page) + data_dependencies(page):
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _invalidate_stale_outputs() -> dict[str, str]:
    """Drop the cached outputs of pages whose imported course code or data changed since they ran.

    Returns the current hashes (saved after a successful build). A page whose outputs are
    dropped is also touched, so that Sphinx reads (and so re-executes) it again.
    """
    current = {str(p.relative_to(ROOT)): _code_hash(p) for p in _pages()}
    previous = json.loads(CODE_HASH_FILE.read_text()) if CODE_HASH_FILE.exists() else {}
    stale = [page for page, digest in current.items() if previous.get(page) != digest]
    if stale and EXECUTION_CACHE.exists():
        from jupyter_cache import get_cache

        cache = get_cache(EXECUTION_CACHE)
        for record in cache.list_cache_records():
            page = Path(record.uri)
            rel = str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)
            if rel in stale:
                _log(f"{rel}: the course code or data it uses changed, it will run again")
                cache.remove_cache(record.pk)
                os.utime(page)
    return current


def jupyter_book_command(all_files: bool = False) -> list[str]:
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(ROOT), "--builder", "html", "-W", "-n", "--keep-going"]
    if all_files:
        cmd.append("--all")
    return cmd


def build(all_files: bool = False, quiet: bool = False) -> Path:
    """Build the HTML book into _build/html; returns the path of _build/html/index.html.

    Raises ``subprocess.CalledProcessError`` if Jupyter Book fails (any warning is an
    error: -W). ``quiet`` sends the log to _build/book-build.log instead of stdout.
    """
    start = time.perf_counter()
    prepare_assets()
    BUILD_DIR.mkdir(exist_ok=True)
    hashes = _invalidate_stale_outputs()
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # quiet debugpy warning in kernels
    env["PYTHONUNBUFFERED"] = "1"
    cmd = jupyter_book_command(all_files)
    _log("building the book: " + " ".join(cmd[1:]))
    if quiet:
        log_path = BUILD_DIR / "book-build.log"
        with open(log_path, "w") as log:
            result = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            tail = log_path.read_text()[-6000:]
            raise subprocess.CalledProcessError(result.returncode, cmd, output=tail)
    else:
        subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    CODE_HASH_FILE.write_text(json.dumps(hashes, indent=1))
    index = HTML_DIR / "index.html"
    _log(f"book built in {time.perf_counter() - start:.0f} s: open {index}")
    return index


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the stdlib's name)
        pass


def make_server(port: int = 0, directory: Path = HTML_DIR, quiet: bool = True) -> http.server.ThreadingHTTPServer:
    """An HTTP server for the built site on 127.0.0.1 (port 0 = a free port). Call serve_forever()."""
    handler = functools.partial(_QuietHandler if quiet else http.server.SimpleHTTPRequestHandler, directory=str(directory))
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)


def serve(port: int = 8000) -> None:
    if not (HTML_DIR / "index.html").exists():
        raise SystemExit("no built book: run `make book` first")
    server = make_server(port, quiet=False)
    print(f"serving {HTML_DIR} at http://127.0.0.1:{server.server_address[1]}/  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.book", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the HTML book into _build/html")
    b.add_argument("--all", action="store_true", help="re-read every page (executed outputs stay cached)")
    s = sub.add_parser("serve", help="serve _build/html on 127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    if args.command == "build":
        try:
            build(all_files=args.all)
        except subprocess.CalledProcessError as err:
            print(f"book build failed (exit {err.returncode}); see the log above", file=sys.stderr)
            return err.returncode or 1
    else:
        serve(args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
