"""The ``course`` command: the instructor pipeline around nbgrader.

    course release [ASSIGNMENT...]          nbgrader generate_assignment --force (all by default)
    course grade [ASSIGNMENT...] [options]  sandboxed, parallel, authoritative autograding
    course feedback [ASSIGNMENT...]         per-student HTML feedback, hidden tests removed
    course report [ASSIGNMENT...] [--csv F] the gradebook summary
    course check NOTEBOOK                   judge one notebook as `course grade` would

The course directory is the current directory's repository root by default (--course-dir).
nbgrader's own commands (autograde, formgrade, export, validate, ...) keep working there.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _course_root(arg: str | None) -> Path:
    if arg:
        return Path(arg).resolve()
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "nbgrader_config.py").exists():
            return d
    return here


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="course", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--course-dir", help="the course directory (default: the enclosing folder with nbgrader_config.py)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("release", help="generate the student version of assignments (nbgrader generate_assignment)")
    r.add_argument("assignments", nargs="*")

    g = sub.add_parser("grade", help="autograde submitted/<student>/<assignment>/ in sandboxes")
    g.add_argument("assignments", nargs="*")
    g.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core; 0: in this process)")
    g.add_argument("--scheduler", default=None, help="grade on a Dask cluster, e.g. tcp://10.0.0.1:8786")
    g.add_argument("--timeout-cell", type=float, default=None, help="seconds per cell (default: ExecutePreprocessor.timeout or 120)")
    g.add_argument("--timeout-notebook", type=float, default=600.0, help="seconds per submission, retries included")
    g.add_argument("--memory-mb", type=int, default=2048, help="memory a submission may use on top of the warm interpreter")
    g.add_argument("--student", action="append", help="grade only this student (repeatable)")
    g.add_argument("--force", action="store_true", help="regrade submissions that were graded already")
    g.add_argument("--csv", help="also write the summary to this CSV file")
    g.add_argument("--no-progress", action="store_true")

    f = sub.add_parser("feedback", help="HTML feedback per student (nbgrader generate_feedback, no hidden tests)")
    f.add_argument("assignments", nargs="*")
    f.add_argument("--student")

    rep = sub.add_parser("report", help="the gradebook summary")
    rep.add_argument("assignments", nargs="*")
    rep.add_argument("--csv", help="write the summary to this CSV file")

    c = sub.add_parser("check", help="check a notebook before submitting it (same judge as grade)")
    c.add_argument("notebook")
    c.add_argument("--assignment", help="assignment id (default: from the notebook's name or folder)")
    c.add_argument("--timeout-cell", type=float, default=120.0)
    c.add_argument("--timeout-notebook", type=float, default=600.0)
    c.add_argument("--memory-mb", type=int, default=2048)
    return p


def _cell_timeout(course, given: float | None) -> float:
    if given is not None:
        return given
    for section in ("ExecutePreprocessor", "Execute"):
        if section in course.config and "timeout" in course.config[section]:
            value = course.config[section]["timeout"]
            if value:
                return float(value)
    return 120.0


def main(argv: list[str] | None = None) -> int:
    # an optional jsonschema plug-in that costs ~2 s of CPU at import and checks nothing notebooks use
    sys.modules.setdefault("rfc3987_syntax", None)
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (FileNotFoundError, RuntimeError) as exc:
        if args.verbose:
            raise
        print(f"course {args.cmd}: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="[course] %(message)s")
    from course.grading.coursedir import Course
    from course.grading.sandbox import Limits

    course = Course.at(_course_root(args.course_dir))

    if args.cmd == "release":
        from course.grading.pipeline import release

        for a in release(course, args.assignments or None):
            print(f"released {a}")
        return 0

    if args.cmd == "grade":
        from course.grading.pipeline import GradeOptions, grade
        from course.grading.report import table, write_csv

        limits = Limits(
            timeout_cell=_cell_timeout(course, args.timeout_cell),
            timeout_notebook=args.timeout_notebook,
            memory_mb=args.memory_mb,
        )
        opts = GradeOptions(
            workers=args.workers, scheduler=args.scheduler, limits=limits, students=args.student,
            force=args.force, progress=not args.no_progress,
        )
        rows = grade(course, args.assignments or None, opts)
        print(table(rows) if rows else "nothing to grade (no submitted/<student>/<assignment>/ folders)")
        if args.csv:
            write_csv(rows, args.csv)
        return 0

    if args.cmd == "feedback":
        from course.grading.pipeline import feedback

        feedback(course, args.assignments or None, args.student)
        return 0

    if args.cmd == "report":
        from course.grading.report import gradebook_rows, table, write_csv

        rows = gradebook_rows(course, args.assignments or None)
        print(table(rows) if rows else "the gradebook has no submissions yet")
        if args.csv:
            write_csv(rows, args.csv)
        return 0

    if args.cmd == "check":
        from course.grading.pipeline import check

        limits = Limits(timeout_cell=args.timeout_cell, timeout_notebook=args.timeout_notebook, memory_mb=args.memory_mb)
        res = check(args.notebook, course, args.assignment, limits)
        print(format_check(res))
        return 0 if res.state == "graded" and all(i["passed"] for i in res.items) else 1

    return 2


def format_check(res) -> str:
    """What ``course check`` prints: one line per graded item, with grade's exact message."""
    lines = [f"{res.assignment}: {res.state}" + (f" ({res.reason})" if res.reason else "")]
    lines += [f"  note: {w}" for w in res.warnings]
    for item in res.items:
        lines.append(f"  {'PASS' if item['passed'] else 'FAIL'}  {item['grade_id']}: {item['message']}")
    passed = sum(i["passed"] for i in res.items)
    lines.append(f"{passed}/{len(res.items)} automatically graded items pass")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
