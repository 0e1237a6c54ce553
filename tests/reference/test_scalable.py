"""Chapter 7 reference: chunked, linear, sliding-window and LSH (Reformer) attention.

Proved against F.scaled_dot_product_attention (exact methods), float64 computations written
straight from the formulas (linear attention, LSH with an explicit candidate-count matrix),
Python loops (masks, hashes), and -- for the memory claims -- a TorchDispatchMode that
records every tensor ATen allocates (``max_intermediate_numel``).
"""

import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from reference_impl.scalable import (
    SELF_ATTENTION_SCORE,
    chunked_attention,
    linear_attention,
    lsh_attention,
    lsh_buckets,
    lsh_n_buckets,
    max_intermediate_numel,
    random_rotations,
    record_allocations,
    shared_qk_attention,
    sliding_window_attention,
    sliding_window_mask,
)

FEW = settings(max_examples=30, deadline=None)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def qkv(lead, T_q, T_k, d, d_v, seed=0):
    q = randn(*lead, T_q, d, seed=seed)
    k = randn(*lead, T_k, d, seed=seed + 1)
    v = randn(*lead, T_k, d_v, seed=seed + 2)
    return q, k, v


def naive_attention(q, k, v):
    """softmax(q k^T / sqrt(d)) v, forming the whole score matrix."""
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v


# ------------------------------------------------------------------- the proof utility itself


def test_max_intermediate_numel_sees_the_score_matrix_but_not_views():
    q, k, v = qkv((2, 3), 40, 50, 8, 8)
    assert max_intermediate_numel(naive_attention, q, k, v) >= 2 * 3 * 40 * 50
    big = torch.zeros(1, 10)
    assert max_intermediate_numel(lambda x: x.expand(1000, 10), big) == 0  # a view: no memory
    assert max_intermediate_numel(lambda x: x.add_(1), big.clone()) == 0  # in place: no memory
    out, allocations = record_allocations(lambda x: (x + 1).sum(), big)
    assert [a.shape for a in allocations] == [(1, 10), ()] and out.item() == 10


# ------------------------------------------------------------------------- chunked_attention


@pytest.mark.parametrize("causal", [False, True])
def test_chunked_every_chunk_size(causal):
    """Every chunk size from 1 to past T_k: divisors, non-divisors, one block, bigger."""
    T = 13
    q, k, v = qkv((2, 3), T, T, 8, 5)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    for chunk_size in range(1, T + 4):
        assert_close(chunked_attention(q, k, v, chunk_size, causal=causal), ref, rtol=0, atol=1e-5)


def test_chunked_cross_attention_and_query_blocks():
    """T_q != T_k, d_v != d_k, and every query block size give the same answer."""
    q, k, v = qkv((3,), 17, 29, 6, 11)
    ref = F.scaled_dot_product_attention(q, k, v)
    for chunk_size in (3, 7, 29, 40):
        for query_chunk_size in (1, 5, 17, 64, None):
            out = chunked_attention(q, k, v, chunk_size, query_chunk_size=query_chunk_size)
            assert out.shape == (3, 17, 11)
            assert_close(out, ref, rtol=0, atol=1e-5)


