"""Run one prepared submission in sandboxed children, surviving whatever the learner's code does.

Steps run in order in one child. When the child is lost (it crashed, exited, or was killed at a
time limit) the step that lost it is recorded as failed with the reason, and a fresh child replays
the setup cell and the earlier code cells (minus every step that already lost a child) before
going on with the next step. The whole submission has one wall-clock budget.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import judge
from .notebook import Prepared, Step, error_output, stream
from .sandbox import Child, ChildLost, ForkServer, Limits, clean_error


@dataclass
class CellRun:
    outputs: list
    error: dict | None
    execution_count: int


@dataclass
class RunRecord:
    cells: dict[int, CellRun] = field(default_factory=dict)  # notebook cell index -> run
    items: dict[str, judge.ItemResult] = field(default_factory=dict)  # grade_id -> verdict
    counts: dict[int, int] = field(default_factory=dict)  # check cells' execution counts
    setup_error: str | None = None
    children: int = 0
    seconds: float = 0.0


def _outputs(texts: dict[str, str], error: dict | None) -> list:
    outs = [stream(name, texts[name]) for name in ("stdout", "stderr") if texts.get(name)]
    if error is not None:
        outs.append(error_output(error["ename"], error["evalue"], error.get("traceback")))
    return outs


def _lost_error(lost: ChildLost, limits: Limits, replay: bool) -> dict:
    again = " when it was run again" if replay else ""
    if lost.timed_out:
        return {
            "ename": "CellTimeoutError",
            "evalue": f"this cell ran longer than {limits.timeout_cell:g} s{again} and was stopped (an infinite loop?)",
        }
    return {"ename": "DeadKernelError", "evalue": f"the kernel {lost.reason} while running this cell{again}"}


def execute(prepared: Prepared, server: ForkServer, limits: Limits, extra_files: dict[str, bytes] | None = None) -> RunRecord:
    rec = RunRecord()
    t0 = time.monotonic()
    deadline = t0 + limits.timeout_notebook
    steps = prepared.steps
    killers: set[int] = set()
    counts: dict[int, int] = {}
    root = Path(tempfile.mkdtemp(prefix="course-grade-"))
    root.chmod(0o711)  # a child running as another user can still reach its own work dir
    work = root / "work"
    work.mkdir()
    for rel, data in (extra_files or {}).items():
        dest = work / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)

    def run_exec(child: Child, j: int, replay: bool) -> ChildLost | None:
        step = steps[j]
        timeout = min(limits.timeout_cell, deadline - time.monotonic())
        lost = None
        try:
            header, _ = child.request({"op": "exec", "source": step.source}, timeout)
            error = clean_error(header.get("error"))
        except ChildLost as exc:
            lost = exc
            if exc.timed_out and time.monotonic() >= deadline - 0.05:
                error = {"ename": "CellTimeoutError", "evalue": f"the notebook ran past its time limit of {limits.timeout_notebook:g} s"}
            else:
                error = _lost_error(exc, limits, replay)
        texts = child.take_output()
        counts.setdefault(j, len(counts) + 1)
        if step.cell is not None:
            rec.cells[step.cell] = CellRun(_outputs(texts, error), error, counts[j])
        elif error is not None:  # the source's setup cell
            rec.setup_error = f"{error['ename']}: {error['evalue']}"
        return lost

    child: Child | None = None
    pos = 0
    try:
        while pos < len(steps):
            if time.monotonic() >= deadline:
                break
            if child is None:
                child = server.spawn(work, limits)
                rec.children += 1
                for j in range(pos):
                    if steps[j].kind == "exec" and j not in killers:
                        lost = run_exec(child, j, replay=True)
                        if lost is not None:
                            killers.add(j)
                            child = None
                            break
                if child is None or time.monotonic() >= deadline:
                    continue
            step = steps[pos]
            if step.kind == "exec":
                lost = run_exec(child, pos, replay=False)
                if step.role == "setup" and rec.setup_error is not None:
                    pos += 1
                    break
            else:
                item, lost = judge.run_check(child, step.grade_id, step.name, deadline)
                rec.items[step.grade_id] = item
                rec.counts[step.cell] = counts.setdefault(pos, len(counts) + 1)
                child.take_output()  # what the learner's function printed is not the test's output
            if lost is not None:
                killers.add(pos)
                child = None
            pos += 1
    finally:
        if child is not None:
            child.close()
        shutil.rmtree(root, ignore_errors=True)

    # whatever did not run
    if rec.setup_error is not None:
        why = f"not graded: the setup cell failed ({rec.setup_error})"
    else:
        why = f"not graded: the notebook ran past its time limit of {limits.timeout_notebook:g} s"
    for step in steps[pos:]:
        if step.kind == "check" and step.grade_id not in rec.items:
            rec.items[step.grade_id] = judge.ItemResult(step.grade_id, step.name, False, f"{step.name}: {why}")
        elif step.kind == "exec" and step.cell is not None and step.cell not in rec.cells:
            err = {"ename": "NotRun", "evalue": why}
            rec.cells[step.cell] = CellRun(_outputs({}, err), err, 0)
    # test cells that ran as code: nbgrader's rule (an error or anything on stderr scores 0)
    for step in steps:
        if step.role == "test" and step.cell is not None:
            run = rec.cells.get(step.cell)
            if run is None:
                continue
            stderr = any(o.get("output_type") == "stream" and o.get("name") == "stderr" for o in run.outputs)
            if run.error is not None:
                msg = f"{step.grade_id}: {run.error['ename']}: {run.error['evalue']}"
            elif stderr:
                msg = f"{step.grade_id}: the test wrote to stderr, which scores 0"
            else:
                msg = f"{step.grade_id}: passed"
            rec.items[step.grade_id] = judge.ItemResult(step.grade_id, None, run.error is None and not stderr, msg)
    rec.seconds = time.monotonic() - t0
    return rec
