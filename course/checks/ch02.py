"""Chapter 2 checks (02_self_attention): causal_mask, scaled_dot_product_attention, MultiHeadAttention.

Expected results come from ``reference_impl.attention`` run in float64 and rounded to
float32. When a learner's result is wrong, it is compared with a catalogue of classic
mistakes computed on the same inputs (also float64), and the message names the one it
matches.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
import torch.nn as nn

from reference_impl import attention as _ref

from .core import Case, Check, CheckFailed, register, sanitize
from .diagnose import close, describe, first_match, mismatch, modified_inputs, shape_str

ASSIGNMENT = "02_self_attention"

_ref_sdpa = _ref.scaled_dot_product_attention
_ref_causal_mask = _ref.causal_mask
_RefMHA = _ref.MultiHeadAttention

_ATTENTION_BUILTINS = (
    "torch.nn.functional.scaled_dot_product_attention",
    "torch.nn.functional.multi_head_attention_forward",
    "torch.nn.MultiheadAttention",
    "torch._native_multi_head_attention",
    "torch.ops.aten.scaled_dot_product_attention",
    "torch.ops.aten._scaled_dot_product_attention_math",
    "torch.ops.aten._scaled_dot_product_flash_attention_for_cpu",
    "torch.ops.aten._safe_softmax",
    "torch.ops.aten._native_multi_head_attention",
)


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


def _randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float32)


def _random_mask(g: torch.Generator, *shape: int) -> torch.Tensor:
    """Random bool mask with at least one True in every row (last axis): no fully masked row."""
    mask = torch.rand(*shape, generator=g) < 0.6
    keep = torch.randint(0, shape[-1], tuple(shape[:-1]) + (1,), generator=g)
    return mask.scatter(-1, keep, True)


def _causal(n: int) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool).tril()


# ---------------------------------------------------------------------------
# causal_mask
# ---------------------------------------------------------------------------


class CausalMaskCheck(Check):
    name = "causal_mask"
    assignment = ASSIGNMENT
    kind = "function"
    reference = "reference_impl.attention.causal_mask"
    timeout_s = 20.0

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        sizes = (3, 2, 9, 16) if hidden else (4, 1, 7)
        return [
            Case(label=f"seq_len={n}", inputs={"seq_len": n}, expected=_ref_causal_mask(n))
            for n in sizes
        ]

    def invoke(self, obj: Any, inputs: dict) -> Any:
        return sanitize(obj(inputs["seq_len"]))

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        want = case.expected
        n = case.inputs["seq_len"]
        if not isinstance(got, torch.Tensor):
            return f"causal_mask({n}) should return a bool tensor of shape ({n}, {n}), but it returned {describe(got)}."
        if tuple(got.shape) == (n, n) and got.dtype != torch.bool:
            if got.is_floating_point() and bool(torch.equal(torch.isinf(got) & (got < 0), ~want)) \
                    and bool((got[want] == 0).all()):
                return (f"causal_mask({n}) returned an additive float mask (0 where allowed, -inf where "
                        "blocked), nn.Transformer's convention. In this course a mask is boolean: "
                        "True means 'this query may attend to this key'.")
            if close(got, want):
                return (f"causal_mask({n}) has the right pattern but dtype {got.dtype}: return a boolean "
                        "tensor (dtype=torch.bool, or .bool()).")
        wrong = mismatch(f"causal_mask({n})", want, got)
        if wrong is None:
            return None
        ones = torch.ones(n, n, dtype=torch.bool)
        diag = first_match(got, [
            (ones.tril(-1), "it is False on the diagonal (off by one: j < i). A position may attend to "
                            "itself: [i, j] must be True iff j <= i (torch.tril keeps the diagonal)."),
            (ones.triu(), "it is the upper triangle (j >= i), i.e. transposed: True above the diagonal "
                          "would let each position see the FUTURE. [i, j] must be True iff j <= i."),
            (ones.triu(1), "it is inverted: True exactly where j > i. True must mean 'may attend' "
                           "(the past and the position itself), so [i, j] is True iff j <= i."),
            (~ones.tril(-1), "it is True on and above the diagonal (j >= i): transposed. [i, j] must "
                             "be True iff j <= i."),
            (ones, "it is all True: nothing is masked. [i, j] must be False for j > i (future positions)."),
        ])
        if n == 1:
            return f"{wrong} causal_mask(1) must be [[True]]: a position may attend to itself."
        return f"causal_mask({n}) is wrong: {diag}" if diag else wrong


# ---------------------------------------------------------------------------
# scaled_dot_product_attention
# ---------------------------------------------------------------------------

_SCALES = {
    "sqrt_dk": None,
    "none": "the scores are not scaled: divide q @ k^T by math.sqrt(d_k), with d_k = q.size(-1), before the softmax",
    "dk": "the scores are divided by d_k instead of sqrt(d_k): the scale is 1 / math.sqrt(d_k)",
    "sqrt_dv": "the scores are scaled by 1/sqrt(d_v), the size of v's vectors: use d_k = q.size(-1), "
               "the size of the vectors in each dot product",
    "sqrt_tq": "the scores are scaled by 1/sqrt(T_q), a sequence length: use d_k = q.size(-1) "
               "(with a batch axis, q.shape[1] is the sequence length, not d_k)",
    "sqrt_tk": "the scores are scaled by 1/sqrt(T_k), a sequence length: use d_k = q.size(-1)",
}
_SOFTMAX_DIMS = {
    -1: None,
    -2: "the softmax runs over the QUERY axis (dim=-2), so columns sum to 1; it must run over the keys "
        "(dim=-1) so that each query's weights sum to 1",
}
_MASK_MODES = {
    "correct": None,
    "inverted": "the mask is used the wrong way round (positions where mask is True were blocked); in this "
                "course True means 'may attend', so fill the scores with -inf where mask is False, e.g. "
                "scores.masked_fill(~mask, float('-inf'))",
    "after_softmax": "the mask is applied AFTER the softmax (weights zeroed without renormalising, so rows no "
                     "longer sum to 1); put -inf into the masked scores BEFORE the softmax",
    "fill_zero": "masked scores are set to 0 instead of -inf (a score of 0 still gets weight exp(0)); fill "
                 "them with float('-inf') before the softmax",
    "ignored": "the mask is ignored; where mask is False the scores must become -inf before the softmax",
}


def _sdpa_variant(q, k, v, mask, scale="sqrt_dk", softmax_dim=-1, mask_mode="correct"):
    """Attention with one or more classic mistakes, float64. Returns (output, weights)."""
    q, k, v = q.double(), k.double(), v.double()
    factor = {
        "sqrt_dk": math.sqrt(q.shape[-1]), "none": 1.0, "dk": float(q.shape[-1]),
        "sqrt_dv": math.sqrt(v.shape[-1]), "sqrt_tq": math.sqrt(q.shape[-2]), "sqrt_tk": math.sqrt(k.shape[-2]),
    }[scale]
    scores = q @ k.transpose(-2, -1) / factor
    if mask is not None:
        if mask_mode == "correct":
            scores = scores.masked_fill(~mask, float("-inf"))
        elif mask_mode == "inverted":
            scores = scores.masked_fill(mask, float("-inf"))
        elif mask_mode == "fill_zero":
            scores = scores.masked_fill(~mask, 0.0)
    weights = torch.softmax(scores, dim=softmax_dim)
    if mask is not None and mask_mode == "after_softmax":
        weights = weights * mask
    return weights @ v, weights


def _sdpa_catalogue(q, k, v, mask, expected_weights):
    """(weights of a mistaken implementation, what went wrong), single mistakes first."""
    mask_modes = list(_MASK_MODES) if mask is not None else ["correct"]
    combos = []
    for scale, dim, mode in itertools.product(_SCALES, _SOFTMAX_DIMS, mask_modes):
        parts = [p for p in (_SCALES[scale], _SOFTMAX_DIMS[dim], _MASK_MODES[mode]) if p]
        if parts:
            combos.append((len(parts), scale, dim, mode, parts))
    combos.sort(key=lambda c: c[0])
    for _, scale, dim, mode, parts in combos:
        _, w = _sdpa_variant(q, k, v, mask, scale, dim, mode)
        if close(w, expected_weights):
            continue  # indistinguishable from the right answer on this case
        if len(parts) == 1:
            text = f"your weights match a known mistake: {parts[0]}."
        else:
            text = "your weights match several mistakes at once: " + "; ".join(
                f"({i}) {p}" for i, p in enumerate(parts, 1)) + "."
        yield w, text


def _raw_scores(q, k, mask):
    q, k = q.double(), k.double()
    scores = q @ k.transpose(-2, -1)
    out = [(scores, "unscaled scores q @ k^T")]
    scaled = scores / math.sqrt(q.shape[-1])
    out.append((scaled, "scaled scores q @ k^T / sqrt(d_k)"))
    if mask is not None:
        out.append((scaled.masked_fill(~mask, float("-inf")), "masked scaled scores"))
    return out


class ScaledDotProductAttentionCheck(Check):
    name = "scaled_dot_product_attention"
    assignment = ASSIGNMENT
    kind = "function"
    forbidden = _ATTENTION_BUILTINS
    forbidden_hint = ("Compute it yourself: scores = q @ k.transpose(-2, -1) / math.sqrt(d_k), "
                      "-inf where the mask is False, torch.softmax(scores, dim=-1), then weights @ v.")
    reference = "reference_impl.attention.scaled_dot_product_attention"
    timeout_s = 30.0

    # (label, q shape, k shape, v shape, mask: None | "causal" | random mask shape)
    VISIBLE = (
        ("self-attention, no mask: batch 2, T=4, d_k=d_v=8", (2, 4, 8), (2, 4, 8), (2, 4, 8), None),
        ("cross-attention, no mask: batch 1, T_q=3, T_k=5, d_k=4, d_v=6", (1, 3, 4), (1, 5, 4), (1, 5, 6), None),
        ("causal mask of shape (5, 5) shared by the batch: batch 2, T=5, d_k=6, d_v=3",
         (2, 5, 6), (2, 5, 6), (2, 5, 3), "causal"),
        ("extra leading dims (2, 3): T_q=3, T_k=4, d_k=5, d_v=2, padding mask of shape (2, 1, 1, 4)",
         (2, 3, 3, 5), (2, 3, 4, 5), (2, 3, 4, 2), (2, 1, 1, 4)),
    )
    HIDDEN = (
        ("no batch axis: q (5, 7), k (3, 7), v (3, 2), mask (5, 3)", (5, 7), (3, 7), (3, 2), (5, 3)),
        ("a single query: batch 1, T_q=1, T_k=6, d_k=3, d_v=5", (1, 1, 3), (1, 6, 3), (1, 6, 5), None),
        ("leading dims (3, 2), T=7, causal mask (7, 7), d_k=9, d_v=4", (3, 2, 7, 9), (3, 2, 7, 9), (3, 2, 7, 4),
         "causal"),
        ("batch 2, T_q=4, T_k=6, per-example mask (2, 4, 6), d_k=2, d_v=3", (2, 4, 2), (2, 6, 2), (2, 6, 3),
         (2, 4, 6)),
        ("cross-attention with mask (3, 5) broadcast over batch 3: d_k=6, d_v=6", (3, 3, 6), (3, 5, 6), (3, 5, 6),
         (3, 5)),
    )

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        g = torch.Generator().manual_seed(seed)
        cases = []
        for label, qs, ks, vs, m in (self.HIDDEN if hidden else self.VISIBLE):
            q, k, v = _randn(g, *qs), _randn(g, *ks), _randn(g, *vs)
            if m is None:
                mask = None
            elif m == "causal":
                mask = _causal(qs[-2])
            else:
                mask = _random_mask(g, *m)
            cases.append(self._case(label, q, k, v, mask))
        if hidden:
            cases.append(self._large_scores_case(g))
        return cases

    def _case(self, label, q, k, v, mask) -> Case:
        out, w = _ref_sdpa(q.double(), k.double(), v.double(), mask)
        inputs = {"q": q, "k": k, "v": v, "mask": mask}
        return Case(label=label, inputs=inputs, expected=(out.float(), w.float()))

    def _large_scores_case(self, g) -> Case:
        """Scores near 90 (exactly representable): a softmax written as exp(s) / sum overflows."""
        q = torch.randint(-2, 3, (2, 3, 4), generator=g).float() / 2
        k = torch.randint(-2, 3, (2, 5, 4), generator=g).float() / 4
        q[..., 0], k[..., 0] = 18.0, 10.0  # adds 18 * 10 / sqrt(4) = 90 to every score
        v = _randn(g, 2, 5, 3)
        return self._case("large scores (about 90): batch 2, T_q=3, T_k=5, d_k=4, d_v=3", q, k, v, None)

    def invoke(self, obj: Any, inputs: dict) -> Any:
        q, k, v, mask = inputs["q"], inputs["k"], inputs["v"], inputs["mask"]
        result = obj(q, k, v) if mask is None else obj(q, k, v, mask)
        return sanitize(result)

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        want_out, want_w = case.expected
        inp = case.inputs
        changed = modified_inputs(inp, inputs_after, ("q", "k", "v", "mask"), "your function")
        if changed:
            return changed
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            msg = f"scaled_dot_product_attention must return a tuple (output, weights), but it returned {describe(got)}."
            if isinstance(got, torch.Tensor) and close(got, want_out):
                msg += " That tensor is the right output: also return the weights, `return output, weights`."
            return msg
        out, w = got
        if mismatch("x", want_w, out) is None and mismatch("x", want_out, w) is None:
            return ("you returned (weights, output); the order must be (output, weights): "
                    "`return weights @ v, weights`.")
        wrong_w = mismatch("the weights (your second return value)", want_w, w)
        if wrong_w:
            q, k, v, mask = inp["q"], inp["k"], inp["v"], inp["mask"]
            diag = first_match(w, _sdpa_catalogue(q, k, v, mask, want_w))
            if diag is None:
                for scores, what in _raw_scores(q, k, mask):
                    if close(w, scores):
                        diag = f"your weights are the {what}, before the softmax: return torch.softmax(scores, dim=-1)."
                        break
            if diag is None and isinstance(w, torch.Tensor) and w.shape == want_w.shape and w.is_floating_point() \
                    and not bool(torch.isfinite(w).all()):
                diag = (f"{wrong_w} If you wrote the softmax yourself: exp() of large scores overflows to inf "
                        "(inf / inf = NaN); subtract each row's maximum first, or use torch.softmax.")
            return diag or wrong_w
        wrong_out = mismatch("the output (your first return value)", want_out, out)
        if wrong_out:
            return f"{wrong_out} Your weights are right, so check the last step: output = weights @ v."
        return None


# ---------------------------------------------------------------------------
# MultiHeadAttention
# ---------------------------------------------------------------------------

_PROJECTIONS = ("w_q", "w_k", "w_v", "w_o")


def _make_weights(g: torch.Generator, d_model: int) -> dict:
    """nn.Linear-like init (uniform in +-1/sqrt(d_model)) from a private generator."""
    bound = 1.0 / math.sqrt(d_model)
    weights = {}
    for name in _PROJECTIONS:
        weights[f"{name}.weight"] = (torch.rand(d_model, d_model, generator=g) * 2 - 1) * bound
        weights[f"{name}.bias"] = (torch.rand(d_model, generator=g) * 2 - 1) * bound
    return weights


def _reference_mha(weights, x, context, mask, n_heads) -> torch.Tensor:
    d_model = x.shape[-1]
    with torch.random.fork_rng(devices=[]):  # constructing nn.Linear draws from the global RNG
        module = _RefMHA(d_model, n_heads)
    module.load_state_dict(weights)
    module = module.double()
    with torch.no_grad():
        ctx = None if context is None else context.double()
        return module(x.double(), context=ctx, mask=mask).float()


def _mha_variant(weights, x, context, mask, n_heads, *, split="ok", merge="ok", scale="sqrt_dhead",
                 softmax_dim=-1, mask_mode="correct", w_o=True, kv_from_x=False, qk_swapped=False,
                 one_head=False):
    """Multi-head attention with classic mistakes, float64 (a flag per mistake)."""
    W = {k: t.double() for k, t in weights.items()}
    x = x.double()
    context = x if (context is None or kv_from_x) else context.double()
    H = 1 if one_head else n_heads
    B, T_q, D = x.shape
    T_k = context.shape[1]
    d = D // H

    def proj(name, t):
        return t @ W[f"{name}.weight"].T + W[f"{name}.bias"]

    def heads(t, T):
        if split == "no_transpose":
            return t.reshape(B, H, T, d)
        if split == "interleaved":
            return t.reshape(B, T, d, H).permute(0, 3, 1, 2)
        return t.reshape(B, T, H, d).transpose(1, 2)

    q_name, k_name = ("w_k", "w_q") if qk_swapped else ("w_q", "w_k")
    q = heads(proj(q_name, x), T_q)
    k = heads(proj(k_name, context), T_k)
    v = heads(proj("w_v", context), T_k)
    factor = {"sqrt_dhead": math.sqrt(d), "none": 1.0, "sqrt_dmodel": math.sqrt(D), "dhead": float(d)}[scale]
    scores = q @ k.transpose(-2, -1) / factor
    if mask is not None:
        if mask_mode == "correct":
            scores = scores.masked_fill(~mask, float("-inf"))
        elif mask_mode == "inverted":
            scores = scores.masked_fill(mask, float("-inf"))
        elif mask_mode == "fill_zero":
            scores = scores.masked_fill(~mask, 0.0)
    att = torch.softmax(scores, dim=softmax_dim)
    if mask is not None and mask_mode == "after_softmax":
        att = att * mask
    out = att @ v  # (B, H, T_q, d)
    if merge == "no_transpose":
        out = out.reshape(B, T_q, D)
    elif split == "interleaved":
        out = out.permute(0, 2, 3, 1).reshape(B, T_q, D)
    else:
        out = out.transpose(1, 2).reshape(B, T_q, D)
    return proj("w_o", out) if w_o else out


_MHA_MISTAKES = (
    ({"split": "no_transpose", "merge": "no_transpose"},
     "the heads are split and merged with reshape/view only, no transpose. Head h must use features "
     "[h*d_head:(h+1)*d_head] of EVERY position: split with .view(B, T, n_heads, d_head).transpose(1, 2) and "
     "merge with .transpose(1, 2).reshape(B, T, d_model)."),
    ({"split": "no_transpose"},
     "the heads are split with a plain reshape/view to (B, n_heads, T, d_head), which mixes positions. "
     "Reshape to (B, T, n_heads, d_head) first, then .transpose(1, 2)."),
    ({"merge": "no_transpose"},
     "the heads are merged with a reshape straight from (B, n_heads, T, d_head) to (B, T, d_model). "
     "Transpose back first: out.transpose(1, 2).reshape(B, T, d_model)."),
    ({"split": "interleaved"},
     "each head takes every n_heads-th feature (view(B, T, d_head, n_heads)). Head h must use the "
     "contiguous slice [h*d_head:(h+1)*d_head]: view(B, T, n_heads, d_head)."),
    ({"w_o": False},
     "the output projection is missing: apply self.w_o to the merged heads."),
    ({"kv_from_x": True},
     "the keys and values come from x instead of context. With cross-attention, k = w_k(context) and "
     "v = w_v(context); only the queries come from x (context defaults to x when it is None)."),
    ({"qk_swapped": True},
     "the queries use w_k and the keys use w_q (swapped): q = w_q(x), k = w_k(context)."),
    ({"one_head": True},
     "it computes a single head over all d_model features. Split into n_heads heads of "
     "d_head = d_model // n_heads features each."),
    ({"scale": "none"},
     "the scores are not scaled: divide by math.sqrt(d_head) with d_head = d_model // n_heads."),
    ({"scale": "sqrt_dmodel"},
     "the scores are scaled by 1/sqrt(d_model) instead of 1/sqrt(d_head): each head's dot products "
     "have d_head = d_model // n_heads terms."),
    ({"scale": "dhead"},
     "the scores are divided by d_head instead of sqrt(d_head)."),
    ({"softmax_dim": -2},
     "the softmax runs over the QUERY axis (dim=-2); it must run over the keys (dim=-1)."),
    ({"mask_mode": "inverted"},
     "the mask is used the wrong way round (True must mean 'may attend': -inf where mask is False)."),
    ({"mask_mode": "after_softmax"},
     "the mask is applied AFTER the softmax (weights zeroed without renormalising); use -inf before it."),
    ({"mask_mode": "fill_zero"},
     "masked scores are set to 0 instead of -inf before the softmax."),
    ({"mask_mode": "ignored"},
     "the mask is ignored; pass it on to the attention of every head."),
)


def _mha_catalogue(inputs, expected):
    x, context, mask, H, W = inputs["x"], inputs["context"], inputs["mask"], inputs["n_heads"], inputs["weights"]
    for flags, text in _MHA_MISTAKES:
        if mask is None and "mask_mode" in flags:
            continue
        if context is None and ("kv_from_x" in flags):
            continue
        try:
            candidate = _mha_variant(W, x, context, mask, H, **flags)
        except RuntimeError:  # shapes that this mistake could not even produce
            continue
        if not close(candidate, expected):
            yield candidate, f"your output matches a known mistake: {text}"


def _module_state(module: nn.Module) -> dict:
    """What forward must leave alone: every attribute of every submodule, by identity."""
    state = {}
    for prefix, sub in module.named_modules():
        where = f"self.{prefix}." if prefix else "self."
        for key, val in vars(sub).items():
            if key in ("_parameters", "_buffers", "_modules"):
                for name, item in val.items():
                    state[f"{where}{name}"] = (id(item), None)
            elif isinstance(val, dict):
                state[f"{where}{key}"] = (id(val), tuple((k, id(v)) for k, v in val.items()))
            elif isinstance(val, list):
                state[f"{where}{key}"] = (id(val), tuple(id(v) for v in val))
            else:
                state[f"{where}{key}"] = (id(val), None)
        for name, p in sub._parameters.items():
            if p is not None:
                state[f"{where}{name} (values)"] = p.detach().clone()
    return state


def _side_effects(before: dict, after: dict) -> list[str]:
    found = []
    for key, val in after.items():
        if key not in before:
            found.append(f"it set {key} (a new attribute)")
        elif isinstance(val, torch.Tensor):
            if not bool(torch.equal(val, before[key])):
                found.append(f"it changed the values of {key.replace(' (values)', '')}")
        elif val != before[key]:
            found.append(f"it changed {key}")
    found += [f"it deleted {key}" for key in before if key not in after]
    return found


class MultiHeadAttentionCheck(Check):
    name = "MultiHeadAttention"
    assignment = ASSIGNMENT
    kind = "class"
    forbidden = _ATTENTION_BUILTINS
    forbidden_hint = "Build it from your own scaled_dot_product_attention and the four nn.Linear projections."
    reference = "reference_impl.attention.MultiHeadAttention"
    timeout_s = 30.0

    # (label, batch, T_q, T_k or None for self-attention, d_model, n_heads, mask: None | "causal" | "random")
    VISIBLE = (
        ("self-attention: batch 2, T=5, d_model=8, n_heads=2", 2, 5, None, 8, 2, None),
        ("causal self-attention, mask (4, 4): batch 1, T=4, d_model=6, n_heads=3", 1, 4, None, 6, 3, "causal"),
        ("cross-attention: batch 2, T_q=3, context T_k=6, d_model=8, n_heads=4", 2, 3, 6, 8, 4, None),
        ("cross-attention with mask (3, 5): batch 1, T_q=3, T_k=5, d_model=4, n_heads=1", 1, 3, 5, 4, 1, "random"),
    )
    HIDDEN = (
        ("causal self-attention: batch 3, T=7, d_model=12, n_heads=4", 3, 7, None, 12, 4, "causal"),
        ("cross-attention, a single query: batch 1, T_q=1, T_k=4, d_model=10, n_heads=5, mask (1, 4)",
         1, 1, 4, 10, 5, "random"),
        ("cross-attention: batch 2, T_q=6, T_k=2, d_model=16, n_heads=2", 2, 6, 2, 16, 2, None),
        ("self-attention with a random mask (5, 5): batch 2, T=5, d_model=9, n_heads=3", 2, 5, None, 9, 3, "random"),
        ("d_head = 1: batch 1, T=3, d_model=4, n_heads=4", 1, 3, None, 4, 4, None),
    )

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        g = torch.Generator().manual_seed(seed)
        cases = []
        for label, B, T_q, T_k, D, H, m in (self.HIDDEN if hidden else self.VISIBLE):
            weights = _make_weights(g, D)
            x = _randn(g, B, T_q, D)
            context = None if T_k is None else _randn(g, B, T_k, D)
            n_keys = T_q if T_k is None else T_k
            mask = None if m is None else (_causal(T_q) if m == "causal" else _random_mask(g, T_q, n_keys))
            inputs = {"d_model": D, "n_heads": H, "weights": weights, "x": x, "context": context, "mask": mask}
            cases.append(Case(label=label, inputs=inputs, expected=_reference_mha(weights, x, context, mask, H)))
        return cases

    def invoke(self, obj: Any, inputs: dict) -> Any:
        D, H = inputs["d_model"], inputs["n_heads"]
        module = obj(D, H)
        call = f"{self.name}({D}, {H})"
        if not isinstance(module, nn.Module):
            raise CheckFailed(f"{call} is not an nn.Module: declare it as class MultiHeadAttention(nn.Module) "
                              "and call super().__init__() first in __init__.")
        _load_projections(module, inputs["weights"], D, call)
        before = _module_state(module)
        kwargs = {}
        if inputs["context"] is not None:
            kwargs["context"] = inputs["context"]
        if inputs["mask"] is not None:
            kwargs["mask"] = inputs["mask"]
        out = module(inputs["x"], **kwargs)
        effects = _side_effects(before, _module_state(module))
        return {"output": sanitize(out), "side_effects": effects}

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        changed = modified_inputs(case.inputs, inputs_after, ("x", "context", "mask"), "forward")
        if changed:
            return changed
        if not isinstance(got, dict) or "output" not in got:
            return f"internal: unexpected result {describe(got)}"
        if got.get("side_effects"):
            return ("forward must have no side effects (nothing stored on the module), but "
                    + "; ".join(got["side_effects"][:3])
                    + ". Keep intermediate results such as the attention weights in local variables.")
        out, want = got["output"], case.expected
        if isinstance(out, (tuple, list)):
            msg = f"forward must return only the output tensor {shape_str(want.shape)}, but it returned {describe(out)}."
            if out and mismatch("x", want, out[0]) is None:
                msg += " Its first element is right: return just that."
            return msg
        wrong = mismatch("the output of forward", want, out)
        if wrong is None:
            return None
        diag = first_match(out, _mha_catalogue(case.inputs, want))
        return diag or wrong


def _load_projections(module: nn.Module, weights: dict, D: int, call: str) -> None:
    """Copy the case's known weights into the learner's w_q, w_k, w_v, w_o (by attribute)."""
    spec = (f"The spec asks for four projections self.w_q, self.w_k, self.w_v, self.w_o, each "
            f"nn.Linear(d_model, d_model) with bias; the checks copy known weights into them.")
    for name in _PROJECTIONS:
        lin = getattr(module, name, None)
        if lin is None:
            raise CheckFailed(f"{call} has no attribute {name}. {spec}")
        w, b = getattr(lin, "weight", None), getattr(lin, "bias", None)
        if not isinstance(w, torch.Tensor):
            raise CheckFailed(f"{call}.{name} has no weight tensor ({describe(lin)}). {spec}")
        if tuple(w.shape) != (D, D):
            raise CheckFailed(f"{call}.{name}.weight has shape {shape_str(w.shape)}; expected ({D}, {D}). {spec}")
        if not isinstance(b, torch.Tensor) or tuple(b.shape) != (D,):
            raise CheckFailed(f"{call}.{name} has no bias of shape ({D},). {spec}")
        with torch.no_grad():
            w.copy_(weights[f"{name}.weight"])
            b.copy_(weights[f"{name}.bias"])


register(CausalMaskCheck())
register(ScaledDotProductAttentionCheck())
register(MultiHeadAttentionCheck())
