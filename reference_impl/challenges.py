"""Chapter 8: open challenges. External memory, complexity, controllability.

Public names:
- `knn_memory_attention(q, mem_keys, mem_values, top_k)`: attend to the top_k memory entries only.
- `transformer_param_count(vocab_size, d_model, n_heads, d_ff, n_layers, tied=True)`: exact count
  for reference_impl.model.TransformerLM.
- `attention_cost(seq_len, d_model, n_heads=1, bytes_per_element=4)`: FLOPs and score memory of
  one full self-attention layer (the quadratic wall).
- `repetition_penalty(logits, previous_ids, penalty)`: CTRL's penalty on already used tokens.
- `ban_tokens(logits, banned_ids)`: forbid tokens outright (logit -inf).
- `CASE_FILES`, `DocumentStore`, `answer_with_retrieval`: a tiny, made-up document store for
  the retrieval-augmented demo (search -> knowledge -> response), no downloads.
"""

import math
import re
from collections import Counter

import torch


# ----------------------------------------------------------------------------------------
# External memory


def knn_memory_attention(q, mem_keys, mem_values, top_k):
    """Each query reads only its top_k best-matching memory entries.

    q (B, T, d), mem_keys (M, d), mem_values (M, d_v) -> (B, T, d_v).
    scores = q @ mem_keys^T; keep each query's top_k scores (top_k is capped at M), softmax
    of those scores / sqrt(d), weighted sum of the matching values. With top_k = M this is
    ordinary attention over the whole memory.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    d = q.shape[-1]
    scores = q @ mem_keys.T  # (B, T, M)
    top_scores, top_idx = scores.topk(min(top_k, mem_keys.shape[0]), dim=-1)  # (B, T, k) each
    weights = torch.softmax(top_scores / math.sqrt(d), dim=-1)  # (B, T, k)
    values = mem_values[top_idx]  # (B, T, k, d_v): the memory entries each query retrieved
    return (weights.unsqueeze(-1) * values).sum(dim=-2)  # (B, T, d_v)


# ----------------------------------------------------------------------------------------
# Complexity


def transformer_param_count(vocab_size, d_model, n_heads, d_ff, n_layers, tied=True):
    """Exact number of parameters of reference_impl.model.TransformerLM.

    token embedding V*D; per layer: attention 4*(D*D + D), feed-forward D*F + F + F*D + D,
    two LayerNorms 4*D; final LayerNorm 2*D; an output head D*V (no bias) only when untied.
    Sinusoidal positions have no parameters. n_heads does not change the count (the heads
    split D, they do not add weights); it is an argument so the signature mirrors the model.
    """
    V, D, F = vocab_size, d_model, d_ff
    per_layer = 4 * (D * D + D) + (D * F + F + F * D + D) + 4 * D
    total = V * D + n_layers * per_layer + 2 * D
    if not tied:
        total += D * V
    return total


def attention_cost(seq_len, d_model, n_heads=1, bytes_per_element=4):
    """Rough cost of one full self-attention layer on one sequence (multiply-add = 2 FLOPs).

    Returns a dict:
    - projection_flops: Q, K, V and output projections, 4 * 2*T*D*D (linear in T);
    - score_flops: Q K^T plus weights @ V, 2 * 2*T*T*D (quadratic in T, independent of H);
    - flops: their sum;
    - score_bytes: memory of the (H, T, T) attention-weight tensor when materialised.
    """
    T, D = seq_len, d_model
    projection_flops = 4 * 2 * T * D * D
    score_flops = 2 * 2 * T * T * D
    return dict(
        projection_flops=projection_flops,
        score_flops=score_flops,
        flops=projection_flops + score_flops,
        score_bytes=n_heads * T * T * bytes_per_element,
    )


# ----------------------------------------------------------------------------------------
# Controllability


def repetition_penalty(logits, previous_ids, penalty):
    """CTRL's repetition penalty (Keskar et al., 2019).

    logits (B, V), previous_ids (B, T) LongTensor. For every token id already in that row of
    previous_ids (once, however often it appears), its logit is divided by `penalty` if
    positive and multiplied by `penalty` otherwise; other logits are unchanged. Returns a new
    tensor; the inputs are not modified.
    """
    picked = logits.gather(-1, previous_ids)  # (B, T): logits of the already used tokens
    penalised = torch.where(picked > 0, picked / penalty, picked * penalty)  # (B, T)
    # A repeated id writes the same value twice, so it is penalised once.
    return logits.scatter(-1, previous_ids, penalised)  # (B, V)


def ban_tokens(logits, banned_ids):
    """Forbid tokens: their logits become -inf, so softmax gives them probability 0.

    logits (..., V); banned_ids a list/1-D LongTensor of ids banned everywhere.
    Returns a new tensor.
    """
    banned = torch.as_tensor(banned_ids, dtype=torch.long, device=logits.device)
    out = logits.clone()
    out[..., banned] = float("-inf")
    return out


# ----------------------------------------------------------------------------------------
# A tiny retrieval-augmented demo: search -> knowledge -> response

CASE_FILES = [
    "The Hollow Lane burglary: muddy footprints of size 44 boots led from the broken window to Colonel Ash's shed.",
    "The Riverside poisoning: the victim's tea held arsenic; Dr Vale had bought arsenic the day before.",
    "The Mint Street forgery: the fake will carried the fingerprints of the notary's clerk, Mr Penn.",
    "The harbour theft: a night watchman saw Captain Reed loading crates onto a rowing boat at midnight.",
    "Colonel Ash owns size 44 boots and keeps a ladder in his shed.",
    "Dr Vale claimed the arsenic was for rats in the hospital cellar, but the cellar has no rats.",
    "Mr Penn practised the victim's signature on blotting paper found in his desk.",
    "Captain Reed's alibi: he says he was playing cards at the Anchor inn until two in the morning.",
]


def _words(text):
    return re.findall(r"[a-z0-9]+", text.lower())


class DocumentStore:
    """A toy search index: TF-IDF vectors over the documents' own vocabulary.

    store = DocumentStore(CASE_FILES); store.search("who left footprints?", k=2)
    -> [(score, document), ...] best first. A word's weight is its count times
    idf = log((1 + M) / (1 + number of documents containing it)), so words found everywhere
    ("the") count for little and rare ones ("arsenic") for a lot. `keys` (M, vocab) holds one
    unit vector per document, so the same store can feed knn_memory_attention as an external memory.
    """

    def __init__(self, documents):
        self.documents = list(documents)
        self.vocab = sorted({w for doc in self.documents for w in _words(doc)})
        self.index = {w: i for i, w in enumerate(self.vocab)}
        doc_freq = torch.zeros(len(self.vocab))
        for doc in self.documents:
            doc_freq[[self.index[w] for w in set(_words(doc))]] += 1
        self.idf = torch.log((1 + len(self.documents)) / (1 + doc_freq))  # (vocab,)
        self.keys = self.embed(self.documents)  # (M, vocab)

    def embed(self, texts):
        """texts (list of str) -> (len(texts), vocab) unit TF-IDF vectors (unknown words ignored)."""
        vectors = torch.zeros(len(texts), len(self.vocab))
        for row, text in enumerate(texts):
            for word, count in Counter(_words(text)).items():
                if word in self.index:
                    vectors[row, self.index[word]] = count
        vectors = vectors * self.idf
        return vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def search(self, query, k=1):
        """The k documents most similar to `query` (cosine similarity), best first: [(score, doc), ...]."""
        scores = self.keys @ self.embed([query])[0]  # (M,)
        top = scores.topk(min(k, len(self.documents)))
        return [(float(s), self.documents[i]) for s, i in zip(top.values, top.indices)]


def answer_with_retrieval(store, question, k=1):
    """search -> knowledge -> response, the three steps of a retrieval-augmented answer.

    Returns dict(search=[(score, doc), ...] (the k best hits), knowledge=the text of the hits
    that share at least one word with the question, response=an answer built from that
    knowledge). A real system would hand `knowledge` to a language model as extra context.
    """
    hits = store.search(question, k)
    knowledge = " ".join(doc for score, doc in hits if score > 0)
    if knowledge:
        response = f"According to the case files: {knowledge}"
    else:
        response = "The case files say nothing about that."
    return dict(search=hits, knowledge=knowledge, response=response)