@FEW
@given(
    lead=st.lists(st.integers(1, 3), max_size=2),
    T_q=st.integers(1, 40),
    T_k=st.integers(1, 40),
    d=st.integers(1, 16),
    d_v=st.integers(1, 16),
    chunk_size=st.integers(1, 48),
    query_chunk_size=st.one_of(st.none(), st.integers(1, 48)),
    causal=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_chunked_matches_sdpa(lead, T_q, T_k, d, d_v, chunk_size, query_chunk_size, causal, seed):
    if causal:
        T_k = T_q
    q, k, v = qkv(tuple(lead), T_q, T_k, d, d_v, seed)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    out = chunked_attention(q, k, v, chunk_size, causal=causal, query_chunk_size=query_chunk_size)
    assert_close(out, ref, rtol=0, atol=1e-5)


def test_chunked_large_scores_stay_finite():
    """Scores in the hundreds: without the running max, exp() would overflow to inf."""
    q, k, v = qkv((2,), 20, 30, 4, 3)
    q = q * 100
    out = chunked_attention(q, k, v, 7)
    assert torch.isfinite(out).all()
    ref = torch.softmax(q.double() @ k.double().mT / 2, dim=-1) @ v.double()
    # float32 rounds a score of ~300 by ~1e-5, so compare with the exact answer at 1e-4.
    assert_close(out, ref.float(), rtol=0, atol=1e-4)


@pytest.mark.parametrize("causal", [False, True])
def test_chunked_gradients_match_sdpa(causal):
    q, k, v = (t.requires_grad_() for t in qkv((2,), 19, 19, 8, 6))
    grad_out = randn(2, 19, 6, seed=9)
    ours = torch.autograd.grad(chunked_attention(q, k, v, 5, causal=causal), (q, k, v), grad_out)
    ref = torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, is_causal=causal), (q, k, v), grad_out)
    for a, b in zip(ours, ref):
        assert_close(a, b, rtol=1e-4, atol=1e-5)  # float32 backward through a different summation order


def test_chunked_rejects_bad_arguments():
    q, k, v = qkv((), 5, 6, 4, 4)
    with pytest.raises(ValueError):
        chunked_attention(q, k, v, 2, causal=True)  # T_q != T_k
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError):
            chunked_attention(q, k, v, bad)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("chunk_size, query_chunk_size", [(16, None), (5, None), (8, 16), (1, None)])
def test_chunked_never_holds_more_than_a_block_of_scores(causal, chunk_size, query_chunk_size):
    """Every tensor allocated is at most one (T_q, chunk_size) block of scores per batch-head,
    or no bigger than an input/output (q, k, v are (B, H, T, d))."""
    B, H, T, d = 2, 2, 64, 4
    q, k, v = qkv((B, H), T, T, d, d)
    numel = max_intermediate_numel(chunked_attention, q, k, v, chunk_size, causal, query_chunk_size)
    assert numel <= max(B * H * T * chunk_size, B * H * T * d)
    assert numel < B * H * T * T // 2  # a full score matrix would be caught


# -------------------------------------------------------------------------- linear_attention


def naive_linear_attention(q, k, v, causal, eps):
    """float64, straight from the formula, with the explicit (T_q, T_k) weights phi(q_i).phi(k_j)."""
    phi_q, phi_k, v = F.elu(q.double()) + 1, F.elu(k.double()) + 1, v.double()
    weights = phi_q @ phi_k.transpose(-2, -1)  # (..., T_q, T_k)
    if causal:
        weights = torch.tril(weights)
    return (weights @ v) / (weights.sum(dim=-1, keepdim=True) + eps)


