"""The chapter 8 checks against their proof corpus: right answers pass, mistakes are named, cheats fail.

Also: the reference passes (through copies), the expected values equal independent
computations (PyTorch's own parameter count of the course's model, float64 loops over the
queries and the previous ids), the memory cases keep the retrieved set stable under float32
rounding, and the out-of-process path gives the same verdicts.
"""

import math

import pytest
import torch

import course.checks.ch08 as ch08
from reference_impl import challenges as ref
from reference_impl.model import TransformerLM

from . import corpus_ch08 as corpus
from .corpus_ch08 import CHEATS, CORRECT, MISTAKES
from .harness import all_cases, corpus_suite
from .test_ch02 import out_of_process_verdicts

ITEMS = ("transformer_param_count", "repetition_penalty", "knn_memory_attention")


def entry(entry_id):
    return next(e for e in CORRECT + MISTAKES + CHEATS if e.id == entry_id)


# ---------------------------------------------------------------------------
# Expected values = independent computations
# ---------------------------------------------------------------------------


def test_param_count_expected_equals_pytorchs_count_of_the_model():
    for case in all_cases("transformer_param_count"):
        inp = case.inputs
        sizes = tuple(inp[k] for k in ("vocab_size", "d_model", "n_heads", "d_ff", "n_layers"))
        tied = True if inp["tied"] is None else inp["tied"]
        if math.prod(sizes[:2]) * sizes[4] > 10**6:  # GPT-sized: count the layers' tensors by their shapes
            V, D, H, F_, L = sizes
            per_layer = 4 * (D * D + D) + (F_ * D + F_) + (D * F_ + D) + 2 * (D + D)
            assert case.expected == V * D + L * per_layer + 2 * D + (0 if tied else V * D)
            continue
        with torch.random.fork_rng(devices=[]):
            model = TransformerLM(*sizes, tied=tied)
        assert case.expected == sum(p.numel() for p in model.parameters()), case.label
    assert any(c.inputs["tied"] is None for c in all_cases("transformer_param_count", False))
    assert {c.inputs["tied"] for c in all_cases("transformer_param_count", True)} == {True, False, None}


def test_param_count_mistakes_are_distinct_where_they_can_be():
    """On every case, all single mistakes give numbers other than the right one."""
    for case in all_cases("transformer_param_count"):
        inp = case.inputs
        args = tuple(inp[k] for k in ("vocab_size", "d_model", "n_heads", "d_ff", "n_layers"))
        tied = True if inp["tied"] is None else inp["tied"]
        assert ch08._count_variant(*args, tied) == case.expected
        for flags, _ in ch08._COUNT_MISTAKES:
            if flags.get("layers") is False and args[4] == 1 or flags.get("per_head") and args[2] == 1:
                continue  # one layer / one head: that "mistake" is not a mistake here
            if flags.get("head") in ("never", "with_bias") and tied or flags == {"head": "always"} and not tied:
                continue  # the head's rule does not differ from the right one for this value of tied
            assert ch08._count_variant(*args, tied, **flags) != case.expected, (case.label, flags)


def naive_penalty(logits, ids, penalty):
    out = logits.double().clone()
    for b in range(out.shape[0]):
        for t in set(ids[b].tolist()):
            out[b, t] = out[b, t] / penalty if out[b, t] > 0 else out[b, t] * penalty
    return out.float()


def test_repetition_penalty_expected_equals_a_loop():
    for case in all_cases("repetition_penalty"):
        inp = case.inputs
        torch.testing.assert_close(case.expected, naive_penalty(inp["logits"], inp["previous_ids"], inp["penalty"]),
                                   rtol=0, atol=0)


def test_repetition_penalty_cases_expose_the_bugs():
    cases = all_cases("repetition_penalty")
    visible = all_cases("repetition_penalty", False)
    for group in (visible, all_cases("repetition_penalty", True)):
        used = torch.cat([c.inputs["logits"].gather(-1, c.inputs["previous_ids"]).flatten() for c in group])
        assert bool((used > 0).any()) and bool((used < 0).any()), "used logits of both signs"
    assert any(bool((c.inputs["logits"].gather(-1, c.inputs["previous_ids"]) == 0).any()) for c in cases)
    assert any(len(set(row.tolist())) < len(row) for c in visible for row in c.inputs["previous_ids"]), "repeats"
    assert any((c.inputs["logits"].gather(-1, c.inputs["previous_ids"]) < 0).any() for c in visible), "negatives"
    assert any(c.inputs["previous_ids"].shape[0] > 1 and not torch.equal(c.inputs["previous_ids"][0],
                                                                        c.inputs["previous_ids"][1]) for c in visible)
    big = [c for c in cases if float(c.inputs["logits"].abs().max()) > 1e3]
    assert big and float(big[0].inputs["logits"][1].abs().max()) < 1.0, "rows of very different scale"


