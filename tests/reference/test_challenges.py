"""Chapter 8 reference: external memory, parameter counts, repetition penalty, retrieval demo."""

import math

import pytest
import torch
from torch.testing import assert_close

from reference_impl.challenges import (
    CASE_FILES,
    DocumentStore,
    answer_with_retrieval,
    attention_cost,
    ban_tokens,
    knn_memory_attention,
    repetition_penalty,
    transformer_param_count,
)
from reference_impl.model import TransformerLM


def _naive_knn_attention(q, keys, values, top_k):
    """float64, one query at a time with Python sorting."""
    q, keys, values = q.double(), keys.double(), values.double()
    B, T, d = q.shape
    out = torch.zeros(B, T, values.shape[1], dtype=torch.float64)
    for b in range(B):
        for t in range(T):
            scores = [(float(q[b, t] @ keys[m]), m) for m in range(keys.shape[0])]
            best = sorted(scores, reverse=True)[:top_k]
            s = torch.tensor([score for score, _ in best], dtype=torch.float64) / math.sqrt(d)
            w = torch.exp(s - s.max())
            w = w / w.sum()
            out[b, t] = sum(w[i] * values[m] for i, (_, m) in enumerate(best))
    return out


@pytest.mark.parametrize("B,T,d,d_v,M,top_k", [(1, 1, 4, 3, 5, 1), (2, 3, 8, 5, 17, 4), (3, 5, 6, 6, 10, 10), (1, 4, 16, 2, 9, 3)])
def test_knn_memory_attention_matches_naive(B, T, d, d_v, M, top_k):
    q, keys, values = torch.randn(B, T, d), torch.randn(M, d), torch.randn(M, d_v)
    copies = (q.clone(), keys.clone(), values.clone())
    out = knn_memory_attention(q, keys, values, top_k)
    assert out.shape == (B, T, d_v)
    assert_close(out, _naive_knn_attention(q, keys, values, top_k).float())
    for before, now in zip(copies, (q, keys, values)):
        assert torch.equal(before, now)


def test_knn_memory_attention_with_all_entries_is_full_attention():
    q, keys, values = torch.randn(2, 7, 8), torch.randn(12, 8), torch.randn(12, 5)
    full = torch.softmax(q @ keys.T / math.sqrt(8), dim=-1) @ values
    assert_close(knn_memory_attention(q, keys, values, top_k=12), full)
    assert_close(knn_memory_attention(q, keys, values, top_k=50), full)  # capped at M


def test_knn_memory_attention_top1_returns_the_best_value():
    keys = torch.eye(4) * 10
    values = torch.arange(8.0).reshape(4, 2)
    q = torch.tensor([[[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]]])
    assert_close(knn_memory_attention(q, keys, values, top_k=1), values[[2, 0]].unsqueeze(0))
    with pytest.raises(ValueError):
        knn_memory_attention(q, keys, values, top_k=0)


@pytest.mark.parametrize(
    "V,D,H,F,L",
    [(11, 8, 2, 16, 1), (50, 16, 4, 64, 2), (7, 12, 3, 5, 3), (100, 32, 8, 128, 0), (3, 2, 1, 1, 4)],
)
@pytest.mark.parametrize("tied", [True, False])
def test_transformer_param_count_matches_model(V, D, H, F, L, tied):
    model = TransformerLM(V, D, H, F, L, tied=tied)
    assert transformer_param_count(V, D, H, F, L, tied=tied) == sum(p.numel() for p in model.parameters())


def test_transformer_param_count_known_value():
    # GPT-2 small's shapes (V = 50257, D = 768, 12 layers, F = 3072) with this course's layout.
    per_layer = 4 * (768 * 768 + 768) + (768 * 3072 + 3072 + 3072 * 768 + 768) + 4 * 768
    assert transformer_param_count(50257, 768, 12, 3072, 12) == 50257 * 768 + 12 * per_layer + 2 * 768
    assert transformer_param_count(50257, 768, 12, 3072, 12, tied=False) - transformer_param_count(
        50257, 768, 12, 3072, 12
    ) == 50257 * 768


def _loop_repetition_penalty(logits, previous_ids, penalty):
    out = logits.clone()
    for b in range(logits.shape[0]):
        for token in set(previous_ids[b].tolist()):
            value = logits[b, token].item()
            out[b, token] = value / penalty if value > 0 else value * penalty
    return out


