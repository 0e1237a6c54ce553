"""The grading-checks framework: cases, checks, guards and the in-kernel runner.

A *check* grades one graded item of the course (a function or a class named in
COURSE_SPEC.md). It is split in three parts so that the instructor pipeline
(``course.grading``) can run learner code in a sandboxed child process and keep the
comparison in a clean parent process:

- ``make_cases(seed, hidden)`` builds the inputs and the expected results from the
  reference implementation. Pure: it never sees learner code, never touches the
  global RNG, and gives the same cases for the same seed.
- ``invoke(obj, inputs)`` calls the learner's function/class on ``inputs`` and returns
  what it produced, as plain tensors/containers (``sanitize``). The only part that
  runs learner code; run it on clones (``execute`` does) and under ``guard(check)``.
- ``judge(case, got, inputs_after)`` compares ``got`` with ``case.expected`` and says
  what went wrong in the learner's terms (``None`` = pass). Pure.

In the learner's kernel, test cells call ``check(name, obj)`` (= ``run_check``), which
chains the three. Best-effort tamper resistance in-process: the package snapshots, at
import time (the locked setup cell), the namespaces the checks rely on (torch,
torch.nn.functional, torch.Tensor, nn.Module, builtins, math, the checks' and the
reference's own modules) and puts those snapshots back while a check builds its cases
and judges, so a learner's ``torch.allclose = lambda *a, **k: True`` or a replaced
``course.checks.core.<name>`` cannot turn a wrong answer into a pass; inputs are
cloned and compared after the call; forbidden built-ins and the same-named reference
item are blocked while learner code runs (``guard``).
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import importlib
import inspect
import io
import math
import signal
import sys
import threading
import types
import warnings
import zlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch._ops import OpOverload, OpOverloadPacket
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = [
    "CheckFailed",
    "Case",
    "Check",
    "REGISTRY",
    "register",
    "checks_for",
    "seed_for",
    "guard",
    "execute",
    "clone_tree",
    "sanitize",
    "format_failure",
    "run_check",
    "check",
]


class CheckFailed(AssertionError):
    """A graded check failed. The message says why, in the learner's terms (never empty)."""

    def __init__(self, message: Any = ""):
        text = str(message).strip() or "the check failed (no details were available)"
        super().__init__(text)


@dataclass
class Case:
    """One graded case: a human label, the inputs, and the reference result.

    ``inputs`` and ``expected`` hold only tensors, numbers, strings, None and
    lists/tuples/dicts of those, so ``torch.save``/``torch.load(weights_only=True)``
    round-trips them.
    """

    label: str
    inputs: dict[str, Any]
    expected: Any


class Check:
    """Base class of every check; a chapter module subclasses it and calls ``register``.

    Class attributes (override them):
      name        graded item == answer cell grade_id == COURSE_SPEC name
      assignment  nbgrader assignment id, e.g. "02_self_attention"
      kind        "function" or "class"
      forbidden   dotted names of torch callables (functions, builtins, nn.Module classes,
                  or ``torch.ops.aten.<op>`` packets) the learner's code may not call
      forbidden_hint  one sentence appended to a forbidden-call message
      reference   dotted path of the same-named reference item (blocked while learner code runs)
      timeout_s   wall-clock budget for all cases of this check
    """

    name: str = ""
    assignment: str = ""
    kind: str = "function"
    forbidden: tuple[str, ...] = ()
    forbidden_hint: str = ""
    reference: str = ""
    timeout_s: float = 20.0

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        raise NotImplementedError

    def invoke(self, obj: Any, inputs: dict) -> Any:
        raise NotImplementedError

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} ({self.assignment})>"


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------

REGISTRY: dict[str, Check] = {}
# Private copies, made at registration: (frozen copy of the check, its bound methods).
# The runner reads only these, so editing REGISTRY or a Check class afterwards changes nothing.
_PRIVATE: dict[str, tuple] = {}


