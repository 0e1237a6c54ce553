"""Chapter 2 -- sharing insights: (multi-head) self-attention.

Every detective (query) compares their question with every colleague's label (key),
turns the scores into shares that sum to one (softmax), and collects that mix of the
colleagues' notes (values). Several "interview teams" (heads) do this in parallel,
each on its own slice of the features.

Mask convention (the one of ``F.scaled_dot_product_attention``): a boolean tensor,
broadcastable to (..., T_q, T_k), where **True means "this query may attend to this
key"**. ``nn.MultiheadAttention`` uses the opposite, so pass it ``~mask``.
"""

import math

import torch
import torch.nn as nn


def scaled_dot_product_attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(d_k)) v over the key axis.

    q: (..., T_q, d_k), k: (..., T_k, d_k), v: (..., T_k, d_v),
    mask: optional bool, broadcastable to (..., T_q, T_k), True = may attend.
    Returns (output (..., T_q, d_v), weights (..., T_q, T_k)); each row of weights sums to 1.
    Leading dims broadcast like ``torch.matmul``.
    """
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., T_q, T_k)
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor (True = may attend), got {mask.dtype}")
        # torch.where broadcasts both ways (a mask may even carry extra leading dims).
        scores = torch.where(mask, scores, float("-inf"))  # (..., T_q, T_k)
    weights = torch.softmax(scores, dim=-1)  # (..., T_q, T_k), rows sum to 1
    out = weights @ v  # (..., T_q, d_v)
    return out, weights


def causal_mask(seq_len: int, device=None) -> torch.Tensor:
    """(seq_len, seq_len) bool, ``[i, j]`` True iff ``j <= i`` (no peeking at later clues)."""
    return torch.tril(torch.ones(seq_len, seq_len, dtype=torch.bool, device=device))


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, T, D) -> (B, H, T, d_head); head h holds features [h*d_head:(h+1)*d_head]."""
    B, T, D = x.shape
    return x.view(B, T, n_heads, D // n_heads).transpose(1, 2)  # (B, H, T, d_head)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, d_head) -> (B, T, H*d_head), the inverse of ``split_heads``."""
    B, H, T, d_head = x.shape
    return x.transpose(1, 2).reshape(B, T, H * d_head)  # (B, T, D)


class MultiHeadAttention(nn.Module):
    """Multi-head attention, written out by hand.

    Queries come from ``x`` (B, T_q, D); keys and values from ``context`` (B, T_k, D),
    which defaults to ``x`` (self-attention). ``mask`` is bool, broadcastable to
    (B, H, T_q, T_k), True = may attend: a (T_q, T_k) mask is shared by every example
    and head; a per-example mask must be shaped (B, 1, T_q, T_k) (or (B, 1, 1, T_k) for
    padding), because a 3-D mask lines its first axis up with the heads.

    ``forward`` stores nothing on the module; use ``attention_weights`` to look at the
    weights. Numerically equal to ``nn.MultiheadAttention(D, H, batch_first=True)``
    with the weights mapped across (see ``to_torch_mha``) and ``attn_mask=~mask``.
    """

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model = d_model
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.w_q = nn.Linear(d_model, d_model)
        self.w_k = nn.Linear(d_model, d_model)
        self.w_v = nn.Linear(d_model, d_model)
        self.w_o = nn.Linear(d_model, d_model)

    def attend(self, x, context=None, mask=None):
        """The manual path. Returns (output (B, T_q, D), weights (B, H, T_q, T_k))."""
        context = x if context is None else context
        q = split_heads(self.w_q(x), self.n_heads)  # (B, H, T_q, d_head)
        k = split_heads(self.w_k(context), self.n_heads)  # (B, H, T_k, d_head)
        v = split_heads(self.w_v(context), self.n_heads)  # (B, H, T_k, d_head)
        out, weights = scaled_dot_product_attention(q, k, v, mask)  # (B, H, T_q, d_head), (B, H, T_q, T_k)
        out = self.w_o(merge_heads(out))  # (B, T_q, D): heads side by side, then mixed
        return out, weights

    def forward(self, x, context=None, mask=None):
        """x: (B, T_q, D), context: (B, T_k, D) or None -> (B, T_q, D)."""
        out, _ = self.attend(x, context, mask)
        return out


def attention_weights(mha: MultiHeadAttention, x, context=None, mask=None) -> torch.Tensor:
    """The attention weights of ``mha`` on these inputs, (B, H, T_q, T_k), for plots.

    Runs under ``torch.no_grad()`` (the result can go straight to ``.numpy()``) and
    changes nothing on the module.
    """
    with torch.no_grad():
        _, weights = mha.attend(x, context, mask)
    return weights


def to_torch_mha(mha: MultiHeadAttention) -> nn.MultiheadAttention:
    """A ``nn.MultiheadAttention(batch_first=True)`` computing exactly what ``mha`` does.

    in_proj = cat(w_q, w_k, w_v) (weights and biases), out_proj = w_o. Call it with
    ``attn_mask=~mask`` (PyTorch's bool mask means "blocked").
    """
    ref = nn.MultiheadAttention(mha.d_model, mha.n_heads, dropout=0.0, bias=True, batch_first=True)
    ref = ref.to(device=mha.w_q.weight.device, dtype=mha.w_q.weight.dtype)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([mha.w_q.weight, mha.w_k.weight, mha.w_v.weight], dim=0))
        ref.in_proj_bias.copy_(torch.cat([mha.w_q.bias, mha.w_k.bias, mha.w_v.bias], dim=0))
        ref.out_proj.weight.copy_(mha.w_o.weight)
        ref.out_proj.bias.copy_(mha.w_o.bias)
    return ref
