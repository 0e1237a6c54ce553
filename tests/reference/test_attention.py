"""Chapter 2 reference: scaled dot-product attention, causal mask, multi-head attention.

Proved against F.scaled_dot_product_attention (same bool-mask convention: True = attend),
a float64 naive loop, and nn.MultiheadAttention with the weights mapped across
(attn_mask = ~mask there).
"""

import itertools
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from reference_impl.attention import (
    MultiHeadAttention,
    attention_weights,
    causal_mask,
    merge_heads,
    scaled_dot_product_attention,
    split_heads,
    to_torch_mha,
)

FEW = settings(max_examples=25, deadline=None)


def random_mask(shape, gen):
    """Random bool mask of ``shape`` with at least one True per row (last axis)."""
    mask = torch.rand(shape, generator=gen) < 0.5
    keep = torch.randint(0, shape[-1], shape[:-1] + (1,), generator=gen)
    return mask.scatter(-1, keep, True)


def naive_attention(q, k, v, mask=None):
    """float64, one query at a time, plain Python softmax. Inputs already broadcast."""
    q, k, v = q.detach().double(), k.detach().double(), v.detach().double()
    *lead, T_q, d_k = q.shape
    T_k = k.shape[-2]
    out = torch.zeros(*lead, T_q, v.shape[-1], dtype=torch.float64)
    weights = torch.zeros(*lead, T_q, T_k, dtype=torch.float64)
    for idx in itertools.product(*(range(n) for n in lead)):
        for i in range(T_q):
            allowed = [j for j in range(T_k) if mask is None or bool(mask[idx + (i, j)])]
            scores = {j: float(q[idx + (i,)] @ k[idx + (j,)]) / math.sqrt(d_k) for j in allowed}
            top = max(scores.values())
            z = sum(math.exp(s - top) for s in scores.values())
            for j, s in scores.items():
                weights[idx + (i, j)] = math.exp(s - top) / z
            out[idx + (i,)] = weights[idx + (i,)] @ v[idx]
    return out, weights


# ---------------------------------------------------------------- scaled_dot_product_attention

CASES = [
    # lead dims, T_q, T_k, d_k, d_v, mask shape (None = no mask)
    ((), 1, 1, 1, 1, None),
    ((), 3, 5, 4, 7, (3, 5)),
    ((2,), 4, 4, 8, 8, (4, 4)),
    ((1, 3), 2, 6, 5, 3, (1, 1, 2, 6)),
    ((2, 3), 5, 3, 4, 9, (2, 1, 5, 3)),
    ((2, 2, 2), 3, 4, 2, 5, (3, 4)),
]


@pytest.mark.parametrize("lead, T_q, T_k, d_k, d_v, mask_shape", CASES)
def test_sdpa_matches_torch_and_float64_loop(lead, T_q, T_k, d_k, d_v, mask_shape):
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(*lead, T_q, d_k, generator=gen)
    k = torch.randn(*lead, T_k, d_k, generator=gen)
    v = torch.randn(*lead, T_k, d_v, generator=gen)
    mask = None if mask_shape is None else random_mask(mask_shape, gen)
    inputs_before = [t.clone() for t in (q, k, v)]

    out, weights = scaled_dot_product_attention(q, k, v, mask)

    assert out.shape == (*lead, T_q, d_v) and weights.shape == (*lead, T_q, T_k)
    assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    full_mask = None if mask is None else mask.expand(*lead, T_q, T_k)
    exp_out, exp_w = naive_attention(q, k, v, full_mask)
    assert_close(out, exp_out.float())
    assert_close(weights, exp_w.float())
    for before, after in zip(inputs_before, (q, k, v)):
        assert torch.equal(before, after)


@FEW
@given(
    lead=st.lists(st.integers(1, 3), max_size=2),
    T_q=st.integers(1, 6),
    T_k=st.integers(1, 6),
    d_k=st.integers(1, 8),
    d_v=st.integers(1, 8),
    mask_kind=st.sampled_from(["none", "full", "2d", "broadcast"]),
    seed=st.integers(0, 2**16),
)
def test_sdpa_property(lead, T_q, T_k, d_k, d_v, mask_kind, seed):
    gen = torch.Generator().manual_seed(seed)
    lead = tuple(lead)
    q = torch.randn(*lead, T_q, d_k, generator=gen)
    k = torch.randn(*lead, T_k, d_k, generator=gen)
    v = torch.randn(*lead, T_k, d_v, generator=gen)
    if mask_kind == "none":
        mask = None
    elif mask_kind == "full":
        mask = random_mask(lead + (T_q, T_k), gen)
    elif mask_kind == "2d":
        mask = random_mask((T_q, T_k), gen)
    else:  # size-1 axes that broadcast: first lead dim kept, the rest 1, keys-only padding-style
        mask = random_mask(lead[:1] + (1,) * (len(lead) - 1) + (1, T_k), gen)

    out, weights = scaled_dot_product_attention(q, k, v, mask)

    assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    assert_close(weights.sum(-1), torch.ones(lead + (T_q,)))
    if mask is not None:
        assert torch.all(weights[~mask.expand_as(weights)] == 0)
    exp_out, exp_w = naive_attention(q, k, v, None if mask is None else mask.expand(*lead, T_q, T_k))
    assert_close(out, exp_out.float())
    assert_close(weights, exp_w.float())


