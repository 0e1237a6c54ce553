"""The chapter 7 checks against their proof corpus: right answers pass, mistakes are named, cheats fail.

Also: the reference passes (through copies), the expected values equal PyTorch's
F.scaled_dot_product_attention (chunked), the formula written out in float64 (linear) and
Python loops (masks, buckets); float32 rounding stays far inside the tolerance; the cases
contain what exposes the classic bugs; the structural (memory) rule lets every
legitimate implementation through and catches a full score matrix; the out-of-process
path gives the same verdicts.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import _disable_current_modes

import course.checks.ch07 as ch07
import course.checks.util_memory as util_memory
from course.checks import REGISTRY, seed_for
from course.checks.core import Case, clone_tree
from course.checks.util_memory import largest_allocation, watch_allocations
from reference_impl import scalable as ref

from . import corpus_ch07 as corpus
from .corpus_ch07 import CHEATS, CORRECT, MISTAKES
from .harness import all_cases, corpus_suite, reference_clone
from .test_ch02 import load, out_of_process_verdicts

ITEMS = ("sliding_window_mask", "lsh_buckets", "linear_attention", "chunked_attention")


# ---------------------------------------------------------------------------
# Expected values = PyTorch / the formulas / loops
# ---------------------------------------------------------------------------


def test_chunked_expected_equals_torch_sdpa():
    for case in all_cases("chunked_attention"):
        q, k, v = (case.inputs[n].double() for n in "qkv")
        want = F.scaled_dot_product_attention(q, k, v, is_causal=case.inputs["causal"])
        torch.testing.assert_close(case.expected, want.float(), msg=case.label)


def test_linear_expected_equals_the_formula():
    for case in all_cases("linear_attention"):
        inp = case.inputs
        q, k, v = (inp[n].double() for n in "qkv")
        eps = 1e-6 if inp["eps"] is None else inp["eps"]
        phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
        out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=torch.float64)
        for i in range(q.shape[-2]):
            j = i + 1 if inp["causal"] else k.shape[-2]
            S = torch.einsum("...jd,...je->...de", phi_k[..., :j, :], v[..., :j, :])
            z = phi_k[..., :j, :].sum(dim=-2)
            num = torch.einsum("...d,...de->...e", phi_q[..., i, :], S)
            out[..., i, :] = num / ((phi_q[..., i, :] * z).sum(-1, keepdim=True) + eps)
        torch.testing.assert_close(case.expected, out.float(), msg=case.label)
        model = ch07._linear_variant(inp["q"], inp["k"], inp["v"], inp["causal"], eps)
        torch.testing.assert_close(case.expected, model.float(), msg=case.label)


def test_lsh_and_window_expected_equal_python_loops():
    for case in all_cases("lsh_buckets"):
        x, R = case.inputs["x"].double(), case.inputs["rotations"].double()
        flat = x.reshape(-1, x.shape[-1])
        buckets = []
        for row in flat:
            scores = [float(row @ R[:, b]) for b in range(R.shape[1])]
            scores += [-s for s in scores]
            buckets.append(max(range(len(scores)), key=scores.__getitem__))
        assert torch.equal(case.expected, torch.tensor(buckets).reshape(x.shape[:-1])), case.label
    for case in all_cases("sliding_window_mask"):
        T, w, causal = case.inputs["seq_len"], case.inputs["window"], case.inputs["causal"]
        want = [[abs(i - j) <= w and (j <= i or not causal) for j in range(T)] for i in range(T)]
        assert torch.equal(case.expected, torch.tensor(want, dtype=torch.bool).reshape(T, T)), case.label


def test_chunked_model_of_the_mistakes_is_exact_when_correct():
    """The catalogue's float64 online softmax with no mistake flags equals the expected result."""
    for case in all_cases("chunked_attention"):
        inp = case.inputs
        model = ch07._chunked_variant(inp["q"], inp["k"], inp["v"], inp["chunk_size"], inp["causal"])
        torch.testing.assert_close(case.expected, model.float(), msg=case.label)


