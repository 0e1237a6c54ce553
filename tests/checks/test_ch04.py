"""The chapter 4 checks against their proof corpus: right answers pass, mistakes are named, cheats fail.

Also: the reference passes (through copies), the expected values equal PyTorch's softmax,
F.cross_entropy (value and gradient), a brute-force top-k and a step-by-step decoding loop;
the cases hold what exposes the classic bugs (logits of size 1e4, rows of very different
scale, a dim other than the last, ties away from the top-k threshold, tied top logits in
decoding, batch 1, odd sizes); the out-of-process path gives the same verdicts.
"""

import torch
import torch.nn.functional as F

import course.checks.ch04 as ch04
import course.checks.diagnose as diagnose
from course.checks import check
from reference_impl import output as ref

from . import corpus_ch04 as corpus
from .corpus_ch04 import CHEATS, CORRECT, MISTAKES
from .harness import all_cases, corpus_suite, reference_clone
from .test_ch02 import out_of_process_verdicts

ITEMS = ("stable_softmax", "cross_entropy", "top_k_filter", "greedy_decode")


def reference_copy(item):
    """A copy of the reference item the checks do not block (greedy_decode: re-decorated with no_grad)."""
    original = getattr(ref, item)
    if hasattr(original, "__wrapped__"):
        return torch.no_grad()(reference_clone(original.__wrapped__))
    return reference_clone(original)


def test_cases_are_deterministic():
    for item in ITEMS:
        a, b = all_cases(item, True), all_cases(item, True)
        for x, y in zip(a, b):
            assert x.label == y.label
            torch.testing.assert_close(x.expected, y.expected, rtol=0, atol=0)


# ---------------------------------------------------------------------------
# Expected values against PyTorch and brute force
# ---------------------------------------------------------------------------


def test_softmax_expected_equals_torch_softmax():
    for case in all_cases("stable_softmax"):
        inp = case.inputs
        T = 1.0 if inp["temperature"] is None else inp["temperature"]
        dim = -1 if inp["dim"] is None else inp["dim"]
        want = torch.softmax(inp["logits"].double() / T, dim=dim).float()
        torch.testing.assert_close(case.expected, want, rtol=0, atol=1e-7)
        assert bool(torch.isfinite(case.expected).all()), case.label


def test_cross_entropy_expected_equals_f_cross_entropy_value_and_gradient():
    for case in all_cases("cross_entropy"):
        x = case.inputs["logits"].double().requires_grad_(True)
        loss = F.cross_entropy(x, case.inputs["targets"])
        (grad,) = torch.autograd.grad(loss, x)
        torch.testing.assert_close(case.expected["loss"], loss.float().detach())
        torch.testing.assert_close(case.expected["grad"], grad.float())
        # float32 PyTorch agrees with the float64 expectation at the checks' tolerance
        ours32 = F.cross_entropy(case.inputs["logits"], case.inputs["targets"])
        torch.testing.assert_close(ours32, case.expected["loss"])


def test_loss_tolerance_leaves_room_for_float32_and_none_for_mistakes():
    """Correct float32 formulations stay within a third of the loss tolerance; every catalogued mistake that
    differs from the right loss at all differs by more than ten times it (or is not finite)."""
    for case in all_cases("cross_entropy"):
        x, t = case.inputs["logits"], case.inputs["targets"]
        want = case.expected["loss"].double()
        atol = ch04.loss_atol(x)
        tol = atol + 1.3e-6 * abs(float(want))
        rows = torch.arange(x.shape[0])
        m = x.amax(dim=-1, keepdim=True)
        for got in ((m.squeeze(1) + torch.log(torch.exp(x - m).sum(-1)) - x[rows, t]).mean(),
                    ((x - m) - torch.exp(x - m).sum(-1, keepdim=True).log())[rows, t].neg().mean(),
                    F.cross_entropy(x, t)):
            assert abs(float(got) - float(want)) < tol / 3, case.label
        for wrong, text in ch04._ce_catalogue(x, t):
            if diagnose.close(wrong, case.expected["loss"]):
                continue
            assert not bool(torch.isfinite(wrong)) or abs(float(wrong) - float(want)) > 10 * tol, (case.label, text)


def test_top_k_expected_equals_brute_force():
    for case in all_cases("top_k_filter"):
        logits, k = case.inputs["logits"], case.inputs["k"]
        rows = logits.reshape(-1, logits.shape[-1])
        want = torch.full_like(rows, float("-inf"))
        for r, row in enumerate(rows):
            ranked = sorted(range(len(row)), key=lambda i: -float(row[i]))
            for i in ranked[:k]:
                want[r, i] = row[i]
        torch.testing.assert_close(case.expected, want.reshape(logits.shape), rtol=0, atol=0)


def test_greedy_expected_equals_a_step_by_step_loop():
    for case in all_cases("greedy_decode"):
        model = ch04._build_model(case.inputs["model"])
        ids = case.inputs["prompt"].tolist()
        for row in ids:
            for _ in range(case.inputs["max_new_tokens"]):
                with torch.no_grad():
                    logits = model(torch.tensor([row]))[0, -1]
                best = float(logits.max())
                row.append(min(i for i, v in enumerate(logits.tolist()) if v == best))
        assert case.expected.tolist() == ids, case.label
        assert case.expected.dtype == torch.long


# ---------------------------------------------------------------------------
# The cases expose the classic bugs
# ---------------------------------------------------------------------------


