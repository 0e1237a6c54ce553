"""Read a submission, validate it against the source notebook, and plan what to run.

The source notebook (``solutions/<a>/<a>.ipynb``) is turned into a :class:`SourceSpec` with the
same nbgrader preprocessors ``generate_assignment`` uses before it saves cells to the gradebook
(LockCells, ClearSolutions, ClearOutput, ComputeChecksums), so the spec's sources and checksums
are the gradebook's. A submission is then sanitised the way nbgrader's autograde does it
(ClearOutput, DeduplicateIds, OverwriteCells with missing cells added back), with a few stricter
or more forgiving rules, each recorded as a warning:

- cells are matched to the source by ``grade_id``; every matched cell gets the source's nbgrader
  metadata back whatever the learner did to it (flags, points, type); locked cells get the
  source's text back (test cells therefore include the hidden tests, as with nbgrader);
- a cell whose nbgrader metadata was stripped (another editor, a copy-paste) is matched again:
  an answer cell by the ``def``/``class`` it defines, a locked cell by its text, and otherwise by
  position between cells that did match (same cell type, first free one);
- when a ``grade_id`` occurs twice only the last cell keeps it (nbgrader's DeduplicateIds);
  unknown ``grade_id`` s lose their nbgrader metadata;
- missing test cells, written-answer cells and task cells are added back where they belong
  (answer cells are not: re-adding a stub could shadow the learner's own definition).

The plan always runs the setup cell of the SOURCE first, then every code cell of the submission in
order except the setup cell and the test cells; a test cell ``test_<name>`` whose ``<name>`` is a
registered check becomes a "check" step at its place: the check's visible and hidden cases decide
it alone (the cell's other lines, prints and quick asserts, serve the learner's own runs and
``nbgrader autograde``; put everything that matters for the grade into the check). Other test
cells run with the source's text (hidden tests included) and score as nbgrader scores them.
"""

from __future__ import annotations

import copy
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_output

NOTE_MISSING = "This cell (id:{grade_id}) was missing from the submission. It was added back by the grader.\n\n"


