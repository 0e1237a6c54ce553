"""Chapter 4 -- making predictions: from hidden states to the next token.

The logits are the detectives' raw confidence in each suspect (token); softmax turns
them into a probability distribution, cross-entropy scores how much probability went
to the true culprit, and decoding names one suspect after another.

Numerical care: ``softmax(z) = softmax(z - max(z))``, so subtracting the row maximum
first keeps ``exp`` in [0, 1] even for logits of size 1e4 (exp(1e4) overflows float32).
"""

import torch


def stable_softmax(logits, temperature: float = 1.0, dim: int = -1):
    """softmax(logits / temperature) along ``dim``, computed with the max subtracted.

    temperature > 0: below 1 sharpens the distribution, above 1 flattens it.
    Entries equal to -inf get probability 0 (as long as a row keeps one finite entry).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    z = logits / temperature
    z = z - z.amax(dim=dim, keepdim=True)  # largest entry is now 0: exp never overflows
    e = torch.exp(z)
    return e / e.sum(dim=dim, keepdim=True)


def cross_entropy(logits, targets):
    """Mean negative log-likelihood of ``targets`` under softmax(logits).

    logits: (N, V) float; targets: (N,) LongTensor of class indices -> scalar.
    -log softmax(x)[t] = logsumexp(x) - x[t] = log(sum(exp(x - m))) - (x[t] - m),
    with m the row maximum: every term stays finite, even for logits of size 1e4,
    and rows of very different scale each get their own m.
    """
    m = logits.amax(dim=-1, keepdim=True)  # (N, 1)
    shifted = logits - m  # (N, V), all <= 0
    log_sum = torch.log(torch.exp(shifted).sum(dim=-1))  # (N,), in [0, log V]
    target_shifted = shifted.gather(-1, targets[:, None]).squeeze(-1)  # (N,)
    return (log_sum - target_shifted).mean()


def top_k_filter(logits, k: int):
    """Keep the k largest logits along the last axis; set the others to -inf.

    Ties: every logit equal to the k-th largest value is kept, so a row with ties at
    the threshold keeps more than k entries (the nanoGPT / Hugging Face convention; it
    never has to pick arbitrarily between equal candidates). k >= V keeps everything.
    Returns a new tensor; ``logits`` is not modified.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    k = min(k, logits.size(-1))
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1), the k-th largest
    return logits.masked_fill(logits < kth, float("-inf"))


@torch.no_grad()
def greedy_decode(model, prompt, max_new_tokens: int):
    """Append, ``max_new_tokens`` times, the argmax of the last position's logits.

    model: maps LongTensor (B, T) -> logits (B, T, V); prompt: (B, T0) LongTensor.
    Returns (B, T0 + max_new_tokens); the prompt is not modified. Ties go to the lowest
    token id (``torch.argmax``). The whole sequence is re-run at every step (no cache).
    """
    ids = prompt
    for _ in range(max_new_tokens):
        logits = model(ids)  # (B, T, V)
        next_id = logits[:, -1, :].argmax(dim=-1, keepdim=True)  # (B, 1)
        ids = torch.cat([ids, next_id.to(ids.dtype)], dim=1)  # (B, T + 1), a new tensor
    return ids


@torch.no_grad()
def sample(model, prompt, max_new_tokens: int, temperature: float = 1.0, top_k=None, generator=None):
    """Like ``greedy_decode`` but draws each next token from softmax(logits / temperature),
    optionally restricted to the ``top_k`` most likely tokens. Pass a seeded
    ``torch.Generator`` for reproducible demos. Returns (B, T0 + max_new_tokens).
    """
    ids = prompt
    for _ in range(max_new_tokens):
        logits = model(ids)[:, -1, :]  # (B, V)
        if top_k is not None:
            logits = top_k_filter(logits, top_k)
        probs = stable_softmax(logits, temperature)  # (B, V)
        next_id = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
        ids = torch.cat([ids, next_id.to(ids.dtype)], dim=1)
    return ids
