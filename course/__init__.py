"""Course tooling: grading checks, the instructor pipeline, book helpers."""
