"""Chapter 3 reference: layer norm, feed-forward, pre-norm block, stack.

Proved against F.layer_norm, nn.TransformerEncoderLayer(norm_first=True, dropout=0) and
nn.TransformerEncoder with the weights mapped across (src_mask = ~mask there).
"""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from reference_impl.attention import MultiHeadAttention, causal_mask, to_torch_mha
from reference_impl.blocks import (
    FeedForward,
    TransformerBlock,
    TransformerStack,
    layer_norm,
    to_torch_encoder,
    to_torch_encoder_layer,
)

FEW = settings(max_examples=30, deadline=None)


def randomise(module, gen):
    """Non-trivial weights everywhere, including the layer norms' gamma and beta (init 1 and 0)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5 + (1.0 if p.dim() == 1 else 0.0))
    return module


# ---------------------------------------------------------------- layer_norm


@FEW
@given(
    shape=st.lists(st.integers(1, 5), min_size=0, max_size=3),
    D=st.integers(1, 16),
    scale=st.sampled_from([1e-2, 1.0, 30.0]),
    # offset in units of the spread: |mean| / std up to 10. Far beyond that (e.g. 5 +- 0.01)
    # x - mean loses ~ulp(x) / std in float32 in ANY implementation, and two correct ones
    # then differ by more than the float32 defaults: that is conditioning, not a bug.
    offset=st.sampled_from([0.0, 3.0, -10.0]),
    eps=st.sampled_from([1e-5, 1e-3, 0.1]),
    seed=st.integers(0, 2**16),
)
def test_layer_norm_matches_f_layer_norm(shape, D, scale, offset, eps, seed):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(*shape, D, generator=gen) + offset) * scale
    # The offset is meant in units of the spread, but a row of a few samples can have a much
    # smaller spread than randn's: keep to rows whose actual |mean| / std stays within 10.
    mean, std = x.double().mean(-1), x.double().std(-1, unbiased=False)
    assume(bool(((mean.abs() <= 10 * std) | (std == 0)).all()))
    gamma, beta = torch.randn(D, generator=gen), torch.randn(D, generator=gen)
    x0 = x.clone()
    out = layer_norm(x, gamma, beta, eps)
    assert out.shape == x.shape
    assert_close(out, F.layer_norm(x, (D,), gamma, beta, eps))
    assert torch.equal(x, x0)


def test_layer_norm_uses_population_variance_and_eps_inside_sqrt():
    x = torch.tensor([[1.0, 3.0]])  # mean 2, population variance 1 (sample variance would be 2)
    out = layer_norm(x, torch.ones(2), torch.zeros(2), eps=0.44)
    assert_close(out, torch.tensor([[-1.0, 1.0]]) / 1.2)  # sqrt(1 + 0.44) = 1.2


def test_layer_norm_matches_nn_layernorm_module_and_gradients():
    norm = randomise(nn.LayerNorm(7), torch.Generator().manual_seed(3))
    x = torch.randn(2, 3, 7, requires_grad=True)
    out = layer_norm(x, norm.weight, norm.bias)
    assert_close(out, norm(x))
    g = torch.autograd.grad(out.square().sum(), (x, norm.weight, norm.bias))
    r = torch.autograd.grad(norm(x).square().sum(), (x, norm.weight, norm.bias))
    for a, b in zip(g, r):
        assert_close(a, b)


# ---------------------------------------------------------------- FeedForward


def test_feed_forward_layout_and_formula():
    ff = FeedForward(6, 10)
    assert isinstance(ff.linear1, nn.Linear) and (ff.linear1.in_features, ff.linear1.out_features) == (6, 10)
    assert isinstance(ff.linear2, nn.Linear) and (ff.linear2.in_features, ff.linear2.out_features) == (10, 6)
    x = torch.randn(2, 5, 6)
    params = (ff.linear1.weight, ff.linear1.bias, ff.linear2.weight, ff.linear2.bias)
    w1, b1, w2, b2 = (t.double() for t in params)
    expected = torch.clamp(x.double() @ w1.T + b1, min=0) @ w2.T + b2
    assert_close(ff(x), expected.float())


# ---------------------------------------------------------------- TransformerBlock


def test_block_layout():
    block = TransformerBlock(8, 2, 12)
    assert isinstance(block.attn, MultiHeadAttention) and isinstance(block.ff, FeedForward)
    assert isinstance(block.norm1, nn.LayerNorm) and isinstance(block.norm2, nn.LayerNorm)
    D, F_ = 8, 12
    assert sum(p.numel() for p in block.parameters()) == 4 * (D * D + D) + D * F_ + F_ + F_ * D + D + 4 * D


def test_block_is_pre_norm_residual():
    gen = torch.Generator().manual_seed(4)
    block = randomise(TransformerBlock(6, 3, 9), gen)
    x = torch.randn(2, 4, 6, generator=gen)
    mask = causal_mask(4)
    h = x + block.attn(layer_norm(x, block.norm1.weight, block.norm1.bias), mask=mask)
    expected = h + block.ff(layer_norm(h, block.norm2.weight, block.norm2.bias))
    assert_close(block(x, mask=mask), expected)


BLOCK_CASES = [
    # B, T, D, H, F, mask
    (1, 1, 4, 1, 8, None),
    (1, 5, 6, 3, 10, "causal"),
    (2, 7, 15, 5, 7, "causal"),
    (3, 4, 8, 2, 32, None),
    (2, 6, 12, 4, 20, "random"),
]


def make_mask(kind, T, gen):
    if kind == "causal":
        return causal_mask(T)
    if kind == "random":
        m = torch.rand(T, T, generator=gen) < 0.5
        return m | torch.eye(T, dtype=torch.bool)  # never a fully masked row
    return None


@pytest.mark.parametrize("B, T, D, H, F_, mask_kind", BLOCK_CASES)
def test_block_matches_torch_encoder_layer(B, T, D, H, F_, mask_kind):
    gen = torch.Generator().manual_seed(5)
    block = randomise(TransformerBlock(D, H, F_), gen)
    ref = to_torch_encoder_layer(block)
    x = torch.randn(B, T, D, generator=gen)
    mask = make_mask(mask_kind, T, gen)
    x0 = x.clone()
    out = block(x, mask=mask)
    assert out.shape == (B, T, D)
    assert_close(out, ref(x, src_mask=None if mask is None else ~mask))
    assert torch.equal(x, x0)


def test_block_matches_torch_encoder_layer_in_eval_fast_path():
    gen = torch.Generator().manual_seed(6)
    block = randomise(TransformerBlock(8, 2, 16), gen).eval()
    ref = to_torch_encoder_layer(block).eval()
    x = torch.randn(2, 5, 8, generator=gen)
    with torch.no_grad():
        assert_close(block(x, mask=causal_mask(5)), ref(x, src_mask=~causal_mask(5)))


def test_block_gradients_match_torch():
    # float64 (defaults rtol=1e-7, atol=1e-7): proves the backward maths without float32
    # rounding from the two different op orders (fused in_proj vs three Linear layers)
    gen = torch.Generator().manual_seed(7)
    block = randomise(TransformerBlock(6, 2, 10), gen).double()
    ref = to_torch_encoder_layer(block)
    x = torch.randn(2, 4, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    mask = causal_mask(4)
    (g,) = torch.autograd.grad(block(x, mask=mask).square().sum(), x)
    (r,) = torch.autograd.grad(ref(x, src_mask=~mask).square().sum(), x)
    assert r.dtype == torch.float64
    assert_close(g, r)


# ---------------------------------------------------------------- TransformerStack


def test_stack_layout():
    stack = TransformerStack(3, 8, 2, 16)
    assert isinstance(stack.blocks, nn.ModuleList) and len(stack.blocks) == 3
    assert all(isinstance(b, TransformerBlock) for b in stack.blocks)
    assert isinstance(stack.norm, nn.LayerNorm)
    assert stack.blocks[0].attn.w_q.weight.data_ptr() != stack.blocks[1].attn.w_q.weight.data_ptr()


@pytest.mark.parametrize(
    "n_layers, B, T, D, H, F_, mask_kind",
    [(1, 1, 3, 4, 2, 8, None), (3, 2, 6, 6, 3, 10, "causal"), (2, 3, 5, 9, 3, 5, "random")],
)
def test_stack_matches_torch_encoder(n_layers, B, T, D, H, F_, mask_kind):
    gen = torch.Generator().manual_seed(8)
    stack = randomise(TransformerStack(n_layers, D, H, F_), gen)
    ref = to_torch_encoder(stack)
    x = torch.randn(B, T, D, generator=gen)
    mask = make_mask(mask_kind, T, gen)
    src_mask = None if mask is None else ~mask
    out = stack(x, mask=mask)
    assert_close(out, ref(x, mask=src_mask))
    # and as an explicit loop of mapped layers + final norm
    h = x
    for block in stack.blocks:
        h = to_torch_encoder_layer(block)(h, src_mask=src_mask)
    assert_close(out, stack.norm(h))


def test_stack_hidden_states_and_attention_maps():
    gen = torch.Generator().manual_seed(9)
    stack = randomise(TransformerStack(2, 6, 3, 8), gen)
    x = torch.randn(2, 5, 6, generator=gen)
    mask = causal_mask(5)
    states = stack.hidden_states(x, mask=mask)
    assert len(states) == 3 and all(s.shape == (2, 5, 6) for s in states)
    assert torch.equal(states[0], x)
    assert_close(states[1], stack.blocks[0](x, mask=mask))
    assert_close(stack.norm(states[-1]), stack(x, mask=mask))
    maps = stack.attention_maps(x, mask=mask)
    assert len(maps) == 2 and all(m.shape == (2, 3, 5, 5) for m in maps)
    ref = to_torch_mha(stack.blocks[1].attn)
    h = stack.blocks[1].norm1(states[1])
    _, w = ref(h, h, h, attn_mask=~mask, average_attn_weights=False)
    assert_close(maps[1], w)