def register(check: Check) -> Check:
    """Add ``check`` to the registry (once per name; a name cannot be re-registered)."""
    if not check.name or not check.assignment:
        raise ValueError(f"{check!r} needs a name and an assignment")
    if check.name in _PRIVATE:
        if type(_PRIVATE[check.name][0]) is type(check):
            return check  # the same module imported twice (e.g. reloaded): keep the first
        raise ValueError(f"a check named {check.name!r} is already registered")
    frozen = copy.copy(check)
    frozen.forbidden = tuple(check.forbidden)
    _PRIVATE[check.name] = (frozen, frozen.make_cases, frozen.invoke, frozen.judge)
    REGISTRY[check.name] = check
    return check


def checks_for(assignment: str) -> list[Check]:
    """Every registered check of one assignment, in registration (= notebook) order."""
    return [c for c in REGISTRY.values() if c.assignment == assignment]


def seed_for(name: str, hidden: bool) -> int:
    """The fixed seed of a check's visible or hidden cases (regrading gives identical cases)."""
    return zlib.crc32(f"{name}/{'hidden' if hidden else 'visible'}".encode()) % (2**31)


# ---------------------------------------------------------------------------
# Plain values in and out of learner code
# ---------------------------------------------------------------------------

UNSUPPORTED = "<unsupported>"  # key of the dict that stands for a value sanitize() refused