class Ungradable(Exception):
    """The submission cannot be graded; ``reason`` says why in the learner's terms."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class SpecCell:
    index: int
    cell_type: str
    source: str  # as the gradebook stores it: solutions cleared, hidden tests kept
    grade_id: str | None = None
    grade: bool = False
    solution: bool = False
    locked: bool = False
    task: bool = False
    points: float | None = None
    checksum: str | None = None
    check: str | None = None  # name of the registered check this test cell runs
    visible_source: str | None = None  # locked cells: the text learners see (hidden tests removed)

    @property
    def kind(self) -> str:
        if self.task:
            return "task"
        if self.grade and self.solution:
            return "written"
        if self.solution:
            return "answer"
        if self.grade:
            return "test"
        if self.locked:
            return "locked"
        return "text" if self.grade_id is None else "other"

    def nbgrader_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "cell_type": self.cell_type,
            "grade": self.grade,
            "grade_id": self.grade_id,
            "locked": self.locked,
            "schema_version": 3,
            "solution": self.solution,
            "task": self.task,
        }
        if self.grade or self.task:
            meta["points"] = self.points if self.points is not None else 0.0
        if self.checksum is not None:
            meta["checksum"] = self.checksum
        return meta


@dataclass
class SourceSpec:
    assignment: str
    notebook: str  # notebook id (file stem)
    cells: list[SpecCell]
    setup_index: int | None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def by_id(self) -> dict[str, SpecCell]:
        return {c.grade_id: c for c in self.cells if c.grade_id}

    @property
    def setup(self) -> SpecCell | None:
        return None if self.setup_index is None else self.cells[self.setup_index]

    @property
    def graded(self) -> list[SpecCell]:
        return [c for c in self.cells if c.grade or c.task]

    @property
    def checks(self) -> list[str]:
        return [c.check for c in self.cells if c.check]

    @property
    def max_score(self) -> float:
        return float(sum(c.points or 0 for c in self.graded))


def _meta(cell) -> dict:
    md = cell.get("metadata")
    nbg = md.get("nbgrader") if isinstance(md, dict) else None
    return nbg if isinstance(nbg, dict) else {}


def grade_id_of(cell) -> str | None:
    gid = _meta(cell).get("grade_id")
    return gid if isinstance(gid, str) and gid else None


def _clear_hidden(source: str) -> str:
    lines, out, hidden = source.split("\n"), [], False
    for line in lines:
        if "BEGIN HIDDEN TESTS" in line:
            hidden = True
        elif "END HIDDEN TESTS" in line:
            hidden = False
        elif not hidden:
            out.append(line)
    return "\n".join(out)


def build_spec(path: str | Path, assignment: str, check_names=None, config=None) -> SourceSpec:
    """The spec of a source notebook, processed as ``generate_assignment`` stores it.

    A code test cell ``test_<name>`` is graded by check ``name`` when ``name`` is in
    ``check_names``; with ``check_names=None`` every such cell is a candidate, to be settled by
    :func:`resolve_checks` where the registry is loaded (the workers: the main process of
    ``course grade`` never imports torch).
    """
    from nbgrader.preprocessors import ClearOutput, ClearSolutions, ComputeChecksums, LockCells

    path = Path(path)
    nb = nbformat.read(str(path), as_version=4)
    resources: dict[str, Any] = {}
    for pp in (LockCells, ClearSolutions, ClearOutput, ComputeChecksums):
        nb, resources = pp(config=config).preprocess(nb, resources) if config is not None else pp().preprocess(nb, resources)
    check_names = None if check_names is None else set(check_names)
    cells = []
    for i, cell in enumerate(nb.cells):
        meta = _meta(cell)
        gid = grade_id_of(cell)
        sc = SpecCell(index=i, cell_type=cell.cell_type, source=cell.source)
        if gid and (meta.get("grade") or meta.get("solution") or meta.get("locked") or meta.get("task")):
            sc.grade_id = gid
            sc.grade = bool(meta.get("grade"))
            sc.solution = bool(meta.get("solution"))
            sc.task = bool(meta.get("task"))
            sc.locked = bool(meta.get("locked")) or (sc.grade and not sc.solution) or sc.task
            sc.points = float(meta.get("points", 0) or 0) if (sc.grade or sc.task) else None
            sc.checksum = meta.get("checksum")
            if sc.locked:
                sc.visible_source = _clear_hidden(cell.source)
            name = gid[len("test_"):] if gid.startswith("test_") else None
            if sc.kind == "test" and cell.cell_type == "code" and name and (check_names is None or name in check_names):
                sc.check = name
        cells.append(sc)
    first_code = next((c for c in cells if c.cell_type == "code"), None)
    setup = first_code.index if first_code is not None and first_code.kind == "locked" else None
    meta = {k: v for k, v in nb.metadata.items() if k in ("kernelspec", "language_info")}
    return SourceSpec(assignment=assignment, notebook=path.stem, cells=cells, setup_index=setup, metadata=meta)


def resolve_checks(spec: SourceSpec, check_names) -> SourceSpec:
    """A copy of ``spec`` whose test cells keep a check only when it is registered."""
    spec = copy.deepcopy(spec)
    names = set(check_names)
    for c in spec.cells:
        if c.check and c.check not in names:
            c.check = None
    return spec


# ------------------------------------------------------------------------------------------------
# choosing and parsing the submitted file


def choose_notebook(files: dict[str, bytes], spec: SourceSpec) -> tuple[str, bytes, list[str]]:
    """Pick the submitted notebook among ``files`` (name -> bytes) of the submission folder."""
    expected = f"{spec.notebook}.ipynb"
    if expected in files:
        return expected, files[expected], []
    if not files:
        raise Ungradable(f"no notebook was submitted (expected {expected})")
    if len(files) == 1:
        (name, data), = files.items()
        return name, data, [f"graded {name!r} in place of the expected {expected!r} (renamed notebook)"]
    # several candidates: the one holding most of this assignment's cell ids
    ids = set(spec.by_id)
    scored = []
    for name, data in files.items():
        try:
            nb = nbformat.reads(data.decode("utf-8"), as_version=4)
            score = len(ids & {grade_id_of(c) for c in nb.cells})
        except Exception:  # noqa: BLE001 (any unreadable file scores 0)
            score = 0
        scored.append((score, name))
    scored.sort(reverse=True)
    if scored[0][0] == 0 or scored[0][0] == scored[1][0]:
        names = ", ".join(sorted(files))
        raise Ungradable(f"{expected} is missing and it is unclear which of these to grade: {names}")
    name = scored[0][1]
    return name, files[name], [f"graded {name!r} in place of the expected {expected!r} (renamed notebook)"]


def parse(data: bytes) -> nbformat.NotebookNode:
    """Read notebook bytes leniently; :class:`Ungradable` when it is not a notebook at all."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Ungradable(f"not a notebook: the file is not UTF-8 text ({exc})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # duplicate cell ids etc.: fixed below
            nb = nbformat.reads(text, as_version=4, capture_validation_error={})
    except Exception as exc:  # noqa: BLE001 (nbformat raises many kinds)
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise Ungradable(f"not a valid notebook (invalid JSON?): {msg[:300]}") from None
    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise Ungradable("not a valid notebook: it has no list of cells")
    clean = []
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            continue
        src = cell.get("source", "")
        if isinstance(src, list):
            src = "".join(str(s) for s in src)
        cell["source"] = src if isinstance(src, str) else str(src)
        if not isinstance(cell.get("metadata"), dict):
            cell["metadata"] = nbformat.NotebookNode()
        clean.append(nbformat.from_dict(cell))
    nb.cells = clean
    if not isinstance(nb.get("metadata"), dict):
        nb.metadata = nbformat.NotebookNode()
    _unique_ids(nb)
    return nb


