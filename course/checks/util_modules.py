"""Generic helpers for checks of learner ``nn.Module`` classes (used by ch03, usable by any chapter).

- ``uniform_linear`` / ``random_norm``: known weights from a private generator, keyed like a
  ``state_dict`` (``"ff.linear1.weight"``), for ``load_weights``.
- ``load_weights``: copy those weights into the learner's module by the spec's attribute
  names, failing with a CheckFailed that names the missing or mis-shaped attribute.
- ``repeatable``: whether ``forward`` gives the same result twice (dropout, random state).
- ``random_mask``: a random boolean attention mask without a fully masked row.

Pure helpers except ``load_weights``/``repeatable``, which touch learner objects and
belong in a check's ``invoke``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn as nn

from .core import CheckFailed
from .diagnose import describe, shape_str


def uniform_linear(g: torch.Generator, prefix: str, d_in: int, d_out: int) -> dict:
    """``nn.Linear(d_in, d_out)``-like weights (uniform in +-1/sqrt(d_in)) under ``prefix``."""
    bound = 1.0 / math.sqrt(d_in)
    return {
        f"{prefix}.weight": (torch.rand(d_out, d_in, generator=g) * 2 - 1) * bound,
        f"{prefix}.bias": (torch.rand(d_out, generator=g) * 2 - 1) * bound,
    }


def random_norm(g: torch.Generator, prefix: str, d: int) -> dict:
    """LayerNorm weight and bias that are NOT ones and zeros (so swapped or missing norms show)."""
    return {
        f"{prefix}.weight": 1.0 + 0.5 * torch.randn(d, generator=g),
        f"{prefix}.bias": 0.5 * torch.randn(d, generator=g),
    }


def random_mask(g: torch.Generator, *shape: int) -> torch.Tensor:
    """Random bool mask with at least one True in every row (last axis): no fully masked row."""
    mask = torch.rand(*shape, generator=g) < 0.6
    keep = torch.randint(0, shape[-1], tuple(shape[:-1]) + (1,), generator=g)
    return mask.scatter(-1, keep, True)


def causal(n: int) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool).tril()


def _child(obj: Any, part: str) -> Any:
    if part.isdigit() and isinstance(obj, (list, tuple, nn.ModuleList, nn.Sequential)):
        index = int(part)
        return obj[index] if index < len(obj) else None
    return getattr(obj, part, None)


def load_weights(module: Any, weights: dict, call: str, spec: str) -> None:
    """Copy ``weights`` (``"attn.w_q.weight" -> tensor``) into ``module`` by attribute path.

    ``call`` names the module in messages (e.g. ``"TransformerBlock(8, 2, 16)"``), ``spec``
    is one sentence saying which attributes the spec asks for. Raises CheckFailed when an
    attribute is missing, is not a tensor or has the wrong shape.
    """
    for key, value in weights.items():
        parts = key.split(".")
        obj, path = module, call
        for part in parts[:-1]:
            child = _child(obj, part)
            path = f"{path}[{part}]" if part.isdigit() else f"{path}.{part}"
            if child is None:
                raise CheckFailed(f"{path} does not exist. {spec}")
            obj = child
        leaf = parts[-1]
        tensor = getattr(obj, leaf, None)
        where = f"{path}.{leaf}"
        if tensor is None and leaf == "bias":
            raise CheckFailed(f"{path} has no bias (bias=False?). {spec}")
        if not isinstance(tensor, torch.Tensor):
            raise CheckFailed(f"{where} should be a tensor of shape {shape_str(value.shape)}, but it is "
                              f"{describe(tensor)}. {spec}")
        if tuple(tensor.shape) != tuple(value.shape):
            raise CheckFailed(f"{where} has shape {shape_str(tensor.shape)}; expected {shape_str(value.shape)}. "
                              f"{spec}")
        with torch.no_grad():
            tensor.copy_(value)


def repeatable(forward: Callable[[], Any]) -> tuple[Any, bool | None]:
    """Call ``forward`` twice: (first result, whether the two results are equal tensors).

    The flag is None when either result is not a plain tensor of the same shape (nothing to
    compare); NaN counts as equal to NaN.
    """
    first = forward()
    second = forward()
    if not (type(first) is torch.Tensor and type(second) is torch.Tensor and first.shape == second.shape
            and first.dtype == second.dtype):
        return first, None
    with torch.no_grad():
        same = (first == second) | (torch.isnan(first) & torch.isnan(second)) if first.is_floating_point() \
            else first == second
        return first, bool(same.all())
