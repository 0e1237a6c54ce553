"""Chapter 5 checks (05_rnn_contrast): rnn_forward, input_gradient_norms.

``rnn_forward``: expected results from ``reference_impl.rnn.rnn_forward`` in float64 (equal
to ``nn.RNN(I, H, batch_first=True)``, proven in the tests), rounded to float32. Weights
are drawn a little larger than nn.RNN's default (uniform in +-1.5/sqrt(H)) and h0 is not
zero (except in one case), so that a missing tanh, a missing bias, an ignored h0 or a
missing recurrence all change the result clearly. A wrong result is compared with a
catalogue of classic mistakes (a small float64 RNN with a flag per mistake).

``input_gradient_norms``: the model is rebuilt inside ``invoke`` from a state dict (cases
stay plain tensors): a tanh RNN or a GRU (``reference_impl.rnn.RNNEncoder``) and causal or
bidirectional Transformers (``reference_impl.rnn.TransformerEncoder``, which ends in a
linear readout: a model that ends in a fresh LayerNorm would give all-zero gradients of
``model(x)[:, -1].sum()``). The expected norms come from the reference in float64; the
learner's float32 norms are compared at ``rtol=1e-4, atol=1e-6`` (float32 backpropagation
through the RNN's steps or the Transformer's layers carries relative errors of ~1e-6, and
every catalogued mistake is orders of magnitude further off). Side effects are graded too:
the caller's ``x`` must keep its ``requires_grad`` and get no ``.grad``, the model's
parameters must get no gradients and keep their ``requires_grad``. One case passes an ``x``
that already requires grad (a leaf), which exposes ``x.clone().requires_grad_()`` (not a
leaf, its ``.grad`` stays None) and ``x.requires_grad_()`` + ``backward()`` on the caller's
tensor.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from reference_impl import rnn as _ref

from .core import Case, Check, CheckFailed, register, sanitize
from .diagnose import close, describe, mismatch, modified_inputs, shape_str

ASSIGNMENT = "05_rnn_contrast"

_ref_rnn_forward = _ref.rnn_forward
_ref_gradient_norms = _ref.input_gradient_norms
_RefRNNEncoder = _ref.RNNEncoder
_RefTransformerEncoder = _ref.TransformerEncoder

_RNN_BUILTINS = (
    "torch.nn.RNN",
    "torch.nn.RNNCell",
    "torch.rnn_tanh",
    "torch.rnn_tanh_cell",
    "torch.ops.aten.rnn_tanh",
    "torch.ops.aten.rnn_tanh_cell",
)

GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-6


# ---------------------------------------------------------------------------
# rnn_forward
# ---------------------------------------------------------------------------


def _rnn_variant(x, h0, w_ih, w_hh, b_ih, b_hh, *, recurrence=True, use_b_ih=True, use_b_hh=True, act="tanh",
                 use_h0=True, w_ih_t=True, w_hh_t=True, h_last="last", outputs="ok"):
    """A float64 Elman RNN with classic mistakes (a flag per mistake). Returns (outputs, h_last)."""
    x, h0, w_ih, w_hh, b_ih, b_hh = (t.double() for t in (x, h0, w_ih, w_hh, b_ih, b_hh))
    A = w_ih.T if w_ih_t else w_ih
    W = w_hh.T if w_hh_t else w_hh
    f = {"tanh": torch.tanh, "none": lambda t: t, "relu": torch.relu, "sigmoid": torch.sigmoid}[act]
    h = h0 if use_h0 else torch.zeros_like(h0)
    hs = [h]
    for t in range(x.shape[1]):
        pre = x[:, t] @ A
        if use_b_ih:
            pre = pre + b_ih
        if use_b_hh:
            pre = pre + b_hh
        if recurrence:
            pre = pre + h @ W
        h = f(pre)
        hs.append(h)
    out = torch.stack(hs[1:], dim=1)  # (B, T, H)
    if outputs == "shifted":  # [h0, ..., h_{T-1}]
        out = torch.stack(hs[:-1], dim=1)
    last = {"last": hs[-1], "first": hs[1], "h0": hs[0]}[h_last]
    return out, last


_RNN_MISTAKES = (
    ({"recurrence": False}, "there is no recurrence: h_{t-1} @ w_hh.T is missing, so every step sees only its own "
                            "input x_t and the relay race never passes the baton"),
    ({"act": "none"}, "tanh is missing: h_t = tanh(x_t w_ih^T + b_ih + h_{t-1} w_hh^T + b_hh)"),
    ({"act": "relu"}, "it uses relu instead of tanh (nn.RNN's default nonlinearity is tanh)"),
    ({"act": "sigmoid"}, "it uses sigmoid instead of tanh"),
    ({"use_h0": False}, "h0 is ignored (the first step starts from zeros); start from the given h0"),
    ({"use_b_ih": False}, "the input bias b_ih is missing (nn.RNN has two biases, b_ih and b_hh: add both)"),
    ({"use_b_hh": False}, "the hidden bias b_hh is missing (nn.RNN has two biases, b_ih and b_hh: add both)"),
    ({"use_b_ih": False, "use_b_hh": False}, "both biases b_ih and b_hh are missing"),
    ({"w_hh_t": False}, "w_hh is not transposed: use h_{t-1} @ w_hh.T (w_hh has shape (H, H) and maps the previous "
                        "hidden state to the new one like nn.Linear: h @ W^T)"),
    ({"w_ih_t": False}, "w_ih is not transposed: use x_t @ w_ih.T (w_ih has shape (H, I))"),
    ({"w_ih_t": False, "w_hh_t": False}, "neither weight is transposed: x_t @ w_ih.T and h_{t-1} @ w_hh.T"),
    ({"outputs": "shifted"}, "the outputs are shifted by one step: they start with h0 and miss the last step. "
                             "outputs[:, t] is h_t, the state AFTER reading x_t"),
)


def _rnn_catalogue(inp: dict, want: tuple):
    args = [inp[k] for k in ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh")]
    for flags, text in _RNN_MISTAKES:
        try:
            out, last = _rnn_variant(*args, **flags)
        except RuntimeError:  # a mistake these shapes could not even run
            continue
        yield out, last, text


class RnnForwardCheck(Check):
    name = "rnn_forward"
    assignment = ASSIGNMENT
    kind = "function"
    forbidden = _RNN_BUILTINS
    forbidden_hint = "Write the loop over time steps yourself: h = torch.tanh(...)."
    reference = "reference_impl.rnn.rnn_forward"
    timeout_s = 20.0

    # (label, B, T, I, H, h0 zero?)
    VISIBLE = (
        ("batch 2, T=5 steps, input size I=3, hidden size H=4", 2, 5, 3, 4, False),
        ("a single step: batch 1, T=1, I=2, H=3", 1, 1, 2, 3, False),
        ("batch 3, T=6, I=4, H=4 (square w_ih)", 3, 6, 4, 4, False),
    )
    HIDDEN = (
        ("batch 4, T=4 (as many steps as examples), I=3, H=5", 4, 4, 3, 5, False),
        ("batch 1, T=9, I=5, H=2", 1, 9, 5, 2, False),
        ("batch 2, T=12, I=1, H=6", 2, 12, 1, 6, False),
        ("h0 = zeros: batch 5, T=3, I=6, H=6", 5, 3, 6, 6, True),
        ("batch 2, T=7, I=7, H=3", 2, 7, 7, 3, False),
    )

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        g = torch.Generator().manual_seed(seed)
        cases = []
        for label, B, T, I, H, zero_h0 in (self.HIDDEN if hidden else self.VISIBLE):
            bound = 1.5 / math.sqrt(H)

            def uniform(*shape):
                return (torch.rand(*shape, generator=g) * 2 - 1) * bound

            inputs = {
                "x": torch.randn(B, T, I, generator=g),
                "h0": torch.zeros(B, H) if zero_h0 else torch.randn(B, H, generator=g) * 0.5,
                "w_ih": uniform(H, I), "w_hh": uniform(H, H), "b_ih": uniform(H), "b_hh": uniform(H),
            }
            out, last = _ref_rnn_forward(*(inputs[k].double() for k in ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh")))
            cases.append(Case(label, inputs, (out.float(), last.float())))
        return cases

    def invoke(self, obj: Any, inputs: dict) -> Any:
        try:
            return sanitize(obj(*(inputs[k] for k in ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"))))
        except RuntimeError as exc:
            text = str(exc)
            if "must match the size" not in text and "cannot be multiplied" not in text:
                raise
            B, T, I = inputs["x"].shape
            H = inputs["h0"].shape[-1]
            raise CheckFailed(
                f"your rnn_forward raised RuntimeError: {text}. Shapes here: x (B, T, I) = ({B}, {T}, {I}), h0 (B, H) "
                f"= ({B}, {H}), w_ih (H, I) = ({H}, {I}), w_hh (H, H). x is batch first, so step t reads x[:, t] "
                "(B, I), and the weights act like nn.Linear: x_t @ w_ih.T and h @ w_hh.T."
            ) from exc

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        changed = modified_inputs(case.inputs, inputs_after, ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"),
                                  "your function")
        if changed:
            return changed
        want_out, want_last = case.expected
        B, T, H = want_out.shape
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            msg = (f"rnn_forward must return a tuple (outputs {shape_str(want_out.shape)}, h_last "
                   f"{shape_str(want_last.shape)}), but it returned {describe(got)}.")
            if isinstance(got, torch.Tensor) and mismatch("x", want_out, got) is None:
                msg += " That tensor is the right outputs: return outputs, h (h = the last hidden state)."
            return msg
        out, last = got
        if mismatch("x", want_last, out) is None and mismatch("x", want_out, last) is None:
            return "you returned (h_last, outputs); the order must be (outputs, h_last)."
        if isinstance(out, torch.Tensor) and tuple(out.shape) == (T, B, H) and T != B:
            return (f"outputs has shape {shape_str(out.shape)} = (T, B, H): the steps were stacked along dim 0. "
                    f"Batch first: torch.stack(hs, dim=1) gives {shape_str(want_out.shape)}.")
        wrong_out = mismatch("outputs (your first return value)", want_out, out)
        wrong_last = mismatch("h_last (your second return value)", want_last, last)
        if wrong_out is None and wrong_last is None:
            return None
        if wrong_out is None:
            if T > 1 and isinstance(last, torch.Tensor) and close(last, want_out[:, 0]):
                return (f"{wrong_last} It is the hidden state after the FIRST step; h_last is the state after the "
                        "last step (outputs[:, -1]).")
            if isinstance(last, torch.Tensor) and close(last, case.inputs["h0"]):
                return f"{wrong_last} It is h0; h_last is the state after the last step (outputs[:, -1])."
            return f"{wrong_last} h_last must equal outputs[:, -1]."
        if isinstance(out, torch.Tensor) and tuple(out.shape) == (B, T, H) and B == T and close(
                out, want_out.transpose(0, 1)):
            return (f"{wrong_out} It equals the right outputs with the batch and time axes swapped: stack the "
                    "steps along dim=1 (batch first), outputs[:, t] = h_t.")
        if isinstance(out, torch.Tensor) and tuple(out.shape) == (B, T, H) and B == T:
            inp = case.inputs
            swapped, _ = _rnn_variant(inp["x"].transpose(0, 1), inp["h0"], inp["w_ih"], inp["w_hh"], inp["b_ih"],
                                      inp["b_hh"])
            if close(out, swapped) or close(out, swapped.transpose(0, 1)):
                return (f"{wrong_out} It matches a known mistake: the loop runs over the BATCH axis (x[t] or "
                        "x.shape[0]); x is batch first (B, T, I), so step t reads x[:, t].")
        for cand_out, cand_last, text in _rnn_catalogue(case.inputs, case.expected):
            if close(cand_out, want_out) and close(cand_last, want_last):
                continue  # indistinguishable from the right answer on this case
            if close(out, cand_out):
                return f"{wrong_out} It matches a known mistake: {text}."
        return wrong_out


# ---------------------------------------------------------------------------
# input_gradient_norms
# ---------------------------------------------------------------------------


def _build_encoder(spec: dict) -> nn.Module:
    cfg = spec["config"]
    with torch.random.fork_rng(devices=[]):  # construction draws from the global RNG; the weights are loaded
        if spec["kind"] in ("rnn", "gru"):
            model = _RefRNNEncoder(cfg["input_size"], cfg["hidden"], spec["kind"])
        else:
            model = _RefTransformerEncoder(cfg["input_size"], cfg["d_model"], cfg["n_heads"], cfg["d_ff"],
                                           cfg["n_layers"], causal=cfg["causal"])
    model.load_state_dict(spec["state_dict"])
    return model


def _gradient(model: nn.Module, x: torch.Tensor, pick) -> torch.Tensor:
    """d pick(model(x)).sum() / dx, float64 (the checks' own computation)."""
    x = x.detach().double().clone().requires_grad_(True)
    model = model.double()
    (grad,) = torch.autograd.grad(pick(model(x)).sum(), x)
    return grad  # (B, T, I)


def _norm_catalogue(model: nn.Module, x: torch.Tensor):
    """(mistaken norms (T,), what went wrong) for one model and input."""
    g_last = _gradient(model, x, lambda out: out[:, -1])
    yield g_last.pow(2).sum(dim=(0, 2)), ("it returns SQUARED norms (the sum of squares); take the square root: "
                                          "grad.pow(2).sum(dim=(0, 2)).sqrt() or torch.linalg.vector_norm")
    yield g_last.norm(dim=2).sum(dim=0), ("it adds up one norm per example; the spec asks for ONE norm over the "
                                          "batch and feature axes together: sqrt of the sum of squares over both")
    yield g_last.norm(dim=2).mean(dim=0), ("it averages one norm per example; the spec asks for ONE norm over the "
                                           "batch and feature axes together: sqrt of the sum of squares over both")
    yield g_last.abs().sum(dim=(0, 2)), "it returns the L1 norm (sum of |grad|); the spec asks for the L2 norm"
    B, T = x.shape[:2]
    H = model(x.double()).shape[-1]
    yield g_last.norm(dim=(0, 2)) / (B * H), ("it differentiates model(x)[:, -1].mean() instead of .sum() (the "
                                              "norms are too small by a factor B * H)")
    g_first = _gradient(model, x, lambda out: out[:, 0])
    yield g_first.norm(dim=(0, 2)), ("it differentiates the FIRST position's output, model(x)[:, 0]; the spec asks "
                                     "for the last one, model(x)[:, -1]")
    g_all = _gradient(model, x, lambda out: out)
    yield g_all.norm(dim=(0, 2)), ("it differentiates the sum of ALL outputs, model(x).sum(); only the last "
                                   "position counts: model(x)[:, -1].sum()")
    g_batch = _gradient(model, x, lambda out: out[-1])
    yield g_batch.norm(dim=(0, 2)), ("model(x)[-1] picks the last EXAMPLE of the batch, not the last position; "
                                     "the output is (B, T, H), so the last position is model(x)[:, -1]")


class InputGradientNormsCheck(Check):
    name = "input_gradient_norms"
    assignment = ASSIGNMENT
    kind = "function"
    reference = "reference_impl.rnn.input_gradient_norms"
    timeout_s = 30.0

    # (label, kind, config, B, T, x already requires grad?)
    VISIBLE = (
        ("a tanh RNN (I=3, H=5): batch 2, T=6", "rnn", {"input_size": 3, "hidden": 5}, 2, 6, False),
        ("a causal Transformer (I=4, d_model=8, 2 heads, 1 layer): batch 1, T=5", "transformer",
         {"input_size": 4, "d_model": 8, "n_heads": 2, "d_ff": 16, "n_layers": 1, "causal": True}, 1, 5, False),
        ("a GRU (I=2, H=4): batch 3, T=4, x already requires grad", "gru", {"input_size": 2, "hidden": 4}, 3, 4,
         True),
    )
    HIDDEN = (
        ("a tanh RNN (I=4, H=6): batch 3, T=10", "rnn", {"input_size": 4, "hidden": 6}, 3, 10, False),
        ("a bidirectional Transformer (I=3, d_model=12, 3 heads, 2 layers): batch 2, T=7", "transformer",
         {"input_size": 3, "d_model": 12, "n_heads": 3, "d_ff": 24, "n_layers": 2, "causal": False}, 2, 7, False),
        ("a GRU (I=5, H=3): batch 1, T=8", "gru", {"input_size": 5, "hidden": 3}, 1, 8, False),
        ("a tanh RNN (I=2, H=3): batch 4, T=3, x already requires grad", "rnn", {"input_size": 2, "hidden": 3}, 4,
         3, True),
        ("a single position: a causal Transformer (I=2, d_model=4, 1 head, 1 layer), batch 2, T=1", "transformer",
         {"input_size": 2, "d_model": 4, "n_heads": 1, "d_ff": 8, "n_layers": 1, "causal": True}, 2, 1, False),
    )

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        g = torch.Generator().manual_seed(seed)
        cases = []
        for label, kind, cfg, B, T, x_grad in (self.HIDDEN if hidden else self.VISIBLE):
            model_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(model_seed)
                if kind in ("rnn", "gru"):
                    model = _RefRNNEncoder(cfg["input_size"], cfg["hidden"], kind)
                else:
                    model = _RefTransformerEncoder(cfg["input_size"], cfg["d_model"], cfg["n_heads"], cfg["d_ff"],
                                                   cfg["n_layers"], causal=cfg["causal"])
            spec = {"kind": kind, "config": dict(cfg),
                    "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}}
            x = torch.randn(B, T, cfg["input_size"], generator=g)
            want = _ref_gradient_norms(model.double(), x.double()).float()
            cases.append(Case(label, {"model": spec, "x": x, "x_requires_grad": x_grad}, want))
        return cases

    def invoke(self, obj: Any, inputs: dict) -> Any:
        model = _build_encoder(inputs["model"])
        x = inputs["x"]
        if inputs["x_requires_grad"]:
            x.requires_grad_(True)
        before_rg = {name: p.requires_grad for name, p in model.named_parameters()}
        try:
            with torch.enable_grad():  # whatever grad mode the caller left on
                norms = obj(model, x)
        except CheckFailed:
            raise
        except Exception as exc:
            if inputs["x_requires_grad"]:
                raise CheckFailed(
                    f"your input_gradient_norms raised {type(exc).__name__}: {exc}. In this case the caller's x "
                    "already requires grad, so x.clone() is NOT a leaf tensor: its .grad stays None (the gradient "
                    "flows on to the caller's x). Start from a fresh leaf, x.detach().clone().requires_grad_(True), "
                    "or use torch.autograd.grad(output, x_leaf)."
                ) from exc
            raise
        effects = []
        if x.requires_grad and not inputs["x_requires_grad"]:
            effects.append("it switched on requires_grad of the caller's x (x.requires_grad_() on the input)")
        elif inputs["x_requires_grad"] and not x.requires_grad:
            effects.append("it switched off requires_grad of the caller's x")
        if x.grad is not None:
            effects.append("it left a gradient in the caller's x.grad")
        with_grad = [name for name, p in model.named_parameters()
                     if p.grad is not None and bool((p.grad != 0).any())]
        if with_grad:
            effects.append(f"it left gradients in the model's parameters ({', '.join(with_grad[:3])}"
                           f"{', ...' if len(with_grad) > 3 else ''}: .backward() accumulates into every p.grad)")
        switched = [name for name, p in model.named_parameters() if p.requires_grad != before_rg[name]]
        if switched:
            effects.append(f"it changed requires_grad of the model's parameters ({', '.join(switched[:3])})")
        attached = isinstance(norms, torch.Tensor) and norms.requires_grad
        x.grad = None
        x.requires_grad_(False)  # inputs_after travels back as a plain tensor (its values are compared)
        return {"norms": sanitize(norms), "side_effects": effects, "attached": attached}

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        changed = modified_inputs(case.inputs, inputs_after, ("x",), "your function")
        if changed:
            return changed
        if not isinstance(got, dict) or "norms" not in got:
            return f"internal: unexpected result {describe(got)}"
        norms, want = got["norms"], case.expected
        x = case.inputs["x"]
        B, T, I = x.shape
        if got.get("side_effects"):
            return ("input_gradient_norms must leave its inputs as they were, but " + "; ".join(got["side_effects"])
                    + ". Differentiate with respect to a fresh copy, x_leaf = x.detach().clone().requires_grad_(True),"
                    " and use torch.autograd.grad(model(x_leaf)[:, -1].sum(), x_leaf), which fills no .grad "
                    "(or clear the gradients you created: model.zero_grad(set_to_none=True)).")
        if isinstance(norms, torch.Tensor):
            if tuple(norms.shape) == (B, T) and B != T:
                return (f"your result has shape ({B}, {T}): one row of norms per example. The spec asks for ONE "
                        f"norm per position over the batch and feature axes together, shape ({T},).")
            if tuple(norms.shape) == (B, T, I):
                return (f"your result has shape {shape_str(norms.shape)}: that is the gradient itself. Return its "
                        f"L2 norm at each position t over the batch and feature axes, shape ({T},).")
        wrong = mismatch("your result", want, norms, rtol=GRAD_RTOL, atol=GRAD_ATOL)
        if wrong is None:
            if got.get("attached"):
                return ("your norms are right, but they are still attached to the autograd graph (requires_grad "
                        "is True): compute them from the gradient without create_graph, or .detach() them.")
            return None
        if isinstance(norms, torch.Tensor) and norms.shape == want.shape and norms.is_floating_point():
            model = _build_encoder(case.inputs["model"])
            for candidate, text in _norm_catalogue(model, x):
                if not close(candidate, want, rtol=GRAD_RTOL, atol=GRAD_ATOL) and close(
                        norms, candidate, rtol=1e-3, atol=1e-5):
                    return f"{wrong} It matches a known mistake: {text}."
        return wrong


register(RnnForwardCheck())
register(InputGradientNormsCheck())