@pytest.mark.parametrize("B,V,T,penalty", [(1, 5, 1, 1.2), (2, 10, 6, 1.5), (4, 7, 12, 2.0), (3, 20, 3, 0.8)])
def test_repetition_penalty_matches_loop(B, V, T, penalty):
    logits = torch.randn(B, V) * 3
    logits[0, 0] = 0.0  # a zero logit is "not positive": multiplied, stays 0
    previous_ids = torch.randint(V, (B, T))
    previous_ids[0, 0] = 0
    if T > 1:
        previous_ids[:, -1] = previous_ids[:, 0]  # repeated ids are penalised once
    copies = (logits.clone(), previous_ids.clone())
    out = repetition_penalty(logits, previous_ids, penalty)
    assert_close(out, _loop_repetition_penalty(logits, previous_ids, penalty))
    assert torch.equal(logits, copies[0]) and torch.equal(previous_ids, copies[1])


def test_repetition_penalty_signs():
    logits = torch.tensor([[2.0, -2.0, 1.0, -1.0]])
    out = repetition_penalty(logits, torch.tensor([[0, 1, 1, 0, 1]]), 2.0)
    assert_close(out, torch.tensor([[1.0, -4.0, 1.0, -1.0]]))


def test_ban_tokens():
    logits = torch.randn(3, 6)
    before = logits.clone()
    out = ban_tokens(logits, [1, 4])
    assert torch.isinf(out[:, [1, 4]]).all() and (out[:, [1, 4]] < 0).all()
    assert_close(out[:, [0, 2, 3, 5]], logits[:, [0, 2, 3, 5]])
    assert torch.equal(logits, before)
    assert torch.softmax(out, -1)[:, [1, 4]].sum() == 0
    assert torch.equal(ban_tokens(logits, []), logits)


def test_attention_cost_scales_quadratically():
    small, big = attention_cost(1024, 64), attention_cost(2048, 64)
    assert big["score_flops"] == 4 * small["score_flops"]
    assert big["projection_flops"] == 2 * small["projection_flops"]
    assert big["score_bytes"] == 4 * small["score_bytes"]
    assert small["flops"] == small["score_flops"] + small["projection_flops"]
    # 16384 tokens, one head, float32: a 1 GiB weight matrix.
    assert attention_cost(16384, 64)["score_bytes"] == 2**30
    assert attention_cost(16384, 64, n_heads=8)["score_bytes"] == 8 * 2**30
    assert attention_cost(10, 4) == dict(
        projection_flops=4 * 2 * 10 * 4 * 4, score_flops=2 * 2 * 10 * 10 * 4,
        flops=4 * 2 * 10 * 4 * 4 + 2 * 2 * 10 * 10 * 4, score_bytes=400,
    )


def test_document_store_search_and_retrieval():
    store = DocumentStore(CASE_FILES)
    assert store.keys.shape == (len(CASE_FILES), len(store.vocab))
    assert_close(store.keys.norm(dim=-1), torch.ones(len(CASE_FILES)))
    hits = store.search("Who bought the arsenic?", k=2)
    assert len(hits) == 2 and hits[0][0] >= hits[1][0]
    assert all("arsenic" in doc for _, doc in hits)
    assert "boots" in store.search("size 44 boots", k=1)[0][1]
    result = answer_with_retrieval(store, "Where were the footprints leading?", k=1)
    assert set(result) == {"search", "knowledge", "response"}
    assert "footprints" in result["knowledge"] and result["knowledge"] in result["response"]
    nothing = answer_with_retrieval(store, "zebra quantum", k=1)
    assert nothing["knowledge"] == "" and "nothing" in nothing["response"]


def test_document_store_as_external_memory():
    # The store's unit vectors can serve as knn_memory_attention's keys: a sharp query
    # (large scale) with top_k = 1 returns exactly the best document's value row.
    store = DocumentStore(CASE_FILES)
    values = torch.eye(len(CASE_FILES))
    q = store.embed(["fingerprints on the fake will"]).unsqueeze(0) * 100.0  # (1, 1, vocab)
    out = knn_memory_attention(q, store.keys, values, top_k=1)  # (1, 1, M)
    best = int(out[0, 0].argmax())
    assert "fingerprints" in CASE_FILES[best]
    assert best == CASE_FILES.index(store.search("fingerprints on the fake will")[0][1])
