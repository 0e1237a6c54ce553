"""What does learner code allocate? Structural checks for "never builds a T_q x T_k tensor".

``watch_allocations(fn)`` runs ``fn()`` under a ``TorchDispatchMode`` that sees every ATen
operator and records each tensor an operator returns in *new* storage (views and in-place
results share an argument's storage and cost no memory, so they are skipped). It returns
``(result, report)`` where ``report`` is a plain dict (picklable with
``torch.load(weights_only=True)``)::

    {"numel": 65536, "shape": [1, 256, 256], "op": "aten.bmm.default", "dtype": "torch.float32",
     "count": 412, "output_seen": True}

``numel``/``shape``/``op``/``dtype`` describe the largest tensor allocated (numel 0 and
shape [] when nothing was), ``count`` is the number of allocations, and ``output_seen``
says whether the tensor(s) ``fn`` returned were produced by operators the mode saw (or are
views of its inputs): False means the computation was hidden from the dispatcher
(``torch._C._DisableTorchDispatch`` and friends), so the other numbers prove nothing.

Use it inside a check's ``invoke`` (it runs learner code) and decide in ``judge``
(``too_large``, ``describe_allocation``). The same idea as ``reference_impl.scalable.record_allocations``, but a
private copy: everything it calls is bound when this module is imported (before any
learner code runs), so a learner's ``torch.Tensor.numel = ...`` changes nothing.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .diagnose import shape_str

__all__ = ["watch_allocations", "largest_allocation", "too_large", "describe_allocation"]


def _make_mode_class(
    _Tensor=torch.Tensor,
    _storage=torch.Tensor.untyped_storage,
    _ptr=torch.UntypedStorage.data_ptr,
    _numel=torch.Tensor.numel,
    _isinstance=isinstance,
    _str=str,
    _tuple=tuple,
    _list=list,
    _dict=dict,
    _set=set,
):
    def tensors(value, out):
        if _isinstance(value, _Tensor):
            out.append(value)
        elif _isinstance(value, (_tuple, _list)):
            for item in value:
                tensors(item, out)
        elif _isinstance(value, _dict):
            for item in value.values():
                tensors(item, out)
        return out

    class AllocationWatch(TorchDispatchMode):
        """Records the largest freshly allocated tensor and every fresh storage pointer."""

        @classmethod
        def _should_skip_dynamo(cls) -> bool:
            # False: do not wrap __torch_dispatch__ in torch._dynamo.disable (importing
            # torch._dynamo takes seconds); this mode never runs under torch.compile.
            return False

        def __init__(self):
            super().__init__()
            self.largest = (0, (), "", "")  # numel, shape, op, dtype
            self.count = 0
            self.fresh = _set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            result = func(*args, **kwargs)
            shared = {_ptr(_storage(t)) for t in tensors((args, kwargs), [])}
            for t in tensors(result, []):
                n = _numel(t)
                p = _ptr(_storage(t))
                if n == 0 or p in shared:
                    continue
                self.count += 1
                self.fresh.add(p)
                if n > self.largest[0]:
                    self.largest = (n, _tuple(t.shape), _str(func), _str(t.dtype))
            return result

    def storage_ptrs(value):
        return {_ptr(_storage(t)) for t in tensors(value, [])}

    return AllocationWatch, storage_ptrs


_AllocationWatch, _storage_ptrs = _make_mode_class()


def watch_allocations(fn: Callable[[], Any], inputs: Any = (), _Watch=_AllocationWatch,
                      _ptrs=_storage_ptrs, _int=int, _list=list, _bool=bool) -> tuple[Any, dict]:
    """Run ``fn()`` and return ``(result, report)`` (see the module docstring).

    ``inputs``: the tensors ``fn`` reads (a tensor or a container of them), so that a
    result that is a view of an input counts as seen.
    """
    watch = _Watch()
    with watch:
        result = fn()
    out_ptrs = _ptrs(result)
    seen = watch.fresh | _ptrs(inputs)
    numel, shape, op, dtype = watch.largest
    report = {
        "numel": _int(numel),
        "shape": [_int(s) for s in shape],
        "op": op,
        "dtype": dtype,
        "count": _int(watch.count),
        "output_seen": _bool(out_ptrs) and out_ptrs <= seen,
    }
    return result, report


def largest_allocation(fn: Callable, *args, **kwargs) -> dict:
    """The report of ``watch_allocations`` for ``fn(*args, **kwargs)``: a learner's tool to see
    the largest tensor their function builds (``report["shape"]``, ``report["numel"]``)."""
    return watch_allocations(lambda: fn(*args, **kwargs), (args, kwargs))[1]


def op_name(op: str) -> str:
    """'aten.bmm.default' -> 'aten.bmm' (the overload name says nothing to a learner)."""
    parts = op.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else op


def too_large(report: Any, allowed: int) -> bool:
    """Whether the report's largest allocation holds more than ``allowed`` elements."""
    return isinstance(report, dict) and isinstance(report.get("numel"), int) and report["numel"] > allowed


def describe_allocation(report: dict) -> str:
    """'of shape (1, 200, 256) (51200 elements, float32, made by aten.bmm)'."""
    dtype = str(report.get("dtype", "")).replace("torch.", "")
    return (f"of shape {shape_str(report.get('shape') or [0])} ({report.get('numel')} elements, {dtype}, "
            f"made by {op_name(str(report.get('op', '')))})")
