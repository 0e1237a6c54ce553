"""Chapter 1 reference: token lookup, sinusoidal positions, input embedding."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from reference_impl.embedding import embed_tokens, input_embedding, sinusoidal_positions


def naive_positions(seq_len, d_model, first=0):
    """float64 loops straight from the paper's formula (interleaved sin / cos), rows first..seq_len-1."""
    rows = []
    for p in range(first, seq_len):
        row = []
        for i in range(d_model // 2):
            angle = p / 10000 ** (2 * i / d_model)
            row += [math.sin(angle), math.cos(angle)]
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64).reshape(seq_len - first, d_model)


@pytest.mark.parametrize("shape", [(7,), (1, 1), (2, 5), (3, 2, 4)])
def test_embed_tokens_matches_f_embedding(shape):
    table = torch.randn(13, 6)
    ids = torch.randint(0, 13, shape)
    out = embed_tokens(ids, table)
    assert out.shape == shape + (6,)
    assert_close(out, F.embedding(ids, table))


def test_embed_tokens_gradient_reaches_only_used_rows():
    table = torch.randn(5, 3, requires_grad=True)
    embed_tokens(torch.tensor([[1, 1, 3]]), table).sum().backward()
    assert_close(table.grad, torch.tensor([[0.0] * 3, [2.0] * 3, [0.0] * 3, [1.0] * 3, [0.0] * 3]))


@pytest.mark.parametrize("seq_len, d_model", [(1, 2), (5, 4), (17, 10), (50, 64), (300, 32)])
def test_sinusoidal_positions_match_float64_loop(seq_len, d_model):
    pe = sinusoidal_positions(seq_len, d_model)
    assert pe.shape == (seq_len, d_model) and pe.dtype == torch.float32
    assert_close(pe, naive_positions(seq_len, d_model).float())


def test_sinusoidal_positions_row_zero_and_layout():
    pe = sinusoidal_positions(4, 8)
    assert_close(pe[0], torch.tensor([0.0, 1.0] * 4))
    # feature 0 is sin(p), feature 1 is cos(p) (frequency 1 for i = 0): interleaved, not halves
    p = torch.arange(4, dtype=torch.float32)
    assert_close(pe[:, 0], torch.sin(p))
    assert_close(pe[:, 1], torch.cos(p))


def test_sinusoidal_positions_long_sequences_stay_accurate():
    # float64 angles: no drift at large positions (float32 angles are off by ~2e-5 here)
    pe = sinusoidal_positions(4000, 6)
    assert_close(pe[-5:], naive_positions(4000, 6, first=3995).float())


def test_sinusoidal_positions_rejects_odd_d_model():
    with pytest.raises(ValueError):
        sinusoidal_positions(3, 5)


@pytest.mark.parametrize("B, T, V, D", [(1, 1, 3, 2), (2, 7, 11, 6), (3, 4, 5, 16)])
def test_input_embedding_formula(B, T, V, D):
    table = torch.randn(V, D)
    ids = torch.randint(0, V, (B, T))
    ids_before = ids.clone()
    out = input_embedding(ids, table)
    expected = (table.double()[ids] * math.sqrt(D) + naive_positions(T, D)).float()
    assert out.shape == (B, T, D)
    assert_close(out, expected)
    assert torch.equal(ids, ids_before)


def test_input_embedding_follows_table_dtype():
    table = torch.randn(4, 6, dtype=torch.float64)
    ids = torch.tensor([[0, 3, 2]])
    out = input_embedding(ids, table)
    assert out.dtype == torch.float64
    # the positions themselves are float32-rounded, hence float32 tolerances
    assert_close(out, table[ids] * math.sqrt(6) + naive_positions(3, 6), rtol=1.3e-6, atol=1e-5)