def naive_attention(q, k, v, chunk_size=None, causal=False):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        T = q.shape[-2]
        s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


@pytest.mark.parametrize("item", ["chunked_attention", "linear_attention"])
def test_float32_rounding_stays_far_inside_the_tolerance(item):
    """float32 results of several formulations are within a fifth of assert_close's tolerance."""
    formulations = [load(e) for e in CORRECT if e.item == item]
    formulations += [naive_attention] if item == "chunked_attention" else [ref.linear_attention]
    for case in all_cases(item):
        inp = case.inputs
        for fn in formulations:
            if item == "chunked_attention":
                got = fn(inp["q"], inp["k"], inp["v"], inp["chunk_size"], causal=inp["causal"])
            else:
                kwargs = {} if inp["eps"] is None else {"eps": inp["eps"]}
                got = fn(inp["q"], inp["k"], inp["v"], causal=inp["causal"], **kwargs)
            want = case.expected.double()
            err = (got.double() - want).abs() / (1e-5 + 1.3e-6 * want.abs())
            assert float(err.max()) < 0.2, (case.label, fn, float(err.max()))


@settings(max_examples=25, deadline=None)
@given(T_q=st.integers(1, 9), T_k=st.integers(1, 12), chunk_size=st.integers(1, 15), causal=st.booleans(),
       seed=st.integers(0, 2**16))
def test_any_chunk_size_judged_right(T_q, T_k, chunk_size, causal, seed):
    """For every chunk size: a right answer passes, dropping the last partial chunk is named when there is
    one, and a per-chunk softmax is caught whenever there are several chunks."""
    if causal:
        T_q = T_k
    g = torch.Generator().manual_seed(seed)
    q, k, v = (2 * torch.randn(2, T_q, 4, generator=g), torch.randn(2, T_k, 4, generator=g),
               torch.randn(2, T_k, 3, generator=g))
    inputs = {"q": q, "k": k, "v": v, "chunk_size": chunk_size, "causal": causal}
    case = Case("hypothesis", inputs, ref.chunked_attention(q.double(), k.double(), v.double(), chunk_size,
                                                           causal=causal).float())
    c = REGISTRY["chunked_attention"]
    entries = {e.id: load(e) for e in CORRECT + MISTAKES if e.id in (
        "chunked_online_softmax", "chunked_drops_last_partial_chunk", "chunked_softmax_per_chunk_averaged")}
    work = clone_tree(inputs)
    assert c.judge(case, c.invoke(entries["chunked_online_softmax"], work), work) is None
    if T_k % chunk_size:
        work = clone_tree(inputs)
        verdict = c.judge(case, c.invoke(entries["chunked_drops_last_partial_chunk"], work), work)
        assert verdict and ("last, shorter chunk" in verdict or "NaN" in verdict), verdict
    if chunk_size < T_k and not causal:
        work = clone_tree(inputs)
        verdict = c.judge(case, c.invoke(entries["chunked_softmax_per_chunk_averaged"], work), work)
        assert verdict and "normalised on its own" in verdict, verdict


# ---------------------------------------------------------------------------
# The cases expose the bugs
# ---------------------------------------------------------------------------


def test_chunked_cases_expose_the_bugs():
    cases = all_cases("chunked_attention")
    for hidden in (False, True):
        some = all_cases("chunked_attention", hidden)
        sizes = [(c.inputs["chunk_size"], c.inputs["k"].shape[-2]) for c in some]
        assert any(cs == 1 for cs, T in sizes), "chunk_size 1"
        assert any(cs > T for cs, T in sizes), "chunk_size > T_k"
        assert any(1 < cs < T and T % cs for cs, T in sizes), "a chunk size that does not divide T_k"
        assert any(c.inputs["causal"] for c in some) and any(not c.inputs["causal"] for c in some)
        large = [c for c in some if ch07._max_score(c.inputs) > 88.7]
        assert large, "scores large enough to overflow exp() in float32"
        long = [c for c in some if ch07._chunk_allowance(c.inputs) is not None]
        assert long, "a case whose full score matrix the memory rule catches"
    for c in cases:
        q, k = c.inputs["q"], c.inputs["k"]
        if c.inputs["causal"]:
            assert q.shape[-2] == k.shape[-2], "causal requires T_q == T_k"
        assert c.inputs["v"].shape[-1] > 1 and q.shape[-1] > 1
    assert any(c.inputs["q"].dim() == 2 for c in cases) and any(c.inputs["q"].dim() == 4 for c in cases)
    assert any(c.inputs["q"].shape[-2] != c.inputs["k"].shape[-2] for c in cases)
    assert any(c.inputs["q"].shape[-2] == 1 for c in cases)


