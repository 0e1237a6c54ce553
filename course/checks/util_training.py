"""Helpers for checks that time a learner's training run (chapter 6's ``train_vit``).

A check's ``invoke`` always runs under ``guard(check)``: a TorchFunctionMode, a
TorchDispatchMode and a ``sys.setprofile`` hook see every torch call, every aten op and
every Python call. That is cheap for a function applied to a few small tensors, but it
makes a training loop 2-4 times slower (measured: 2-4 CPU s of training become 8 s), so
a CPU budget measured under the guard would mostly measure the guard.

``guard_lifted`` takes the active guard's interception off for one block (the learner's
training call) and puts the very same objects back afterwards, so the guard's exit
finds its modes and profile hook where it left them. What stays blocked meanwhile: the
same-named reference item through every ``reference_impl`` module attribute (the guard
replaced those with stubs, and that lasts as long as the guard). Everything the learner's
code does next (evaluating the trained model, ...) runs fully guarded again.

``process_time`` is ``time.process_time`` captured at import (before any learner code
runs): a learner's ``time.process_time = lambda: 0.0`` does not change what the checks
measure. It counts the CPU time of every thread of this process, so asking torch for more
threads does not buy a larger budget.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Iterator

import torch

from .core import CheckFailed, _ForbidAtenOps, _ForbidFunctions, _Guard

process_time = time.process_time
_C = torch._C
_getprofile, _setprofile = sys.getprofile, sys.setprofile
_thread_getprofile, _thread_setprofile = threading.getprofile, threading.setprofile


def _top(length, get_at):
    n = length()
    return get_at(n - 1) if n else None


@contextlib.contextmanager
def guard_lifted(who: str) -> Iterator[None]:
    """Run the block without the active guard's modes and profile hook; restore them after.

    Does nothing for the parts of a guard that are not active (e.g. ``invoke`` called
    directly in a test). ``who`` names the learner's function in the message raised when
    the block leaves PyTorch's mode stacks changed.
    """
    fn_mode = _top(_C._len_torch_function_stack, _C._get_function_stack_at)
    fn_mode = fn_mode if isinstance(fn_mode, _ForbidFunctions) else None
    dispatch_mode = _top(_C._len_torch_dispatch_stack, _C._get_dispatch_stack_at)
    dispatch_mode = dispatch_mode if isinstance(dispatch_mode, _ForbidAtenOps) else None
    profile = _getprofile()
    profile = profile if isinstance(getattr(profile, "__self__", None), _Guard) else None
    thread_profile = _thread_getprofile()

    if dispatch_mode is not None:
        _C._pop_torch_dispatch_stack(None)
    if fn_mode is not None:
        _C._pop_torch_function_stack()
    fn_depth, dispatch_depth = _C._len_torch_function_stack(), _C._len_torch_dispatch_stack()
    if profile is not None:
        _setprofile(None)
        _thread_setprofile(None)
    tampered = False
    try:
        yield
    finally:
        if profile is not None:
            _setprofile(profile)
            _thread_setprofile(thread_profile)
        for length, pop, depth in (
            (_C._len_torch_dispatch_stack, lambda: _C._pop_torch_dispatch_stack(None), dispatch_depth),
            (_C._len_torch_function_stack, _C._pop_torch_function_stack, fn_depth),
        ):
            if length() != depth:
                tampered = True
            while length() > depth:
                pop()
        if fn_mode is not None:
            _C._push_on_torch_function_stack(fn_mode)
        if dispatch_mode is not None:
            _C._push_on_torch_dispatch_stack(dispatch_mode)
    if tampered:
        raise CheckFailed(
            f"{who} changed PyTorch's mode stack (TorchFunctionMode/TorchDispatchMode) and did not restore it; "
            "a graded function must not do that."
        )
