"""Chapter 7 checks (07_scalable_attention): sliding_window_mask, lsh_buckets, linear_attention,
chunked_attention.

Expected results come from ``reference_impl.scalable`` run in float64 (rounded to float32
once); the masks and buckets are exact. When a learner's result is wrong it is compared
with a catalogue of classic mistakes computed on the same inputs in float64, and the
message names the one it matches.

Structural checks: ``chunked_attention`` must never hold more than ``T_q * chunk_size``
scores per batch-head, ``linear_attention`` must never form a ``T_q x T_k`` tensor. While
the learner's function runs, ``invoke`` records the largest tensor any ATen operator
allocates (``util_memory.watch_allocations``, a TorchDispatchMode) and returns it with
the output; ``judge`` compares it with what the case allows:

- chunked: ``max(lead * T_q * chunk_size, what the inputs and output need)``, where
  ``lead`` is the product of the leading (batch, head) dims and "what they need" covers
  contiguous copies of q, k, v, the output, and k, v padded to a multiple of chunk_size;
- linear: fewer than ``lead * T_q * T_k`` elements in any one tensor.

Only cases whose full score matrix is clearly larger than those bounds enforce them
(``T_k`` much larger than ``d``), so legitimate inputs and outputs never trigger it;
the long-sequence cases (T ~ 256) are the ones that catch a full score matrix.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
import torch.nn.functional as F

from reference_impl import scalable as _ref

from .core import Case, Check, register, sanitize
from .diagnose import close, describe, first_match, mismatch, modified_inputs, shape_str
from .util_memory import describe_allocation, too_large, watch_allocations

ASSIGNMENT = "07_scalable_attention"

_ref_window = _ref.sliding_window_mask
_ref_lsh = _ref.lsh_buckets
_ref_linear = _ref.linear_attention
_ref_chunked = _ref.chunked_attention

_ATTENTION_BUILTINS = (
    "torch.nn.functional.scaled_dot_product_attention",
    "torch.nn.functional.multi_head_attention_forward",
    "torch.nn.MultiheadAttention",
    "torch._native_multi_head_attention",
    "torch.ops.aten.scaled_dot_product_attention",
    "torch.ops.aten._scaled_dot_product_flash_attention_for_cpu",
    "torch.ops.aten._scaled_dot_product_flash_attention",
    "torch.ops.aten._scaled_dot_product_efficient_attention",
    "torch.ops.aten._scaled_dot_product_fused_attention_overrideable",
    "torch.ops.aten._safe_softmax",
    "torch.ops.aten._native_multi_head_attention",
)
_OVERFLOW = 88.0  # exp() of float32 overflows to inf above about 88.72


def _randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float32)


def _lead(t: torch.Tensor) -> int:
    return math.prod(t.shape[:-2])


def _lead_label(lead: tuple) -> str:
    if not lead:
        return "no batch axis: "
    if len(lead) == 1:
        return f"batch {lead[0]}: "
    return f"leading dims {lead} (batch, heads): "


def _combine(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return "several mistakes at once: " + "; ".join(f"({i}) {p}" for i, p in enumerate(parts, 1))


# ---------------------------------------------------------------------------
# sliding_window_mask
# ---------------------------------------------------------------------------

_WINDOW_EDGE = {
    "le": None,
    "lt": "the window is exclusive (|i - j| < window); the edge belongs to it: [i, j] is True iff "
          "|i - j| <= window (window=0 keeps just the diagonal)",
}
_WINDOW_SIDE = {
    "both": None,
    "past": "the window is one-sided (only keys j <= i); without causal it reaches both ways: "
            "|i - j| <= window",
    "future": "the window is one-sided (only keys j >= i, the future); without causal it reaches both ways: "
              "|i - j| <= window",
}
_WINDOW_CAUSAL = {
    "ok": None,
    "ignored": "with causal=True it still keeps keys j > i (the future); causal also requires j <= i",
    "inverted": "with causal=True it keeps the future side (j >= i) instead of the past (j <= i)",
    "strict": "with causal=True it drops the diagonal (j < i); a position may attend to itself, so the "
              "condition is j <= i",
}


def _window_variant(T: int, w: int, causal: bool, edge="le", side="both", causal_mode="ok") -> torch.Tensor:
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    off = i - j  # (T, T)
    near = off.abs() <= w if edge == "le" else off.abs() < w
    if side == "past":
        near = near & (off >= 0)
    elif side == "future":
        near = near & (off <= 0)
    if causal:
        if causal_mode == "ok":
            near = near & (off >= 0)
        elif causal_mode == "inverted":
            near = near & (off <= 0)
        elif causal_mode == "strict":
            near = near & (off > 0)
    return near


def _window_catalogue(T: int, w: int, causal: bool, want: torch.Tensor):
    sides = _WINDOW_SIDE if not causal else {
        "both": None, "future": "only keys j >= i are kept (the future side); causal keeps the past side, j <= i"}
    modes = _WINDOW_CAUSAL if causal else {"ok": None}
    combos = []
    for edge, side, mode in itertools.product(_WINDOW_EDGE, sides, modes):
        parts = [p for p in (_WINDOW_EDGE[edge], sides[side], modes[mode]) if p]
        if parts:
            combos.append((len(parts), edge, side, mode, parts))
    combos.sort(key=lambda c: c[0])
    for _, edge, side, mode, parts in combos:
        candidate = _window_variant(T, w, causal, edge, side, mode)
        if not torch.equal(candidate, want):
            yield candidate, _combine(parts)
    if w > 0:
        for other, text in ((w // 2, "the window counts the total width; window is the distance on each side: "
                                     "|i - j| <= window"),
                            (2 * w, "the window reaches 2 * window positions; it is |i - j| <= window")):
            candidate = _window_variant(T, other, causal)
            if not torch.equal(candidate, want):
                yield candidate, text


class SlidingWindowMaskCheck(Check):
    name = "sliding_window_mask"
    assignment = ASSIGNMENT
    kind = "function"
    reference = "reference_impl.scalable.sliding_window_mask"
    timeout_s = 20.0

    # (seq_len, window, causal)
    VISIBLE = ((9, 3, False), (7, 2, True), (5, 0, False), (4, 6, False))
    HIDDEN = ((11, 4, False), (10, 3, True), (1, 0, False), (6, 0, True), (12, 1, True), (6, 2, False))

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        cases = []
        for T, w, causal in (self.HIDDEN if hidden else self.VISIBLE):
            label = f"seq_len={T}, window={w}" + (", causal=True" if causal else "")
            if T == 1:
                label += " (a single position)"
            elif w >= T - 1:
                label += " (window reaches the whole sequence)"
            cases.append(Case(label, {"seq_len": T, "window": w, "causal": causal}, _ref_window(T, w, causal)))
        return cases

    def invoke(self, obj: Any, inputs: dict) -> Any:
        T, w = inputs["seq_len"], inputs["window"]
        if inputs["causal"]:
            return sanitize(obj(T, w, causal=True))
        return sanitize(obj(T, w))

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        T, w, causal = case.inputs["seq_len"], case.inputs["window"], case.inputs["causal"]
        want = case.expected
        call = f"sliding_window_mask({T}, {w}" + (", causal=True)" if causal else ")")
        if not isinstance(got, torch.Tensor):
            return f"{call} should return a bool tensor of shape ({T}, {T}), but it returned {describe(got)}."
        if tuple(got.shape) == (T, T) and got.dtype != torch.bool and close(got, want):
            return (f"{call} has the right pattern but dtype {got.dtype}: return a boolean tensor "
                    "(dtype=torch.bool, or .bool()).")
        wrong = mismatch(call, want, got)
        if wrong is None:
            return None
        if tuple(got.shape) != (T, T) or got.dtype != torch.bool:
            return wrong
        diag = first_match(got, _window_catalogue(T, w, causal, want))
        return f"{call} is wrong: {diag}." if diag else wrong


# ---------------------------------------------------------------------------
# lsh_buckets
# ---------------------------------------------------------------------------


def _lsh_inputs(g: torch.Generator, lead: tuple, T: int, d: int, half: int) -> tuple:
    """x (*lead, T, d) and rotations (d, half) whose best and second-best bucket scores are
    at least 1e-3 apart in every row, so float32 rounding never decides a bucket."""
    rotations = _randn(g, d, half)
    x = _randn(g, *lead, T, d)
    for _ in range(50):
        r = x.double() @ rotations.double()
        both = torch.cat([r, -r], dim=-1)
        top = both.topk(2, dim=-1).values  # (..., T, 2)
        bad = (top[..., 0] - top[..., 1]) < 1e-3 * (1 + top[..., 0].abs())
        if not bool(bad.any()):
            break
        x[bad] = _randn(g, int(bad.sum()), d)
    return x, rotations


def _lsh_catalogue(x: torch.Tensor, rotations: torch.Tensor, want: torch.Tensor):
    r = x.double() @ rotations.double()  # (..., T, n_buckets // 2)
    half = r.shape[-1]
    yield r.argmax(dim=-1), ("the -x @ R half is missing: argmax(x @ R) only ever gives buckets 0 .. "
                             f"n_buckets // 2 - 1 = {half - 1}. Concatenate both halves, "
                             "torch.cat([x @ R, -x @ R], dim=-1), then take the argmax")
    # argmin over [xR, -xR] and argmax over [-xR, xR] give the same buckets: one message for both
    yield torch.cat([-r, r], dim=-1).argmax(dim=-1), ("the halves are concatenated in the wrong order "
                                                       "([-x @ R, x @ R]), or it takes the argmin (the two give "
                                                       "the same buckets). A vector goes to the bucket of its "
                                                       "LARGEST score in torch.cat([x @ R, -x @ R], dim=-1): "
                                                       "take the argmax, with the halves in that order")
    yield r.abs().argmax(dim=-1), ("it takes argmax(|x @ R|), which forgets the sign: a vector and its "
                                   "opposite must land in different buckets. Use "
                                   "argmax(cat([x @ R, -x @ R], -1))")
    yield r.argmin(dim=-1), ("it takes argmin(x @ R) over one half only; use argmax over "
                             "torch.cat([x @ R, -x @ R], dim=-1)")


class LshBucketsCheck(Check):
    name = "lsh_buckets"
    assignment = ASSIGNMENT
    kind = "function"
    reference = "reference_impl.scalable.lsh_buckets"
    timeout_s = 20.0

    # (leading dims, T, d, n_buckets)
    VISIBLE = (((), 6, 4, 4), ((2,), 5, 3, 8), ((1,), 7, 8, 2))
    HIDDEN = (((2, 2), 9, 5, 6), ((), 1, 4, 16), ((3,), 10, 2, 10), ((), 50, 16, 16))

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        g = torch.Generator().manual_seed(seed)
        cases = []
        for lead, T, d, n in (self.HIDDEN if hidden else self.VISIBLE):
            x, rotations = _lsh_inputs(g, lead, T, d, n // 2)
            want = _ref_lsh(x.double(), rotations.double())
            label = (f"{_lead_label(lead)}x {shape_str(x.shape)}, rotations ({d}, {n // 2}): n_buckets={n}")
            cases.append(Case(label, {"x": x, "rotations": rotations}, want))
        return cases

    def invoke(self, obj: Any, inputs: dict) -> Any:
        return sanitize(obj(inputs["x"], inputs["rotations"]))

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        changed = modified_inputs(case.inputs, inputs_after, ("x", "rotations"), "your function")
        if changed:
            return changed
        want = case.expected
        x, rotations = case.inputs["x"], case.inputs["rotations"]
        if isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(want.shape) + (1,):
            return (f"your buckets have shape {shape_str(got.shape)}; expected {shape_str(want.shape)}, one bucket "
                    "per position: argmax(dim=-1) without keepdim.")
        if isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(want.shape) and got.dtype != torch.long \
                and not got.is_floating_point() and bool(torch.equal(got.long(), want)):
            return f"your buckets are right but have dtype {got.dtype}; return a LongTensor (argmax gives one)."
        wrong = mismatch("lsh_buckets(x, rotations)", want, got)
        if wrong is None:
            return None
        if isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(want.shape):
            for candidate, text in _lsh_catalogue(x, rotations, want):
                if not torch.equal(candidate, want) and bool(torch.equal(got.long(), candidate)):
                    return f"{wrong} It matches a known mistake: {text}."
        return wrong


# ---------------------------------------------------------------------------
# linear_attention
# ---------------------------------------------------------------------------

_PHI = {
    "elu1": None,
    "relu": "the feature map is relu(x); it is phi(x) = F.elu(x) + 1 (positive everywhere, so no key gets "
            "weight 0)",
    "exp": "the feature map is exp(x); it is phi(x) = F.elu(x) + 1",
    "elu": "the feature map is elu(x) without the + 1; phi(x) = F.elu(x) + 1 keeps every feature positive",
    "identity": "there is no feature map (phi(x) = x); apply phi(x) = F.elu(x) + 1 to the queries and the keys",
}
_PHI_ON = {
    "both": None,
    "q_only": "phi is applied to the queries only; the keys need it too: phi(k_j)",
    "k_only": "phi is applied to the keys only; the queries need it too: phi(q_i)",
}
_EPS = {
    "den": None,
    "none": "eps is missing (or ignored): the denominator is phi(q_i) . z + eps, with the eps argument",
    "outside": "eps is added to the result (num / den + eps); it belongs in the denominator: "
               "num / (phi(q_i) . z + eps)",
    "both": "eps is added to the numerator too ((num + eps) / (den + eps)); only the denominator gets it",
    "feature": "eps is added to the features (phi(x) + eps) instead of the denominator: "
               "num / (phi(q_i) . z + eps)",
    "z": "eps is added to every entry of z (phi(q_i) . (z + eps)); it is added once, to the denominator: "
         "phi(q_i) . z + eps",
}
_CAUSAL = {
    "inclusive": None,
    "all": "causal=True still uses every key: position i may only use keys j <= i, so S and z must be running "
           "(cumulative) sums, e.g. torch.cumsum over the positions",
    "exclusive": "the causal sums stop at j < i (an exclusive prefix sum): position i includes its own key "
                 "and value, j <= i (with torch.cumsum, the sum up to and including i)",
}
_OTHER = {
    "no_z": "the normaliser is missing: divide phi(q_i)^T S by phi(q_i) . z + eps, z = sum_j phi(k_j)",
    "scaled": "the queries are scaled by 1/sqrt(d) as in softmax attention; linear attention applies "
              "phi to q and k as they are",
}


def _phi(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "elu1":
        return F.elu(x) + 1
    if kind == "relu":
        return torch.relu(x)
    if kind == "exp":
        return torch.exp(x)
    if kind == "elu":
        return F.elu(x)
    return x


def _linear_variant(q, k, v, causal: bool, eps: float, *, phi="elu1", phi_on="both", eps_mode="den",
                    causal_mode="inclusive", no_z=False, scaled=False) -> torch.Tensor:
    """Linear attention with classic mistakes, float64, via the explicit (T_q, T_k) weights."""
    q, k, v = q.double(), k.double(), v.double()
    if scaled:
        q = q / math.sqrt(q.shape[-1])
    qf = _phi(q, phi) if phi_on in ("both", "q_only") else q
    kf = _phi(k, phi) if phi_on in ("both", "k_only") else k
    if eps_mode == "feature":
        qf, kf = qf + eps, kf + eps
    A = qf @ kf.transpose(-2, -1)  # (..., T_q, T_k) phi(q_i) . phi(k_j)
    if causal and causal_mode != "all":
        T_q, T_k = A.shape[-2:]
        A = A * torch.ones(T_q, T_k, dtype=torch.float64).tril(0 if causal_mode == "inclusive" else -1)
    num = A @ v  # (..., T_q, d_v)
    if no_z:
        return num
    if eps_mode == "z":  # phi(q_i) . (z + eps)
        return num / (A.sum(dim=-1, keepdim=True) + eps * qf.sum(dim=-1, keepdim=True))
    den = A.sum(dim=-1, keepdim=True)  # (..., T_q, 1)
    if eps_mode in ("den",):
        return num / (den + eps)
    if eps_mode in ("none", "feature"):
        return num / den
    if eps_mode == "outside":
        return num / den + eps
    return (num + eps) / (den + eps)  # "both"


def _linear_catalogue(inputs: dict, want: torch.Tensor):
    q, k, v, causal = inputs["q"], inputs["k"], inputs["v"], inputs["causal"]
    eps = 1e-6 if inputs["eps"] is None else inputs["eps"]
    groups = [("phi", _PHI, "elu1"), ("phi_on", _PHI_ON, "both"), ("eps_mode", _EPS, "den")]
    if causal:
        groups.append(("causal_mode", _CAUSAL, "inclusive"))
    singles = [({key: value}, [text]) for key, table, _ in groups for value, text in table.items() if text]
    singles += [({key: True}, [text]) for key, text in _OTHER.items()]
    pairs = []
    for (ka, ta, _), (kb, tb, _) in itertools.combinations(groups, 2):
        for (va, xa), (vb, xb) in itertools.product(ta.items(), tb.items()):
            if xa and xb:
                pairs.append(({ka: va, kb: vb}, [xa, xb]))
    for flags, parts in singles + pairs:
        candidate = _linear_variant(q, k, v, causal, eps, **flags)
        if not close(candidate, want):
            yield candidate, _combine(parts)


def _linear_limit(inputs: dict) -> int | None:
    """Elements from which one tensor counts as a (T_q x T_k) tensor; None if the case cannot tell."""
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    lead, T_q, T_k = _lead(q), q.shape[-2], k.shape[-2]
    d, d_v = q.shape[-1], v.shape[-1]
    legit = max(q.numel(), k.numel(), v.numel(), lead * T_q * d_v, lead * max(T_q, T_k) * d * d_v)
    full = lead * T_q * T_k
    return full if full > 2 * legit else None


class LinearAttentionCheck(Check):
    name = "linear_attention"
    assignment = ASSIGNMENT
    kind = "function"
    forbidden = _ATTENTION_BUILTINS
    forbidden_hint = ("Linear attention has no softmax at all: sum phi(k_j) v_j^T and phi(k_j) first, then "
                      "read them with phi(q_i).")
    reference = "reference_impl.scalable.linear_attention"
    timeout_s = 30.0

    # (leading dims, T_q, T_k, d, d_v, causal, eps or None for the default)
    VISIBLE = (
        ((2,), 5, 7, 4, 3, False, None),
        ((2, 2), 6, 6, 3, 5, True, None),
        ((1,), 4, 9, 4, 2, False, 0.5),
        ((1,), 5, 5, 3, 3, True, 0.5),
        ((1,), 256, 256, 4, 4, True, None),
    )
    HIDDEN = (
        ((), 3, 9, 5, 4, False, None),
        ((1,), 1, 1, 4, 3, True, None),
        ((2,), 5, 5, 4, 2, True, 2.0),
        ((3,), 8, 4, 2, 6, False, 1.0),
        ((2, 2), 7, 7, 6, 6, True, None),
        ((2,), 200, 300, 4, 2, False, None),
    )

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        g = torch.Generator().manual_seed(seed)
        cases = []
        for lead, T_q, T_k, d, d_v, causal, eps in (self.HIDDEN if hidden else self.VISIBLE):
            q, k, v = _randn(g, *lead, T_q, d), _randn(g, *lead, T_k, d), _randn(g, *lead, T_k, d_v)
            kwargs = {} if eps is None else {"eps": eps}
            want = _ref_linear(q.double(), k.double(), v.double(), causal=causal, **kwargs).float()
            sizes = f"T={T_q}" if causal else f"T_q={T_q}, T_k={T_k}"
            label = f"{_lead_label(lead)}{sizes}, d={d}, d_v={d_v}" + (", causal=True" if causal else "")
            if eps is not None:
                label += f", eps={eps}"
            inputs = {"q": q, "k": k, "v": v, "causal": causal, "eps": eps}
            if _linear_limit(inputs) is not None:
                label += f"; a long sequence: no tensor may hold {T_q} x {T_k} elements per batch-head"
            cases.append(Case(label, inputs, want))
        return cases

    def invoke(self, obj: Any, inputs: dict) -> Any:
        q, k, v = inputs["q"], inputs["k"], inputs["v"]
        kwargs = {}
        if inputs["causal"]:
            kwargs["causal"] = True
        if inputs["eps"] is not None:
            kwargs["eps"] = inputs["eps"]
        out, report = watch_allocations(lambda: obj(q, k, v, **kwargs), (q, k, v))
        return {"output": sanitize(out), "memory": report}

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        changed = modified_inputs(case.inputs, inputs_after, ("q", "k", "v"), "your function")
        if changed:
            return changed
        if not isinstance(got, dict) or "output" not in got:
            return f"internal: unexpected result {describe(got)}"
        out, want, inp = got["output"], case.expected, case.inputs
        if isinstance(out, (tuple, list)):
            return _not_a_tensor("linear_attention", want, out)
        wrong = mismatch("your output", want, out)
        if wrong is not None:
            if isinstance(out, torch.Tensor) and tuple(out.shape) == tuple(want.shape):
                diag = first_match(out, _linear_catalogue(inp, want))
                if diag:
                    return f"your output matches a known mistake: {diag}."
            return wrong
        limit = _linear_limit(inp)
        memory = got.get("memory")
        if limit is not None and too_large(memory, limit - 1):
            T_q, T_k = inp["q"].shape[-2], inp["k"].shape[-2]
            return (f"your code built a (T_q x T_k) tensor {describe_allocation(memory)} — linear attention must "
                    f"never form a {T_q} x {T_k} tensor (that is softmax attention's cost). Sum phi(k_j) v_j^T "
                    "into S (d x d_v) and phi(k_j) into z (d,) first, then out_i = phi(q_i)^T S / "
                    "(phi(q_i) . z + eps); when causal, use running sums (torch.cumsum over the positions, or a "
                    "loop that carries S and z).")
        return _unseen(got, "linear_attention")


def _not_a_tensor(name: str, want: torch.Tensor, out: Any) -> str:
    msg = f"{name} returns only the output tensor {shape_str(want.shape)}, but it returned {describe(out)}."
    if out and mismatch("x", want, out[0]) is None:
        msg += " Its first element is right: return just that."
    return msg


def _unseen(got: dict, name: str) -> str | None:
    memory = got.get("memory")
    if isinstance(memory, dict) and not memory.get("output_seen", True):
        return (f"the checks could not see how your {name} computed its result (PyTorch's dispatcher was "
                "bypassed, e.g. with torch._C._DisableTorchDispatch), so they cannot verify its memory use. "
                "Compute it with ordinary tensor operations.")
    return None


# ---------------------------------------------------------------------------
# chunked_attention
# ---------------------------------------------------------------------------


def _chunked_variant(q, k, v, c: int, causal: bool, *, scale="sqrt", rescale_sum=True, rescale_acc=True,
                     alpha="ok", drop_last=False, causal_mode="ok", combine="online", divide=True) -> torch.Tensor:
    """Online-softmax attention over key chunks with classic mistakes, float64."""
    q, k, v = q.double(), k.double(), v.double()
    T_q, T_k, d = q.shape[-2], k.shape[-2], q.shape[-1]
    factor = {"sqrt": math.sqrt(d), "none": 1.0, "d": float(d)}[scale]
    end = (T_k // c) * c if drop_last else T_k
    rows = torch.arange(T_q)[:, None]  # query positions
    m = torch.full(q.shape[:-1], float("-inf"), dtype=torch.float64)  # (..., T_q)
    l = torch.zeros(q.shape[:-1], dtype=torch.float64)  # (..., T_q)
    acc = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=torch.float64)  # (..., T_q, d_v)
    parts = []
    for k0 in range(0, end, c):
        k1 = min(k0 + c, end)
        s = q @ k[..., k0:k1, :].transpose(-2, -1) / factor  # (..., T_q, c)
        if causal and causal_mode != "ignored":
            cols = torch.arange(k0, k1)[None, :] if causal_mode != "local" else torch.arange(k1 - k0)[None, :]
            blocked = {"ok": cols > rows, "local": cols > rows, "strict": cols >= rows, "next": cols > rows + 1,
                       "inverted": cols < rows}[causal_mode]
            s = s.masked_fill(blocked, float("-inf"))
        vc = v[..., k0:k1, :]
        if combine != "online":
            parts.append(torch.softmax(s, dim=-1) @ vc)
            continue
        m_new = torch.maximum(m, s.amax(dim=-1))
        p = torch.exp(s - m_new.unsqueeze(-1))
        a = torch.exp(m - m_new) if alpha == "ok" else torch.exp(m_new - m)
        a = torch.nan_to_num(a, nan=0.0, posinf=0.0)  # the first chunk: nothing summed yet
        l = (l * a if rescale_sum else l) + p.sum(dim=-1)
        acc = (acc * a.unsqueeze(-1) if rescale_acc else acc) + p @ vc
        m = m_new
    if combine == "mean":
        return torch.stack(parts).mean(dim=0) if parts else acc / l.unsqueeze(-1)
    if combine == "sum":
        return torch.stack(parts).sum(dim=0) if parts else acc / l.unsqueeze(-1)
    return acc / l.unsqueeze(-1) if divide else acc


def _chunked_catalogue(inputs: dict, want: torch.Tensor):
    q, k, v, c, causal = (inputs[n] for n in ("q", "k", "v", "chunk_size", "causal"))
    T_k = k.shape[-2]
    mistakes = []
    if T_k % c:
        last = T_k - (T_k // c) * c
        mistakes.append(({"drop_last": True},
                         f"the last, shorter chunk is dropped: with T_k={T_k} and chunk_size={c} the last "
                         f"{last} key{'s are' if last > 1 else ' is'} never seen. Loop with "
                         "range(0, T_k, chunk_size) and slice k[..., start:start + chunk_size, :] "
                         "(the last slice is simply shorter)"))
    mistakes += [
        ({"rescale_sum": False, "rescale_acc": False},
         "the running max is updated but what was summed before is not rescaled. When the max grows from "
         "m_old to m_new, multiply BOTH the running sum l and the output accumulator by exp(m_old - m_new)"),
        ({"rescale_acc": False},
         "the running sum l is rescaled but the accumulated output is not: when the max grows from m_old to "
         "m_new, multiply the accumulator by exp(m_old - m_new) too"),
        ({"rescale_sum": False},
         "the accumulated output is rescaled but the running sum l is not: when the max grows from m_old to "
         "m_new, multiply l by exp(m_old - m_new) too"),
        ({"alpha": "inverted"},
         "the rescaling factor is upside down: what was summed under the old max m_old is multiplied by "
         "exp(m_old - m_new) (at most 1), not exp(m_new - m_old)"),
        ({"divide": False},
         "the result is not divided by the running sum: return acc / l (l = the sum of exp(s - m) over "
         "all keys) at the end"),
    ]
    if not causal:
        mistakes += [
            ({"combine": "mean"},
             "each chunk is normalised on its own (a softmax within the chunk) and the chunk results are "
             "averaged. The softmax runs over ALL keys: carry a running max m and running sum l across chunks "
             "and divide once at the end"),
            ({"combine": "sum"},
             "each chunk is normalised on its own (a softmax within the chunk) and the chunk results are "
             "added up. The softmax runs over ALL keys: carry a running max m and running sum l across chunks "
             "and divide once at the end"),
        ]
    else:
        mistakes += [
            ({"causal_mode": "strict"},
             "the causal test inside the chunks is off by one (it keeps only keys j < i): query i may see "
             "itself, so block exactly the keys j > i"),
            ({"causal_mode": "next"},
             "the causal test inside the chunks is off by one (it lets query i see key i + 1): block exactly "
             "the keys j > i"),
            ({"causal_mode": "local"},
             "the causal mask compares the query position with the key's index INSIDE its chunk; use the key's "
             "position in the whole sequence (chunk start + index), e.g. torch.arange(start, end)"),
            ({"causal_mode": "ignored"},
             "causal=True is ignored: query i must not see the keys j > i"),
            ({"causal_mode": "inverted"},
             "the causal mask is the wrong way round (it blocks the past, j < i); block the future, j > i"),
        ]
    mistakes += [
        ({"scale": "none"}, "the scores are not scaled: divide q @ k^T by math.sqrt(d), d = q.size(-1)"),
        ({"scale": "d"}, "the scores are divided by d instead of sqrt(d)"),
    ]
    for flags, text in mistakes:
        candidate = _chunked_variant(q, k, v, c, causal, **flags)
        if not close(candidate, want):
            yield candidate, text


def _chunk_allowance(inputs: dict) -> int | None:
    """Most elements one tensor may hold; None if this case cannot tell a full score matrix apart."""
    q, k, v, c = inputs["q"], inputs["k"], inputs["v"], inputs["chunk_size"]
    lead, T_q, T_k = _lead(q), q.shape[-2], k.shape[-2]
    d, d_v = q.shape[-1], v.shape[-1]
    legit = max(q.numel(), k.numel(), v.numel(), lead * T_q * d_v, lead * (T_k + c - 1) * max(d, d_v))
    allowed = max(lead * T_q * c, legit)
    return allowed if lead * T_q * T_k > 2 * allowed else None


def _max_score(inputs: dict) -> float:
    q, k = inputs["q"].double(), inputs["k"].double()
    return float((q @ k.transpose(-2, -1)).abs().max()) / math.sqrt(q.shape[-1])


class ChunkedAttentionCheck(Check):
    name = "chunked_attention"
    assignment = ASSIGNMENT
    kind = "function"
    forbidden = _ATTENTION_BUILTINS
    forbidden_hint = "Compute each chunk's scores with q @ k_chunk^T and fold them into the running max and sum."
    reference = "reference_impl.scalable.chunked_attention"
    timeout_s = 40.0

    # (leading dims, T_q, T_k, d, d_v, chunk_size, causal, kind) kind: "random" | "large" | "long"
    VISIBLE = (
        ((2, 3), 5, 12, 4, 6, 4, False, "random"),
        ((1,), 6, 10, 4, 3, 3, False, "random"),
        ((2, 2), 9, 9, 4, 4, 4, True, "random"),
        ((2,), 4, 7, 3, 2, 1, False, "random"),
        ((1,), 3, 7, 4, 5, 20, False, "random"),
        ((1,), 4, 10, 4, 3, 3, False, "large"),
        ((1,), 200, 256, 8, 8, 16, False, "long"),
        ((2,), 192, 192, 8, 4, 24, True, "long"),
    )
    HIDDEN = (
        ((), 7, 11, 5, 3, 5, False, "random"),
        ((2, 2), 10, 10, 4, 6, 3, True, "random"),
        ((3,), 5, 5, 2, 3, 1, True, "random"),
        ((1,), 1, 9, 6, 4, 4, False, "random"),
        ((2,), 6, 6, 3, 3, 16, True, "random"),
        ((2,), 6, 13, 16, 4, 4, False, "large"),
        ((1,), 8, 8, 4, 2, 3, True, "large"),
        ((1, 2), 300, 300, 8, 8, 32, True, "long"),
        ((1,), 150, 320, 8, 8, 48, False, "long"),
    )

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        g = torch.Generator().manual_seed(seed)
        cases = []
        for lead, T_q, T_k, d, d_v, c, causal, kind in (self.HIDDEN if hidden else self.VISIBLE):
            if kind == "large":
                q, k = _large_scores(g, lead, T_q, T_k, d, c)
            else:
                q, k = _randn(g, *lead, T_q, d), _randn(g, *lead, T_k, d)
                if kind == "random":
                    q = q * 2  # sharper softmax: the running max changes between chunks
            v = _randn(g, *lead, T_k, d_v)
            if kind == "large":
                v = v / 4  # float32 rounding of scores near 100 stays far inside the tolerance
            want = _ref_chunked(q.double(), k.double(), v.double(), c, causal=causal).float()
            inputs = {"q": q, "k": k, "v": v, "chunk_size": c, "causal": causal}
            cases.append(Case(self._label(lead, T_q, T_k, d, d_v, c, causal, kind, inputs), inputs, want))
        return cases

    @staticmethod
    def _label(lead, T_q, T_k, d, d_v, c, causal, kind, inputs) -> str:
        sizes = f"T={T_q}" if causal else f"T_q={T_q}, T_k={T_k}"
        label = f"{_lead_label(lead)}{sizes}, d={d}, d_v={d_v}, chunk_size={c}" + (", causal=True" if causal else "")
        if c > T_k:
            label += " (larger than T_k: a single chunk)"
        elif c == 1:
            label += " (one key per chunk)"
        elif T_k % c:
            label += f" (does not divide T_k: the last chunk holds {T_k % c} key{'s' if T_k % c > 1 else ''})"
        if kind == "large":
            label += "; scores up to about 100 whose maximum grows from chunk to chunk"
        if _chunk_allowance(inputs) is not None:
            label += f"; a long sequence: at most {T_q} x {c} scores per batch-head at a time"
        return label

    def invoke(self, obj: Any, inputs: dict) -> Any:
        q, k, v, c = inputs["q"], inputs["k"], inputs["v"], inputs["chunk_size"]
        kwargs = {"causal": True} if inputs["causal"] else {}
        out, report = watch_allocations(lambda: obj(q, k, v, c, **kwargs), (q, k, v))
        return {"output": sanitize(out), "memory": report}

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        changed = modified_inputs(case.inputs, inputs_after, ("q", "k", "v"), "your function")
        if changed:
            return changed
        if not isinstance(got, dict) or "output" not in got:
            return f"internal: unexpected result {describe(got)}"
        out, want, inp = got["output"], case.expected, case.inputs
        if isinstance(out, (tuple, list)):
            return _not_a_tensor("chunked_attention", want, out)
        wrong = mismatch("your output", want, out)
        if wrong is not None:
            if not (isinstance(out, torch.Tensor) and tuple(out.shape) == tuple(want.shape)):
                return wrong
            diag = first_match(out, _chunked_catalogue(inp, want))
            if diag:
                return f"your output matches a known mistake: {diag}."
            if out.is_floating_point() and not bool(torch.isfinite(out).all()):
                if _max_score(inp) > _OVERFLOW:
                    return (f"{wrong} The scores here reach about {_max_score(inp):.0f}, and exp() of anything "
                            "above 88.7 overflows float32 to inf (then inf / inf = NaN). Keep a running maximum m "
                            "of the scores seen so far and use exp(s - m); when m grows, rescale the running sum "
                            "and the output accumulator by exp(m_old - m_new).")
                return (f"{wrong} A NaN appears when exp(-inf - (-inf)) is computed: a row whose running max is "
                        "still -inf (no allowed key seen yet). The first chunk always holds key 0, which every "
                        "query may see.")
            return wrong
        allowed = _chunk_allowance(inp)
        if allowed is not None and too_large(got.get("memory"), allowed):
            return _chunk_memory_message(inp, got["memory"], allowed)
        return _unseen(got, "chunked_attention")


def _chunk_memory_message(inputs: dict, report: dict, allowed: int) -> str:
    q, k, c = inputs["q"], inputs["k"], inputs["chunk_size"]
    T_q, T_k = q.shape[-2], k.shape[-2]
    shape = list(report.get("shape", []))
    what = describe_allocation(report)
    rule = (f"chunked attention must only ever hold T_q x chunk_size scores ({T_q} x {c} per batch-head here, "
            f"at most {allowed} numbers in one tensor)")
    if shape[-2:] in ([T_q, T_k], [T_k, T_q]):
        if "bool" in str(report.get("dtype", "")):
            return (f"your code built a (T_q x T_k) mask {what} — {rule}. Build only the current chunk's causal "
                    "mask, from the positions: torch.arange(start, end) > torch.arange(T_q)[:, None].")
        return (f"your code built a (T_q x T_k) score tensor {what} — {rule}. Compute the scores of one chunk "
                "of keys at a time and fold them into the running max, running sum and output before moving on.")
    return (f"your code built a tensor {what} — {rule}. Do not keep every chunk's scores, weights or partial "
            "outputs: fold each chunk into the running max, running sum and output, then let it go.")


def _large_scores(g: torch.Generator, lead: tuple, T_q: int, T_k: int, d: int, c: int) -> tuple:
    """q, k whose scores are exact in float32 (multiples of 1/16 below 256 with d a power of 4), reach
    88 to 105, and grow from key chunk to key chunk: exp(s) without a running max overflows, and
    forgetting to rescale what was summed under an older max gives a clearly wrong result."""
    q = torch.randint(-2, 3, (*lead, T_q, d), generator=g).float() / 2
    k = torch.randint(-2, 3, (*lead, T_k, d), generator=g).float() / 4
    scale = math.sqrt(d)
    n_chunks = -(-T_k // c)
    q[..., 0] = 4.0 * scale
    for i in range(n_chunks):  # key feature 0 grows chunk by chunk: base score 88 -> 104
        base = 88.0 + 16.0 * i / max(n_chunks - 1, 1)
        k[..., i * c:(i + 1) * c, 0] = round(base * 4) / 16  # score contribution round(4 base) / 4
    return q, k


register(SlidingWindowMaskCheck())
register(LshBucketsCheck())
register(LinearAttentionCheck())
register(ChunkedAttentionCheck())