def chunk_maxima(case):
    """Per query row, the largest score of each key chunk (float64)."""
    q, k, c = case.inputs["q"].double(), case.inputs["k"].double(), case.inputs["chunk_size"]
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return torch.stack([s[..., i:i + c].amax(dim=-1) for i in range(0, s.shape[-1], c)], dim=-1)


def test_large_score_cases_are_exact_in_float32_and_grow_between_chunks():
    for case in all_cases("chunked_attention"):
        if ch07._max_score(case.inputs) < 88.7:
            continue
        q, k = case.inputs["q"], case.inputs["k"]
        s32 = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        s64 = q.double() @ k.double().transpose(-2, -1) / math.sqrt(q.shape[-1])
        assert torch.equal(s32.double(), s64), case.label  # every score is exact in float32
        maxima = chunk_maxima(case)
        assert bool((maxima.diff(dim=-1) > 1).all()), case.label  # the max grows from chunk to chunk
    for case in all_cases("chunked_attention", False):  # random cases: the max changes too
        if case.inputs["chunk_size"] < case.inputs["k"].shape[-2] and not case.inputs["causal"]:
            maxima = chunk_maxima(case)
            assert bool((maxima.diff(dim=-1) > 0).any()), case.label


def test_other_cases_expose_the_bugs():
    lin = all_cases("linear_attention")
    for hidden in (False, True):
        some = all_cases("linear_attention", hidden)
        assert any(c.inputs["eps"] is not None and c.inputs["eps"] >= 0.5 for c in some), "a large explicit eps"
        assert any(c.inputs["causal"] for c in some) and any(not c.inputs["causal"] for c in some)
        assert any(ch07._linear_limit(c.inputs) is not None for c in some), "a long sequence"
    assert any(c.inputs["q"].shape[-2] != c.inputs["k"].shape[-2] for c in lin)
    assert any(c.inputs["causal"] and c.inputs["eps"] is not None for c in lin), "exclusive cumsum vs eps"
    lsh = all_cases("lsh_buckets")
    assert {c.inputs["rotations"].shape[1] for c in lsh} >= {1, 2, 8}
    assert {c.inputs["x"].dim() for c in lsh} >= {2, 3, 4}
    for c in lsh:  # no near-ties: float32 rounding never decides a bucket
        r = c.inputs["x"].double() @ c.inputs["rotations"].double()
        top = torch.cat([r, -r], -1).topk(2, dim=-1).values
        assert bool(((top[..., 0] - top[..., 1]) >= 1e-3).all()), c.label
        if c.expected.numel() >= 5:
            assert int(c.expected.max()) >= r.shape[-1], "some vector lands in the -x @ R half"
    win = [(c.inputs["seq_len"], c.inputs["window"], c.inputs["causal"]) for c in all_cases("sliding_window_mask")]
    assert any(w == 0 for T, w, _ in win) and any(w >= T for T, w, _ in win) and any(T == 1 for T, w, _ in win)
    assert any(causal and 0 < w < T - 1 for T, w, causal in win)


# ---------------------------------------------------------------------------
# The structural (memory) rule
# ---------------------------------------------------------------------------


