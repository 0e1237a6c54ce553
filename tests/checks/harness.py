"""Shared helpers of the chapters' check tests, on top of test_ch02's.

``failure_of`` runs an entry's checks inside a ``GlobalState`` that also restores the given
chapter modules (a cheating cell may patch ``course.checks.chNN``), ``reference_clone`` makes
a copy of a reference item with fresh code objects (the checks block the original), and
``corpus_suite`` gives each chapter the tests every corpus owes its checks.
"""

from __future__ import annotations

import types

import pytest

from course.checks import REGISTRY, CheckFailed, check, checks_for, seed_for

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


def all_cases(item: str, hidden: bool | None = None) -> list:
    """The check's cases for ``item``: visible, hidden, or both (``hidden=None``)."""
    c = REGISTRY[item]
    which = (False, True) if hidden is None else (hidden,)
    return [case for h in which for case in c.make_cases(seed_for(item, h), h)]


def corpus_suite(assignment: str, items, corpus: types.ModuleType, modules, ref_module: types.ModuleType, *,
                 reference_items=None, reference_copy=None) -> dict:
    """The tests every chapter owes its checks, as test functions for the chapter's test module.

    Use ``globals().update(corpus_suite(...))`` in ``tests/checks/test_chNN.py``: the corpus covers
    every item; correct alternatives pass (visible and hidden); each mistake and cheat fails with
    its diagnosis (``entry.expect`` appears in the message); the reference passes through a copy
    and is blocked itself; visible and hidden cases differ.
    """
    items = tuple(items)
    reference_items = items if reference_items is None else tuple(reference_items)
    copy = reference_copy or (lambda item: reference_clone(getattr(ref_module, item)))
    correct, failing = corpus.CORRECT, corpus.MISTAKES + corpus.CHEATS
    every_entry = correct + failing + list(getattr(corpus, "CHEATS_DURING_CALL", ()))

    def test_corpus_covers_every_item():
        assert [c.name for c in checks_for(assignment)] == list(items)
        for item in items:
            for group in (corpus.CORRECT, corpus.MISTAKES, corpus.CHEATS):
                assert any(e.item == item for e in group), item
        ids = [e.id for e in every_entry]
        assert len(ids) == len(set(ids))

    @pytest.mark.parametrize("entry", correct, ids=lambda e: f"{e.item}-{e.id}")
    def test_correct_alternative_passes(entry):
        obj = load(entry)
        check(entry.item, obj)
        check(entry.item, obj, hidden=True)

    @pytest.mark.parametrize("entry", failing, ids=lambda e: f"{e.item}-{e.id}")
    def test_mistake_or_cheat_fails_with_its_diagnosis(entry):
        message = failure_of(entry, *modules)
        assert message, f"{entry.id} passed every case"
        assert message.startswith(f"{entry.item}: ") and "test case" in message, message
        assert entry.expect.lower() in message.lower(), message

    @pytest.mark.parametrize("hidden", [False, True], ids=["visible", "hidden"])
    @pytest.mark.parametrize("item", reference_items)
    def test_reference_passes_its_own_checks(item, hidden):
        check(item, copy(item), hidden=hidden)

    @pytest.mark.parametrize("item", reference_items)
    def test_the_reference_itself_is_blocked(item):
        with pytest.raises(CheckFailed, match="reference solution"):
            check(item, getattr(ref_module, item))

    def test_visible_and_hidden_cases_differ():
        for item in items:
            visible = {c.label for c in all_cases(item, False)}
            hidden = {c.label for c in all_cases(item, True)}
            assert visible and hidden and not visible & hidden, item

    return {name: fn for name, fn in locals().items() if name.startswith("test_")}