def test_softmax_cases_expose_the_bugs():
    cases = all_cases("stable_softmax")
    visible = all_cases("stable_softmax", False)
    big = [c for c in visible if float(c.inputs["logits"].abs().max()) > 5e3]
    assert big, "a visible case with logits of size 1e4"
    assert any(c.inputs["temperature"] not in (None, 1.0) for c in visible), "a visible temperature"
    assert any(c.inputs["dim"] not in (None, -1) for c in visible), "a visible dim other than the last"
    for c in cases:
        x, T = c.inputs["logits"], c.inputs["temperature"]
        if float(x[torch.isfinite(x)].abs().max()) > 5e3 and T is not None:
            assert float(torch.log2(torch.tensor(T))) % 1 == 0, f"large logits: a power-of-two temperature ({c.label})"
        if x.dim() >= 2:
            row_max = x.amax(dim=-1 if c.inputs["dim"] is None else c.inputs["dim"])
            assert bool(torch.isfinite(row_max).all()), "no fully -inf row"
    scales = [c for c in cases if c.inputs["logits"].dim() == 2 and c.inputs["logits"].shape[0] >= 3
              and float(c.inputs["logits"][0].mean() - c.inputs["logits"][1].mean()) > 5e3]
    assert scales, "rows of very different scale"
    assert any(c.inputs["logits"].dim() == 1 for c in cases) and any(c.inputs["logits"].dim() == 3 for c in cases)
    assert any(bool(torch.isinf(c.inputs["logits"]).any()) for c in cases), "-inf entries"


def test_cross_entropy_cases_expose_the_bugs():
    cases = all_cases("cross_entropy")
    visible = all_cases("cross_entropy", False)
    assert any(c.inputs["logits"].shape[0] == 1 for c in visible), "batch 1"
    assert any(c.inputs["targets"].unique().numel() < c.inputs["targets"].numel() for c in visible), "repeated ids"
    assert any(float(c.inputs["logits"].min()) > 5e3 for c in visible), "every row near +1e4"
    assert any(int(c.inputs["targets"].max()) == c.inputs["logits"].shape[1] - 1 for c in visible), "last class"
    far = [c for c in cases if bool(((c.inputs["logits"].amax(-1) - c.inputs["logits"].gather(
        1, c.inputs["targets"][:, None]).squeeze(1)) > 1e4).all())]
    assert far, "a case whose targets' probabilities underflow in float32"
    assert any(c.inputs["logits"].shape[0] > c.inputs["logits"].shape[1] for c in cases)
    for c in cases:
        assert c.inputs["targets"].dtype == torch.long
        assert bool(torch.isfinite(c.expected["loss"])), c.label


def test_top_k_cases_never_tie_at_the_threshold_but_tie_elsewhere():
    saw_tie = False
    for c in all_cases("top_k_filter"):
        logits, k = c.inputs["logits"], c.inputs["k"]
        V = logits.shape[-1]
        ranked = logits.reshape(-1, V).sort(dim=-1, descending=True).values
        if k < V:
            assert bool((ranked[:, k - 1] > ranked[:, k]).all()), c.label
        saw_tie |= bool((ranked[:, :-1] == ranked[:, 1:]).any())
    assert saw_tie
    shapes = [tuple(c.inputs["logits"].shape) for c in all_cases("top_k_filter")]
    assert any(len(s) == 1 for s in shapes) and any(len(s) == 3 for s in shapes)
    assert any(c.inputs["k"] == 1 for c in all_cases("top_k_filter", False))


def test_greedy_cases_expose_the_bugs():
    cases = all_cases("greedy_decode")
    kinds = {c.inputs["model"]["kind"] for c in all_cases("greedy_decode", False)}
    assert kinds == {"prefix", "lm"}
    assert any(c.inputs["model"].get("tie") for c in all_cases("greedy_decode", False)), "a visible tie case"
    assert any(c.inputs["prompt"].shape[0] == 1 for c in cases) and any(c.inputs["prompt"].shape[1] == 1 for c in cases)
    for c in cases:
        prompt, n = c.inputs["prompt"], c.inputs["max_new_tokens"]
        T0 = prompt.shape[1]
        if c.inputs["model"]["kind"] == "prefix" and n > 1:
            model = ch04._build_model(c.inputs["model"])
            for mode in ("last_only", "prompt_only", "first_position"):
                assert not torch.equal(ch04._decode_variant(model, prompt, n, mode), c.expected), (mode, c.label)
        if c.inputs["model"].get("tie"):
            model = ch04._build_model(c.inputs["model"])
            assert not torch.equal(ch04._decode_variant(model, prompt, n, "ties_high"), c.expected)
        assert c.expected.shape == (prompt.shape[0], T0 + n)


def test_a_learner_greedy_decode_may_use_torch_no_grad():
    """The reference is @torch.no_grad()-decorated: the guard must block it, not every decorated function."""
    decorated = torch.no_grad()(reference_clone(ref.greedy_decode.__wrapped__))
    check("greedy_decode", decorated)


def test_out_of_process_path_gives_the_same_verdicts():
    for entry_id in ("amax_exp_sum", "shift_gather_mean", "sort_kth_where", "no_grad_decorated_eval"):
        entry = next(e for e in CORRECT if e.id == entry_id)
        verdicts = out_of_process_verdicts(entry)
        assert verdicts and verdicts == [None] * len(verdicts), (entry_id, verdicts)
    for entry_id in ("no_max_subtraction", "ce_sum_not_mean", "fills_zero", "feeds_only_newest_token",
                     "torch_softmax", "ce_under_no_grad"):
        entry = next(e for e in MISTAKES + CHEATS if e.id == entry_id)
        messages = [v for v in out_of_process_verdicts(entry) if v]
        assert messages and entry.expect.lower() in messages[0].lower(), messages


globals().update(corpus_suite("04_output", ITEMS, corpus, (ch04,), ref, reference_copy=reference_copy))