def clone_tree(value: Any) -> Any:
    """A deep copy of a case's inputs: tensors cloned, containers copied."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: clone_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(clone_tree(v) for v in value)
    return value


def sanitize(value: Any, _depth: int = 0) -> Any:
    """What learner code returned, as plain tensors, numbers and containers.

    Tensor subclasses (which could override comparisons) and arbitrary objects become
    ``{UNSUPPORTED: "<description>"}`` so ``judge`` can say what was returned instead.
    """
    t = type(value)
    if t is torch.Tensor or t is nn.Parameter:
        with torch.no_grad():
            return value.detach().clone()
    if isinstance(value, torch.Tensor):
        return {UNSUPPORTED: f"a {t.__name__} (a subclass of torch.Tensor, not a plain tensor)"}
    if value is None or t in (bool, int, float, str):
        return value
    if _depth >= 4:
        return {UNSUPPORTED: "a deeply nested structure"}
    if isinstance(value, (tuple, list)):
        items = [sanitize(v, _depth + 1) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if t is dict:
        return {str(k): sanitize(v, _depth + 1) for k, v in value.items()}
    return {UNSUPPORTED: f"an object of type {t.__name__}"}


# ---------------------------------------------------------------------------
# Guards: what learner code may not call
# ---------------------------------------------------------------------------

_PRETTY_PREFIXES = (
    ("torch.nn.functional.", "F."),
    ("torch.nn.modules.activation.", "nn."),
    ("torch.nn.", "nn."),
)


def _pretty(dotted: str) -> str:
    for prefix, short in _PRETTY_PREFIXES:
        if dotted.startswith(prefix):
            return short + dotted[len(prefix):]
    return dotted


_RESOLVED: dict[str, Any] = {}


def _resolve(dotted: str) -> Any:
    """Import the longest module prefix of ``dotted`` and walk the remaining attributes (cached)."""
    if dotted not in _RESOLVED:
        _RESOLVED[dotted] = _resolve_uncached(dotted)
    return _RESOLVED[dotted]


def _resolve_uncached(dotted: str) -> Any:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"cannot resolve {dotted!r}")


def _code_objects(obj: Any) -> set:
    """Code objects of a function, or of every function defined in a class (nested ones too)."""
    funcs = []
    if isinstance(obj, type):
        for klass in obj.__mro__:
            if klass.__module__.split(".")[0] in ("builtins", "torch") and klass is not obj:
                continue  # a reference class's own code only, not nn.Module's
            for member in vars(klass).values():
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if isinstance(member, property):
                    funcs.extend(f for f in (member.fget, member.fset, member.fdel) if f)
                elif isinstance(member, types.FunctionType):
                    funcs.append(member)
    elif isinstance(obj, types.FunctionType):
        funcs.append(obj)
    # A decorated function (e.g. ``@torch.no_grad()``) is torch's shared wrapper around the real
    # one: block the real code only, or every learner function with that decorator would be
    # taken for the reference.
    funcs = [inspect.unwrap(f) for f in funcs]
    codes: set = set()
    todo = [f.__code__ for f in funcs]
    while todo:
        code = todo.pop()
        if code in codes:
            continue
        codes.add(code)
        todo.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return codes


class _Blocker:
    """Everything ``guard`` blocks for one check, and the violations seen so far."""

    def __init__(self, check: Check):
        self.check_name = check.name
        self.hint = check.forbidden_hint
        self.callables: dict[int, str] = {}  # id(callable) -> dotted name
        self.keep_alive: list = []  # keeps the ids above valid
        self.aten: dict[str, str] = {}  # "aten.op" -> dotted name
        self.codes: dict = {}  # code object -> message
        self.violations: list[str] = []
        for dotted in check.forbidden:
            if dotted.startswith("torch.ops.aten."):
                self.aten["aten." + dotted[len("torch.ops.aten."):]] = dotted
                continue
            obj = _resolve(dotted)
            self.keep_alive.append(obj)
            self.callables[id(obj)] = dotted
            for code in _code_objects(obj):
                self.codes[code] = self.forbidden_message(dotted)
        self.reference = None
        if check.reference:
            self.reference = _resolve(check.reference)
            msg = (
                f"{check.name} must be your own code, but it called the course's reference "
                f"solution ({check.reference}). Write it yourself."
            )
            for code in _code_objects(self.reference):
                self.codes[code] = msg
            self.reference_message = msg

    def forbidden_message(self, dotted: str) -> str:
        what = _pretty(dotted)
        if dotted.startswith("torch.ops.aten."):
            what = f"{dotted} (a PyTorch kernel)"
        msg = f"{self.check_name} must not call {what}, PyTorch's built-in version of what you are writing."
        return f"{msg} {self.hint}".strip()

    def violate(self, message: str):
        self.violations.append(message)
        raise CheckFailed(message)


class _ForbidFunctions(TorchFunctionMode):
    def __init__(self, blocker: _Blocker):
        super().__init__()
        self.blocker = blocker

    def __torch_function__(self, func, types, args=(), kwargs=None):
        b = self.blocker
        dotted = b.callables.get(id(func))
        if dotted is None and isinstance(func, (OpOverload, OpOverloadPacket)):
            packet = func.overloadpacket if isinstance(func, OpOverload) else func
            dotted = b.aten.get(str(packet))
        if dotted is not None:
            b.violate(b.forbidden_message(dotted))
        return func(*args, **(kwargs or {}))


class _ForbidAtenOps(TorchDispatchMode):
    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # False: do not wrap __torch_dispatch__ in torch._dynamo.disable, whose first use
        # imports torch._dynamo (~800 modules, seconds) in every learner's kernel.
        return False

    def __init__(self, blocker: _Blocker):
        super().__init__()
        self.blocker = blocker

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        b = self.blocker
        if b.aten:
            dotted = b.aten.get(str(func.overloadpacket))
            if dotted is not None:
                b.violate(b.forbidden_message(dotted))
        return func(*args, **(kwargs or {}))


class _Guard:
    """Context manager behind ``guard``; see its docstring."""

    def __init__(self, check: Check):
        self.blocker = _Blocker(check)

    def _profile(self, frame, event, arg):
        b = self.blocker
        if event == "call":
            msg = b.codes.get(frame.f_code)
            if msg is not None:
                b.violate(msg)
        elif event == "c_call":
            dotted = b.callables.get(id(arg))
            if dotted is not None:
                b.violate(b.forbidden_message(dotted))

    def _stub(self, *args, **kwargs):
        self.blocker.violate(self.blocker.reference_message)

    def __enter__(self):
        b = self.blocker
        # 1. the module attributes that hold the reference item raise while learner code runs
        self.replaced = []
        if b.reference is not None:
            top = b.reference.__module__.split(".")[0]
            for mod_name, mod in list(sys.modules.items()):
                if mod is None or not (mod_name == top or mod_name.startswith(top + ".")):
                    continue
                for attr, val in list(vars(mod).items()):
                    if val is b.reference:
                        self.replaced.append((mod, attr, val))
                        setattr(mod, attr, self._stub)
        # 2. torch-level interception (however the callable was obtained)
        self.fn_depth = torch._C._len_torch_function_stack()
        self.dispatch_depth = torch._C._len_torch_dispatch_stack()
        self.fn_mode = _ForbidFunctions(b)
        self.fn_mode.__enter__()
        self.dispatch_mode = _ForbidAtenOps(b)
        self.dispatch_mode.__enter__()
        # 3. Python-level calls of blocked code objects / builtins
        # (skipped under a C-level profiler such as cProfile, which could not be put back)
        self.old_profile = sys.getprofile()
        self.old_thread_profile = threading.getprofile()
        self.profiling = self.old_profile is None or isinstance(self.old_profile, (types.FunctionType, types.MethodType))
        if self.profiling:
            sys.setprofile(self._profile)
            threading.setprofile(self._profile)
        return self

    def __exit__(self, exc_type, exc, tb):
        b = self.blocker
        profile_ok = True
        if self.profiling:
            profile_ok = sys.getprofile() == self._profile
            sys.setprofile(self.old_profile)
            threading.setprofile(self.old_thread_profile)
        # modes: ours must be on top; anything the learner left on (or took off) the stack is undone
        tampered = False
        C = torch._C
        for length, get_at, pop, mode, depth in (
            (C._len_torch_dispatch_stack, C._get_dispatch_stack_at, lambda: C._pop_torch_dispatch_stack(None),
             self.dispatch_mode, self.dispatch_depth),
            (C._len_torch_function_stack, C._get_function_stack_at, C._pop_torch_function_stack,
             self.fn_mode, self.fn_depth),
        ):
            if length() != depth + 1 or get_at(depth) is not mode:
                tampered = True
            while length() > depth + 1:
                pop()
            if length() == depth + 1 and get_at(depth) is mode:
                mode.__exit__(None, None, None)
            while length() > depth:
                pop()
        for mod, attr, val in reversed(self.replaced):
            setattr(mod, attr, val)
        if b.violations:
            raise CheckFailed(b.violations[0]) from (exc if isinstance(exc, BaseException) else None)
        if tampered:
            raise CheckFailed(
                f"{b.check_name} changed PyTorch's mode stack (TorchFunctionMode/TorchDispatchMode) "
                "and did not restore it; a graded function must not do that."
            )
        if not profile_ok and exc is None:
            raise CheckFailed(
                f"{b.check_name} replaced the Python profiler (sys.setprofile) while being "
                "checked; a graded function must not do that."
            )
        return False


def guard(check: Check) -> contextlib.AbstractContextManager:
    """Block ``check.forbidden`` and the same-named reference item while learner code runs.

    - ``check.forbidden`` torch callables are caught by a TorchFunctionMode (however the
      learner got hold of them), aten ops by a TorchDispatchMode, Python functions and
      nn.Module classes (their methods' code) and builtins by a ``sys.setprofile`` hook.
    - ``check.reference`` (e.g. ``reference_impl.attention.causal_mask``) raises when
      called through any ``reference_impl`` module attribute, and its code objects are
      blocked through the profile hook (catches references captured at import time).
      Other reference items stay usable.
    - A violation raises CheckFailed; if learner code swallowed it, leaving the block
      raises it again.
    """
    return _Guard(check)


def execute(check: Check, obj: Any, inputs: dict, label: str = "") -> tuple[Any, dict]:
    """Run ``check.invoke`` on clones of ``inputs`` under ``guard(check)``.

    Returns ``(got, inputs_after)``: what the learner's code returned (sanitized) and the
    cloned inputs as they are after the call (to detect in-place modification). An
    exception raised by the learner's code becomes a CheckFailed that names it.
    """
    work = clone_tree(inputs)
    try:
        with guard(check):
            got = check.invoke(obj, work)
    except CheckFailed:
        raise
    except Exception as exc:  # learner code raised: say so in their terms, keep their traceback
        where = f" on case {label!r}" if label else ""
        raise CheckFailed(f"your {check.name} raised {type(exc).__name__}{where}: {exc}") from exc
    return got, work


def format_failure(check: Check, case: Case, message: str, *, hidden: bool, index: int, total: int) -> str:
    """The text a learner sees for a failed case (same wording in the kernel and in ``course grade``)."""
    which = "hidden" if hidden else "visible"
    return f"{check.name}: {which} test case {index + 1} of {total} failed ({case.label})\n  {message}"


# ---------------------------------------------------------------------------
# Freezing: the namespaces checks rely on, as they were at import time
# ---------------------------------------------------------------------------

_MISSING = object()


class _Freeze:
    """Snapshots of namespaces; ``enter`` puts them back, ``leave`` restores the learner's state.

    Modules: changed or deleted entries are restored (additions are left alone: torch
    adds lazily imported submodules). Classes: additions that shadow a base class's
    attribute are removed too (an added ``torch.Tensor.__eq__`` would hide TensorBase's).
    """

    def __init__(self):
        self.entries: list = []  # (target, snapshot dict, is_class)

    def add(self, target: Any, _vars=vars, _isinstance=isinstance, _type=type, _dict=dict):
        self.entries.append((target, _dict(_vars(target)), _isinstance(target, _type)))

    def enter(self, _vars=vars, _setattr=setattr, _delattr=delattr, _any=any, _missing=_MISSING):
        undo = []
        for target, snap, is_class in self.entries:
            current = _vars(target)
            changed = [(k, current.get(k, _missing)) for k, v in snap.items() if current.get(k, _missing) is not v]
            # an attribute added to a class matters only if it shadows a base class's (Tensor.__eq__)
            added = [(k, current[k]) for k in current if k not in snap and _any(
                k in _vars(base) for base in target.__mro__[1:])] if is_class else []
            for k, _old in changed:
                _setattr(target, k, snap[k])
            for k, _old in added:
                _delattr(target, k)
            if changed or added:
                undo.append((target, changed, added))
        return undo

    def leave(self, undo, _setattr=setattr, _delattr=delattr, _missing=_MISSING):
        for target, changed, added in reversed(undo):
            for k, old in changed:
                if old is _missing:
                    _delattr(target, k)
                else:
                    _setattr(target, k, old)
            for k, old in added:
                _setattr(target, k, old)


_FREEZE = _Freeze()


def _seal() -> None:
    """Snapshot every namespace the checks rely on. Called once by course/checks/__init__.py."""
    if _FREEZE.entries:
        return
    ours = ("course.checks", "reference_impl")
    modules = [builtins, math, torch, F, nn, torch.testing, torch.linalg, torch.overrides, torch.random]
    modules += [m for n, m in sorted(sys.modules.items()) if m is not None and n.startswith(ours)]
    classes = [torch.Tensor, nn.Module, nn.Linear, nn.Parameter]
    for mod in modules:
        _FREEZE.add(mod)
        if mod.__name__.startswith(ours):
            classes += [v for v in vars(mod).values() if isinstance(v, type) and v.__module__ == mod.__name__]
    for klass in dict.fromkeys(classes):
        _FREEZE.add(klass)


# ---------------------------------------------------------------------------
# The in-kernel runner
# ---------------------------------------------------------------------------


class _TimedOut(CheckFailed):
    pass


class _Timer:
    """SIGALRM-based wall-clock limit (main thread only; elsewhere it does nothing)."""

    def __init__(self, seconds: float, name: str):
        self.seconds, self.name = seconds, name
        self.armed = False

    def _fire(self, signum, frame):
        raise _TimedOut(
            f"{self.name} took longer than {self.seconds:g} s on the test cases; "
            "is there an endless loop, or a Python loop over every element that could be one tensor operation?"
        )

    def __enter__(self):
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
            if signal.getitimer(signal.ITIMER_REAL)[0] == 0:
                self.old = signal.signal(signal.SIGALRM, self._fire)
                signal.setitimer(signal.ITIMER_REAL, self.seconds)
                self.armed = True
        return self

    def __exit__(self, *exc):
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.old)
        return False


def _run_frozen(entry: tuple, obj: Any, hidden: bool, _refreeze=_FREEZE.enter) -> None:
    __tracebackhide__ = True  # IPython and pytest show the learner's frames, not the runner's
    frozen, make_cases, invoke, judge = entry
    name = frozen.name
    try:
        cases = make_cases(seed_for(name, hidden), hidden)
    except Exception as exc:  # a bug in the checks, not in the learner's code
        raise CheckFailed(f"internal error while preparing the {name} test cases: {exc!r}") from exc
    if obj is None:
        raise CheckFailed(f"{name} is None: run the cell that defines {name} first.")
    if frozen.kind == "class" and not isinstance(obj, type):
        raise CheckFailed(f"{name} must be a class (class {name}(nn.Module): ...), got {type(obj).__name__}.")
    if frozen.kind == "function" and (isinstance(obj, type) or not callable(obj)):
        raise CheckFailed(f"{name} must be a function (def {name}(...): ...), got {type(obj).__name__}.")
    total = len(cases)
    with _Timer(frozen.timeout_s, name):
        for i, case in enumerate(cases):
            work = clone_tree(case.inputs)
            try:
                with guard(frozen):
                    got = invoke(obj, work)
            except _TimedOut:
                raise
            except CheckFailed as exc:
                raise CheckFailed(format_failure(frozen, case, str(exc), hidden=hidden, index=i, total=total)) from None
            except Exception as exc:  # learner code raised: say so, keep their traceback chained
                msg = f"your {name} raised {type(exc).__name__}: {exc}"
                raise CheckFailed(format_failure(frozen, case, msg, hidden=hidden, index=i, total=total)) from exc
            # The learner's code may have patched the checks' namespaces while it ran: put the
            # snapshots back before judging (run_check's final leave() restores the learner's
            # state from before the check, so these mid-call patches are simply dropped).
            _refreeze()
            try:
                verdict = judge(case, got, work)
            except CheckFailed:
                raise
            except Exception as exc:
                raise CheckFailed(f"internal error while judging {name} on case {case.label!r}: {exc!r}") from exc
            if verdict is not None:
                raise CheckFailed(format_failure(frozen, case, verdict, hidden=hidden, index=i, total=total))


def _build_runner(freeze_enter, freeze_leave, private, run_frozen, failed_cls, catch_warnings, simplefilter,
                  redirect_stderr, string_io):
    # Everything the runner touches before the namespaces are restored is bound here,
    # so replacing course.checks.core.<anything> (or builtins) afterwards has no effect.
    def run_check(name: str, obj: Any, *, hidden: bool = False) -> None:
        """Grade ``obj`` (the learner's function or class) on the check ``name``'s cases.

        Returns None when every case passes; raises CheckFailed (an AssertionError) with a
        message in the learner's terms otherwise. Writes nothing to stderr.
        """
        __tracebackhide__ = True
        entry = private.get(name)
        if entry is None:
            raise failed_cls(f"there is no check named {name!r} (the names are the graded items' names)")
        undo = freeze_enter()
        try:
            with catch_warnings(), redirect_stderr(string_io()):
                simplefilter("ignore")
                run_frozen(entry, obj, bool(hidden))
        finally:
            freeze_leave(undo)

    return run_check


run_check = _build_runner(
    _FREEZE.enter, _FREEZE.leave, _PRIVATE, _run_frozen, CheckFailed, warnings.catch_warnings,
    warnings.simplefilter, contextlib.redirect_stderr, io.StringIO,
)
check = run_check
