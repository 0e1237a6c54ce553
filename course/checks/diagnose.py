"""Helpers that turn "got" vs "expected" into a sentence a learner can act on.

Every function here is pure (tensors in, text out) and is used by the chapters' ``judge``.
Tolerances default to ``torch.testing.assert_close``'s float32 ones.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

from .core import UNSUPPORTED

RTOL32, ATOL32 = 1.3e-6, 1e-5  # torch.testing.assert_close defaults for float32
MATCH_RTOL, MATCH_ATOL = 1e-4, 1e-4  # "the learner's output is this known mistake"


def describe(value: Any) -> str:
    """A short description of any value a learner's code may return."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {shape_str(value.shape)} and dtype {value.dtype}"
    if isinstance(value, dict) and UNSUPPORTED in value:
        return str(value[UNSUPPORTED])
    if value is None:
        return "None (did you forget a return statement?)"
    if isinstance(value, tuple):
        return f"a tuple of {len(value)} values"
    if isinstance(value, list):
        return f"a list of {len(value)} values"
    if isinstance(value, dict):
        return "a dict"
    return f"a {type(value).__name__} ({value!r})"


def shape_str(shape: Iterable[int]) -> str:
    dims = tuple(int(s) for s in shape)
    return f"({dims[0]},)" if len(dims) == 1 else str(dims)


def index_str(flat_index: int, shape: tuple) -> str:
    idx = []
    for size in reversed(shape):
        idx.append(flat_index % size)
        flat_index //= size
    return shape_str(reversed(idx)) if idx else "()"


def close(got: Any, want: torch.Tensor, rtol: float = MATCH_RTOL, atol: float = MATCH_ATOL) -> bool:
    """True if ``got`` is a tensor of ``want``'s shape and values (NaN matches NaN; dtype ignored)."""
    if not isinstance(got, torch.Tensor) or not isinstance(want, torch.Tensor):
        return False
    if tuple(got.shape) != tuple(want.shape):
        return False
    if want.dtype == torch.bool or got.dtype == torch.bool:
        return bool(torch.equal(got.to(torch.bool), want.to(torch.bool))) and _is_01(got)
    g, w = got.double(), want.double()
    return bool(torch.isclose(g, w, rtol=rtol, atol=atol, equal_nan=True).all())


def _is_01(t: torch.Tensor) -> bool:
    return t.dtype == torch.bool or bool(((t == 0) | (t == 1)).all())


def first_match(got: Any, catalogue: Iterable[tuple[Any, str]]) -> str | None:
    """The message of the first (candidate tensor, message) whose tensor ``got`` matches."""
    for candidate, message in catalogue:
        if candidate is not None and close(got, candidate):
            return message
    return None


def mismatch(what: str, want: torch.Tensor, got: Any, rtol: float = RTOL32, atol: float = ATOL32) -> str | None:
    """None if ``got`` equals ``want`` (assert_close semantics), else what differs."""
    if not isinstance(got, torch.Tensor):
        return f"{what} should be a tensor of shape {shape_str(want.shape)}, but it is {describe(got)}."
    if tuple(got.shape) != tuple(want.shape):
        msg = f"{what} has shape {shape_str(got.shape)}; expected {shape_str(want.shape)}."
        if want.dim() >= 2 and tuple(got.shape) == tuple(want.shape[:-2]) + (want.shape[-1], want.shape[-2]):
            msg += " (The last two axes look swapped.)"
        elif got.numel() == want.numel():
            msg += " (Same number of elements: a reshape/view/transpose in the wrong order?)"
        return msg
    if got.dtype != want.dtype:
        hint = ""
        if want.dtype == torch.bool:
            hint = " Return a boolean tensor (dtype=torch.bool, or .bool())."
        return f"{what} has dtype {got.dtype}; expected {want.dtype}.{hint}"
    n = want.numel()
    if want.dtype == torch.bool or not want.is_floating_point():
        bad = (got != want).flatten()
        if not bool(bad.any()):
            return None
        k = int(bad.sum())
        i = int(bad.nonzero()[0, 0])
        return (f"{what} differs at {k} of {n} positions; first at index {index_str(i, tuple(want.shape))}: "
                f"expected {_item(want, i)}, got {_item(got, i)}.")
    g, w = got.detach().double().flatten(), want.detach().double().flatten()
    nonfinite = ~torch.isfinite(g) & torch.isfinite(w)
    if bool(nonfinite.any()):
        k = int(nonfinite.sum())
        i = int(nonfinite.nonzero()[0, 0])
        return (f"{what} contains NaN or inf at {k} of {n} positions (first at index "
                f"{index_str(i, tuple(want.shape))}, value {_item(got, i)}); expected finite values.")
    ok = torch.isclose(g, w, rtol=rtol, atol=atol, equal_nan=True)
    if bool(ok.all()):
        return None
    bad = ~ok
    k = int(bad.sum())
    i = int(bad.nonzero()[0, 0])
    err = (g - w).abs()
    err = torch.where(torch.isfinite(err), err, torch.zeros_like(err))
    return (f"{what} differs from the expected values at {k} of {n} positions; first at index "
            f"{index_str(i, tuple(want.shape))}: expected {_item(want, i)}, got {_item(got, i)}; "
            f"max abs error {float(err.max()):.3g}.")


def _item(t: torch.Tensor, flat_index: int) -> str:
    v = t.flatten()[flat_index].item()
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def modified_inputs(before: dict, after: dict, names: Iterable[str], who: str) -> str | None:
    """A message if any of the tensors ``names`` changed between ``before`` and ``after``."""
    for name in names:
        b, a = before.get(name), after.get(name)
        if not isinstance(b, torch.Tensor):
            continue
        same = (isinstance(a, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype
                and bool(torch.equal(a, b)))
        if not same:
            if b.dtype == torch.bool:
                how, fix = f"{name}.logical_not_() or {name}[...] = ...", f"~{name} or {name}.logical_not()"
            else:
                how, fix = f"{name} /= ..., {name}.masked_fill_(...) or {name}[...] = ...", \
                    f"{name} / scale or {name}.masked_fill(...)"
            return (f"{who} modified its input {name} in place (e.g. {how}). Inputs must stay unchanged: "
                    f"use out-of-place operations such as {fix}, which return new tensors.")
    return None
