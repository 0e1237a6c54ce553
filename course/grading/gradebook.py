"""The single writer: results into nbgrader's gradebook and ``autograded/``, as autograde leaves them.

For each result the main process ensures the student and the submission (with the submission's
``timestamp.txt``), writes the autograded notebook after running nbgrader's own post-execution
preprocessors on it (IgnorePattern, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades,
AssignLatePenalties, CheckCellMetadata: ``Autograde.autograde_preprocessors`` minus Execute), so
scores, "No response." comments, late penalties and ``needs_manual_grade`` follow nbgrader's rules:
a check's test cell carries the judge's message, as an error output when it failed (0 points) and as
plain output when every case passed (full points). ``formgrade``, ``export`` and
``generate_feedback`` then work as after ``nbgrader autograde``.
A JSON log per submission (state, reason, warnings, per-item messages) goes to
``grading_logs/<assignment>/<student>.json``.
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry

from .coursedir import Course, log
from .notebook import SourceSpec, build_spec
from .runner import GradeResult

LOG_DIR = "grading_logs"


@dataclass
class Row:
    """One line of the summary."""

    student: str
    assignment: str
    score: float | None
    max_score: float | None
    state: str
    detail: str = ""
    needs_manual: bool = False


def _post_preprocessors(config):
    from nbconvert.preprocessors import ExecutePreprocessor
    from nbgrader.converters.autograde import Autograde
    from nbgrader.preprocessors import Execute
    from traitlets.utils.importstring import import_item

    classes = config.Autograde.get("autograde_preprocessors") if "Autograde" in config else None
    if not classes:
        classes = Autograde.class_traits()["autograde_preprocessors"].default()
    out = []
    for cls in classes:
        cls = import_item(cls) if isinstance(cls, str) else cls
        if issubclass(cls, (Execute, ExecutePreprocessor)):
            continue
        out.append(cls(config=config))
    return out


class GradebookWriter:
    """Everything that touches the gradebook and the course folders (main process only)."""

    def __init__(self, course: Course, *, release_if_needed: bool = True):
        self.course = course
        self.release_if_needed = release_if_needed
        self._post = None

    # -- the assignment -----------------------------------------------------------------------------
    def _db_cells(self, assignment: str, notebook: str):
        with Gradebook(self.course.db_url, self.course.course_id) as gb:
            try:
                nb = gb.find_notebook(notebook, assignment)
            except MissingEntry:
                return None
            src = {c.name: (c.cell_type, c.locked, c.source, c.checksum) for c in nb.source_cells}
            points = {c.name: float(c.max_score) for c in nb.grade_cells}
            points.update({c.name: float(c.max_score) for c in nb.task_cells})
            return src, points

    @staticmethod
    def _matches(spec: SourceSpec, db) -> bool:
        if db is None:
            return False
        src, points = db
        ids = {c.grade_id for c in spec.cells if c.grade_id}
        graded = {c.grade_id: float(c.points or 0) for c in spec.graded}
        return set(src) == ids and points == graded and all(src[c.grade_id][3] == c.checksum for c in spec.cells if c.grade_id)

    def spec(self, assignment: str) -> SourceSpec:
        """The source spec of ``assignment``, with the gradebook in step with the source notebook
        (``nbgrader generate_assignment --force`` when the gradebook lacks it or is out of date)."""
        path = self.course.source_notebook(assignment)
        spec = build_spec(path, assignment, None, self.course.config)
        db = self._db_cells(assignment, spec.notebook)
        if not self._matches(spec, db) and self.release_if_needed:
            why = "is not in the gradebook" if db is None else "changed since it was released"
            log.warning("%s %s: running nbgrader generate_assignment %s --force", assignment, why, assignment)
            self.course.generate_assignment(assignment)
            db = self._db_cells(assignment, spec.notebook)
        if db is None:
            raise RuntimeError(f"{assignment} is not in the gradebook: run `course release {assignment}`")
        src, points = db
        for c in spec.cells:  # the gradebook is the authority nbgrader's SaveAutoGrades uses
            if c.grade_id in src:
                _, c.locked, c.source, c.checksum = src[c.grade_id]
                if c.grade or c.task:
                    c.points = points.get(c.grade_id, c.points)
        return spec

    # -- submissions ----------------------------------------------------------------------------------
    def already_graded(self, student: str, assignment: str, notebook: str) -> bool:
        """nbgrader's rule: skip when the autograded notebook exists and the submission is not newer."""
        dest = self.course.path("autograded", student, assignment)
        if not (dest / f"{notebook}.ipynb").exists():
            return False
        cd = self.course.coursedir
        new = cd.get_existing_timestamp(str(self.course.path("submitted", student, assignment)))
        old = cd.get_existing_timestamp(str(dest))
        return not (new is not None and old is not None and new > old)

    def record(self, result: GradeResult) -> Row:
        c = self.course
        s, a, nb_id = result.student, result.assignment, result.notebook
        submitted = c.path("submitted", s, a)
        with warnings.catch_warnings(), Gradebook(c.db_url, c.course_id) as gb:
            warnings.simplefilter("ignore")  # SQLAlchemy's "not in session" notes from nbgrader's API
            gb.update_or_create_student(s)
            ts = c.coursedir.get_existing_timestamp(str(submitted))
            if ts is not None:
                gb.update_or_create_submission(a, s, timestamp=ts)
            else:
                gb.update_or_create_submission(a, s)

        nb = nbformat.reads(result.notebook_json, as_version=4)
        resources = {
            "unique_key": nb_id,
            "output_files_dir": f"{nb_id}_files",
            "nbgrader": {"student": s, "assignment": a, "notebook": nb_id, "db_url": c.db_url},
        }
        if self._post is None:
            self._post = _post_preprocessors(c.config)
        for pp in self._post:
            nb, resources = pp(nb, resources)  # __call__ honours each preprocessor's `enabled`

        dest = c.path("autograded", s, a)
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        nbformat.write(nb, str(dest / f"{nb_id}.ipynb"))
        if (submitted / "timestamp.txt").exists():
            shutil.copy(submitted / "timestamp.txt", dest / "timestamp.txt")

        logdir = c.root / LOG_DIR / a
        logdir.mkdir(parents=True, exist_ok=True)
        (logdir / f"{s}.json").write_text(json.dumps(result.to_log(), indent=1))
        return self.row(s, a, result)

    def row(self, student: str, assignment: str, result: GradeResult | None = None) -> Row:
        c = self.course
        with Gradebook(c.db_url, c.course_id) as gb:
            try:
                sub = gb.find_submission(assignment, student)
                score, max_score, manual = sub.score, sub.max_score, sub.needs_manual_grade
            except MissingEntry:
                score = max_score = None
                manual = False
        if result is None:
            result = load_log(c, student, assignment)
        state = result.state if result is not None else "graded by nbgrader"
        detail = ""
        if result is not None:
            detail = result.reason or "; ".join(result.warnings)
        return Row(student, assignment, score, max_score, state, detail, bool(manual))

    def record_failure(self, student: str, assignment: str, error: BaseException) -> Row:
        """A job that failed inside the grader (not the learner's code): nothing is written."""
        return Row(student, assignment, None, None, "error", f"grader failure: {type(error).__name__}: {error}")


def load_log(course: Course, student: str, assignment: str) -> GradeResult | None:
    path = course.root / LOG_DIR / assignment / f"{student}.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return GradeResult(**{**data, "notebook_json": ""})
