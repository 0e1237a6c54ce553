"""Chapter 4 checks (04_output): stable_softmax, cross_entropy, top_k_filter, greedy_decode.

Expected results come from ``reference_impl.output``: the softmax and the loss in float64
(rounded to float32), top-k and decoding exactly (they only compare and copy). A wrong
result is compared with a catalogue of classic mistakes computed on the same inputs and the
message names the one it matches. The numerical-stability mistakes (no max subtraction, the
maximum of the whole tensor instead of each row's, the log of probabilities that underflowed)
are computed in float32, the learner's precision, so their inf/NaN patterns are the ones a
learner's code produces; the others in float64.

Numbers that keep float32 results comparable:
- every case with logits of size 1e4 uses a temperature that is a power of two, so
  ``logits / temperature`` is exact however a learner orders the division and the max
  subtraction (at 1e4 one rounding of the division moves a probability by ~1e-4);
- the loss is compared with ``atol = 1e-5 + (largest |logit|) * 2**-23`` (``loss_atol``): a
  correct float32 ``m + log(sum(exp(x - m))) - x[t]`` subtracts two numbers of size 1e4 and is
  off by up to ~1e-3 there (PyTorch's own F.cross_entropy is more accurate); every catalogued
  mistake is far outside. A softmax computed as ``exp(z - logsumexp(z))`` loses three digits at
  1e4 in the same way, but there the probabilities themselves are off by ~0.4%: it fails, with
  a message that says why;
- top-k cases never tie at the k-th largest value (ties elsewhere in a row do occur),
  so keeping exactly k entries and keeping every tie at the threshold both pass;
- greedy decoding runs a small random ``TransformerLM`` only when the best and the second
  best logit differ by at least ``_DECODE_MARGIN`` at every step (batch-by-batch or
  cached evaluations of the same model cannot flip an argmax), and an integer-valued
  "prefix" model whose argmax depends on every token so far (exposes a loop that feeds the
  model only the newest token, or only the prompt) and that can tie on purpose.

Forbidden: PyTorch's softmax, log-softmax, logsumexp and cross-entropy/NLL in
``stable_softmax`` and ``cross_entropy`` (the max-subtraction trick is the exercise);
nothing in ``top_k_filter`` (``torch.topk`` is the tool) and in ``greedy_decode`` (the models
given to it use ``torch.softmax`` inside). Calling the reference's ``sample`` with ``top_k=1``
instead of writing the loop fails the tie cases (it draws between tied tokens at random).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from reference_impl import model as _ref_model
from reference_impl import output as _ref

from .core import Case, Check, CheckFailed, register, sanitize
from .diagnose import close, describe, mismatch, modified_inputs, shape_str

ASSIGNMENT = "04_output"

_ref_softmax = _ref.stable_softmax
_ref_cross_entropy = _ref.cross_entropy
_ref_top_k = _ref.top_k_filter
_ref_greedy = _ref.greedy_decode
_RefLM = _ref_model.TransformerLM

_SOFTMAX_BUILTINS = (
    "torch.softmax",
    "torch.nn.functional.softmax",
    "torch.Tensor.softmax",
    "torch.special.softmax",
    "torch.nn.Softmax",
    "torch.log_softmax",
    "torch.nn.functional.log_softmax",
    "torch.Tensor.log_softmax",
    "torch.special.log_softmax",
    "torch.nn.LogSoftmax",
    "torch.logsumexp",
    "torch.Tensor.logsumexp",
    "torch.special.logsumexp",
    "torch.ops.aten._softmax",
    "torch.ops.aten._safe_softmax",
    "torch.ops.aten._log_softmax",
    "torch.ops.aten.logsumexp",
)
_LOSS_BUILTINS = _SOFTMAX_BUILTINS + (
    "torch.nn.functional.cross_entropy",
    "torch.nn.functional.nll_loss",
    "torch.nn.CrossEntropyLoss",
    "torch.nn.NLLLoss",
    "torch.ops.aten.cross_entropy_loss",
    "torch.ops.aten.nll_loss_forward",
    "torch.ops.aten.nll_loss2d_forward",
)

_KEEPDIM_HINT = (
    "A reduction such as x.amax(dim=dim) or x.sum(dim=dim) drops that axis, so the result no longer lines "
    "up with x: pass keepdim=True to keep it as a size-1 axis that broadcasts."
)


def _broadcast_hint(exc: RuntimeError, name: str) -> CheckFailed | None:
    """A CheckFailed with the keepdim hint for a broadcasting error, else None."""
    if "must match the size of tensor" not in str(exc):
        return None
    return CheckFailed(f"your {name} raised RuntimeError: {exc}. {_KEEPDIM_HINT}")


# ---------------------------------------------------------------------------
# stable_softmax
# ---------------------------------------------------------------------------


def _softmax64(z: torch.Tensor, dim: int) -> torch.Tensor:
    """softmax along ``dim`` in float64 (the checks' own, never the learner's)."""
    return torch.softmax(z.double(), dim=dim)


def _exp_normalise(z: torch.Tensor, m: torch.Tensor, s_dim: int, keep_sum: bool) -> torch.Tensor:
    e = torch.exp(z - m)
    return e / e.sum(dim=s_dim, keepdim=keep_sum)


def _softmax_catalogue(logits: torch.Tensor, T: float, dim: int):
    """(a mistaken softmax of these inputs, what went wrong), most telling first."""
    nd = logits.dim()
    d = dim % nd
    z64 = logits.double()
    # stability mistakes, in float32 like the learner's code
    z32 = logits.float() / T
    yield torch.exp(z32) / torch.exp(z32).sum(dim=d, keepdim=True), (
        "the maximum is not subtracted before exp: exp() of logits of size 1e4 overflows float32 to inf "
        "(inf / inf = NaN) and exp(-1e4) underflows to 0 (0 / 0 = NaN). Subtract each row's maximum first, "
        "z - z.amax(dim=dim, keepdim=True): softmax does not change, and the largest exponent becomes exp(0) = 1")
    if logits.numel() > logits.shape[d]:
        yield _exp_normalise(z32, z32.max(), d, True), (
            "the maximum of the WHOLE tensor is subtracted (z.max()), not each row's own maximum: a row far "
            "below the largest logit underflows to exp(-huge) = 0 everywhere (0 / 0 = NaN). Use "
            "z.amax(dim=dim, keepdim=True)")
    for other in range(nd):
        if other != d:
            yield _exp_normalise(z32, z32.amax(dim=other, keepdim=True), d, True), (
                f"the maximum is taken along dim={other}, not along the softmax's dim={dim}: every entry of a "
                "row must have the SAME number subtracted. Use z.amax(dim=dim, keepdim=True)")
    m32 = z32.amax(dim=d, keepdim=True)
    yield torch.exp(z32 - (m32 + torch.log(torch.exp(z32 - m32).sum(dim=d, keepdim=True)))), (
        "it computes exp(z - logsumexp(z)) with logsumexp = m + log(sum(exp(z - m))): right on paper, but near 1e4 "
        "float32 numbers are 0.001 apart, so z - logsumexp(z) loses three digits. Divide instead: "
        "e = exp(z - m), then e / e.sum(dim=dim, keepdim=True)")
    # the other mistakes, in float64
    if T != 1.0:
        yield _softmax64(z64 * T, d), (
            "the logits are MULTIPLIED by the temperature; divide them: softmax(logits / temperature), so "
            "that a temperature below 1 sharpens the distribution and above 1 flattens it")
        yield _softmax64(z64, d), "the temperature is ignored: divide the logits by temperature before exp"
        yield _softmax64(z64, d) / T, (
            "the probabilities are divided by the temperature AFTER the softmax (they no longer sum to 1); "
            "divide the logits before it")
    for other in range(nd):
        if other != d:
            if dim != -1 and other == nd - 1:
                text = (f"the softmax runs over the last axis although dim={dim} was asked for: use the dim "
                        "argument in every reduction (amax and sum)")
            else:
                text = (f"the softmax runs over dim={other}; it must run over dim={dim} (the dim argument), so "
                        "that the probabilities sum to 1 along that axis")
            yield _softmax64(z64 / T, other), text
    shifted = z64 / T - (z64 / T).amax(dim=d, keepdim=True)
    yield torch.exp(shifted), "the exponentials are not divided by their sum along dim (probabilities must sum to 1)"
    yield shifted - torch.exp(shifted).sum(dim=d, keepdim=True).log(), (
        "it returns log-probabilities (a log-softmax); return the probabilities themselves")
    zT = z64 / T
    for keep_max, keep_sum in ((False, True), (True, False), (False, False)):
        try:
            m = zT.amax(dim=d, keepdim=keep_max)
            yield _exp_normalise(zT, m, d, keep_sum), (
                f"a reduction lost its axis ({'sum' if keep_max else 'amax' if keep_sum else 'amax and sum'} "
                "without keepdim=True), so it "
                f"broadcast along the wrong axis. {_KEEPDIM_HINT}")
        except RuntimeError:
            continue


class StableSoftmaxCheck(Check):
    name = "stable_softmax"
    assignment = ASSIGNMENT
    kind = "function"
    forbidden = _SOFTMAX_BUILTINS
    forbidden_hint = "Write it with torch.exp, a maximum (amax) and a sum."
    reference = "reference_impl.output.stable_softmax"
    timeout_s = 20.0

    # (label, shape, scale, temperature or None (default), dim or None (default), layout)
    VISIBLE = (
        ("logits (2, 5) of size about 3, default temperature and dim", (2, 5), 3.0, None, None, "plain"),
        ("temperature 0.5 (sharper) on logits (3, 7)", (3, 7), 2.0, 0.5, None, "plain"),
        ("logits of size 1e4: one row near +1e4 and one near -1e4, shape (2, 6)", (2, 6), 3.0, None, None,
         "pm1e4"),
        ("softmax over dim=0 of logits (4, 3)", (4, 3), 2.0, None, 0, "plain"),
    )
    HIDDEN = (
        ("rows of very different scale (near +1e4, 0 and -1e4), temperature 2.0, shape (3, 9)", (3, 9), 3.0, 2.0,
         None, "scales"),
        ("3-D logits (2, 3, 5), softmax over dim=1, temperature 1.5", (2, 3, 5), 2.0, 1.5, 1, "plain"),
        ("1-D logits (7,) near 1e4, temperature 0.25", (7,), 1.0, 0.25, None, "plus1e4"),
        ("a square batch (4, 4), temperature 2.0", (4, 4), 3.0, 2.0, -1, "plain"),
        ("rows with -inf entries (already filtered), shape (2, 6)", (2, 6), 2.0, None, None, "neginf"),
        ("a row mixing +1e4 and -1e4, batch 1, shape (1, 5), softmax over dim=-1", (1, 5), 1.0, 4.0, -1, "mixed"),
        ("3-D logits (3, 2, 4) near 1e4, softmax over dim=-2", (3, 2, 4), 2.0, None, -2, "plus1e4"),
    )

    @staticmethod
    def _logits(g: torch.Generator, shape: tuple, scale: float, layout: str) -> torch.Tensor:
        x = torch.randn(*shape, generator=g) * scale
        if layout == "pm1e4":
            x[0] += 1e4
            x[1] -= 1e4
        elif layout == "scales":
            x[0] += 1e4
            x[2] -= 1e4
        elif layout == "plus1e4":
            x += 1e4
        elif layout == "mixed":
            signs = torch.tensor([1.0, -1.0, 1.0, -1.0, -1.0])
            x = x + 1e4 * signs
        elif layout == "neginf":
            x[0, 1] = x[0, 4] = x[1, 0] = float("-inf")
        return x

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        g = torch.Generator().manual_seed(seed)
        cases = []
        for label, shape, scale, T, dim, layout in (self.HIDDEN if hidden else self.VISIBLE):
            logits = self._logits(g, shape, scale, layout)
            want = _ref_softmax(logits.double(), 1.0 if T is None else T, -1 if dim is None else dim).float()
            cases.append(Case(label, {"logits": logits, "temperature": T, "dim": dim}, want))
        return cases

    def invoke(self, obj: Any, inputs: dict) -> Any:
        kwargs = {k: inputs[k] for k in ("temperature", "dim") if inputs[k] is not None}
        try:
            return sanitize(obj(inputs["logits"], **kwargs))
        except RuntimeError as exc:
            hint = _broadcast_hint(exc, self.name)
            if hint is None:
                raise
            raise hint from exc

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        changed = modified_inputs(case.inputs, inputs_after, ("logits",), "your function")
        if changed:
            return changed
        logits, want = case.inputs["logits"], case.expected
        T = 1.0 if case.inputs["temperature"] is None else case.inputs["temperature"]
        dim = -1 if case.inputs["dim"] is None else case.inputs["dim"]
        wrong = mismatch("your result", want, got)
        if wrong is None:
            return None
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
            return f"{wrong} The probabilities have the shape of the logits."
        for candidate, text in _softmax_catalogue(logits, T, dim):
            if not close(candidate, want) and close(got, candidate):
                return f"your result matches a known mistake: {text}."
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            return (f"{wrong} exp() overflows float32 above about 88 (exp(1e4) = inf) and underflows to 0 below "
                    "about -103: subtract each row's maximum along dim (amax(dim=dim, keepdim=True)) before exp.")
        return wrong


# ---------------------------------------------------------------------------
# cross_entropy
# ---------------------------------------------------------------------------


def _stable_log_softmax64(x: torch.Tensor) -> torch.Tensor:
    shifted = x.double() - x.double().amax(dim=-1, keepdim=True)  # (N, V), all <= 0
    return shifted - torch.exp(shifted).sum(dim=-1, keepdim=True).log()


def _ce_catalogue(logits: torch.Tensor, targets: torch.Tensor):
    """(a mistaken loss on these inputs, what went wrong); stability mistakes in float32 first."""
    N, V = logits.shape
    rows = torch.arange(N)
    x32 = logits.float()
    m32 = x32.amax(dim=-1, keepdim=True)
    p32 = torch.exp(x32 - m32) / torch.exp(x32 - m32).sum(-1, keepdim=True)
    yield (-torch.log(p32[rows, targets])).mean(), (
        "it takes the log of probabilities (log(softmax(x))[target]): a target whose probability underflows to 0 "
        "(a logit 2e4 below the row's maximum) gives -log(0) = inf. Compute log-probabilities directly: "
        "log p = (x - m) - log(sum(exp(x - m))), with m the row's maximum")
    yield (torch.log(torch.exp(x32).sum(-1)) - x32[rows, targets]).mean(), (
        "the maximum is not subtracted: exp() of logits of size 1e4 overflows to inf (and exp(-1e4) underflows to "
        "0, log(0) = -inf). Use log(sum(exp(x))) = m + log(sum(exp(x - m))) with m = x.amax(dim=-1, keepdim=True)")
    if N > 1:
        M = x32.max()
        yield (M + torch.log(torch.exp(x32 - M).sum(-1)) - x32[rows, targets]).mean(), (
            "the maximum of the WHOLE batch is subtracted, not each row's own: a row far below the largest logit "
            "underflows to exp(-huge) = 0 and log(0) = -inf. Use x.amax(dim=-1, keepdim=True), one maximum per row")
    logp = _stable_log_softmax64(logits)  # (N, V) float64
    nll = -logp[rows, targets]  # (N,)
    x64 = logits.double()
    m64 = x64.amax(dim=-1)
    lse_shift = torch.exp(x64 - m64[:, None]).sum(-1).log()  # (N,)
    if N > 1:
        yield nll.sum(), "it returns the SUM of the per-example losses; cross-entropy is their MEAN (divide by N)"
    yield -nll.mean(), "the sign is flipped: the loss is the NEGATIVE mean log-probability of the targets (>= 0)"
    for shift in (1, -1):
        t = (targets + shift) % V  # targets - 1 wraps around like Python's indexing (-1 = the last class)
        if V > 1:
            yield -logp[rows, t].mean(), (
                f"it uses class target {'+' if shift > 0 else '-'} 1 (off by one): the target t picks column t of "
                "its row, counting from 0")
    yield -logp[:, targets].mean(), (
        "logits[:, targets] (an N x N block: every row at every target) is averaged; pick ONE entry per row: "
        "logits[torch.arange(N), targets] or logits.gather(1, targets[:, None])")
    yield -logp.mean(), ("it averages the log-probabilities of EVERY class, not just each row's target: pick "
                         "logp[torch.arange(N), targets] before the mean")
    yield (-torch.exp(logp[rows, targets])).mean(), (
        "it averages the (negative) probabilities of the targets, without the log: the loss is "
        "-mean(log p[target]), with log-probabilities")
    yield (lse_shift - x64[rows, targets]).mean(), (
        "the maximum is subtracted inside log(sum(exp(x - m))) but not added back: log(sum(exp(x))) = "
        "m + log(sum(exp(x - m))) (or subtract the max from the target's logit too)")
    yield (m64 + lse_shift).mean(), "the target's logit is missing: the loss is log(sum(exp(x))) - x[target]"


def loss_atol(logits: torch.Tensor) -> float:
    """Absolute tolerance of a loss on ``logits``: assert_close's 1e-5 plus one float32 spacing at the
    largest logit (log-sum-exp minus the target's logit subtracts two numbers of that size; at 1e4
    a correct float32 formulation such as m + log(sum(exp(x - m))) - x[t] is off by up to ~1e-3)."""
    finite = logits[torch.isfinite(logits)]
    scale = float(finite.abs().max()) if finite.numel() else 0.0
    return 1e-5 + scale * 2.0**-23


class CrossEntropyCheck(Check):
    name = "cross_entropy"
    assignment = ASSIGNMENT
    kind = "function"
    forbidden = _LOSS_BUILTINS
    forbidden_hint = "Write the log-sum-exp yourself, with each row's maximum subtracted."
    reference = "reference_impl.output.cross_entropy"
    timeout_s = 20.0

    # (label, N, V, layout, targets placed first)
    VISIBLE = (
        ("logits (4, 5) of size about 2, targets with a repeated id", 4, 5, "plain", (3, 0, 3)),
        ("logits of size 1e4 (every row near +1e4), shape (3, 6)", 3, 6, "plus1e4", ()),
        ("a batch of one: logits (1, 7), target = the last class 6", 1, 7, "plain", (6,)),
    )
    HIDDEN = (
        ("rows of very different scale (near +1e4, 0 and -1e4), shape (3, 5)", 3, 5, "scales", ()),
        ("targets 2e4 below their row's maximum (a probability that underflows to 0), shape (2, 4)", 2, 4,
         "far_target", ()),
        ("more examples than classes: (8, 3), targets 0 and 2 repeated", 8, 3, "plain", (0, 2, 2, 0, 2)),
        ("odd sizes (5, 13)", 5, 13, "plain", (12,)),
        ("two classes: (6, 2)", 6, 2, "plain", (1, 1, 0)),
    )

    @staticmethod
    def _inputs(g, N, V, layout, include):
        logits = torch.randn(N, V, generator=g) * 2.0
        targets = torch.randint(0, V, (N,), generator=g)
        for i, t in enumerate(include):
            targets[i] = t
        if layout == "plus1e4":
            logits += 1e4
        elif layout == "scales":
            logits[0] += 1e4
            logits[2] -= 1e4
        elif layout == "far_target":
            for i in range(N):
                top = (int(targets[i]) + 1 + i) % V
                logits[i, top] = 1e4
                logits[i, targets[i]] = -1e4
        return logits, targets

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        g = torch.Generator().manual_seed(seed)
        cases = []
        for label, N, V, layout, include in (self.HIDDEN if hidden else self.VISIBLE):
            logits, targets = self._inputs(g, N, V, layout, include)
            x = logits.double()
            loss = _ref_cross_entropy(x, targets).float()
            grad = ((torch.softmax(x, -1) - torch.nn.functional.one_hot(targets, V).double()) / N).float()
            cases.append(Case(label, {"logits": logits, "targets": targets}, {"loss": loss, "grad": grad}))
        return cases

    def invoke(self, obj: Any, inputs: dict) -> Any:
        logits, targets = inputs["logits"], inputs["targets"]
        try:
            loss = obj(logits, targets)
        except RuntimeError as exc:
            if "same number of dimensions" in str(exc):
                raise CheckFailed(
                    f"your cross_entropy raised RuntimeError: {exc}. gather needs an index with as many axes as "
                    "logits: logits.gather(1, targets[:, None]) (then .squeeze(1)), or index with "
                    "logits[torch.arange(N), targets]."
                ) from exc
            hint = _broadcast_hint(exc, self.name)
            if hint is None:
                raise
            raise hint from exc
        result = {"loss": sanitize(loss), "grad": None, "grad_error": None}
        # a second call on a copy that requires grad: does the loss backpropagate to the logits?
        leaf = logits.detach().clone().requires_grad_(True)
        try:
            with torch.enable_grad():  # whatever grad mode the caller left on
                out = obj(leaf, targets.clone())
            if not isinstance(out, torch.Tensor) or not out.requires_grad:
                result["grad_error"] = "no_grad"
            else:
                (grad,) = torch.autograd.grad(out.sum(), leaf, allow_unused=True)
                result["grad"] = None if grad is None else sanitize(grad)
                if grad is None:
                    result["grad_error"] = "no_grad"
        except CheckFailed:
            raise
        except Exception as exc:  # noqa: BLE001 (reported by judge, the value is graded first)
            result["grad_error"] = f"{type(exc).__name__}: {exc}"
        return result

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        changed = modified_inputs(case.inputs, inputs_after, ("logits", "targets"), "your function")
        if changed:
            return changed
        if not isinstance(got, dict) or "loss" not in got:
            return f"internal: unexpected result {describe(got)}"
        logits, targets = case.inputs["logits"], case.inputs["targets"]
        want, loss = case.expected["loss"], got["loss"]
        N = logits.shape[0]
        if isinstance(loss, float):
            return ("your loss is a Python float (.item()?); return the scalar tensor, e.g. losses.mean(), so that "
                    "the loss can be backpropagated.")
        if isinstance(loss, torch.Tensor) and loss.shape != want.shape:
            if tuple(loss.shape) == (N,) and N > 1:
                return (f"your loss has shape ({N},): one loss per example. cross_entropy returns their mean, a "
                        "scalar (0-d) tensor: .mean().")
            if loss.numel() == 1:
                return (f"your loss has shape {shape_str(loss.shape)}; return a scalar (0-d) tensor, e.g. "
                        "losses.mean() (or .squeeze()).")
        wrong = mismatch("your loss", want, loss, atol=loss_atol(logits))
        if wrong is not None:
            if isinstance(loss, torch.Tensor) and loss.shape == want.shape and loss.is_floating_point():
                for candidate, text in _ce_catalogue(logits, targets):
                    if not close(candidate, want) and close(loss, candidate):
                        return f"{wrong} It matches a known mistake: {text}."
                if not bool(torch.isfinite(loss).all()):
                    return (f"{wrong} exp() overflows float32 for logits of size 1e4 and underflows to 0 far below "
                            "the maximum (log(0) = -inf): subtract each row's maximum before exp and work with "
                            "log-probabilities, never log(probabilities).")
            return wrong
        grad_error = got.get("grad_error")
        if grad_error == "no_grad":
            return ("your loss value is right but it does not backpropagate to the logits (it does not require "
                    "grad): was it computed under torch.no_grad(), with .detach(), .item() or torch.tensor(...) of "
                    "numbers? Build it from tensor operations on logits so that training can use it.")
        if grad_error:
            return (f"your loss value is right, but computing it again from logits that require grad failed "
                    f"({grad_error}). Avoid in-place operations on logits (use x - m, not x -= m).")
        wrong_grad = mismatch("the gradient of your loss with respect to the logits", case.expected["grad"],
                              got.get("grad"))
        if wrong_grad:
            return (f"your loss value is right, but {wrong_grad} It should be (softmax(logits) - one_hot(targets)) "
                    "/ N: was part of the computation detached (.detach(), .data, torch.no_grad())?")
        return None


# ---------------------------------------------------------------------------
# top_k_filter
# ---------------------------------------------------------------------------


def _keep_top(logits: torch.Tensor, k: int, dim: int = -1, largest: bool = True) -> torch.Tensor:
    kth = torch.topk(logits, k, dim=dim, largest=largest).values.narrow(dim, k - 1, 1)
    drop = logits < kth if largest else logits > kth
    return logits.masked_fill(drop, float("-inf"))


def _top_k_catalogue(logits: torch.Tensor, k: int):
    V = logits.shape[-1]
    yield _keep_top(logits, k, largest=False), (
        "it keeps the k SMALLEST logits; keep the k largest (torch.topk returns the largest by default)")
    if k + 1 <= V:
        yield _keep_top(logits, k + 1), "it keeps k + 1 logits (off by one): keep exactly the k largest"
    if k >= 2:
        yield _keep_top(logits, k - 1), "it keeps only k - 1 logits (off by one): keep the k largest"
    for d in range(logits.dim() - 1):
        if logits.shape[d] >= k:
            yield _keep_top(logits, k, dim=d), (
                f"it picks the k largest along dim={d}; the vocabulary is the LAST axis (dim=-1)")
    kth = torch.topk(logits, k, dim=-1).values[..., -1]  # (...,) without keepdim
    try:
        yield logits.masked_fill(logits < kth, float("-inf")), (
            f"the k-th largest value lost its axis (values[..., -1] instead of values[..., -1:] or keepdim), so "
            f"each row was compared with the wrong row's threshold. {_KEEPDIM_HINT}")
    except RuntimeError:
        pass


class TopKFilterCheck(Check):
    name = "top_k_filter"
    assignment = ASSIGNMENT
    kind = "function"
    reference = "reference_impl.output.top_k_filter"
    timeout_s = 20.0

    # (label, shape, k, offset)
    VISIBLE = (
        ("logits (2, 6), k=3", (2, 6), 3, 0.0),
        ("k=1 keeps only the largest: logits (3, 5)", (3, 5), 1, 0.0),
        ("1-D logits (8,), k=5", (8,), 5, 0.0),
    )
    HIDDEN = (
        ("leading batch dims: logits (2, 3, 7), k=2", (2, 3, 7), 2, 0.0),
        ("k = V - 1 drops only the smallest: logits (1, 9), k=8", (1, 9), 8, 0.0),
        ("a square batch (4, 4), k=2", (4, 4), 2, 0.0),
        ("logits near 1e4: (3, 6), k=3", (3, 6), 3, 1e4),
        ("k = V keeps everything: logits (2, 5), k=5", (2, 5), 5, 0.0),
        ("all logits negative: (5, 11), k=6", (5, 11), 6, -8.0),
    )

    @staticmethod
    def _logits(g: torch.Generator, shape: tuple, k: int, offset: float) -> torch.Tensor:
        """Distinct values 0.5 apart (ties only away from the k-th largest), shifted by ``offset``."""
        V = shape[-1]
        rows = []
        for _ in range(math.prod(shape[:-1])):
            ranks = torch.randperm(V, generator=g)  # rank 0 = largest
            vals = (V - 1 - ranks).float() * 0.5
            if k >= 2 and V >= 2:  # a tie among the kept ones: rank 1 takes rank 0's value
                vals[ranks == 1] = vals[ranks == 0]
            if k <= V - 2:  # a tie among the dropped ones
                vals[ranks == V - 1] = vals[ranks == V - 2]
            rows.append(vals + offset)
        return torch.stack(rows).reshape(shape)

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        g = torch.Generator().manual_seed(seed)
        cases = []
        for label, shape, k, offset in (self.HIDDEN if hidden else self.VISIBLE):
            logits = self._logits(g, shape, k, offset)
            cases.append(Case(label, {"logits": logits, "k": k}, _ref_top_k(logits, k)))
        return cases

    def invoke(self, obj: Any, inputs: dict) -> Any:
        try:
            return sanitize(obj(inputs["logits"], inputs["k"]))
        except RuntimeError as exc:
            if "selected index k out of range" in str(exc):
                raise CheckFailed(
                    f"your top_k_filter raised RuntimeError: {exc}. torch.topk ran along an axis with fewer than k "
                    f"entries: the vocabulary is the LAST axis, torch.topk(logits, k, dim=-1)."
                ) from exc
            hint = _broadcast_hint(exc, self.name)
            if hint is None:
                raise
            raise hint from exc

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        changed = modified_inputs(case.inputs, inputs_after, ("logits",), "your function")
        if changed:
            return changed
        logits, k, want = case.inputs["logits"], case.inputs["k"], case.expected
        if isinstance(got, torch.Tensor):
            if tuple(got.shape) == tuple(logits.shape[:-1]) + (k,) and k != logits.shape[-1]:
                return (f"your result has shape {shape_str(got.shape)}: only the k values (torch.topk's output). "
                        f"Return a tensor shaped like logits {shape_str(logits.shape)}: the k largest logits in "
                        "their places, float('-inf') everywhere else.")
            if got.dtype == torch.bool and got.shape == want.shape:
                return ("your result is a boolean mask; return the logits themselves with the dropped ones set to "
                        "float('-inf') (e.g. logits.masked_fill(logits < kth, float('-inf'))).")
        wrong = mismatch("your result", want, got)
        if wrong is None:
            return None
        if not isinstance(got, torch.Tensor) or got.shape != want.shape or not got.is_floating_point():
            return wrong
        dropped = torch.isinf(want)
        kept_ok = bool(torch.equal(got[~dropped], want[~dropped]))
        if bool(torch.equal(got, want.sort(dim=-1, descending=True).values)):
            return (f"{wrong} Your result is sorted (largest first); keep each logit at its position: position i "
                    "stands for token i, so only set the dropped ones to -inf.")
        if kept_ok and bool(dropped.any()):
            fill = got[dropped]
            if bool((fill == fill.flatten()[0]).all()) and bool(torch.isfinite(fill).all()):
                value = float(fill.flatten()[0])
                extra = " A logit of 0 is not even small: softmax still gives it weight." if value == 0 else ""
                return (f"the right logits are kept, but the dropped ones are set to {value:g} instead of "
                        f"float('-inf'): only -inf gets probability exactly 0 after the softmax.{extra}")
        for candidate, text in _top_k_catalogue(logits, k):
            if not close(candidate, want) and close(got, candidate):
                return f"{wrong} It matches a known mistake: {text}."
        if bool(torch.equal(torch.isinf(got), dropped)) and not kept_ok:
            return (f"{wrong} The right positions are dropped, but the kept logits changed: keep their values "
                    "unchanged (no softmax, no sorting).")
        return wrong


# ---------------------------------------------------------------------------
# greedy_decode
# ---------------------------------------------------------------------------

_DECODE_MARGIN = 1e-3  # random-LM cases: best minus second-best logit at every step


class _PrefixLM(nn.Module):
    """A toy "language model" whose next token depends on every token so far.

    At position t the logits peak (value 0, others -cyclic distance) at
    ``target = (mult * (ids[0] + ... + ids[t]) + shift * t + 1) % V``; with ``tie`` a second
    token, ``(target + V // 2) % V``, has the same top logit. Integer-valued: exact argmaxes.
    """

    def __init__(self, vocab_size: int, mult: int, shift: int, tie: bool):
        super().__init__()
        self.vocab_size, self.mult, self.shift, self.tie = vocab_size, mult, shift, tie
        self.scale = nn.Parameter(torch.ones(()))  # so that model.parameters() is not empty

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long or ids.dim() != 2:
            what = describe(ids)
            raise TypeError(f"the model expects token ids as a LongTensor of shape (B, T), got {what}; keep the "
                            "ids integer (torch.long), e.g. next_id.to(ids.dtype) before torch.cat")
        V = self.vocab_size
        T = ids.shape[1]
        target = (self.mult * ids.cumsum(dim=1) + self.shift * torch.arange(T) + 1) % V  # (B, T)
        v = torch.arange(V)

        def cyclic(center):
            d = (v - center[..., None]) % V
            return torch.minimum(d, V - d)  # (B, T, V)

        dist = cyclic(target)
        if self.tie:
            dist = torch.minimum(dist, cyclic((target + V // 2) % V))
        return -dist.to(torch.float32) * self.scale  # (B, T, V)


class _Recorder(nn.Module):
    """Wraps a model and records the shape of every input it is called with."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.calls: list = []

    def forward(self, ids):
        if len(self.calls) < 100:
            self.calls.append(list(ids.shape) if isinstance(ids, torch.Tensor) else None)
        return self.model(ids)


def _build_model(spec: dict) -> nn.Module:
    if spec["kind"] == "prefix":
        return _PrefixLM(spec["vocab_size"], spec["mult"], spec["shift"], spec["tie"])
    cfg = spec["config"]
    with torch.random.fork_rng(devices=[]):  # nn.Linear/nn.Embedding draw from the global RNG
        lm = _RefLM(cfg["vocab_size"], cfg["d_model"], cfg["n_heads"], cfg["d_ff"], cfg["n_layers"])
    lm.load_state_dict(spec["state_dict"])
    return lm.eval()


def _decode_variant(model, prompt: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """Greedy decoding with one classic mistake (``mode``), or None if it cannot even run."""
    ids = prompt.clone()
    B = ids.shape[0]
    with torch.no_grad():
        for step in range(n):
            if mode == "last_only":
                inp = ids if step == 0 else ids[:, -1:]
            elif mode == "last_only_always":
                inp = ids[:, -1:]
            elif mode == "prompt_only":
                inp = prompt
            else:
                inp = ids
            logits = model(inp)  # (B, T, V)
            row = logits[:, 0] if mode == "first_position" else logits[:, -1]  # (B, V)
            if mode == "ties_high":
                nxt = row.shape[-1] - 1 - row.flip(-1).argmax(dim=-1)
            elif mode == "flat_argmax":
                nxt = row.reshape(-1).argmax().expand(B)
            else:
                nxt = row.argmax(dim=-1)
            ids = torch.cat([ids, nxt[:, None].to(ids.dtype)], dim=1)
    return ids


def _tie_message(model: nn.Module, out: torch.Tensor, T0: int) -> str | None:
    """A message if every token of ``out`` has the largest logit given the tokens before it, ties
    resolved other than to the lowest id; else None."""
    with torch.no_grad():
        logits = model(out[:, :-1])[:, T0 - 1:]  # (B, n, V): causal, position p predicts token p + 1
    chosen = out[:, T0:]
    best = logits.amax(dim=-1)
    picked = logits.gather(-1, chosen[..., None].clamp(0, logits.shape[-1] - 1)).squeeze(-1)
    if not bool((chosen < logits.shape[-1]).all()) or not bool((picked == best).all()):
        return None
    return ("Every token you chose has the largest logit, but where several tokens tie for it, greedy decoding "
            "takes the LOWEST id, as torch.argmax does (random sampling or another tie rule picks a different one).")


_DECODE_MISTAKES = (
    ("last_only", "after the first step the model is fed only the newest token (model(next_id)); it must see the "
                  "whole sequence so far: model(ids) with ids = the prompt plus every token generated"),
    ("last_only_always", "the model is fed only the last token (ids[:, -1:]); feed it the whole sequence so far, "
                         "model(ids), and read the logits of its last position"),
    ("prompt_only", "the model is fed the prompt at every step: the new tokens are appended to the output but never "
                    "fed back in. Call the model on the grown sequence each time"),
    ("first_position", "it takes the argmax of the FIRST position's logits (logits[:, 0]); the next token comes from "
                       "the last position: logits[:, -1]"),
    ("flat_argmax", "the argmax runs over the whole (B, V) block at once (argmax() without dim): each row needs its "
                    "own argmax over the vocabulary, logits[:, -1].argmax(dim=-1)"),
    ("ties_high", "ties between equally large logits go to the HIGHEST token id; greedy decoding takes torch.argmax, "
                  "which returns the first (lowest) id among equal maxima"),
)


class GreedyDecodeCheck(Check):
    name = "greedy_decode"
    assignment = ASSIGNMENT
    kind = "function"
    # the reference is decorated with @torch.no_grad(); core blocks the function inside the decorator,
    # never the decorator's wrapper (whose code every @torch.no_grad() function shares)
    reference = "reference_impl.output.greedy_decode"
    timeout_s = 30.0

    # (label, model kind, V, B, T0, max_new_tokens, tie)
    VISIBLE = (
        ("a toy model whose next token depends on the whole sequence (V=7): batch 2, prompt length 3, 4 new tokens",
         "prefix", 7, 2, 3, 4, False),
        ("a small random TransformerLM (V=11, d_model=16, 2 heads, 1 layer): batch 1, prompt length 2, 5 new tokens",
         "lm", 11, 1, 2, 5, False),
        ("ties: two tokens share the largest logit (V=8): batch 2, prompt length 1, 3 new tokens",
         "prefix", 8, 2, 1, 3, True),
    )
    HIDDEN = (
        ("toy model (V=13): batch 3, prompt length 5, 6 new tokens", "prefix", 13, 3, 5, 6, False),
        ("a single new token: toy model (V=9), batch 1, prompt length 4", "prefix", 9, 1, 4, 1, False),
        ("a random TransformerLM (V=17, d_model=12, 3 heads, 2 layers): batch 3, prompt length 3, 4 new tokens",
         "lm", 17, 3, 3, 4, False),
        ("ties (V=10): batch 1, prompt length 6, 5 new tokens", "prefix", 10, 1, 6, 5, True),
        ("a one-token prompt: toy model (V=5), batch 4, 7 new tokens", "prefix", 5, 4, 1, 7, False),
    )

    @staticmethod
    def _lm_spec(g: torch.Generator, V: int, B: int, T0: int, n: int, hidden: bool):
        cfg = ({"vocab_size": V, "d_model": 12, "n_heads": 3, "d_ff": 24, "n_layers": 2} if hidden
               else {"vocab_size": V, "d_model": 16, "n_heads": 2, "d_ff": 32, "n_layers": 1})
        for _ in range(50):
            model_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
            prompt = torch.randint(0, V, (B, T0), generator=g)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(model_seed)
                lm = _RefLM(V, cfg["d_model"], cfg["n_heads"], cfg["d_ff"], cfg["n_layers"]).eval()
            with torch.no_grad():
                ids = _ref_greedy(lm, prompt, n)
                top2 = lm(ids[:, :-1])[:, T0 - 1:].topk(2, dim=-1).values  # (B, n, 2)
            if float((top2[..., 0] - top2[..., 1]).min()) >= _DECODE_MARGIN:
                state = {k: v.detach().clone() for k, v in lm.state_dict().items()}
                return {"kind": "lm", "config": cfg, "state_dict": state}, prompt
        raise RuntimeError("no random TransformerLM with clear argmaxes found")  # pragma: no cover

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        g = torch.Generator().manual_seed(seed)
        cases = []
        for label, kind, V, B, T0, n, tie in (self.HIDDEN if hidden else self.VISIBLE):
            if kind == "prefix":
                mult = int(torch.randint(1, V, (1,), generator=g))
                while math.gcd(mult, V) != 1:
                    mult = mult % (V - 1) + 1
                spec = {"kind": "prefix", "vocab_size": V, "mult": mult,
                        "shift": int(torch.randint(1, V, (1,), generator=g)), "tie": tie}
                prompt = torch.randint(0, V, (B, T0), generator=g)
            else:
                spec, prompt = self._lm_spec(g, V, B, T0, n, hidden)
            model = _build_model(spec)
            want = _ref_greedy(model, prompt, n)
            cases.append(Case(label, {"model": spec, "prompt": prompt, "max_new_tokens": n}, want))
        return cases

    def invoke(self, obj: Any, inputs: dict) -> Any:
        model = _Recorder(_build_model(inputs["model"]))
        out = obj(model, inputs["prompt"], inputs["max_new_tokens"])
        return {"output": sanitize(out), "calls": list(model.calls)}

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        changed = modified_inputs(case.inputs, inputs_after, ("prompt",), "your function")
        if changed:
            return changed
        if not isinstance(got, dict) or "output" not in got:
            return f"internal: unexpected result {describe(got)}"
        out, want = got["output"], case.expected
        prompt, n = case.inputs["prompt"], case.inputs["max_new_tokens"]
        B, T0 = prompt.shape
        if isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[0] == B and out.shape != want.shape:
            L = out.shape[1]
            if L == n and n != T0 + n and bool(torch.equal(out.to(want.dtype), want[:, T0:])):
                return (f"your result has shape {shape_str(out.shape)}: only the {n} new tokens. Return the prompt "
                        f"followed by them, shape ({B}, {T0} + {n}) = {shape_str(want.shape)}.")
            if L == T0 + n - 1 and bool(torch.equal(out.to(want.dtype), want[:, :L])):
                return (f"your result has shape {shape_str(out.shape)}: one new token too few; append exactly "
                        f"max_new_tokens = {n} tokens.")
            if L == T0 + n + 1 and bool(torch.equal(out[:, :-1].to(want.dtype), want)):
                return (f"your result has shape {shape_str(out.shape)}: one new token too many; append exactly "
                        f"max_new_tokens = {n} tokens.")
        if isinstance(out, torch.Tensor) and out.shape == want.shape and out.dtype != want.dtype:
            same = bool(torch.equal(out.to(want.dtype), want)) if not out.is_floating_point() or bool(
                (out == out.round()).all()) else False
            return (f"your token ids have dtype {out.dtype}; they must stay a LongTensor (torch.int64) like the "
                    f"prompt{' (the values are right)' if same else ''}: convert the new ids with .to(prompt.dtype) "
                    "or .long() before torch.cat.")
        wrong = mismatch("your result", want, out)
        if wrong is None:
            return None
        if not isinstance(out, torch.Tensor) or out.shape != want.shape:
            return f"{wrong} greedy_decode returns (B, T0 + max_new_tokens): the prompt, then the new tokens."
        if not bool(torch.equal(out[:, :T0], prompt)):
            return (f"{wrong} The first {T0} tokens of every row must be the prompt itself, unchanged; the new tokens "
                    "follow it.")
        model = _build_model(case.inputs["model"])
        tie = _tie_message(model, out, T0)
        if tie:
            return f"{wrong} {tie}"
        for mode, text in _DECODE_MISTAKES:
            try:
                candidate = _decode_variant(model, prompt, n, mode)
            except (RuntimeError, IndexError, TypeError):  # e.g. an id >= V in an embedding
                continue
            if not bool(torch.equal(candidate, want)) and bool(torch.equal(out, candidate)):
                return f"{wrong} It matches a known mistake: {text}."
        calls = [c for c in got.get("calls", []) if c]
        lengths = [c[1] for c in calls if len(c) == 2]
        if lengths and n > 1:
            if all(L == T0 for L in lengths) and len(lengths) >= n:
                return (f"{wrong} The model was called {len(lengths)} times, always with the prompt's length {T0}: "
                        "feed the grown sequence back in at every step.")
            if 1 in lengths[1:] and T0 + 1 not in lengths:
                return (f"{wrong} After the first step the model was called on single tokens; call it on the whole "
                        f"sequence so far (lengths {T0}, {T0 + 1}, ..., {T0 + n - 1}).")
        return wrong


register(StableSoftmaxCheck())
register(CrossEntropyCheck())
register(TopKFilterCheck())
register(GreedyDecodeCheck())