def test_sdpa_scales_by_sqrt_dk():
    # one key twice as aligned as the other: weight ratio exp((2 - 1) * |q|^2 / sqrt(d_k))
    q = torch.ones(1, 4)
    k = torch.stack([2 * torch.ones(4), torch.ones(4)])  # (2, 4)
    _, w = scaled_dot_product_attention(q, k, torch.eye(2))
    assert_close(w[0, 0] / w[0, 1], torch.tensor(math.exp(4 / 2)))


def test_sdpa_rejects_non_bool_mask():
    q = torch.randn(2, 3)
    with pytest.raises(TypeError):
        scaled_dot_product_attention(q, q, q, mask=torch.ones(2, 2))


def test_sdpa_gradients_match_torch():
    q, k, v = (torch.randn(2, 3, 4, requires_grad=True) for _ in range(3))
    mask = causal_mask(3)
    out, _ = scaled_dot_product_attention(q, k, v, mask)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    ref_grads = torch.autograd.grad(ref.square().sum(), (q, k, v))
    for g, r in zip(grads, ref_grads):
        assert_close(g, r)


# ---------------------------------------------------------------- causal_mask


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_causal_mask(n):
    m = causal_mask(n)
    assert m.dtype == torch.bool and m.shape == (n, n)
    for i in range(n):
        for j in range(n):
            assert bool(m[i, j]) == (j <= i)


def test_causal_mask_equals_torch_is_causal():
    q, k, v = (torch.randn(2, 6, 4) for _ in range(3))
    out, _ = scaled_dot_product_attention(q, k, v, causal_mask(6))
    assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True))


# ---------------------------------------------------------------- heads


def test_split_heads_slices_features_and_merge_inverts():
    x = torch.randn(2, 5, 12)
    heads = split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 4)
    for h in range(3):
        assert torch.equal(heads[:, h], x[..., 4 * h : 4 * (h + 1)])
    assert torch.equal(merge_heads(heads), x)


def test_mha_rejects_indivisible_heads():
    with pytest.raises(ValueError):
        MultiHeadAttention(10, 3)


def test_mha_layout():
    mha = MultiHeadAttention(12, 4)
    for name in ("w_q", "w_k", "w_v", "w_o"):
        lin = getattr(mha, name)
        assert isinstance(lin, nn.Linear) and lin.weight.shape == (12, 12) and lin.bias is not None
    assert sum(p.numel() for p in mha.parameters()) == 4 * (12 * 12 + 12)


# ---------------------------------------------------------------- MultiHeadAttention vs nn.MultiheadAttention


def torch_mha(mha, x, context, mask):
    """Run the mapped nn.MultiheadAttention; returns (output, per-head weights (B, H, T_q, T_k))."""
    ref = to_torch_mha(mha)
    B, T_q, T_k, H = x.shape[0], x.shape[1], context.shape[1], mha.n_heads
    attn_mask = None
    if mask is not None:
        blocked = ~mask
        if blocked.dim() == 4:  # per example (B or 1, H or 1, T_q, T_k) -> torch's (B*H, T_q, T_k)
            blocked = blocked.expand(B, H, T_q, T_k).reshape(B * H, T_q, T_k)
        attn_mask = blocked
    out, w = ref(x, context, context, attn_mask=attn_mask, need_weights=True, average_attn_weights=False)
    return out, w


MHA_CASES = [
    # B, T_q, T_k (None = self-attention), d_model, n_heads, mask kind
    (1, 1, None, 4, 1, None),
    (1, 5, None, 6, 3, "causal"),
    (2, 7, None, 15, 5, "random2d"),
    (3, 4, 6, 8, 2, None),
    (2, 3, 5, 12, 4, "random2d"),
    (2, 5, 5, 10, 2, "per_example"),
    (1, 9, None, 7, 1, "per_example"),
    (2, 6, None, 16, 4, "per_head"),
]


