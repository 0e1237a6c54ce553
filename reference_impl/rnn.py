"""Chapter 5: the relay race (RNN) versus the group discussion (Transformer).

An RNN passes one hidden state from step to step, like runners passing a baton: what
happened at step 0 reaches step T only through T hand-overs. A Transformer lets every
position look at every other one directly. `input_gradient_norms` measures how strongly
the last output "hears" each input position.

Public names:
- `rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh)`: the Elman RNN written out step by step.
- `input_gradient_norms(model, x)`: how far back a sequence model hears, shape (T,).
- `RNNEncoder(input_size, hidden, kind)`: nn.RNN / nn.GRU as a plain (B, T, I) -> (B, T, H) model.
- `TransformerEncoder(input_size, d_model, n_heads, d_ff, n_layers, causal)`: a Transformer
  stack as a (B, T, I) -> (B, T, D) model, for the same measurement.
- `RecurrentClassifier(vocab_size, n_classes, hidden, kind)`: tokens -> class logits read
  from the last hidden state (the RNN/GRU baseline of the chapter's experiments).
- `CausalTransformerClassifier(vocab_size, n_classes, d_model, n_heads, d_ff, n_layers)`: the
  Transformer with the same interface and read-out slot (the last position).
"""

import torch
import torch.nn as nn

from reference_impl.attention import causal_mask
from reference_impl.blocks import TransformerStack
from reference_impl.embedding import input_embedding, sinusoidal_positions


def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh):
    """A single-layer tanh RNN, one time step after the other.

    x (B, T, I), h0 (B, H), w_ih (H, I), w_hh (H, H), b_ih (H,), b_hh (H,).
    h_t = tanh(x_t w_ih^T + b_ih + h_{t-1} w_hh^T + b_hh).
    Returns (outputs (B, T, H) = all h_t, h_last (B, H) = h_T); equals
    nn.RNN(I, H, batch_first=True) with the same weights (h0 passed as h0.unsqueeze(0)).
    """
    h = h0  # (B, H)
    outputs = []
    x_proj = x @ w_ih.T + b_ih  # (B, T, H): the input part of every step at once
    for t in range(x.shape[1]):
        h = torch.tanh(x_proj[:, t] + h @ w_hh.T + b_hh)  # (B, H): one hand-over of the baton
        outputs.append(h)
    if not outputs:  # T == 0: nothing was passed on
        return x.new_zeros(x.shape[0], 0, h0.shape[-1]), h0
    return torch.stack(outputs, dim=1), h  # (B, T, H), (B, H)


def input_gradient_norms(model, x):
    """How strongly the last output of `model` depends on each input position.

    model maps (B, T, I) -> (B, T, H); x (B, T, I) (left untouched).
    Returns a (T,) tensor: entry t is the L2 norm (over the batch and feature axes together)
    of d model(x)[:, -1].sum() / d x[:, t]. Parameters' .grad fields are not touched.
    """
    x = x.detach().clone().requires_grad_(True)  # a fresh leaf: the caller's x is not modified
    out = model(x)  # (B, T, H)
    (grad,) = torch.autograd.grad(out[:, -1].sum(), x)  # (B, T, I)
    return grad.pow(2).sum(dim=(0, 2)).sqrt()  # (T,)


class RNNEncoder(nn.Module):
    """nn.RNN or nn.GRU (one layer, batch first) returning only the outputs: (B, T, I) -> (B, T, H)."""

    def __init__(self, input_size, hidden, kind="rnn"):
        super().__init__()
        if kind not in ("rnn", "gru"):
            raise ValueError(f"kind must be 'rnn' or 'gru', not {kind!r}")
        cls = nn.RNN if kind == "rnn" else nn.GRU
        self.rnn = cls(input_size, hidden, batch_first=True)

    def forward(self, x):
        outputs, _ = self.rnn(x)  # (B, T, H)
        return outputs


class TransformerEncoder(nn.Module):
    """A Transformer as a (B, T, I) -> (B, T, D) model.

    A linear input projection (I -> D) plus sinusoidal positions, the chapter 3
    TransformerStack, then a linear readout (D -> D). With causal=True position t only
    sees positions <= t, like the RNN; the last position sees everything either way.

    Why the readout: the stack ends in a LayerNorm, and with its initial weights (gamma = 1,
    beta = 0) every output row sums to exactly 0 over the features. input_gradient_norms
    differentiates model(x)[:, -1].sum(), which would then be constant: all its gradients
    would be zero (rounding noise). Any layer after the norm removes that accident.
    """

    def __init__(self, input_size, d_model, n_heads, d_ff, n_layers, causal=True):
        super().__init__()
        self.causal = causal
        self.proj = nn.Linear(input_size, d_model)
        self.stack = TransformerStack(n_layers, d_model, n_heads, d_ff)
        self.readout = nn.Linear(d_model, d_model)

    def forward(self, x):
        T = x.shape[1]
        pos = sinusoidal_positions(T, self.proj.out_features).to(device=x.device, dtype=x.dtype)  # (T, D)
        h = self.proj(x) + pos  # (B, T, D)
        mask = causal_mask(T, device=x.device) if self.causal else None  # (T, T)
        return self.readout(self.stack(h, mask=mask))  # (B, T, D)


class RecurrentClassifier(nn.Module):
    """Token sequence -> class logits from the last hidden state of an RNN or GRU.

    tokens (B, T) -> embedding (B, T, hidden) -> RNN/GRU -> h_T (B, hidden) -> head -> (B, n_classes).
    The whole sequence has to squeeze through one hidden vector: the relay race.
    """

    def __init__(self, vocab_size, n_classes, hidden, kind="gru"):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, hidden)
        self.encoder = RNNEncoder(hidden, hidden, kind)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, tokens):
        outputs = self.encoder(self.embed(tokens))  # (B, T, hidden)
        return self.head(outputs[:, -1])  # (B, n_classes)


class CausalTransformerClassifier(nn.Module):
    """Token sequence -> class logits read at the last position of a causal Transformer.

    The Transformer counterpart of RecurrentClassifier (same inputs, same read-out slot):
    tokens (B, T) -> input embedding (x sqrt(D) + sinusoidal positions) -> TransformerStack
    with a causal mask -> last position (B, D) -> head -> (B, n_classes). Position t sees
    tokens <= t, so the last position is the only one that has seen the whole sequence.
    """

    def __init__(self, vocab_size, n_classes, d_model, n_heads, d_ff, n_layers):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.token_embedding.weight, std=d_model**-0.5)
        self.stack = TransformerStack(n_layers, d_model, n_heads, d_ff)
        self.head = nn.Linear(d_model, n_classes)

    def forward(self, tokens):
        x = input_embedding(tokens, self.token_embedding.weight)  # (B, T, D)
        h = self.stack(x, mask=causal_mask(tokens.shape[1], device=tokens.device))  # (B, T, D)
        return self.head(h[:, -1])  # (B, n_classes)
