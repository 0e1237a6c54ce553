"""The parent's side of a check: build the cases, send only their inputs, judge what comes back.

Cases come from the clean reference (``check.make_cases`` with the fixed seeds of ``seed_for``),
so they are identical for every submission and every regrade; they are built once per process.
The learner's code runs in the child (``check.invoke`` under ``guard(check)``); what it returns is
read with ``torch.load(weights_only=True)`` and compared here by ``check.judge``, which the
learner's code cannot reach.

The case loop and the messages follow the in-kernel ``course.checks.run_check``: visible cases,
then hidden ones, each set with the check's time budget; the first failing case ends the check
with ``course.checks.format_failure``'s message. The verdicts of ``course grade`` and ``course check`` are the
same text; a learner running the test cell sees the same wording.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .sandbox import Child, ChildLost, clean_error


@dataclass
class ItemResult:
    """The verdict on one graded item (a test cell)."""

    grade_id: str
    name: str | None  # the check's name (None for a test cell run as code)
    passed: bool
    message: str
    cases_run: int = 0
    cases_total: int = 0


def registry() -> dict[str, Any]:
    from course.checks import REGISTRY

    return REGISTRY


def check_names_for(assignment: str) -> set[str]:
    """Names of the registered checks of ``assignment`` (empty when course.checks is absent)."""
    try:
        reg = registry()
    except ImportError:
        return set()
    return {name for name, chk in reg.items() if getattr(chk, "assignment", None) == assignment}


@dataclass(frozen=True)
class PreparedCase:
    hidden: bool
    index: int  # within its set (visible or hidden)
    case: Any  # course.checks.Case
    inputs: bytes  # torch.save(case.inputs)
    seed: int


@lru_cache(maxsize=None)
def cases_for(name: str, hidden: bool) -> tuple[PreparedCase, ...]:
    """The visible or hidden cases of check ``name`` (deterministic; built once per process)."""
    import torch
    from course.checks import seed_for

    check = registry()[name]
    seed = seed_for(name, hidden)
    out = []
    for k, case in enumerate(check.make_cases(seed, hidden)):
        buf = io.BytesIO()
        torch.save(case.inputs, buf)
        out.append(PreparedCase(hidden, k, case, buf.getvalue(), (seed + k) % (2**31)))
    return tuple(out)


def _read_payload(body: bytes | None) -> dict:
    import torch

    if body is None:
        raise ValueError("no data")
    data = torch.load(io.BytesIO(body), weights_only=True)
    if not isinstance(data, dict) or "got" not in data or not isinstance(data.get("inputs_after"), dict):
        raise ValueError("malformed reply")
    return data


def _kind_problem(check: Any, name: str, probe: dict) -> str | None:
    """The in-kernel runner's checks on the object itself (same wording)."""
    if not probe.get("defined"):
        return f"{name} is not defined: run the cell that defines {name} first (was it renamed or deleted?)."
    if probe.get("is_none"):
        return f"{name} is None: run the cell that defines {name} first."
    kind = getattr(check, "kind", "function")
    if kind == "class" and not probe.get("is_class"):
        return f"{name} must be a class (class {name}(nn.Module): ...), got {probe.get('type')}."
    if kind == "function" and (probe.get("is_class") or not probe.get("callable")):
        return f"{name} must be a function (def {name}(...): ...), got {probe.get('type')}."
    return None


class _Stop(Exception):
    def __init__(self, message: str, lost: ChildLost | None = None):
        super().__init__(message)
        self.message, self.lost = message, lost


def _run_set(child: Child, check: Any, name: str, hidden: bool, deadline: float) -> tuple[str | None, int]:
    """Run one set of cases; return (failure message or None, cases run). Raises _Stop."""
    from course.checks import format_failure

    cases = cases_for(name, hidden)
    total = len(cases)
    budget = float(getattr(check, "timeout_s", 20.0))
    end = min(time.monotonic() + budget, deadline)
    timeout_msg = (
        f"{name} took longer than {budget:g} s on the test cases; is there an endless loop, "
        "or a Python loop over every element that could be one tensor operation?"
    )
    for pc in cases:
        left = end - time.monotonic()
        if left <= 0:
            raise _Stop(timeout_msg)
        try:
            header, body = child.request({"op": "invoke", "name": name, "inputs": pc.inputs, "seed": pc.seed}, left, payload=True)
        except ChildLost as lost:
            if lost.timed_out:
                msg = timeout_msg if end < deadline else f"{name} was stopped: the notebook ran past its time limit"
            else:
                msg = format_failure(check, pc.case, f"the process running your {name} {lost.reason}",
                                     hidden=hidden, index=pc.index, total=total)
            raise _Stop(msg, lost) from None
        verdict = None
        if not header.get("ok"):
            kind = header.get("kind")
            if kind == "check":  # a guard's verdict (a forbidden call...)
                verdict = str(header.get("message") or f"{name} failed")[:5000]
            elif kind == "error":
                err = clean_error(header.get("error")) or {}
                verdict = f"your {name} raised {err.get('ename', 'Exception')}: {err.get('evalue', '')}"
            elif kind == "unsendable":
                verdict = f"your {name} returned a {str(header.get('type'))[:100]}, which the grader cannot read back"
            elif kind == "missing":
                raise _Stop(f"{name} is not defined: run the cell that defines {name} first (was it renamed or deleted?).")
            else:
                verdict = f"the grader could not run {name}: {header.get('message', kind)}"
        else:
            try:
                data = _read_payload(body)
            except Exception:  # noqa: BLE001 (weights_only refuses anything but tensors and plain data)
                verdict = f"your {name} returned a {str(header.get('type'))[:100]}, which the grader cannot read back"
            else:
                try:
                    verdict = check.judge(pc.case, data["got"], data["inputs_after"])
                except Exception as exc:  # noqa: BLE001 (an unexpected output must not abort the batch)
                    raise _Stop(f"internal error while judging {name} on case {pc.case.label!r}: {exc!r}") from None
        if verdict is not None:
            return format_failure(check, pc.case, str(verdict), hidden=hidden, index=pc.index, total=total), pc.index + 1
    return None, total


def run_check(child: Child, grade_id: str, name: str, deadline: float) -> tuple[ItemResult, ChildLost | None]:
    """Judge check ``name`` against the learner's object living in ``child``.

    Returns the verdict and, when the child was lost on the way (crash or timeout), the
    :class:`ChildLost`, so the caller replaces the child.
    """
    check = registry()[name]
    total = len(cases_for(name, False)) + len(cases_for(name, True))
    try:
        probe, _ = child.request({"op": "probe", "name": name}, max(0.0, min(30.0, deadline - time.monotonic())))
    except ChildLost as lost:
        return ItemResult(grade_id, name, False, f"{name}: the grading process {lost.reason}", 0, total), lost
    problem = _kind_problem(check, name, probe)
    if problem:
        return ItemResult(grade_id, name, False, problem, 0, total), None
    run = 0
    for hidden in (False, True):
        try:
            failure, n = _run_set(child, check, name, hidden, deadline)
        except _Stop as stop:
            return ItemResult(grade_id, name, False, stop.message, run, total), stop.lost
        run += n
        if failure is not None:
            return ItemResult(grade_id, name, False, failure, run, total), None
    n_hidden = len(cases_for(name, True))
    msg = f"{name}: all {total} test cases passed ({total - n_hidden} visible, {n_hidden} hidden)."
    return ItemResult(grade_id, name, True, msg, total, total), None