@FEW
@given(
    lead=st.lists(st.integers(1, 3), max_size=2),
    T_q=st.integers(1, 70),
    T_k=st.integers(1, 70),
    d=st.integers(1, 12),
    d_v=st.integers(1, 12),
    chunk_size=st.integers(1, 80),
    causal=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_linear_attention_matches_formula(lead, T_q, T_k, d, d_v, chunk_size, causal, seed):
    if causal:
        T_k = T_q
    q, k, v = qkv(tuple(lead), T_q, T_k, d, d_v, seed)
    out = linear_attention(q, k, v, causal=causal, chunk_size=chunk_size)
    assert_close(out, naive_linear_attention(q, k, v, causal, 1e-6).float())


def test_linear_attention_eps_and_default_chunks():
    q, k, v = qkv((2,), 150, 150, 4, 3)
    for causal in (False, True):
        for eps in (1e-6, 0.5):
            ref = naive_linear_attention(q, k, v, causal, eps).float()
            assert_close(linear_attention(q, k, v, causal=causal, eps=eps), ref)
    with pytest.raises(ValueError):
        linear_attention(q, k[:, :-1], v[:, :-1], causal=True)


@pytest.mark.parametrize("causal", [False, True])
def test_linear_attention_never_forms_t_by_t(causal):
    B, H, T, d = 2, 2, 256, 16
    q, k, v = qkv((B, H), T, T, d, d)
    out, allocations = record_allocations(linear_attention, q, k, v, causal)
    assert not [a for a in allocations if a.shape[-2:] == (T, T)]
    assert max(a.numel for a in allocations) <= B * H * T * d  # nothing bigger than the output


# ----------------------------------------------------------------- sliding window attention


def test_sliding_window_mask_matches_loops():
    for T in (1, 2, 7):
        for window in (0, 1, 3, 10):
            for causal in (False, True):
                mask = sliding_window_mask(T, window, causal)
                assert mask.dtype == torch.bool and mask.shape == (T, T)
                for i in range(T):
                    for j in range(T):
                        assert bool(mask[i, j]) == (abs(i - j) <= window and (j <= i or not causal))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("T", [1, 5, 16, 37, 70])
def test_sliding_window_attention_equals_masked_full_attention(T, causal):
    q, k, v = qkv((2, 3), T, T, 8, 5)
    for window in sorted({0, 1, 3, 15, 16, 17, T - 1, T, 5 * T}):
        mask = sliding_window_mask(T, window, causal)
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        assert_close(sliding_window_attention(q, k, v, window, causal), ref)


def test_sliding_window_attention_any_block_size():
    T = 23
    q, k, v = qkv((2,), T, T, 4, 6)
    for causal in (False, True):
        for window in (0, 2, 5):
            ref = F.scaled_dot_product_attention(q, k, v, attn_mask=sliding_window_mask(T, window, causal))
            for block_size in (1, 7, 23, 40):
                assert_close(sliding_window_attention(q, k, v, window, causal, block_size=block_size), ref)


def test_sliding_window_attention_gradients_and_memory():
    B, T, d, window = 2, 300, 8, 4
    q, k, v = (t.requires_grad_() for t in qkv((B,), T, T, d, d))
    mask = sliding_window_mask(T, window)
    ours = torch.autograd.grad(sliding_window_attention(q, k, v, window).sum(), (q, k, v))
    ref = torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, attn_mask=mask).sum(), (q, k, v))
    for a, b in zip(ours, ref):
        assert_close(a, b, rtol=1e-4, atol=1e-5)  # float32 backward, different summation order
    with torch.no_grad():
        numel = max_intermediate_numel(sliding_window_attention, q, k, v, window)
    block = 16  # the default block size for small windows
    assert numel <= max(B * block * (block + 2 * window), B * T * d)  # one tile of scores, or an input
    assert numel < B * T * T // 4


# ------------------------------------------------------------------------------ lsh_buckets


def test_lsh_buckets_matches_loop():
    x, R = randn(2, 9, 5, seed=1), randn(5, 4, seed=2)
    buckets = lsh_buckets(x, R)
    assert buckets.dtype == torch.long and buckets.shape == (2, 9)
    for b in range(2):
        for t in range(9):
            proj = [sum(float(x[b, t, i]) * float(R[i, j]) for i in range(5)) for j in range(4)]
            both = proj + [-p for p in proj]
            assert int(buckets[b, t]) == both.index(max(both))
    assert int(buckets.min()) >= 0 and int(buckets.max()) < 8


def test_lsh_buckets_is_angular():
    """Scaling a vector by a positive number never changes its bucket; negating it moves it
    to the opposite bucket (b <-> b + n_buckets/2)."""
    x, R = randn(50, 6, seed=3), randn(6, 5, seed=4)
    b = lsh_buckets(x, R)
    assert torch.equal(lsh_buckets(3.7 * x, R), b)
    assert torch.equal(lsh_buckets(-x, R), (b + 5) % 10)


