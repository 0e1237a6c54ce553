"""Chapter 4 reference: stable softmax, cross-entropy, top-k filtering, decoding."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from reference_impl.model import TransformerLM
from reference_impl.output import cross_entropy, greedy_decode, sample, stable_softmax, top_k_filter

FEW = settings(max_examples=30, deadline=None)


# ---------------------------------------------------------------- stable_softmax


@pytest.mark.parametrize("shape, dim", [((5,), -1), ((3, 7), -1), ((3, 7), 0), ((2, 3, 4), 1), ((1, 1), -1)])
@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_stable_softmax_matches_torch(shape, dim, temperature):
    logits = torch.randn(shape) * 3
    before = logits.clone()
    out = stable_softmax(logits, temperature=temperature, dim=dim)
    assert_close(out, torch.softmax(logits / temperature, dim=dim))
    assert torch.equal(logits, before)


@FEW
@given(
    rows=st.integers(1, 4),
    V=st.integers(1, 12),
    scale=st.sampled_from([1e-3, 1.0, 100.0, 1e4]),
    temperature=st.sampled_from([0.1, 1.0, 3.0]),
    seed=st.integers(0, 2**16),
)
def test_stable_softmax_property(rows, V, scale, temperature, seed):
    logits = torch.randn(rows, V, generator=torch.Generator().manual_seed(seed)) * scale
    out = stable_softmax(logits, temperature)
    assert torch.isfinite(out).all()
    assert_close(out, torch.softmax(logits / temperature, dim=-1))
    assert_close(out.sum(-1), torch.ones(rows))


def test_stable_softmax_finite_at_1e4():
    logits = torch.tensor([[1e4, 1e4 - 1.0, -1e4], [-1e4, -1e4, -1e4 + 2.0]])
    naive = torch.exp(logits) / torch.exp(logits).sum(-1, keepdim=True)
    assert not torch.isfinite(naive).all()  # the naive formula does blow up here
    out = stable_softmax(logits)
    assert torch.isfinite(out).all()
    e = math.exp(-1.0)
    assert_close(out[0], torch.tensor([1 / (1 + e), e / (1 + e), 0.0]))
    assert_close(out, torch.softmax(logits, dim=-1))


def test_stable_softmax_temperature_limits_and_validation():
    logits = torch.tensor([2.0, 1.0, 0.0])
    assert_close(stable_softmax(logits, temperature=1e-3), torch.tensor([1.0, 0.0, 0.0]))
    assert_close(stable_softmax(logits, temperature=1e4), torch.full((3,), 1 / 3), atol=1e-4, rtol=0)
    with pytest.raises(ValueError):
        stable_softmax(logits, temperature=0.0)


def test_stable_softmax_handles_minus_inf_entries():
    logits = torch.tensor([[0.0, float("-inf"), 1.0]])
    out = stable_softmax(logits)
    assert out[0, 1] == 0 and torch.isfinite(out).all()
    assert_close(out, torch.softmax(logits, dim=-1))


# ---------------------------------------------------------------- cross_entropy


@FEW
@given(
    N=st.integers(1, 6),
    V=st.integers(1, 10),
    scale=st.sampled_from([1e-2, 1.0, 50.0, 1e4]),
    seed=st.integers(0, 2**16),
)
def test_cross_entropy_matches_torch(N, V, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, V, generator=gen) * scale
    targets = torch.randint(0, V, (N,), generator=gen)
    before = logits.clone(), targets.clone()
    loss = cross_entropy(logits, targets)
    assert loss.shape == () and torch.isfinite(loss)
    assert_close(loss, F.cross_entropy(logits, targets))
    assert torch.equal(logits, before[0]) and torch.equal(targets, before[1])


def test_cross_entropy_large_logits_and_mixed_scales():
    logits = torch.tensor(
        [
            [1e4, 0.0, -1e4],  # confident and right: loss ~0
            [1e4, 1e4 - 3.0, 0.0],  # large but close: log(1 + e^3)
            [0.1, 0.2, 0.3],  # small scale in the same batch
            [-1e4, -1e4, -1e4],  # all equal: log 3
        ]
    )
    targets = torch.tensor([0, 1, 2, 1])
    loss = cross_entropy(logits, targets)
    assert torch.isfinite(loss)
    assert_close(loss, F.cross_entropy(logits, targets))
    small = math.log(sum(math.exp(v) for v in (0.1, 0.2, 0.3))) - 0.3
    expected = (0.0 + math.log(1 + math.exp(3.0)) + small + math.log(3)) / 4
    assert_close(loss, torch.tensor(expected))


def test_cross_entropy_gradient_matches_torch():
    logits = (torch.randn(5, 7) * 10).requires_grad_()
    targets = torch.randint(0, 7, (5,))
    (g,) = torch.autograd.grad(cross_entropy(logits, targets), logits)
    (r,) = torch.autograd.grad(F.cross_entropy(logits, targets), logits)
    assert_close(g, r)


# ---------------------------------------------------------------- top_k_filter


def test_top_k_filter_basic():
    logits = torch.tensor([[1.0, 5.0, 3.0, -2.0], [0.0, -1.0, 2.0, 1.0]])
    before = logits.clone()
    out = top_k_filter(logits, 2)
    inf = float("-inf")
    assert torch.equal(out, torch.tensor([[inf, 5.0, 3.0, inf], [inf, inf, 2.0, 1.0]]))
    assert torch.equal(logits, before)


def test_top_k_filter_keeps_all_ties_at_the_threshold():
    # documented convention: every logit equal to the k-th largest survives
    logits = torch.tensor([4.0, 2.0, 2.0, 1.0])
    out = top_k_filter(logits, 2)
    assert torch.equal(out, torch.tensor([4.0, 2.0, 2.0, float("-inf")]))


@FEW
@given(
    lead=st.lists(st.integers(1, 3), max_size=2),
    V=st.integers(1, 10),
    k=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_top_k_filter_property(lead, V, k, seed):
    logits = torch.randn(*lead, V, generator=torch.Generator().manual_seed(seed))  # no ties (a.s.)
    out = top_k_filter(logits, k)
    kept = torch.isfinite(out)
    assert torch.all(kept.sum(-1) == min(k, V))
    assert torch.equal(out[kept], logits[kept])
    top = torch.topk(logits, min(k, V), dim=-1).indices
    assert torch.all(kept.gather(-1, top))


def test_top_k_filter_rejects_k_below_one():
    with pytest.raises(ValueError):
        top_k_filter(torch.randn(3), 0)


# ---------------------------------------------------------------- decoding


def tiny_lm(seed=0, tied=True):
    torch.manual_seed(seed)
    return TransformerLM(vocab_size=13, d_model=16, n_heads=2, d_ff=32, n_layers=2, tied=tied)


def hand_greedy(model, prompt, steps):
    """Row by row, token by token, Python ints."""
    rows = []
    for row in prompt.tolist():
        for _ in range(steps):
            with torch.no_grad():
                logits = model(torch.tensor([row]))[0, -1]
            row = row + [max(range(logits.numel()), key=lambda j: float(logits[j]))]
        rows.append(row)
    return torch.tensor(rows)


@pytest.mark.parametrize("B, T0, steps", [(1, 1, 5), (2, 3, 4), (3, 2, 0)])
def test_greedy_decode_matches_hand_loop(B, T0, steps):
    model = tiny_lm()
    prompt = torch.randint(0, 13, (B, T0))
    before = prompt.clone()
    out = greedy_decode(model, prompt, steps)
    assert out.shape == (B, T0 + steps) and out.dtype == prompt.dtype
    assert torch.equal(out, hand_greedy(model, prompt, steps))
    assert torch.equal(prompt, before)
    assert torch.equal(out[:, :T0], prompt)


def test_greedy_decode_feeds_back_its_choices():
    # a "model" that predicts (last token + 1) mod V proves the argmax is fed back in
    V = 7

    def successor(ids):
        return F.one_hot((ids + 1) % V, V).float()  # (B, T, V)

    out = greedy_decode(successor, torch.tensor([[5], [0]]), 4)
    assert torch.equal(out, torch.tensor([[5, 6, 0, 1, 2], [0, 1, 2, 3, 4]]))


def test_greedy_decode_no_grad():
    model = tiny_lm()
    out = greedy_decode(model, torch.tensor([[1, 2]]), 2)
    assert not out.requires_grad
    assert all(p.grad is None for p in model.parameters())


def test_sample_reproducible_and_limits():
    model = tiny_lm()
    prompt = torch.tensor([[1, 2, 3]])
    a = sample(model, prompt, 6, temperature=0.8, top_k=3, generator=torch.Generator().manual_seed(1))
    b = sample(model, prompt, 6, temperature=0.8, top_k=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (1, 9)
    # top_k=1 is greedy whatever the temperature
    g = sample(model, prompt, 6, temperature=5.0, top_k=1, generator=torch.Generator().manual_seed(2))
    assert torch.equal(g, greedy_decode(model, prompt, 6))
