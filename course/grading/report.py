"""Summary tables and CSV exports of grading results and of the gradebook."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable

from nbgrader.api import Gradebook, MissingEntry

from .coursedir import Course
from .gradebook import Row, load_log

COLUMNS = ("student", "assignment", "score", "max_score", "state", "needs_manual", "detail")


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:g}"


def table(rows: Iterable[Row], *, width: int = 70) -> str:
    """A plain-text table: student, assignment, score/max, state (and a short detail)."""
    rows = list(rows)
    head = ("student", "assignment", "score", "state")
    body = []
    for r in rows:
        state = r.state + (" (needs manual grading)" if r.needs_manual and r.state == "graded" else "")
        detail = r.detail if len(r.detail) <= width else r.detail[: width - 3] + "..."
        if detail:
            state = f"{state}: {detail}"
        body.append((r.student, r.assignment, f"{_fmt(r.score)}/{_fmt(r.max_score)}", state))
    widths = [max([len(h)] + [len(b[i]) for b in body]) for i, h in enumerate(head[:-1])]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head[:-1], widths)) + "  " + head[-1]]
    lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 5)
    for b in body:
        lines.append("  ".join(v.ljust(w) for v, w in zip(b[:-1], widths)) + "  " + b[-1])
    return "\n".join(lines)


def write_csv(rows: Iterable[Row], path: str | Path) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([r.student, r.assignment, "" if r.score is None else r.score,
                        "" if r.max_score is None else r.max_score, r.state, int(r.needs_manual), r.detail])


def gradebook_rows(course: Course, assignments: list[str] | None = None) -> list[Row]:
    """Every submission in the gradebook (of ``assignments``), with the grader's state if logged."""
    rows = []
    with Gradebook(course.db_url, course.course_id) as gb:
        names = assignments or [a.name for a in gb.assignments]
        for a in names:
            try:
                assignment = gb.find_assignment(a)
            except MissingEntry:
                continue
            for sub in sorted(assignment.submissions, key=lambda s: s.student.id):
                log = load_log(course, sub.student.id, a)
                state = log.state if log is not None else "graded by nbgrader"
                detail = (log.reason or "; ".join(log.warnings)) if log is not None else ""
                rows.append(Row(sub.student.id, a, sub.score, sub.max_score, state, detail, bool(sub.needs_manual_grade)))
    return rows