# ---------------------------------------------------------------------------- lsh_attention


def naive_lsh_attention(qk, v, rotations, bucket_size, causal):
    """float64 reference from the description: for every round, sort positions by (bucket,
    position) with Python's sort, cut into chunks, and count how often key j is a candidate
    of query i (its own chunk + the previous one, wrapping around). The rounds' combination
    equals a single softmax over all candidates, each weighted by its count:
    softmax(s_ij + log count_ij)."""
    T, d = qk.shape
    n_chunks = T // bucket_size
    count = torch.zeros(T, T, dtype=torch.float64)
    for R in rotations:
        bucket = [0] * T if R.shape[-1] == 0 else lsh_buckets(qk, R).tolist()
        order = sorted(range(T), key=lambda p: (bucket[p], p))
        chunks = [order[c * bucket_size : (c + 1) * bucket_size] for c in range(n_chunks)]
        for c in range(n_chunks):
            keys = set(chunks[c]) | (set(chunks[c - 1]) if n_chunks > 1 else set())
            for i in chunks[c]:
                for j in keys:
                    count[i, j] += 1
    qk, v = qk.double(), v.double()
    scores = qk @ F.normalize(qk, dim=-1).T / math.sqrt(d)
    scores.fill_diagonal_(SELF_ATTENTION_SCORE)
    if causal:
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), -math.inf)
    return torch.softmax(scores + count.log(), dim=-1) @ v


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("T, bucket_size, n_hashes", [(64, 8, 1), (64, 8, 3), (48, 4, 2), (48, 16, 2), (40, 10, 2)])
def test_lsh_attention_matches_naive_reference(T, bucket_size, n_hashes, causal):
    qk, v = randn(T, 6, seed=T), randn(T, 5, seed=T + 1)
    rotations = random_rotations(6, n_hashes, lsh_n_buckets(T, bucket_size), torch.Generator().manual_seed(3))
    out = lsh_attention(qk, v, n_hashes, bucket_size, causal=causal, rotations=rotations)
    assert_close(out, naive_lsh_attention(qk, v, rotations, bucket_size, causal).float())


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n_hashes", [1, 3])
@pytest.mark.parametrize("T, bucket_size", [(32, 32), (32, 16), (30, 15)])
def test_lsh_attention_with_at_most_two_chunks_is_full_attention(T, bucket_size, n_hashes, causal):
    """One chunk (n_buckets = 1) or two chunks that see each other: every token sees all."""
    qk, v = randn(2, 3, T, 8, seed=1), randn(2, 3, T, 4, seed=2)
    out = lsh_attention(qk, v, n_hashes, bucket_size, causal=causal, generator=torch.Generator().manual_seed(0))
    assert_close(out, shared_qk_attention(qk, v, causal=causal))


def test_shared_qk_attention_self_rule():
    """A token never attends to itself unless nothing else is allowed (causal position 0)."""
    qk, v = randn(6, 4, seed=5), randn(6, 3, seed=6)
    qk[2] = 10 * qk[2]  # a long vector would otherwise attend mostly to itself
    assert_close(shared_qk_attention(qk, v, causal=True)[0], v[0])
    scores = qk.double() @ F.normalize(qk.double(), dim=-1).T / 2
    scores.fill_diagonal_(-math.inf)
    assert_close(shared_qk_attention(qk, v), (torch.softmax(scores, -1) @ v.double()).float())


