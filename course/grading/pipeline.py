"""The instructor pipeline behind ``course``: release, grade, feedback, report, check."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .coursedir import Course, log
from .gradebook import GradebookWriter, Row
from .notebook import build_spec
from .runner import GradeJob, GradeResult, LocalExecutor, ungradable_result, make_executor
from .sandbox import WARM_MODULES, Limits

# Extra modules that register checks (besides course.checks), e.g. an instructor's own:
# COURSE_GRADING_CHECKS="mychecks,otherchecks" (importable through PYTHONPATH).
CHECKS_ENV = "COURSE_GRADING_CHECKS"

# generate_feedback as nbgrader runs it, plus ClearHiddenTests: nbgrader 0.9.6 leaves the hidden
# tests that autograde restored into the test cells in the feedback HTML otherwise.
FEEDBACK_ARGS = (
    "--GenerateFeedback.preprocessors=['nbgrader.preprocessors.GetGrades',"
    "'nbgrader.preprocessors.ClearHiddenTests','nbconvert.preprocessors.CSSHTMLHeaderPreprocessor']",
    "--ClearHiddenTests.enforce_metadata=False",
)


def default_modules() -> tuple[str, ...]:
    extra = tuple(m.strip() for m in os.environ.get(CHECKS_ENV, "").split(",") if m.strip())
    return tuple(dict.fromkeys(WARM_MODULES + extra))


@dataclass
class GradeOptions:
    workers: int | None = None  # None: one per core; 0: in this process
    scheduler: Any = None  # a Dask scheduler address (or Client)
    limits: Limits = field(default_factory=Limits)
    students: list[str] | None = None
    force: bool = False
    progress: bool = True
    modules: tuple[str, ...] = field(default_factory=default_modules)
    paths: tuple[str, ...] = ()


def release(course: Course, assignments: list[str] | None = None) -> list[str]:
    names = assignments or course.assignments()
    for a in names:
        course.generate_assignment(a)
    return names


def _extra_files(course: Course, assignment: str) -> dict[str, bytes]:
    """Non-notebook files of the source folder (nbgrader copies them next to the notebook)."""
    folder = course.path("source", ".", assignment)
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if p.is_file() and p.suffix != ".ipynb" and not any(part.startswith(".") for part in rel.parts):
            out[str(rel)] = p.read_bytes()
    return out


def collect_jobs(course: Course, writer: GradebookWriter, assignments: list[str], opts: GradeOptions):
    jobs, skipped = [], []
    for a in assignments:
        spec = writer.spec(a)
        extra = _extra_files(course, a)
        for s in course.students(a):
            if opts.students and s not in opts.students:
                continue
            if not opts.force and writer.already_graded(s, a, spec.notebook):
                row = writer.row(s, a)
                row.state, row.detail = "skipped", "already graded (use --force to regrade)"
                skipped.append(row)
                continue
            folder = course.path("submitted", s, a)
            files = {p.name: p.read_bytes() for p in sorted(folder.glob("*.ipynb")) if p.is_file()}
            jobs.append(GradeJob(s, a, spec, files, opts.limits, extra, opts.modules, opts.paths))
    return jobs, skipped


def grade(course: Course, assignments: list[str] | None = None, opts: GradeOptions | None = None) -> list[Row]:
    """Autograde every submission of ``assignments``; return the summary rows."""
    from tqdm.auto import tqdm

    opts = opts or GradeOptions()
    writer = GradebookWriter(course)
    jobs, rows = collect_jobs(course, writer, assignments or course.assignments(), opts)
    if not jobs:
        return rows
    executor = make_executor(opts.workers, opts.scheduler, opts.modules, opts.paths)
    bar = tqdm(total=len(jobs), desc="grading", unit="submission", disable=not opts.progress)
    try:
        for job, res in executor.run(jobs):
            if isinstance(res, BaseException):
                log.error("grading %s failed inside the grader: %r", job.key, res)
                res = ungradable_result(job, f"internal grader error: {type(res).__name__}: {res}", time.monotonic())
            try:
                row = writer.record(res)
            except Exception as exc:  # noqa: BLE001 (one bad record must not lose the others)
                log.exception("could not record %s", job.key)
                row = Row(job.student, job.assignment, None, None, "error", f"could not record: {exc}")
            rows.append(row)
            bar.set_postfix_str(f"{job.key}: {row.state}", refresh=False)
            bar.update()
    finally:
        bar.close()
        executor.close()
    return sorted(rows, key=lambda r: (r.assignment, r.student))


def feedback(course: Course, assignments: list[str] | None = None, student: str | None = None) -> None:
    for a in assignments or course.assignments():
        args = ["generate_feedback", a, "--force", *FEEDBACK_ARGS]
        if student:
            args += ["--student", student]
        course.nbgrader(*args)


def check(path: str | Path, course: Course | None = None, assignment: str | None = None,
          limits: Limits | None = None, modules: tuple[str, ...] | None = None) -> GradeResult:
    """Judge one notebook exactly as ``course grade`` would (no gradebook involved)."""
    path = Path(path).resolve()
    course = course or Course.at()
    modules = modules or default_modules()
    known = course.assignments()
    if assignment is None:
        guesses = (path.stem, path.parent.name)
        assignment = next((g for g in guesses if g in known), None)
    if assignment is None:  # not an assignment of this course: ask the registry (imports torch)
        from .judge import check_names_for
        from .runner import import_modules

        import_modules(modules)
        assignment = next((g for g in (path.stem, path.parent.name) if check_names_for(g)), None)
    if assignment is None:
        raise SystemExit(f"cannot tell which assignment {path.name} belongs to: pass --assignment")
    source = path
    if assignment in known:
        source = course.source_notebook(assignment)
    spec = build_spec(source, assignment, None, course.config)
    data = path.read_bytes()
    job = GradeJob("(you)", assignment, spec, {f"{spec.notebook}.ipynb": data}, limits or Limits(), {}, modules)
    ex = LocalExecutor(1, modules)
    try:
        (_, res), = list(ex.run([job]))
    finally:
        ex.close()
    if isinstance(res, BaseException):
        raise res
    return res
