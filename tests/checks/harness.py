"""Shared helpers of the chapter 1 and chapter 3 check tests, on top of test_ch02's.

``failure_of`` runs an entry's checks inside a ``GlobalState`` that also restores the given
chapter modules (a cheating cell may patch ``course.checks.chNN``), ``reference_clone`` makes
a copy of a reference item with fresh code objects (the checks block the original).
"""

from __future__ import annotations

import types

from course.checks import CheckFailed, check

from .corpus_ch02 import Entry
from .test_ch02 import GlobalState, copy_class, copy_function, load


class ChapterState(GlobalState):
    """GlobalState that also snapshots ``modules`` (e.g. course.checks.ch01)."""

    def __init__(self, *modules: types.ModuleType):
        super().__init__()
        self.modules = self.modules + [m for m in modules if m not in self.modules]


def failure_of(entry: Entry, *modules: types.ModuleType) -> str:
    """The message of the first failing check (visible first, then hidden); '' if all pass."""
    with ChapterState(*modules):
        obj = load(entry)
        for hidden in (False, True):
            try:
                check(entry.item, obj, hidden=hidden)
            except CheckFailed as exc:
                return str(exc)
    return ""


def _fresh_code(code: types.CodeType) -> types.CodeType:
    """``code`` with a distinct identity, nested code objects (comprehensions, lambdas) included."""
    consts = tuple(_fresh_code(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_consts=consts, co_firstlineno=code.co_firstlineno + 100_000)


def _clone_function(fn, owner=None):
    copy = copy_function(fn, owner)
    copy.__code__ = _fresh_code(fn.__code__)
    return copy


def reference_clone(obj):
    """A copy of a reference function or class whose code objects (nested ones too) differ from the original's."""
    if not isinstance(obj, type):
        return _clone_function(obj)
    new = copy_class(obj)
    for key, val in vars(obj).items():
        if isinstance(val, types.FunctionType):
            setattr(new, key, _clone_function(val, owner=new))
    return new
