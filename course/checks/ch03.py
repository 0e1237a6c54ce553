"""Chapter 3 checks (03_ffn_stacking): layer_norm, FeedForward, TransformerBlock, TransformerStack.

Expected results come from ``reference_impl.blocks`` run in float64 (with known weights
loaded) and rounded to float32. A wrong result is compared with a catalogue of classic
mistakes computed on the same inputs by a small float64 functional model of the block
(``_block_variant``), written independently of the reference: unbiased variance, eps
outside the square root, post-norm, missing residuals, norm1/norm2 swapped, the mask
ignored or inverted, a GELU instead of a ReLU, a stack without its final norm or with
its blocks in reverse, ...

The class checks build the learner's module, copy known weights into it by the spec's
attribute names (``attn.w_q`` ..., ``ff.linear1``/``linear2``, ``norm1``/``norm2``,
``blocks``, ``norm``) and fail with a message naming any attribute that is missing or
mis-shaped. Each item is graded on its own: after the weights are in, the block's ``ff`` is
replaced by the reference FeedForward and the stack's blocks by reference blocks (same
weights), so a mistake in FeedForward costs only FeedForward's points, not the block's and
the stack's as well. The learner's TransformerBlock uses chapter 2's MultiHeadAttention from
``reference_impl`` (imported by the notebook's setup cell); only PyTorch's ready-made
encoder layers are forbidden there, and ``F.layer_norm`` (and its relatives) only in
``layer_norm``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impl import blocks as _ref

from .core import Case, Check, CheckFailed, register, sanitize
from .diagnose import close, describe, first_match, mismatch, modified_inputs, shape_str
from .util_modules import causal, load_weights, random_mask, random_norm, repeatable, uniform_linear

ASSIGNMENT = "03_ffn_stacking"

_RefBlock = _ref.TransformerBlock
_RefStack = _ref.TransformerStack
_RefFeedForward = _ref.FeedForward
_ref_layer_norm = _ref.layer_norm

_NORM_BUILTINS = (
    "torch.nn.functional.layer_norm",
    "torch.layer_norm",
    "torch.native_layer_norm",
    "torch.nn.LayerNorm",
    "torch.nn.functional.group_norm",
    "torch.group_norm",
    "torch.nn.GroupNorm",
    "torch.nn.functional.instance_norm",
    "torch.nn.functional.batch_norm",
    "torch.ops.aten.layer_norm",
    "torch.ops.aten.native_layer_norm",
    "torch.ops.aten.group_norm",
    "torch.ops.aten.native_group_norm",
    "torch.ops.aten.batch_norm",
    "torch.ops.aten.native_batch_norm",
    "torch.ops.aten._native_batch_norm_legit",
    "torch.ops.aten._native_batch_norm_legit_no_training",
)
_ENCODER_BUILTINS = (
    "torch.nn.TransformerEncoderLayer",
    "torch.nn.TransformerEncoder",
    "torch.nn.TransformerDecoderLayer",
    "torch.nn.Transformer",
    "torch.nn.MultiheadAttention",
    "torch._transformer_encoder_layer_fwd",
    "torch.ops.aten._transformer_encoder_layer_fwd",
)


def _randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float32)


# ---------------------------------------------------------------------------
# layer_norm
# ---------------------------------------------------------------------------


def _ln_variant(x, gamma, beta, eps, *, unbiased=False, eps_outside=False, no_sqrt=False, dims=(-1,),
                affine="both"):
    """Layer norm with classic mistakes, float64."""
    x, gamma, beta = x.double(), gamma.double(), beta.double()
    if affine == "before":  # gamma and beta applied first, then a plain normalisation
        x, affine = x * gamma + beta, "none"
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=unbiased)
    if no_sqrt:
        x_hat = (x - mean) / (var + eps)
    elif eps_outside:
        x_hat = (x - mean) / (var.sqrt() + eps)
    else:
        x_hat = (x - mean) / torch.sqrt(var + eps)
    return {"both": x_hat * gamma + beta, "none": x_hat, "gamma": x_hat * gamma, "beta": x_hat + beta,
            "swapped": x_hat * beta + gamma}[affine]


_LN_MISTAKES = (
    ({"unbiased": True},
     "the variance is the unbiased one (divides by D - 1, torch.var's default); layer norm uses the population "
     "variance, dividing by D: x.var(dim=-1, unbiased=False, keepdim=True) or "
     "((x - mean) ** 2).mean(-1, keepdim=True)"),
    ({"eps_outside": True},
     "eps is added outside the square root ((x - mean) / (std + eps)); it belongs inside: "
     "(x - mean) / torch.sqrt(var + eps)"),
    ({"unbiased": True, "eps_outside": True},
     "two mistakes: the variance is the unbiased one (divide by D, not D - 1) and eps is outside the square root "
     "(use torch.sqrt(var + eps))"),
    ({"no_sqrt": True},
     "it divides by the variance instead of the standard deviation: (x - mean) / torch.sqrt(var + eps)"),
    ({"affine": "none"},
     "gamma and beta are missing: the result must be x_hat * gamma + beta"),
    ({"affine": "gamma"},
     "beta is missing: the result must be x_hat * gamma + beta"),
    ({"affine": "beta"},
     "gamma is missing: the result must be x_hat * gamma + beta"),
    ({"affine": "swapped"},
     "gamma and beta are swapped: gamma scales (x_hat * gamma) and beta shifts (+ beta)"),
    ({"affine": "before"},
     "gamma and beta are applied before normalising; normalise first, then x_hat * gamma + beta"),
    ({"unbiased": True, "affine": "none"},
     "two mistakes: the variance is the unbiased one (divide by D, not D - 1) and gamma and beta are missing"),
)


def _ln_axis_mistakes(x: torch.Tensor):
    """(dims, text) for normalising over the wrong axes of ``x``."""
    n = x.dim()
    if n >= 2:
        yield (-2,), ("it normalises over the second-to-last axis (dim=-2, the positions); layer norm "
                      "normalises each vector over its last axis (dim=-1, keepdim=True)")
        yield (0,), ("it normalises over the first axis (dim=0, across the batch: that is batch norm); layer "
                     "norm normalises each vector over its last axis (dim=-1, keepdim=True)")
        yield tuple(range(n)), ("it uses one mean and variance for the whole tensor (x.mean(), x.var()); each "
                                "vector gets its own, over the last axis: dim=-1, keepdim=True")
    if n >= 3:
        yield tuple(range(1, n)), ("it normalises over all axes but the first (one mean per example); each "
                                   "vector is normalised over the last axis only: dim=-1, keepdim=True")


class LayerNormCheck(Check):
    name = "layer_norm"
    assignment = ASSIGNMENT
    kind = "function"
    forbidden = _NORM_BUILTINS
    forbidden_hint = ("Compute it yourself: mean and population variance over the last axis (keepdim=True), "
                      "(x - mean) / torch.sqrt(var + eps), then * gamma + beta.")
    reference = "reference_impl.blocks.layer_norm"
    timeout_s = 20.0

    # (label, x shape, eps (None: the default), x scale per row: None (std 1) | "small" | "mixed", offset)
    VISIBLE = (
        ("x (2, 5, 8), default eps", (2, 5, 8), None, None, 0.0),
        ("x (3, 6), rows with a small spread (std 0.01, where eps matters), default eps", (3, 6), None, "small", 0.0),
        ("x (1, 4, 5), eps=0.1 passed explicitly", (1, 4, 5), 0.1, None, 0.0),
    )
    HIDDEN = (
        ("x (2, 3, 2, 7) with two leading axes, rows of very different spreads, eps=1e-3", (2, 3, 2, 7), 1e-3,
         "mixed", 0.0),
        ("x (1, 1, 4): one vector of 4 features, default eps", (1, 1, 4), None, None, 0.0),
        ("x (4, 9) around 5.0, eps=0.5", (4, 9), 0.5, None, 5.0),
        ("x (2, 6, 3), default eps, a constant row", (2, 6, 3), None, "constant", 0.0),
        ("x (5, 16) with a small spread (std 0.003), default eps", (5, 16), None, "tiny", 0.0),
    )

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        g = torch.Generator().manual_seed(seed)
        cases = []
        for label, shape, eps, spread, offset in (self.HIDDEN if hidden else self.VISIBLE):
            x = _randn(g, *shape)
            if spread == "small":
                x = x * 0.01
            elif spread == "tiny":
                x = x * 0.003
            elif spread == "mixed":  # each row its own scale, from 1e-3 to 1e2
                x = x * torch.logspace(-3, 2, x[..., :1].numel()).reshape(x[..., :1].shape)
            elif spread == "constant":
                x[0, 0] = 0.75
            x = x + offset
            D = shape[-1]
            gamma, beta = 1.0 + 0.5 * _randn(g, D), 0.5 * _randn(g, D)
            inputs = {"x": x, "gamma": gamma, "beta": beta, "eps": eps}
            expected = _ref_layer_norm(x.double(), gamma.double(), beta.double(), 1e-5 if eps is None else eps)
            cases.append(Case(label, inputs, expected.float()))
        return cases

    def invoke(self, obj: Any, inputs: dict) -> Any:
        x, gamma, beta, eps = inputs["x"], inputs["gamma"], inputs["beta"], inputs["eps"]
        try:
            result = obj(x, gamma, beta) if eps is None else obj(x, gamma, beta, eps)
        except RuntimeError as exc:
            if "must match the size" in str(exc):
                raise CheckFailed(
                    f"your layer_norm raised RuntimeError: {exc}. Did you compute the mean or variance without "
                    "keepdim=True? x.mean(dim=-1, keepdim=True) keeps a size-1 axis so that x - mean broadcasts."
                ) from exc
            raise
        return sanitize(result)

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        changed = modified_inputs(case.inputs, inputs_after, ("x", "gamma", "beta"), "your layer_norm")
        if changed:
            return changed
        want = case.expected
        wrong = mismatch("your result", want, got)
        if wrong is None:
            return None
        x, gamma, beta = case.inputs["x"], case.inputs["gamma"], case.inputs["beta"]
        eps = 1e-5 if case.inputs["eps"] is None else case.inputs["eps"]
        catalogue = [(_ln_variant(x, gamma, beta, eps, **flags), text) for flags, text in _LN_MISTAKES]
        catalogue += [(_ln_variant(x, gamma, beta, eps, dims=dims), text) for dims, text in _ln_axis_mistakes(x)]
        if case.inputs["eps"] is not None:
            catalogue.append((_ln_variant(x, gamma, beta, 1e-5),
                              f"it ignores the eps argument (it used 1e-5, this case passes eps={eps}): use the "
                              "function's eps parameter"))
        catalogue = [(c, t) for c, t in catalogue if not close(c, want)]
        diag = first_match(got, catalogue)
        return f"{wrong} It matches a known mistake: {diag}." if diag else wrong


# ---------------------------------------------------------------------------
# A float64 functional model of FeedForward / TransformerBlock / TransformerStack with mistakes
# ---------------------------------------------------------------------------

_ACTIVATIONS = {
    "relu": F.relu,
    "none": lambda t: t,
    "gelu": F.gelu,
    "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
    "silu": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
}


def _linear(W: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    return x @ W[f"{name}.weight"].T + W[f"{name}.bias"]


def _ff_variant(W: dict, prefix: str, x: torch.Tensor, act="relu", relu_out=False, relu_in=False,
                residual=False) -> torch.Tensor:
    h = F.relu(x) if relu_in else x
    out = _linear(W, f"{prefix}linear2", _ACTIVATIONS[act](_linear(W, f"{prefix}linear1", h)))
    out = F.relu(out) if relu_out else out
    return x + out if residual else out


def _ln(W: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), W[f"{name}.weight"], W[f"{name}.bias"], 1e-5)


def _mha(W: dict, prefix: str, x: torch.Tensor, mask, n_heads: int, mask_mode="correct") -> torch.Tensor:
    B, T, D = x.shape
    d = D // n_heads

    def heads(t):
        return t.reshape(B, T, n_heads, d).transpose(1, 2)  # (B, H, T, d)

    q, k, v = (heads(_linear(W, f"{prefix}{n}", x)) for n in ("w_q", "w_k", "w_v"))
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (B, H, T, T)
    if mask is not None and mask_mode != "ignored":
        allowed = mask if mask_mode == "correct" else ~mask
        scores = scores.masked_fill(~allowed, float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v  # (B, H, T, d)
    return _linear(W, f"{prefix}w_o", out.transpose(1, 2).reshape(B, T, D))


def _block_variant(W: dict, prefix: str, x: torch.Tensor, mask, n_heads: int, *, post_norm=False,
                   res_attn=True, res_ff=True, norms="ok", mask_mode="correct", residual_from="x",
                   parallel=False, ff_first=False) -> torch.Tensor:
    """One block, float64, with the flags' mistakes (defaults: the spec's pre-norm block)."""
    n1, n2 = {"ok": ("norm1", "norm2"), "swapped": ("norm2", "norm1"), "norm1_twice": ("norm1", "norm1"),
              "none": (None, None)}[norms]

    def norm(name, t):
        return t if name is None else _ln(W, f"{prefix}{name}", t)

    def attn(t):
        return _mha(W, f"{prefix}attn.", t, mask, n_heads, mask_mode)

    def ff(t):
        return _ff_variant(W, f"{prefix}ff.", t)

    if post_norm:
        x = norm(n1, x + attn(x) if res_attn else attn(x))
        return norm(n2, x + ff(x) if res_ff else ff(x))
    if parallel:
        return x + attn(norm(n1, x)) + ff(norm(n2, x))
    steps = [(n1, attn, res_attn), (n2, ff, res_ff)]
    for name, sub, residual in (reversed(steps) if ff_first else steps):
        h = norm(name, x)
        base = h if residual_from == "normed" else x
        x = base + sub(h) if residual else sub(h)
    return x


_BLOCK_MISTAKES = (
    ({"post_norm": True},
     "it is a POST-norm block (x = norm1(x + attn(x)), ...). The spec's block is pre-norm: "
     "x = x + attn(norm1(x), mask=mask), then x = x + ff(norm2(x))"),
    ({"res_attn": False},
     "the residual connection around the attention is missing: x = x + self.attn(self.norm1(x), mask=mask)"),
    ({"res_ff": False},
     "the residual connection around the feed-forward is missing: x = x + self.ff(self.norm2(x))"),
    ({"res_attn": False, "res_ff": False},
     "both residual connections are missing: each step ADDS its result to x (x = x + ...)"),
    ({"norms": "swapped"},
     "norm1 and norm2 are swapped: norm1 goes before the attention, norm2 before the feed-forward"),
    ({"norms": "norm1_twice"},
     "norm1 is used twice; the feed-forward step uses norm2: x = x + self.ff(self.norm2(x))"),
    ({"norms": "none"},
     "the layer norms are missing: x = x + attn(norm1(x)), then x = x + ff(norm2(x))"),
    ({"mask_mode": "ignored"},
     "the mask is ignored: pass it on, self.attn(self.norm1(x), mask=mask)"),
    ({"mask_mode": "inverted"},
     "the mask is inverted (~mask): in this course True means 'may attend', pass mask as it is"),
    ({"residual_from": "normed"},
     "the residual adds the NORMALISED input (h = norm1(x); x = h + attn(h)); it must add the block's input: "
     "x = x + attn(norm1(x))"),
    ({"parallel": True},
     "the attention and the feed-forward both read the block's input (x + attn(norm1(x)) + ff(norm2(x))); the "
     "feed-forward must read the result of the attention step"),
    ({"ff_first": True},
     "the feed-forward step comes before the attention; the attention (the meeting) comes first"),
)


# ---------------------------------------------------------------------------
# FeedForward
# ---------------------------------------------------------------------------


_FF_MISTAKES = (
    ({"act": "none"}, "there is no activation between linear1 and linear2: linear2(relu(linear1(x)))"),
    ({"act": "gelu"}, "it uses GELU; the spec's feed-forward uses ReLU: linear2(relu(linear1(x)))"),
    ({"act": "gelu_tanh"}, "it uses GELU (tanh approximation); the spec's feed-forward uses ReLU"),
    ({"act": "silu"}, "it uses SiLU/swish; the spec's feed-forward uses ReLU"),
    ({"act": "tanh"}, "it uses tanh; the spec's feed-forward uses ReLU"),
    ({"act": "sigmoid"}, "it uses a sigmoid; the spec's feed-forward uses ReLU"),
    ({"relu_out": True}, "a ReLU is applied after linear2 too; only between linear1 and linear2"),
    ({"relu_in": True}, "a ReLU is applied to the input before linear1; only between linear1 and linear2"),
    ({"residual": True}, "it adds its input (x + ...): the residual connection belongs in TransformerBlock, "
                         "FeedForward returns linear2(relu(linear1(x))) only"),
)

_FF_SPEC = ("The spec asks for self.linear1 = nn.Linear(d_model, d_ff) and self.linear2 = nn.Linear(d_ff, d_model) "
            "(with bias); the checks copy known weights into them.")


def _construct(obj, args: tuple, call: str) -> nn.Module:
    module = obj(*args)
    if not isinstance(module, nn.Module):
        raise CheckFailed(f"{call} is not an nn.Module: declare it as class {obj.__name__}(nn.Module) and call "
                          "super().__init__() first in __init__.")
    return module


def _forward_twice(module: nn.Module, call: str, *args, **kwargs) -> Any:
    out, same = repeatable(lambda: module(*args, **kwargs))
    if same is False:
        raise CheckFailed(f"{call} gives different results for the same input (dropout, or something random "
                          "in forward?). The spec's module is deterministic: no dropout.")
    return out


class FeedForwardCheck(Check):
    name = "FeedForward"
    assignment = ASSIGNMENT
    kind = "class"
    forbidden = _ENCODER_BUILTINS
    forbidden_hint = "Build it from two nn.Linear layers and a ReLU."
    reference = "reference_impl.blocks.FeedForward"
    timeout_s = 20.0

    # (label, B, T, d_model, d_ff)
    VISIBLE = (("x (2, 5, 8), d_ff=16", 2, 5, 8, 16), ("batch 1: x (1, 3, 4), d_ff=6", 1, 3, 4, 6))
    HIDDEN = (("x (3, 7, 6), d_ff=10", 3, 7, 6, 10), ("x (2, 1, 12), d_ff=5 (narrower than d_model)", 2, 1, 12, 5),
              ("x (1, 4, 3), d_ff=3", 1, 4, 3, 3))

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        g = torch.Generator().manual_seed(seed)
        cases = []
        for label, B, T, D, F_ in (self.HIDDEN if hidden else self.VISIBLE):
            W = {**uniform_linear(g, "linear1", D, F_), **uniform_linear(g, "linear2", F_, D)}
            x = _randn(g, B, T, D)
            with torch.random.fork_rng(devices=[]):  # nn.Linear's init draws from the global RNG
                ref = _RefFeedForward(D, F_)
            ref.load_state_dict(W)
            with torch.no_grad():
                want = ref.double()(x.double()).float()
            cases.append(Case(label, {"d_model": D, "d_ff": F_, "weights": W, "x": x}, want))
        return cases

    def invoke(self, obj: Any, inputs: dict) -> Any:
        D, F_ = inputs["d_model"], inputs["d_ff"]
        call = f"FeedForward({D}, {F_})"
        module = _construct(obj, (D, F_), call)
        load_weights(module, inputs["weights"], call, _FF_SPEC)
        return sanitize(_forward_twice(module, call, inputs["x"]))

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        changed = modified_inputs(case.inputs, inputs_after, ("x",), "forward")
        if changed:
            return changed
        wrong = mismatch("the output of forward", case.expected, got)
        if wrong is None:
            return None
        W = {k: v.double() for k, v in case.inputs["weights"].items()}
        x = case.inputs["x"].double()
        catalogue = ((_ff_variant(W, "", x, **flags), f"your output matches a known mistake: {text}.")
                     for flags, text in _FF_MISTAKES)
        return first_match(got, catalogue) or wrong


# ---------------------------------------------------------------------------
# TransformerBlock
# ---------------------------------------------------------------------------


def _block_weights(g: torch.Generator, prefix: str, D: int, F_: int) -> dict:
    W = {}
    for name in ("w_q", "w_k", "w_v", "w_o"):
        W.update(uniform_linear(g, f"{prefix}attn.{name}", D, D))
    W.update(uniform_linear(g, f"{prefix}ff.linear1", D, F_))
    W.update(uniform_linear(g, f"{prefix}ff.linear2", F_, D))
    W.update(random_norm(g, f"{prefix}norm1", D))
    W.update(random_norm(g, f"{prefix}norm2", D))
    return W


def _make_mask(g: torch.Generator, kind, B: int, T: int):
    if kind is None:
        return None
    if kind == "causal":
        return causal(T)
    if kind == "random":
        return random_mask(g, T, T)
    if kind == "padding":  # (B, 1, 1, T): per example, the first positions are real, the rest padding
        lengths = torch.randint(1, T + 1, (B,), generator=g)
        lengths[0] = T
        return (torch.arange(T)[None, :] < lengths[:, None])[:, None, None, :]
    raise ValueError(kind)


def _mask_words(mask) -> str:
    if mask is None:
        return "no mask"
    return f"mask {shape_str(mask.shape)}"


_BLOCK_SPEC = ("The spec asks for self.attn = MultiHeadAttention(d_model, n_heads) (chapter 2's, with w_q, w_k, "
               "w_v, w_o), self.ff = FeedForward(d_model, d_ff) (with linear1, linear2), and self.norm1, "
               "self.norm2 = nn.LayerNorm(d_model); the checks copy known weights into them.")


class TransformerBlockCheck(Check):
    name = "TransformerBlock"
    assignment = ASSIGNMENT
    kind = "class"
    forbidden = _ENCODER_BUILTINS
    forbidden_hint = ("Build it from self.attn, self.ff, self.norm1 and self.norm2: "
                      "x = x + attn(norm1(x), mask=mask), then x = x + ff(norm2(x)).")
    reference = "reference_impl.blocks.TransformerBlock"
    timeout_s = 30.0

    # (label, B, T, d_model, n_heads, d_ff, mask kind)
    VISIBLE = (
        ("x (2, 5, 8), n_heads=2, d_ff=16, no mask", 2, 5, 8, 2, 16, None),
        ("batch 1: x (1, 4, 6), n_heads=3, d_ff=12, causal mask (4, 4)", 1, 4, 6, 3, 12, "causal"),
        ("x (2, 6, 8), n_heads=4, d_ff=8, random mask (6, 6)", 2, 6, 8, 4, 8, "random"),
    )
    HIDDEN = (
        ("x (3, 7, 12), n_heads=4, d_ff=20, causal mask (7, 7)", 3, 7, 12, 4, 20, "causal"),
        ("a single position: x (1, 1, 4), n_heads=1, d_ff=8, no mask", 1, 1, 4, 1, 8, None),
        ("x (2, 5, 10), n_heads=5, d_ff=6, padding mask (2, 1, 1, 5)", 2, 5, 10, 5, 6, "padding"),
        ("x (2, 6, 9), n_heads=3, d_ff=18, random mask (6, 6)", 2, 6, 9, 3, 18, "random"),
    )

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        g = torch.Generator().manual_seed(seed)
        cases = []
        for label, B, T, D, H, F_, kind in (self.HIDDEN if hidden else self.VISIBLE):
            W = _block_weights(g, "", D, F_)
            x = _randn(g, B, T, D)
            mask = _make_mask(g, kind, B, T)
            with torch.random.fork_rng(devices=[]):
                ref = _RefBlock(D, H, F_)
            ref.load_state_dict(W)
            with torch.no_grad():
                want = ref.double()(x.double(), mask=mask).float()
            inputs = {"d_model": D, "n_heads": H, "d_ff": F_, "weights": W, "x": x, "mask": mask}
            cases.append(Case(label, inputs, want))
        return cases

    def invoke(self, obj: Any, inputs: dict) -> Any:
        D, H, F_ = inputs["d_model"], inputs["n_heads"], inputs["d_ff"]
        call = f"TransformerBlock({D}, {H}, {F_})"
        module = _construct(obj, (D, H, F_), call)
        load_weights(module, inputs["weights"], call, _BLOCK_SPEC)
        # graded on its own: the course's FeedForward (same weights) stands in for the learner's
        _swap_in(module, "ff", _RefFeedForward, (D, F_), _sub_weights(inputs["weights"], "ff."))
        return sanitize(_call_with_mask(module, call, inputs["x"], inputs["mask"]))

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        changed = modified_inputs(case.inputs, inputs_after, ("x", "mask"), "forward")
        if changed:
            return changed
        want = case.expected
        wrong = mismatch("the output of forward", want, got)
        if wrong is None:
            return None
        inp = case.inputs
        W = {k: v.double() for k, v in inp["weights"].items()}
        x, mask, H = inp["x"].double(), inp["mask"], inp["n_heads"]

        def catalogue():
            for flags, text in _BLOCK_MISTAKES:
                if "mask_mode" in flags and mask is None:
                    continue
                candidate = _block_variant(W, "", x, mask, H, **flags)
                if not close(candidate, want):
                    yield candidate, f"your output matches a known mistake: {text}."

        return first_match(got, catalogue()) or wrong


def _sub_weights(weights: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}


def _swap_in(parent: nn.Module, name: str, cls, args: tuple, weights: dict) -> None:
    """Replace ``parent.<name>`` (or ``parent[int(name)]``) by a reference ``cls(*args)`` holding ``weights``.

    The checks grade each item on its own: a mistake in the learner's FeedForward must not
    cost the TransformerBlock's points, nor a block's the stack's.
    """
    with torch.random.fork_rng(devices=[]):
        stand_in = cls(*args)
    stand_in.load_state_dict(weights)
    if name.isdigit():
        parent[int(name)] = stand_in
    else:
        setattr(parent, name, stand_in)


def _call_with_mask(module: nn.Module, call: str, x: torch.Tensor, mask) -> Any:
    """module(x) or module(x, mask=mask), twice (must be deterministic), with a hint for a common error."""
    try:
        if mask is None:
            return _forward_twice(module, call, x)
        return _forward_twice(module, call, x, mask=mask)
    except RuntimeError as exc:
        text = str(exc)
        if mask is not None and ("Bool" in text or "bool" in text):
            raise CheckFailed(
                f"{call}(x, mask=mask) raised RuntimeError: {text}. Is the mask passed to self.attn as its second "
                "positional argument? The second argument of MultiHeadAttention.forward is context: pass the "
                "mask by keyword, self.attn(h, mask=mask)."
            ) from exc
        raise


# ---------------------------------------------------------------------------
# TransformerStack
# ---------------------------------------------------------------------------


def _stack_variant(W: dict, n_layers: int, x, mask, n_heads: int, *, final_norm=True, reverse=False,
                   from_input=False, norm_each=False, pass_mask=True) -> torch.Tensor:
    order = list(range(n_layers))
    if reverse:
        order.reverse()
    h = x
    for i in order:
        inp = x if from_input else h
        h = _block_variant(W, f"blocks.{i}.", inp, mask if pass_mask else None, n_heads)
        if norm_each:
            h = _ln(W, "norm", h)
    if final_norm and not norm_each:
        h = _ln(W, "norm", h)
    return h


_STACK_MISTAKES = (
    ({"final_norm": False},
     "the final layer norm is missing: return self.norm(x) after the last block"),
    ({"reverse": True},
     "the blocks run in reverse order; block 0 must come first (for block in self.blocks: x = block(x, mask=mask))"),
    ({"from_input": True},
     "every block reads the stack's input instead of the previous block's output: x = block(x, mask=mask) "
     "inside the loop"),
    ({"norm_each": True},
     "the final norm is applied after every block; apply self.norm once, after the last block"),
    ({"pass_mask": False},
     "the mask is not passed on to the blocks: x = block(x, mask=mask)"),
)


_STACK_SPEC = ("The spec asks for self.blocks = nn.ModuleList([TransformerBlock(d_model, n_heads, d_ff) for _ in "
               "range(n_layers)]) and self.norm = nn.LayerNorm(d_model); the checks copy known weights into them.")


class TransformerStackCheck(Check):
    name = "TransformerStack"
    assignment = ASSIGNMENT
    kind = "class"
    forbidden = _ENCODER_BUILTINS
    forbidden_hint = "Loop over self.blocks (your TransformerBlock) and apply self.norm at the end."
    reference = "reference_impl.blocks.TransformerStack"
    timeout_s = 30.0

    # (label, n_layers, B, T, d_model, n_heads, d_ff, mask kind)
    VISIBLE = (
        ("2 layers: x (2, 5, 8), n_heads=2, d_ff=16, no mask", 2, 2, 5, 8, 2, 16, None),
        ("3 layers, batch 1: x (1, 4, 6), n_heads=3, d_ff=12, causal mask (4, 4)", 3, 1, 4, 6, 3, 12, "causal"),
    )
    HIDDEN = (
        ("1 layer: x (2, 3, 4), n_heads=2, d_ff=8, causal mask (3, 3)", 1, 2, 3, 4, 2, 8, "causal"),
        ("4 layers: x (2, 6, 8), n_heads=4, d_ff=8, random mask (6, 6)", 4, 2, 6, 8, 4, 8, "random"),
        ("2 layers: x (3, 5, 12), n_heads=2, d_ff=20, padding mask (3, 1, 1, 5)", 2, 3, 5, 12, 2, 20, "padding"),
    )

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        g = torch.Generator().manual_seed(seed)
        cases = []
        for label, L, B, T, D, H, F_, kind in (self.HIDDEN if hidden else self.VISIBLE):
            W = {}
            for i in range(L):
                W.update(_block_weights(g, f"blocks.{i}.", D, F_))
            W.update(random_norm(g, "norm", D))
            x = _randn(g, B, T, D)
            mask = _make_mask(g, kind, B, T)
            with torch.random.fork_rng(devices=[]):
                ref = _RefStack(L, D, H, F_)
            ref.load_state_dict(W)
            with torch.no_grad():
                want = ref.double()(x.double(), mask=mask).float()
            inputs = {"n_layers": L, "d_model": D, "n_heads": H, "d_ff": F_, "weights": W, "x": x, "mask": mask}
            cases.append(Case(label, inputs, want))
        return cases

    def invoke(self, obj: Any, inputs: dict) -> Any:
        L, D, H, F_ = inputs["n_layers"], inputs["d_model"], inputs["n_heads"], inputs["d_ff"]
        call = f"TransformerStack({L}, {D}, {H}, {F_})"
        module = _construct(obj, (L, D, H, F_), call)
        blocks = getattr(module, "blocks", None)
        if blocks is None:
            raise CheckFailed(f"{call} has no attribute blocks. {_STACK_SPEC}")
        if isinstance(blocks, (list, tuple)):
            raise CheckFailed(f"{call}.blocks is a plain Python {type(blocks).__name__}: PyTorch does not see the "
                              "modules inside it (their parameters are missing from .parameters(), so an optimizer "
                              f"would never train them). Wrap it: nn.ModuleList([...]). {_STACK_SPEC}")
        if not isinstance(blocks, (nn.ModuleList, nn.Sequential)):
            raise CheckFailed(f"{call}.blocks should be an nn.ModuleList of {L} TransformerBlocks, but it is "
                              f"{describe(blocks)}. {_STACK_SPEC}")
        if len(blocks) != L:
            raise CheckFailed(f"{call}.blocks holds {len(blocks)} block{'s' if len(blocks) != 1 else ''}; expected "
                              f"n_layers = {L}. {_STACK_SPEC}")
        shared = _shared_parameters(blocks)
        if shared:
            raise CheckFailed(f"{call}: {shared} share their weights (the same module object is used twice, e.g. "
                              "[TransformerBlock(...)] * n_layers or a block created once outside the loop). Every "
                              "layer needs its own block: nn.ModuleList([TransformerBlock(...) for _ in "
                              "range(n_layers)]).")
        load_weights(module, inputs["weights"], call, _STACK_SPEC)
        # graded on its own: the course's TransformerBlock (same weights) stands in for each learner block
        for i in range(L):
            _swap_in(blocks, str(i), _RefBlock, (D, H, F_), _sub_weights(inputs["weights"], f"blocks.{i}."))
        return sanitize(_call_with_mask(module, call, inputs["x"], inputs["mask"]))

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        changed = modified_inputs(case.inputs, inputs_after, ("x", "mask"), "forward")
        if changed:
            return changed
        want = case.expected
        wrong = mismatch("the output of forward", want, got)
        if wrong is None:
            return None
        inp = case.inputs
        W = {k: v.double() for k, v in inp["weights"].items()}
        L, x, mask, H = inp["n_layers"], inp["x"].double(), inp["mask"], inp["n_heads"]

        def catalogue():
            for flags, text in _STACK_MISTAKES:
                if "pass_mask" in flags and mask is None:
                    continue
                candidate = _stack_variant(W, L, x, mask, H, **flags)
                if not close(candidate, want):
                    yield candidate, f"your output matches a known mistake: {text}."

        return first_match(got, catalogue()) or wrong


def _shared_parameters(blocks) -> str:
    """'blocks[0] and blocks[1]' if two blocks share a parameter tensor, else ''."""
    owner: dict[int, int] = {}
    for i, block in enumerate(blocks):
        params = block.parameters() if isinstance(block, nn.Module) else ()
        for p in params:
            j = owner.setdefault(id(p), i)
            if j != i:
                return f"blocks[{j}] and blocks[{i}]"
    return ""


register(LayerNormCheck())
register(FeedForwardCheck())
register(TransformerBlockCheck())
register(TransformerStackCheck())