@pytest.mark.parametrize("B, T_q, T_k, D, H, mask_kind", MHA_CASES)
def test_mha_matches_torch(B, T_q, T_k, D, H, mask_kind):
    gen = torch.Generator().manual_seed(2)
    mha = MultiHeadAttention(D, H)
    x = torch.randn(B, T_q, D, generator=gen)
    context = None if T_k is None else torch.randn(B, T_k, D, generator=gen)
    ctx = x if context is None else context
    T_k = ctx.shape[1]
    mask = {
        None: None,
        "causal": causal_mask(T_q),
        "random2d": random_mask((T_q, T_k), gen),
        "per_example": random_mask((B, 1, T_q, T_k), gen),
        "per_head": random_mask((B, H, T_q, T_k), gen),
    }[mask_kind]
    x_before = x.clone()

    out = mha(x, context=context, mask=mask)
    weights = attention_weights(mha, x, context=context, mask=mask)
    exp_out, exp_w = torch_mha(mha, x, ctx, mask)

    assert out.shape == (B, T_q, D) and weights.shape == (B, H, T_q, T_k)
    assert_close(out, exp_out)
    assert_close(weights, exp_w)
    assert torch.equal(x, x_before)


@FEW
@given(
    B=st.integers(1, 3),
    T_q=st.integers(1, 6),
    T_k=st.one_of(st.none(), st.integers(1, 6)),
    H=st.integers(1, 4),
    d_head=st.integers(1, 5),
    mask_kind=st.sampled_from(["none", "2d", "per_example"]),
    seed=st.integers(0, 2**16),
)
def test_mha_property(B, T_q, T_k, H, d_head, mask_kind, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    D = H * d_head
    mha = MultiHeadAttention(D, H)
    x = torch.randn(B, T_q, D, generator=gen)
    context = None if T_k is None else torch.randn(B, T_k, D, generator=gen)
    ctx = x if context is None else context
    T_k = ctx.shape[1]
    masks = {"none": None, "2d": random_mask((T_q, T_k), gen), "per_example": random_mask((B, 1, T_q, T_k), gen)}
    mask = masks[mask_kind]
    exp_out, _ = torch_mha(mha, x, ctx, mask)
    assert_close(mha(x, context=context, mask=mask), exp_out)


def test_mha_matches_torch_fast_path_in_eval():
    # eval + no_grad lets nn.MultiheadAttention take its fused inference path
    mha = MultiHeadAttention(8, 2).eval()
    ref = to_torch_mha(mha).eval()
    x = torch.randn(3, 5, 8)
    with torch.no_grad():
        exp, _ = ref(x, x, x, need_weights=False)
        assert_close(mha(x), exp)


def test_mha_gradients_match_torch():
    mha = MultiHeadAttention(6, 2)
    ref = to_torch_mha(mha)
    x = torch.randn(2, 4, 6, requires_grad=True)
    mask = causal_mask(4)
    (gx,) = torch.autograd.grad(mha(x, mask=mask).square().sum(), x)
    (rx,) = torch.autograd.grad(ref(x, x, x, attn_mask=~mask)[0].square().sum(), x)
    assert_close(gx, rx)
    mha(x, mask=mask).sum().backward()
    ref(x, x, x, attn_mask=~mask)[0].sum().backward()
    assert_close(mha.w_o.weight.grad, ref.out_proj.weight.grad)
    in_grad = torch.cat([mha.w_q.weight.grad, mha.w_k.weight.grad, mha.w_v.weight.grad])
    assert_close(in_grad, ref.in_proj_weight.grad)


def test_mha_forward_has_no_side_effects():
    mha = MultiHeadAttention(8, 2)
    state = {k: v.clone() for k, v in mha.state_dict().items()}
    attrs = set(vars(mha))
    buffers = dict(mha.named_buffers())
    x, ctx = torch.randn(2, 3, 8), torch.randn(2, 4, 8)
    x0, c0 = x.clone(), ctx.clone()
    out1 = mha(x, context=ctx)
    attention_weights(mha, x, context=ctx)
    out2 = mha(x, context=ctx)
    assert set(vars(mha)) == attrs and dict(mha.named_buffers()) == buffers
    for k, v in mha.state_dict().items():
        assert torch.equal(v, state[k])
    assert torch.equal(x, x0) and torch.equal(ctx, c0)
    assert torch.equal(out1, out2)


def test_mha_heads_are_feature_slices():
    # zero every projection except head 1's slice: only head 1 contributes
    D, H = 6, 3
    mha = MultiHeadAttention(D, H)
    x = torch.randn(1, 4, D)
    with torch.no_grad():
        mha.w_o.weight[:, :2] = 0
        mha.w_o.weight[:, 4:] = 0
        mha.w_o.bias.zero_()
    out = mha(x)
    q, k, v = mha.w_q(x)[..., 2:4], mha.w_k(x)[..., 2:4], mha.w_v(x)[..., 2:4]
    head1, _ = naive_attention(q, k, v)
    assert_close(out, (head1.float() @ mha.w_o.weight[:, 2:4].T).detach())


def test_attention_weights_helper_detached():
    mha = MultiHeadAttention(4, 2)
    w = attention_weights(mha, torch.randn(1, 3, 4), mask=causal_mask(3))
    assert not w.requires_grad
    assert_close(w.sum(-1), torch.ones(1, 2, 3))
    assert torch.all(w[..., ~causal_mask(3)] == 0)
