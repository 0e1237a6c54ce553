"""The book's execution cache is dropped for a page when the code or data it uses changes."""

from course.book import ROOT, code_dependencies, data_dependencies


def test_performance_page_depends_on_the_recorded_results():
    page = ROOT / "book" / "performance.md"
    assert data_dependencies(page) == [ROOT / "book" / "data" / "bench_results.json"]


def test_chapter_pages_depend_on_the_reference_modules_they_import():
    deps = code_dependencies(ROOT / "book" / "02_self_attention.md")
    assert ROOT / "reference_impl" / "attention.py" in deps
    assert data_dependencies(ROOT / "book" / "02_self_attention.md") == []
