"""Chapter 1 -- gathering evidence: the input embedding.

Each token id picks one row of an embedding table (the detective's index card for
that word); a fixed sinusoidal "timestamp" says where in the case file it was found.

    x = embed_tokens(ids, table) * sqrt(D) + sinusoidal_positions(T, D)    # (B, T, D)
"""

import math

import torch


def embed_tokens(token_ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Look up one row of ``table`` per token id.

    token_ids: LongTensor of any shape S; table: (V, D) -> (*S, D).
    Plain indexing, so it is exactly ``F.embedding(token_ids, table)`` and gradients
    flow into the table rows that were used.
    """
    return table[token_ids]  # (*S, D)


def sinusoidal_positions(seq_len: int, d_model: int) -> torch.Tensor:
    """Fixed positional encodings of "Attention Is All You Need", interleaved.

    PE[p, 2i]   = sin(p / 10000^(2i / d_model))
    PE[p, 2i+1] = cos(p / 10000^(2i / d_model))
    Positions start at 0, so row 0 is [0, 1, 0, 1, ...]. ``d_model`` must be even.
    Returns a float32 tensor (seq_len, d_model).

    The angles are computed in float64 and rounded once to float32 at the end: a
    float32 angle p * freq loses ~p * 1e-7 rad, visible at positions in the thousands.
    """
    if d_model % 2 != 0:
        raise ValueError(f"d_model must be even, got {d_model}")
    pos = torch.arange(seq_len, dtype=torch.float64)[:, None]  # (T, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (D/2,)
    inv_freq = torch.exp(-math.log(10000.0) * two_i / d_model)  # (D/2,) = 10000^(-2i/D)
    angles = pos * inv_freq  # (T, D/2)
    pe = torch.empty(seq_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles)  # even features
    pe[:, 1::2] = torch.cos(angles)  # odd features
    return pe.to(torch.float32)  # (T, D)


def input_embedding(token_ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Token embeddings scaled by sqrt(D) plus sinusoidal positions.

    token_ids: (B, T) LongTensor; table: (V, D) -> (B, T, D) in ``table``'s dtype/device.
    The sqrt(D) factor (as in the original paper) keeps token vectors of unit-ish size
    next to the positions when the table's entries have standard deviation 1/sqrt(D).
    """
    T, D = token_ids.shape[-1], table.shape[-1]
    tok = embed_tokens(token_ids, table) * math.sqrt(D)  # (B, T, D)
    pos = sinusoidal_positions(T, D).to(device=table.device, dtype=table.dtype)  # (T, D)
    return tok + pos  # (B, T, D)
