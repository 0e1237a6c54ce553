"""Chapter 3 -- pooling resources: layer norm, feed-forward, and stacking blocks.

After the meeting (attention) each detective works alone on what they heard
(the position-wise feed-forward network); meetings and solo work alternate,
block after block. Pre-norm blocks:

    x = x + attn(norm1(x), mask=mask)
    x = x + ff(norm2(x))
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impl.attention import MultiHeadAttention, attention_weights, to_torch_mha


def layer_norm(x, gamma, beta, eps: float = 1e-5):
    """Normalise over the last axis: (x - mean) / sqrt(var + eps) * gamma + beta.

    x: (..., D); gamma, beta: (D,). The variance is the population (biased) one, as in
    ``F.layer_norm(x, (D,), gamma, beta, eps)``.
    """
    mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # (..., 1), divides by D, not D - 1
    x_hat = (x - mean) / torch.sqrt(var + eps)  # (..., D)
    return x_hat * gamma + beta  # (..., D)


class FeedForward(nn.Module):
    """Position-wise MLP: linear1 (D -> F), ReLU, linear2 (F -> D). (B, T, D) -> (B, T, D)."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)

    def forward(self, x):
        return self.linear2(F.relu(self.linear1(x)))  # (B, T, F) -> (B, T, D)


class TransformerBlock(nn.Module):
    """One pre-norm Transformer block: attention then feed-forward, each with a residual.

    Equals ``nn.TransformerEncoderLayer(D, H, F, dropout=0.0, batch_first=True,
    norm_first=True)`` with the weights mapped across (``to_torch_encoder_layer``)
    and ``src_mask=~mask``.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int):
        super().__init__()
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.ff = FeedForward(d_model, d_ff)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x, mask=None):
        """x: (B, T, D), mask: bool broadcastable to (B, H, T, T), True = may attend."""
        x = x + self.attn(self.norm1(x), mask=mask)  # (B, T, D)
        x = x + self.ff(self.norm2(x))  # (B, T, D)
        return x


class TransformerStack(nn.Module):
    """n_layers ``TransformerBlock``s and a final ``nn.LayerNorm``: (B, T, D) -> (B, T, D)."""

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_ff: int):
        super().__init__()
        self.blocks = nn.ModuleList([TransformerBlock(d_model, n_heads, d_ff) for _ in range(n_layers)])
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x, mask=None):
        for block in self.blocks:
            x = block(x, mask=mask)  # (B, T, D)
        return self.norm(x)  # (B, T, D)

    def hidden_states(self, x, mask=None) -> list:
        """[x, after block 1, ..., after block n]: n_layers + 1 tensors (B, T, D).

        The final norm is not applied to any of them. Runs under ``torch.no_grad()``.
        """
        states = [x]
        with torch.no_grad():
            for block in self.blocks:
                x = block(x, mask=mask)
                states.append(x)
        return states

    def attention_maps(self, x, mask=None) -> list:
        """Attention weights of every block, a list of n_layers tensors (B, H, T, T).

        Runs under ``torch.no_grad()``; block i's weights are those it computes on
        ``norm1`` of its input, exactly as in ``forward``.
        """
        maps = []
        with torch.no_grad():
            for block in self.blocks:
                maps.append(attention_weights(block.attn, block.norm1(x), mask=mask))
                x = block(x, mask=mask)
        return maps


def to_torch_encoder_layer(block: TransformerBlock) -> nn.TransformerEncoderLayer:
    """A ``nn.TransformerEncoderLayer`` (pre-norm, no dropout) with ``block``'s weights.

    Mapping: self_attn <- attn (see ``attention.to_torch_mha``), linear1/linear2 <- ff,
    norm1/norm2 <- norm1/norm2. Call it with ``src_mask=~mask``.
    """
    d_model, n_heads = block.attn.d_model, block.attn.n_heads
    d_ff = block.ff.linear1.out_features
    ref = nn.TransformerEncoderLayer(
        d_model, n_heads, d_ff, dropout=0.0, activation="relu", batch_first=True, norm_first=True
    )
    ref = ref.to(device=block.norm1.weight.device, dtype=block.norm1.weight.dtype)
    ref.self_attn = to_torch_mha(block.attn)
    with torch.no_grad():
        for name in ("linear1", "linear2"):
            getattr(ref, name).weight.copy_(getattr(block.ff, name).weight)
            getattr(ref, name).bias.copy_(getattr(block.ff, name).bias)
        for name in ("norm1", "norm2"):
            getattr(ref, name).weight.copy_(getattr(block, name).weight)
            getattr(ref, name).bias.copy_(getattr(block, name).bias)
    return ref


def to_torch_encoder(stack: TransformerStack) -> nn.TransformerEncoder:
    """A ``nn.TransformerEncoder`` of mapped layers plus the final norm, equal to ``stack``."""
    layers = [to_torch_encoder_layer(block) for block in stack.blocks]
    d_model = stack.norm.normalized_shape[0]
    norm = nn.LayerNorm(d_model).to(device=stack.norm.weight.device, dtype=stack.norm.weight.dtype)
    norm.load_state_dict(stack.norm.state_dict())
    # nn.TransformerEncoder deep-copies its template layer: build it, then swap in ours.
    ref = nn.TransformerEncoder(layers[0], num_layers=len(layers), norm=norm, enable_nested_tensor=False)
    ref.layers = nn.ModuleList(layers)
    return ref
