"""Whole models built from chapters 1-4.

- ``TransformerLM``: a decoder-only language model (causal self-attention), the model
  whose parameters ``transformer_param_count`` counts in chapter 8:
      V*D + n_layers * (4*(D*D + D) + D*F + F + F*D + D + 4*D) + 2*D  (+ D*V if not tied)
- ``SequenceClassifier``: a bidirectional encoder that reads a whole case file and
  names one class (for the detective case task).

Token tables are initialised with standard deviation 1/sqrt(D): after the sqrt(D)
scaling of ``input_embedding`` token vectors have entries of size ~1, like the
positions, and a tied output head starts with logits of size ~1.
"""

import math

import torch
import torch.nn as nn

from reference_impl.attention import causal_mask
from reference_impl.blocks import TransformerStack
from reference_impl.embedding import embed_tokens, input_embedding, sinusoidal_positions


class TransformerLM(nn.Module):
    """Decoder-only Transformer: ids (B, T) -> next-token logits (B, T, V).

    token_embedding (V, D) -> input_embedding (x sqrt(D) + sinusoidal positions)
    -> TransformerStack (pre-norm blocks + final norm) -> head (D -> V, no bias).
    With ``tied=True`` the head's weight *is* the embedding table (one Parameter,
    counted once by ``parameters()``). No dropout, no length limit (the positions are
    computed, not learned).
    """

    def __init__(self, vocab_size, d_model, n_heads, d_ff, n_layers, tied=True):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.token_embedding.weight, std=d_model**-0.5)
        self.stack = TransformerStack(n_layers, d_model, n_heads, d_ff)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        if tied:
            self.head.weight = self.token_embedding.weight  # weight tying: shared storage
        self.tied = tied

    def embed(self, ids):
        """(B, T) -> (B, T, D), chapter 1's input embedding."""
        return input_embedding(ids, self.token_embedding.weight)

    def forward(self, ids, mask=None):
        """ids: (B, T) LongTensor; mask: bool broadcastable to (B, H, T, T), True = may
        attend, default causal. Returns logits (B, T, V)."""
        if mask is None:
            mask = causal_mask(ids.size(1), device=ids.device)  # (T, T)
        h = self.stack(self.embed(ids), mask=mask)  # (B, T, D)
        return self.head(h)  # (B, T, V)

    def hidden_states(self, ids):
        """Embedding and the output of each block (causal), n_layers + 1 tensors (B, T, D).

        Runs under ``torch.no_grad()``: the results can go straight to ``.numpy()``.
        """
        with torch.no_grad():
            x = self.embed(ids)
            return self.stack.hidden_states(x, mask=causal_mask(ids.size(1), device=ids.device))

    def attention_maps(self, ids):
        """Causal attention weights per layer, a list of (B, H, T, T) (under ``torch.no_grad()``)."""
        with torch.no_grad():
            x = self.embed(ids)
        return self.stack.attention_maps(x, mask=causal_mask(ids.size(1), device=ids.device))


class SequenceClassifier(nn.Module):
    """Bidirectional Transformer encoder: ids (B, T) -> class logits (B, n_classes).

    Every position may attend to every other (no mask): the detectives read the whole
    case file at once. Readout (``readout`` argument):
    - "mean" (default): average the final (normed) hidden states over all T positions,
      then ``head``. Needs no special token; assumes no padding (equal-length inputs).
    - "first": read position 0 only, like BERT's [CLS] / the ViT class token of
      chapter 6; the data must then put a summary token first.
    Positions are the sinusoidal ones of chapter 1, precomputed for ``max_len`` tokens.
    """

    def __init__(self, vocab_size, n_classes, d_model, n_heads, d_ff, n_layers, max_len=512, readout="mean"):
        super().__init__()
        if readout not in ("mean", "first"):
            raise ValueError(f"readout must be 'mean' or 'first', got {readout!r}")
        self.readout = readout
        self.max_len = max_len
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.token_embedding.weight, std=d_model**-0.5)
        self.register_buffer("positions", sinusoidal_positions(max_len, d_model), persistent=False)
        self.stack = TransformerStack(n_layers, d_model, n_heads, d_ff)
        self.head = nn.Linear(d_model, n_classes)

    def embed(self, ids):
        """(B, T) -> (B, T, D); equals ``input_embedding(ids, token_embedding.weight)``."""
        T = ids.size(1)
        if T > self.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len={self.max_len}")
        table = self.token_embedding.weight
        return embed_tokens(ids, table) * math.sqrt(table.size(1)) + self.positions[:T]  # (B, T, D)

    def forward(self, ids):
        h = self.stack(self.embed(ids))  # (B, T, D), bidirectional
        pooled = h.mean(dim=1) if self.readout == "mean" else h[:, 0]  # (B, D)
        return self.head(pooled)  # (B, n_classes)

    def hidden_states(self, ids):
        """Embedding and the output of each block, n_layers + 1 tensors (B, T, D) (under ``torch.no_grad()``)."""
        with torch.no_grad():
            return self.stack.hidden_states(self.embed(ids))

    def attention_maps(self, ids):
        """Attention weights per layer, a list of (B, H, T, T) (rows sum to 1; under ``torch.no_grad()``)."""
        with torch.no_grad():
            return self.stack.attention_maps(self.embed(ids))