def naive_knn(q, keys, values, k):
    q, keys, values = q.double(), keys.double(), values.double()
    B, T, d = q.shape
    out = torch.zeros(B, T, values.shape[-1], dtype=torch.float64)
    for b in range(B):
        for t in range(T):
            scores = [(float(q[b, t] @ keys[m]), m) for m in range(keys.shape[0])]
            best = sorted(scores, reverse=True)[:k]
            z = [math.exp(s / math.sqrt(d)) for s, _ in best]
            for (s, m), w in zip(best, z):
                out[b, t] += w / sum(z) * values[m]
    return out.float()


def test_knn_expected_equals_a_loop_over_queries():
    for case in all_cases("knn_memory_attention"):
        inp = case.inputs
        want = naive_knn(inp["q"], inp["mem_keys"], inp["mem_values"], inp["top_k"])
        torch.testing.assert_close(case.expected, want, msg=case.label)


def test_knn_retrieved_sets_are_stable_under_float32_rounding():
    for case in all_cases("knn_memory_attention"):
        inp = case.inputs
        k, M = inp["top_k"], inp["mem_keys"].shape[0]
        if k == M:
            continue
        scores = (inp["q"].double() @ inp["mem_keys"].double().T).sort(dim=-1, descending=True).values
        assert float((scores[..., k - 1] - scores[..., k]).min()) >= 0.02, case.label
        assert torch.equal((inp["q"] @ inp["mem_keys"].T).topk(k).indices.sort().values,
                           torch.einsum("btd,md->btm", inp["q"], inp["mem_keys"]).topk(k).indices.sort().values)


def test_knn_cases_cover_the_shapes_that_expose_bugs():
    cases = all_cases("knn_memory_attention")
    sizes = [(c.inputs["q"].shape, c.inputs["mem_values"].shape, c.inputs["top_k"]) for c in cases]
    assert any(k == 1 for *_, k in sizes) and any(k == v[0] for _, v, k in sizes), "top_k = 1 and top_k = M"
    assert any(1 < k < v[0] for _, v, k in sizes), "a proper subset of the memory"
    assert any(q[-1] == v[-1] for q, v, _ in sizes) and any(q[-1] != v[-1] for q, v, _ in sizes), "d_v vs d"
    assert any(q[0] == 1 for q, _, _ in sizes) and any(q[1] == 1 for q, _, _ in sizes)
    visible = all_cases("knn_memory_attention", False)
    assert any(q.inputs["q"].shape[-1] != q.inputs["mem_values"].shape[-1] and 1 < q.inputs["top_k"] <
               q.inputs["mem_keys"].shape[0] for q in visible)


# ---------------------------------------------------------------------------
# The out-of-process path used by `course grade`: same verdicts
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("entry_id", ["parts_then_sum", "gather_where_scatter", "topk_softmax_index"])
def test_out_of_process_path_passes_correct_answers(entry_id):
    verdicts = out_of_process_verdicts(entry(entry_id))
    assert verdicts and verdicts == [None] * len(verdicts)


@pytest.mark.parametrize("entry_id", ["counts_tied_head", "builds_the_model_and_counts", "once_per_occurrence",
                                      "modifies_logits_in_place", "smallest_scores", "softmax_over_all_memory"])
def test_out_of_process_path_names_the_mistake(entry_id):
    e = entry(entry_id)
    messages = [v for v in out_of_process_verdicts(e) if v]
    assert messages and e.expect.lower() in messages[0].lower(), messages


def test_param_count_first_case_tells_the_single_mistakes_apart():
    """Only the attention biases and the block norms (4*D per layer each) cannot be told apart by a number."""
    case = all_cases("transformer_param_count", False)[0]
    args = tuple(case.inputs[k] for k in ("vocab_size", "d_model", "n_heads", "d_ff", "n_layers"))
    values = {}
    for flags, text in ch08._COUNT_MISTAKES:
        value = ch08._count_variant(*args, case.inputs["tied"], **flags)
        if len(flags) == 1 and value != case.expected:
            values.setdefault(value, []).append(flags)
    shared = [group for group in values.values() if len(group) > 1]
    assert shared == [[{"attn_bias": False}, {"norms": 0}]], shared


globals().update(corpus_suite("08_open_challenges", ITEMS, corpus, (ch08,), ref))
