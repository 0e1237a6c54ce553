"""The chapter 5 checks against their proof corpus: right answers pass, mistakes are named, cheats fail.

Also: the reference passes (through copies), the expected RNN outputs equal nn.RNN with the
weights mapped across, the expected gradient norms equal a float64 Jacobian, the float32
tolerance of the norms leaves room for correct alternatives while every catalogued mistake
stays far outside, the cases hold what exposes the classic bugs, and the out-of-process
path gives the same verdicts.
"""

import pytest
import torch
import torch.nn as nn

import course.checks.ch05 as ch05
from reference_impl import rnn as ref

from . import corpus_ch05 as corpus
from .corpus_ch05 import CHEATS, CORRECT, MISTAKES
from .harness import all_cases, corpus_suite
from .test_ch02 import out_of_process_verdicts

ITEMS = ("rnn_forward", "input_gradient_norms")


# ---------------------------------------------------------------------------
# Expected values
# ---------------------------------------------------------------------------


def test_rnn_expected_equals_torch_nn_rnn():
    for case in all_cases("rnn_forward"):
        inp = case.inputs
        H, I = inp["w_ih"].shape
        rnn = nn.RNN(I, H, batch_first=True).double()
        with torch.no_grad():
            for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
                kind, part = name.split("_")
                getattr(rnn, f"{'weight' if kind == 'w' else 'bias'}_{part}_l0").copy_(inp[name])
            out, h = rnn(inp["x"].double(), inp["h0"].double().unsqueeze(0))
        torch.testing.assert_close(case.expected[0], out.float())
        torch.testing.assert_close(case.expected[1], h[0].float())


def test_gradient_norms_expected_equal_a_float64_jacobian():
    for case in all_cases("input_gradient_norms"):
        model = ch05._build_encoder(case.inputs["model"]).double()
        x = case.inputs["x"].double()
        jac = torch.autograd.functional.jacobian(lambda inp: model(inp)[:, -1].sum(), x)  # (B, T, I)
        want = jac.pow(2).sum(dim=(0, 2)).sqrt()
        torch.testing.assert_close(case.expected, want.float(), rtol=1e-6, atol=1e-9)
        assert bool((case.expected > 0).all()), f"every position is heard (no all-zero gradients): {case.label}"


def test_gradient_tolerance_leaves_room_for_float32_and_none_for_mistakes():
    """Correct float32 computations stay within a tenth of the tolerance; catalogued mistakes far outside."""
    for case in all_cases("input_gradient_norms"):
        model = ch05._build_encoder(case.inputs["model"])
        x = case.inputs["x"]
        want = case.expected.double()
        tol = ch05.GRAD_ATOL + ch05.GRAD_RTOL * want.abs()
        leaf = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(leaf)[:, -1].sum(), leaf)
        for got in (grad.norm(dim=(0, 2)), grad.pow(2).sum(dim=(0, 2)).sqrt(),
                    torch.stack([grad[:, t].norm() for t in range(x.shape[1])])):
            assert bool(((got.double() - want).abs() < tol / 10).all()), case.label
        for wrong, text in ch05._norm_catalogue(model, x):
            if x.shape[1] == 1 and ("FIRST" in text or "ALL outputs" in text):
                continue  # one position: the first is the last, and the only one
            if x.shape[0] == 1 and ("per example" in text or "EXAMPLE" in text):
                continue  # batch 1: per-example and joint norms coincide
            assert bool(((wrong - want).abs() > 10 * tol).any()), (case.label, text)


# ---------------------------------------------------------------------------
# The cases expose the classic bugs
# ---------------------------------------------------------------------------


def test_rnn_cases_expose_the_bugs():
    cases = all_cases("rnn_forward")
    shapes = [tuple(c.inputs["x"].shape) + (c.inputs["h0"].shape[-1],) for c in cases]
    assert any(B == T for B, T, I, H in shapes), "batch == time (axis swaps keep the shape)"
    assert any(I == H for B, T, I, H in shapes), "square w_ih (an untransposed w_ih runs)"
    assert any(B == 1 for B, T, I, H in shapes) and any(T == 1 for B, T, I, H in shapes)
    assert any(T >= 10 for B, T, I, H in shapes)
    visible = all_cases("rnn_forward", False)
    assert all(bool(c.inputs["h0"].abs().sum() > 0) for c in visible), "visible h0 never zero"
    for c in visible:  # every mistake that runs changes the result clearly on the visible cases
        if c.inputs["x"].shape[1] > 1:
            for out, last, text in ch05._rnn_catalogue(c.inputs, c.expected):
                assert float((out - c.expected[0].double()).abs().max()) > 1e-2, (c.label, text)


def test_gradient_cases_expose_the_bugs():
    cases = all_cases("input_gradient_norms")
    kinds = {c.inputs["model"]["kind"] for c in cases}
    assert kinds == {"rnn", "gru", "transformer"}
    assert any(c.inputs["x_requires_grad"] for c in all_cases("input_gradient_norms", False))
    assert any(c.inputs["model"]["kind"] == "transformer" and not c.inputs["model"]["config"]["causal"]
               for c in cases)
    assert any(c.inputs["x"].shape[0] > 1 for c in all_cases("input_gradient_norms", False))


@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_out_of_process_path_gives_the_same_verdicts():
    for entry_id in ("loop_stack", "autograd_grad_fresh_leaf", "backward_then_zero_grad"):
        entry = next(e for e in CORRECT if e.id == entry_id)
        verdicts = out_of_process_verdicts(entry)
        assert verdicts and verdicts == [None] * len(verdicts), (entry_id, verdicts)
    for entry_id in ("h0_ignored", "nn_rnn_module", "requires_grad_on_callers_x", "leaves_parameter_grads",
                     "clone_is_not_a_leaf", "squared_norms"):
        entry = next(e for e in MISTAKES + CHEATS if e.id == entry_id)
        messages = [v for v in out_of_process_verdicts(entry) if v]
        assert messages and entry.expect.lower() in messages[0].lower(), (entry_id, messages)


globals().update(corpus_suite("05_rnn_contrast", ITEMS, corpus, (ch05,), ref))