def memory_report(fn, inputs, item):
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    if item == "chunked_attention":
        call = lambda: fn(q, k, v, inputs["chunk_size"], causal=inputs["causal"])  # noqa: E731
    else:
        call = lambda: fn(q, k, v, causal=inputs["causal"])  # noqa: E731
    return watch_allocations(call, (q, k, v))[1]


def test_memory_rule_spares_every_correct_formulation_and_catches_full_attention():
    chunked = [load(e) for e in CORRECT if e.item == "chunked_attention"] + [ref.chunked_attention]
    linear = [load(e) for e in CORRECT if e.item == "linear_attention"] + [ref.linear_attention]
    for item, formulations, bound in (("chunked_attention", chunked, ch07._chunk_allowance),
                                      ("linear_attention", linear, lambda i: (ch07._linear_limit(i) or 1) - 1)):
        for case in all_cases(item):
            limit = ch07._chunk_allowance if item == "chunked_attention" else ch07._linear_limit
            if limit(case.inputs) is None:
                continue
            allowed = bound(case.inputs)
            for fn in formulations:
                report = memory_report(fn, case.inputs, item)
                assert report["output_seen"] and report["numel"] <= allowed, (case.label, fn, report)
            report = memory_report(naive_attention, case.inputs, item)  # the full score matrix is caught
            assert report["numel"] > (2 * allowed if item == "chunked_attention" else allowed), (case.label, report)


def test_watch_allocations_sees_allocations_not_views():
    x = torch.zeros(3, 10)
    assert largest_allocation(lambda t: t.expand(100, 3, 10), x)["numel"] == 0  # a view
    assert largest_allocation(lambda t: t.add_(1), x.clone())["numel"] == 0  # in place
    report = largest_allocation(lambda t: (t @ t.T).sum(), x)
    assert report["shape"] == [3, 3] and report["op"].startswith("aten.mm") and report["output_seen"]
    assert largest_allocation(lambda t: t[:, :2], x)["output_seen"]  # a view of an input is fine

    def hidden(t):
        with _disable_current_modes():
            return t @ t.T

    assert largest_allocation(hidden, x)["output_seen"] is False


def test_memory_rule_survives_a_patched_numel():
    """The watch uses the tensor methods captured at import, not the learner's replacements."""
    original = torch.Tensor.numel
    try:
        torch.Tensor.numel = lambda self: 1
        report = largest_allocation(lambda t: t @ t.T, torch.ones(20, 2))
    finally:
        torch.Tensor.numel = original
    assert report["numel"] == 400


# ---------------------------------------------------------------------------
# The out-of-process path used by `course grade`
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("entry_id", ["chunked_online_softmax", "linear_cumsum", "lsh_cat_argmax",
                                      "window_abs_offset"])
def test_out_of_process_path_passes_correct_answers(entry_id):
    entry = next(e for e in CORRECT if e.id == entry_id)
    verdicts = out_of_process_verdicts(entry)
    assert verdicts and verdicts == [None] * len(verdicts)


@pytest.mark.parametrize("entry_id", ["chunked_full_attention", "chunked_no_rescaling", "linear_quadratic_weights",
                                      "chunked_builtin_sdpa", "lsh_halves_in_wrong_order"])
def test_out_of_process_path_names_the_mistake(entry_id):
    entry = next(e for e in MISTAKES + CHEATS if e.id == entry_id)
    messages = [v for v in out_of_process_verdicts(entry) if v]
    assert messages and entry.expect.lower() in messages[0].lower(), messages


@pytest.mark.parametrize("hidden", [False, True], ids=["visible", "hidden"])
@pytest.mark.parametrize("item", ITEMS)
def test_the_judge_accepts_the_references_float32_results_directly(item, hidden):
    clone = reference_clone(getattr(ref, item))
    c = REGISTRY[item]  # no guard here: the reference's own float32 results are within tolerance
    for case in c.make_cases(seed_for(item, hidden), hidden):
        work = clone_tree(case.inputs)
        assert c.judge(case, c.invoke(clone, work), work) is None, case.label


globals().update(corpus_suite("07_scalable_attention", ITEMS, corpus, (ch07, util_memory), ref))