def _unique_ids(nb) -> None:
    """nbformat >= 4.5 wants unique cell ids (a copy-pasted cell repeats one)."""
    if nb.get("nbformat_minor", 0) < 5:
        return
    seen: set[str] = set()
    for i, cell in enumerate(nb.cells):
        cid = cell.get("id")
        if not isinstance(cid, str) or cid in seen or not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", cid):
            cid = f"cell-{i}"
            while cid in seen:
                cid += "-1"
            cell["id"] = cid
        seen.add(cid)


# ------------------------------------------------------------------------------------------------
# sanitising


@dataclass
class Step:
    kind: str  # "exec" | "check"
    cell: int | None  # index in the prepared notebook (None: the source's setup cell)
    source: str = ""
    name: str | None = None  # check name
    grade_id: str | None = None
    role: str = "code"  # "setup" | "code" | "test" (a test cell without a check) | "check"


@dataclass
class Prepared:
    nb: nbformat.NotebookNode
    steps: list[Step]
    warnings: list[str]
    filename: str


def _set_type(cell, cell_type: str) -> None:
    cell.cell_type = cell_type
    if cell_type == "code":
        cell.outputs = []
        cell.execution_count = None
    else:
        cell.pop("outputs", None)
        cell.pop("execution_count", None)


def _defines(source: str, name: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?(?:def|class)\s+{re.escape(name)}\b", source, re.M) is not None


def _norm(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def sanitize(nb, spec: SourceSpec, warnings: list[str]):
    """Apply nbgrader's autograde sanitising (see the module docstring) to ``nb`` in place."""
    by_id = spec.by_id
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        md = cell.metadata
        if "nbgrader" in md and not isinstance(md["nbgrader"], dict):
            del md["nbgrader"]
        gid = grade_id_of(cell)
        if "nbgrader" in md and gid is None and any(md["nbgrader"].get(k) for k in ("grade", "solution", "locked", "task")):
            warnings.append("a cell had nbgrader metadata without a grade_id; its metadata was removed")
            del md["nbgrader"]
        elif gid is not None and gid not in by_id:
            warnings.append(f"cell id {gid!r} is not part of this assignment; its nbgrader metadata was removed")
            del md["nbgrader"]

    # DeduplicateIds: the last occurrence keeps the id
    seen: set[str] = set()
    for cell in reversed(nb.cells):
        gid = grade_id_of(cell)
        if gid is None:
            continue
        if gid in seen:
            warnings.append(f"cell id {gid!r} occurs more than once; only the last one counts")
            del cell.metadata["nbgrader"]
        else:
            seen.add(gid)

    _recover_metadata(nb, spec, warnings)

    # OverwriteCells: metadata, type and locked text from the source
    for cell in nb.cells:
        gid = grade_id_of(cell)
        if gid is None:
            continue
        sc = by_id[gid]
        if cell.cell_type != sc.cell_type:
            warnings.append(f"cell {gid!r} was changed from {sc.cell_type} to {cell.cell_type}; changed back")
            _set_type(cell, sc.cell_type)
        cell.metadata["nbgrader"] = sc.nbgrader_metadata()
        if sc.locked and cell.source != sc.source:
            if _norm(cell.source) not in (_norm(sc.source), _norm(sc.visible_source or "")):
                warnings.append(f"locked cell {gid!r} was edited; the original was restored")
            cell.source = sc.source

    _add_missing(nb, spec, warnings)
    nb.metadata.update(copy.deepcopy(spec.metadata))
    return nb


def _anchors(nb, spec: SourceSpec) -> dict[int, int]:
    """spec index -> notebook index, for cells matched by grade_id, and for the source's plain
    text cells found unchanged in the notebook."""
    where = {grade_id_of(c): i for i, c in enumerate(nb.cells) if grade_id_of(c)}
    anchors = {sc.index: where[sc.grade_id] for sc in spec.cells if sc.grade_id in where}
    taken = set(anchors.values())
    for sc in spec.cells:
        if sc.grade_id is None and sc.source.strip():
            for i, cell in enumerate(nb.cells):
                if i not in taken and grade_id_of(cell) is None and cell.cell_type == sc.cell_type \
                        and _norm(cell.source) == _norm(sc.source):
                    anchors[sc.index] = i
                    taken.add(i)
                    break
    return anchors


def _recover_metadata(nb, spec: SourceSpec, warnings: list[str]) -> None:
    present = {grade_id_of(c) for c in nb.cells}
    missing = [sc for sc in spec.cells if sc.grade_id and sc.grade_id not in present]
    if not missing:
        return
    anchors = _anchors(nb, spec)  # plain text cells the learner did not touch help to place the others
    used = set(anchors.values())
    free = [i for i, c in enumerate(nb.cells) if grade_id_of(c) is None and i not in used]

    def between(sc: SpecCell) -> list[int]:
        before = [anchors[j] for j in anchors if j < sc.index]
        after = [anchors[j] for j in anchors if j > sc.index]
        lo = max(before) if before else -1
        hi = min(after) if after else len(nb.cells)
        return [i for i in free if lo < i < hi and nb.cells[i].cell_type == sc.cell_type]

    for sc in missing:
        found, how = None, ""
        if sc.locked:
            targets = {_norm(sc.source), _norm(sc.visible_source or "")}
            hits = [i for i in free if _norm(nb.cells[i].source) in targets]
            if hits:
                found, how = hits[0], "its text"
        elif sc.kind == "answer" and sc.cell_type == "code":
            hits = [i for i in free if nb.cells[i].cell_type == "code" and _defines(nb.cells[i].source, sc.grade_id)]
            if hits:
                found, how = hits[-1], f"the definition of {sc.grade_id}"
        if found is None and not sc.locked:
            hits = between(sc)
            if hits:
                found, how = hits[0], "its position"
        if found is None:
            continue
        nb.cells[found].metadata["nbgrader"] = sc.nbgrader_metadata()
        free.remove(found)
        anchors[sc.index] = found
        warnings.append(f"cell {sc.grade_id!r} had lost its nbgrader metadata; matched by {how}")


def _missing_cell(sc: SpecCell):
    note = NOTE_MISSING.format(grade_id=sc.grade_id)
    if sc.cell_type == "code":
        cell = new_code_cell("# " + note + sc.source)
    else:
        cell = new_markdown_cell(note + sc.source)
    cell.metadata["nbgrader"] = sc.nbgrader_metadata()
    if not sc.solution:
        cell.metadata["editable"] = False
    cell.metadata["deletable"] = False
    return cell


def _add_missing(nb, spec: SourceSpec, warnings: list[str]) -> None:
    present = {grade_id_of(c) for c in nb.cells}
    for sc in spec.cells:
        if not sc.grade_id or sc.grade_id in present or not (sc.grade or sc.task):
            continue
        anchors = _anchors(nb, spec)
        before = [anchors[j] for j in anchors if j < sc.index]
        pos = max(before) + 1 if before else 0
        nb.cells.insert(pos, _missing_cell(sc))
        present.add(sc.grade_id)
        warnings.append(f"cell {sc.grade_id!r} was missing; added back from the source")


def plan(nb, spec: SourceSpec) -> list[Step]:
    steps: list[Step] = []
    setup = spec.setup
    if setup is not None:
        steps.append(Step("exec", None, setup.source, grade_id=setup.grade_id, role="setup"))
    by_id = spec.by_id
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        sc = by_id.get(grade_id_of(cell) or "")
        if sc is not None and setup is not None and sc.index == setup.index:
            continue
        if sc is not None and sc.check:
            steps.append(Step("check", i, name=sc.check, grade_id=sc.grade_id, role="check"))
        elif sc is not None and sc.kind == "test":
            steps.append(Step("exec", i, cell.source, grade_id=sc.grade_id, role="test"))
        else:
            steps.append(Step("exec", i, cell.source, grade_id=sc.grade_id if sc else None))
    return steps


def prepare(files: dict[str, bytes], spec: SourceSpec) -> Prepared:
    """Choose, parse and sanitise the submission; plan its execution."""
    name, data, warnings = choose_notebook(files, spec)
    nb = parse(data)
    sanitize(nb, spec, warnings)
    return Prepared(nb=nb, steps=plan(nb, spec), warnings=warnings, filename=name)


# ------------------------------------------------------------------------------------------------
# outputs


def stream(name: str, text: str):
    return new_output("stream", name=name, text=text)


def error_output(ename: str, evalue: str, traceback: list[str] | None = None):
    return new_output("error", ename=ename, evalue=evalue, traceback=list(traceback or [f"{ename}: {evalue}"]))


def placeholder(spec: SourceSpec, reason: str):
    """The notebook written for an ungradable submission: the released cells, the reason on top,
    and every test cell failing with the reason (so nbgrader scores it 0 and feedback says why)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata.update(copy.deepcopy(spec.metadata))
    nb.cells.append(new_markdown_cell(f"**This submission could not be graded:** {reason}"))
    for sc in spec.cells:
        cell = new_code_cell(sc.source) if sc.cell_type == "code" else (
            new_markdown_cell(sc.source) if sc.cell_type == "markdown" else nbformat.v4.new_raw_cell(sc.source)
        )
        if sc.grade_id:
            cell.metadata["nbgrader"] = sc.nbgrader_metadata()
        if sc.cell_type == "code" and sc.kind == "test":
            cell.outputs = [error_output("NotGraded", reason)]
        nb.cells.append(cell)
    return nb