def test_lsh_attention_causal_never_looks_ahead():
    T, d = 64, 8
    qk, v = randn(T, d, seed=7).requires_grad_(), randn(T, 5, seed=8).requires_grad_()
    rotations = random_rotations(d, 4, lsh_n_buckets(T, 8), torch.Generator().manual_seed(1))
    out = lsh_attention(qk, v, 4, 8, causal=True, rotations=rotations)
    for i in (0, 1, 17, 40, 62):
        g_qk, g_v = torch.autograd.grad(out[i].sum(), (qk, v), retain_graph=True)
        assert g_qk[i + 1 :].abs().max() == 0 and g_v[i + 1 :].abs().max() == 0
        assert g_v[: i + 1].abs().sum() > 0
    # Perturbing later values leaves earlier outputs bit-for-bit unchanged (hashing uses qk only).
    v2 = v.detach().clone()
    v2[33:] += 100.0
    out2 = lsh_attention(qk.detach(), v2, 4, 8, causal=True, rotations=rotations)
    assert torch.equal(out2[:33], out.detach()[:33])


def test_lsh_attention_shapes_determinism_and_errors():
    qk, v = randn(2, 3, 32, 8), randn(2, 3, 32, 5)
    out = lsh_attention(qk, v, n_hashes=2, bucket_size=4, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 32, 5) and torch.isfinite(out).all()
    again = lsh_attention(qk, v, n_hashes=2, bucket_size=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    R = random_rotations(8, 2, lsh_n_buckets(32, 4))
    assert torch.equal(lsh_attention(qk, v, 2, 4, rotations=R), lsh_attention(qk, v, 2, 4, rotations=R))
    assert lsh_n_buckets(32, 4) == 8 and lsh_n_buckets(30, 10) == 4 and lsh_n_buckets(32, 32) == 1
    with pytest.raises(ValueError):
        lsh_attention(qk[..., :30, :], v[..., :30, :], 2, 4)  # 30 is not a multiple of 4
    with pytest.raises(ValueError):
        lsh_attention(qk, v, 3, 4, rotations=R)  # rotations are for 2 hashes


def clustered_qk(T, d, n_clusters, seed, sharpness=10.0, noise=0.3):
    """Unit vectors around ``n_clusters`` random directions, scaled so that a query scores
    about ``sharpness`` with members of its own cluster: attention is mostly inside the
    cluster. Values depend on the cluster, so a missed cluster mate shows up in the output."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(n_clusters, d, generator=g), dim=-1)
    labels = torch.randint(n_clusters, (T,), generator=g)
    x = F.normalize(centres[labels] + noise / math.sqrt(d) * torch.randn(T, d, generator=g), dim=-1)
    v = torch.randn(n_clusters, d, generator=g)[labels] + 0.1 * torch.randn(T, d, generator=g)
    return sharpness * math.sqrt(d) * x, v


def test_lsh_attention_error_falls_with_more_hashes():
    errors = {}
    for n_hashes in (1, 2, 8):
        rel = []
        for seed in range(3):
            qk, v = clustered_qk(256, 32, 16, seed)
            full = shared_qk_attention(qk, v)
            out = lsh_attention(qk, v, n_hashes, 16, generator=torch.Generator().manual_seed(100 + seed))
            rel.append(float((out - full).norm() / full.norm()))
        errors[n_hashes] = sum(rel) / len(rel)
    assert errors[8] < errors[2] < errors[1]
    assert errors[8] <= 0.6 * errors[1]


# ------------------------------------------------------------------------------- benchmark


def test_benchmark_quick_smoke(tmp_path, repo_root):
    out = tmp_path / "bench.json"
    script = repo_root / "bench" / "attention_bench.py"
    subprocess.run(
        [sys.executable, str(script), "--quick", "--threads", "1", "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
        cwd=repo_root,
    )
    report = json.loads(out.read_text())
    assert report["quick"] is True
    methods = {"naive", "sdpa", "chunked", "linear", "sliding", "lsh"}
    assert set(report["results"]) == methods
    for method, rows in report["results"].items():
        for row in rows:
            assert row["time_s"] > 0 and row["peak_extra_mb"] >= 0
    assert set(report["slopes"]) == methods
    assert all({"name", "value", "target", "passed"} <= set(t) for t in report["targets"])
    assert report["max_abs_err"]["chunked"] <= 1e-5
