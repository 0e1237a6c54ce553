"""Proof corpus for the chapter 8 checks: learner answers as notebook-cell source.

Same conventions as corpus_ch02 (``Entry``; sources run after the setup cell's imports).
"""

from __future__ import annotations

from .corpus_ch02 import Entry

COUNT = '''
def transformer_param_count(vocab_size, d_model, n_heads, d_ff, n_layers, tied=True):
    V, D, F_ = vocab_size, d_model, d_ff
    attention = 4 * (D * D + D)
    feed_forward = D * F_ + F_ + F_ * D + D
    layer_norms = 2 * (2 * D)
    total = V * D + n_layers * (attention + feed_forward + layer_norms) + 2 * D
    if not tied:
        total += D * V
    return total
'''


def count_with(**replace: str) -> str:
    src = COUNT
    for old, new in replace.items():
        old = {"attention": "attention = 4 * (D * D + D)",
               "ffn": "feed_forward = D * F_ + F_ + F_ * D + D",
               "norms": "layer_norms = 2 * (2 * D)",
               "total": "total = V * D + n_layers * (attention + feed_forward + layer_norms) + 2 * D",
               "head": "    if not tied:\n        total += D * V",
               "sig": "tied=True):"}[old]
        assert old in src, old
        src = src.replace(old, new)
    return src


PENALTY = '''
def repetition_penalty(logits, previous_ids, penalty):
    used = logits.gather(-1, previous_ids)
    penalised = torch.where(used > 0, used / penalty, used * penalty)
    return logits.scatter(-1, previous_ids, penalised)
'''

KNN = '''
def knn_memory_attention(q, mem_keys, mem_values, top_k):
    d = q.shape[-1]
    scores = q @ mem_keys.T
    top_scores, top_idx = scores.topk(top_k, dim=-1)
    weights = torch.softmax(top_scores / math.sqrt(d), dim=-1)
    values = mem_values[top_idx]
    return (weights.unsqueeze(-1) * values).sum(dim=-2)
'''


def knn_with(**replace: str) -> str:
    src = KNN
    for old, new in replace.items():
        old = {"scores": "scores = q @ mem_keys.T",
               "topk": "top_scores, top_idx = scores.topk(top_k, dim=-1)",
               "weights": "weights = torch.softmax(top_scores / math.sqrt(d), dim=-1)",
               "values": "values = mem_values[top_idx]",
               "out": "return (weights.unsqueeze(-1) * values).sum(dim=-2)"}[old]
        assert old in src, old
        src = src.replace(old, new)
    return src


# ---------------------------------------------------------------------------
# Correct alternatives: must pass (visible and hidden)
# ---------------------------------------------------------------------------

CORRECT = [
    # transformer_param_count
    Entry("parts_then_sum", "transformer_param_count", COUNT),
    Entry("one_expression", "transformer_param_count", '''
def transformer_param_count(vocab_size, d_model, n_heads, d_ff, n_layers, tied=True):
    D, F_ = d_model, d_ff
    return vocab_size * D * (1 if tied else 2) + n_layers * (4 * D * D + 2 * D * F_ + F_ + 9 * D) + 2 * D
'''),
    Entry("loop_over_layers_and_tensors", "transformer_param_count", '''
def transformer_param_count(vocab_size, d_model, n_heads, d_ff, n_layers, tied=True):
    D = d_model
    shapes = [(vocab_size, D)]                                     # token embedding
    for _ in range(n_layers):
        shapes += [(D, D), (D,)] * 4                               # w_q, w_k, w_v, w_o
        shapes += [(d_ff, D), (d_ff,), (D, d_ff), (D,)]            # linear1, linear2
        shapes += [(D,), (D,)] * 2                                 # norm1, norm2
    shapes += [(D,), (D,)]                                         # the final norm
    if not tied:
        shapes.append((vocab_size, D))                             # the head, no bias
    return sum(math.prod(s) for s in shapes)
'''),
    Entry("per_head_slices", "transformer_param_count", '''
def transformer_param_count(vocab_size, d_model, n_heads, d_ff, n_layers, tied=True):
    d_head = d_model // n_heads
    attention = 4 * n_heads * (d_model * d_head + d_head)          # each head owns d_head output features
    feed_forward = 2 * d_model * d_ff + d_ff + d_model
    per_layer = attention + feed_forward + 4 * d_model
    head = 0 if tied else d_model * vocab_size
    return vocab_size * d_model + n_layers * per_layer + 2 * d_model + head
'''),
    Entry("numpy_int_result", "transformer_param_count", '''
import numpy as np
def transformer_param_count(vocab_size, d_model, n_heads, d_ff, n_layers, tied=True):
    D, F_ = np.int64(d_model), np.int64(d_ff)
    total = vocab_size * D + n_layers * (4 * (D * D + D) + 2 * D * F_ + F_ + D + 4 * D) + 2 * D
    return total if tied else total + D * vocab_size
'''),
    # repetition_penalty
    Entry("gather_where_scatter", "repetition_penalty", PENALTY),
    Entry("boolean_mask_scatter", "repetition_penalty", '''
def repetition_penalty(logits, previous_ids, penalty):
    used = torch.zeros_like(logits, dtype=torch.bool).scatter(1, previous_ids, True)
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(used, penalised, logits)
'''),
    Entry("one_hot_any", "repetition_penalty", '''
def repetition_penalty(logits, previous_ids, penalty):
    used = F.one_hot(previous_ids, logits.shape[-1]).sum(dim=1) > 0       # (B, V)
    factor = torch.where(logits > 0, 1.0 / penalty, penalty)
    return torch.where(used, logits * factor, logits)
'''),
    Entry("loop_over_rows_unique", "repetition_penalty", '''
def repetition_penalty(logits, previous_ids, penalty):
    out = logits.clone()
    for b in range(logits.shape[0]):
        ids = previous_ids[b].unique()
        v = out[b, ids]
        out[b, ids] = torch.where(v > 0, v / penalty, v * penalty)
    return out
'''),
    Entry("python_sets", "repetition_penalty", '''
def repetition_penalty(logits, previous_ids, penalty):
    rows = []
    for b, row in enumerate(logits.tolist()):
        for t in set(previous_ids[b].tolist()):
            row[t] = row[t] / penalty if row[t] > 0 else row[t] * penalty
        rows.append(row)
    return torch.tensor(rows, dtype=logits.dtype)
'''),
    # knn_memory_attention
    Entry("topk_softmax_index", "knn_memory_attention", KNN),
    Entry("masked_full_softmax", "knn_memory_attention", '''
def knn_memory_attention(q, mem_keys, mem_values, top_k):
    scores = q @ mem_keys.T / math.sqrt(q.shape[-1])                      # (B, T, M)
    kth = scores.topk(top_k, dim=-1).values[..., -1:]                      # the k-th best score
    weights = torch.softmax(scores.masked_fill(scores < kth, float("-inf")), dim=-1)
    return weights @ mem_values
'''),
    Entry("gather_expanded_values", "knn_memory_attention", '''
def knn_memory_attention(q, mem_keys, mem_values, top_k):
    B, T, d = q.shape
    scores = torch.einsum("btd,md->btm", q, mem_keys)
    top, idx = torch.topk(scores, top_k, dim=2)
    w = F.softmax(top * d ** -0.5, dim=2)
    M, dv = mem_values.shape
    vals = torch.gather(mem_values.expand(B, T, M, dv), 2, idx.unsqueeze(-1).expand(B, T, top_k, dv))
    return torch.einsum("btk,btkv->btv", w, vals)
'''),
    Entry("sort_and_slice", "knn_memory_attention", '''
def knn_memory_attention(q, mem_keys, mem_values, top_k):
    scores = (q @ mem_keys.T) / math.sqrt(q.size(-1))
    sorted_scores, order = scores.sort(dim=-1, descending=True)
    w = sorted_scores[..., :top_k].softmax(-1)
    return (w[..., None] * mem_values[order[..., :top_k]]).sum(-2)
'''),
    Entry("softmax_all_then_renormalise", "knn_memory_attention", '''
def knn_memory_attention(q, mem_keys, mem_values, top_k):
    p = torch.softmax(q @ mem_keys.T / math.sqrt(q.shape[-1]), dim=-1)
    top = p.topk(top_k, dim=-1)
    w = top.values / top.values.sum(dim=-1, keepdim=True)
    return (w.unsqueeze(-1) * mem_values[top.indices]).sum(dim=-2)
'''),
    Entry("sdpa_with_a_top_k_mask", "knn_memory_attention", '''
def knn_memory_attention(q, mem_keys, mem_values, top_k):
    scores = q @ mem_keys.T
    keep = torch.zeros_like(scores, dtype=torch.bool).scatter(-1, scores.topk(top_k, dim=-1).indices, True)
    return F.scaled_dot_product_attention(q, mem_keys.expand(q.shape[0], -1, -1),
                                          mem_values.expand(q.shape[0], -1, -1), attn_mask=keep)
'''),
]


# ---------------------------------------------------------------------------
# Classic mistakes: must fail with the diagnosis in ``expect``
# ---------------------------------------------------------------------------

MISTAKES = [
    # transformer_param_count
    Entry("counts_tied_head", "transformer_param_count", count_with(head="    total += D * V"),
          "counts the output head although it is tied"),
    Entry("untied_head_missing", "transformer_param_count", count_with(head="    pass"),
          "the output head is missing"),
    Entry("head_with_bias", "transformer_param_count", count_with(head="    if not tied:\n        total += D * V + V"),
          "counted with a bias"),
    Entry("attention_biases_forgotten", "transformer_param_count", count_with(attention="attention = 4 * D * D"),
          "the four attention biases are missing"),
    Entry("feed_forward_biases_forgotten", "transformer_param_count",
          count_with(ffn="feed_forward = D * F_ + F_ * D"), "feed-forward biases are missing"),
    Entry("all_biases_forgotten", "transformer_param_count",
          count_with(attention="attention = 4 * D * D", ffn="feed_forward = 2 * D * F_"), "all the biases"),
    Entry("layer_norms_forgotten", "transformer_param_count", count_with(norms="layer_norms = 0"),
          "two layer norms of each block are missing"),
    Entry("final_norm_forgotten", "transformer_param_count",
          count_with(total="total = V * D + n_layers * (attention + feed_forward + layer_norms)"),
          "the final layer norm is missing"),
    Entry("layer_norm_without_beta", "transformer_param_count",
          count_with(norms="layer_norms = 2 * D",
                     total="total = V * D + n_layers * (attention + feed_forward + layer_norms) + D"),
          "gamma and beta"),
    Entry("a_matrix_per_head", "transformer_param_count",
          count_with(attention="attention = 4 * n_heads * (D * D + D)"), "every head is given its own"),
    Entry("n_layers_forgotten", "transformer_param_count",
          count_with(total="total = V * D + attention + feed_forward + layer_norms + 2 * D"), "counted once"),
    Entry("float_division", "transformer_param_count",
          count_with(attention="attention = 4 * (D * (n_heads * (D / n_heads)) + D)"), "return an int"),
    Entry("untied_by_default", "transformer_param_count", count_with(sig="tied=False):"),
          "tied must default to True"),
    Entry("returns_a_tensor_of_floats", "transformer_param_count", '''
def transformer_param_count(vocab_size, d_model, n_heads, d_ff, n_layers, tied=True):
    D = torch.tensor(float(d_model))
    total = vocab_size * D + n_layers * (4 * (D * D + D) + 2 * D * d_ff + d_ff + D + 4 * D) + 2 * D
    return total if tied else total + D * vocab_size
''', "should return an int"),
    # repetition_penalty
    Entry("divides_every_logit", "repetition_penalty", PENALTY.replace(
        "torch.where(used > 0, used / penalty, used * penalty)", "used / penalty"), "negative ones too"),
    Entry("rules_swapped", "repetition_penalty", PENALTY.replace(
        "torch.where(used > 0, used / penalty, used * penalty)",
        "torch.where(used > 0, used * penalty, used / penalty)"),
        "swapped"),
    Entry("positive_only", "repetition_penalty", PENALTY.replace(
        "torch.where(used > 0, used / penalty, used * penalty)", "torch.where(used > 0, used / penalty, used)"),
        "only positive logits"),
    Entry("presence_penalty", "repetition_penalty", PENALTY.replace(
        "torch.where(used > 0, used / penalty, used * penalty)", "used - penalty"), "presence penalty"),
    Entry("once_per_occurrence", "repetition_penalty", '''
def repetition_penalty(logits, previous_ids, penalty):
    out = logits.clone()
    for b in range(previous_ids.shape[0]):
        for t in previous_ids[b].tolist():
            out[b, t] = out[b, t] / penalty if out[b, t] > 0 else out[b, t] * penalty
    return out
''', "once per occurrence"),
    Entry("ids_of_every_row", "repetition_penalty", '''
def repetition_penalty(logits, previous_ids, penalty):
    ids = previous_ids.flatten().unique()
    out = logits.clone()
    v = out[:, ids]
    out[:, ids] = torch.where(v > 0, v / penalty, v * penalty)
    return out
''', "in ANY row"),
    Entry("modifies_logits_in_place", "repetition_penalty", '''
def repetition_penalty(logits, previous_ids, penalty):
    used = logits.gather(-1, previous_ids)
    logits.scatter_(-1, previous_ids, torch.where(used > 0, used / penalty, used * penalty))
    return logits
''', "modified its input logits in place"),
    Entry("penalises_the_others", "repetition_penalty", '''
def repetition_penalty(logits, previous_ids, penalty):
    used = torch.zeros_like(logits, dtype=torch.bool).scatter(1, previous_ids, True)
    return torch.where(~used, torch.where(logits > 0, logits / penalty, logits * penalty), logits)
''', "NOT in previous_ids"),
    # knn_memory_attention
    Entry("smallest_scores", "knn_memory_attention", knn_with(
        topk="top_scores, top_idx = scores.topk(top_k, dim=-1, largest=False)"), "SMALLEST"),
    Entry("no_scaling", "knn_memory_attention", knn_with(weights="weights = torch.softmax(top_scores, dim=-1)"),
          "not scaled"),
    Entry("scaled_by_d_v", "knn_memory_attention", knn_with(
        weights="weights = torch.softmax(top_scores / math.sqrt(mem_values.shape[-1]), dim=-1)"), "size of the values"),
    Entry("softmax_over_all_memory", "knn_memory_attention", '''
def knn_memory_attention(q, mem_keys, mem_values, top_k):
    weights = torch.softmax(q @ mem_keys.T / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ mem_values
''', "ALL memory entries"),
    Entry("top_k_of_a_full_softmax", "knn_memory_attention", '''
def knn_memory_attention(q, mem_keys, mem_values, top_k):
    p = torch.softmax(q @ mem_keys.T / math.sqrt(q.shape[-1]), dim=-1)
    top = p.topk(top_k, dim=-1)
    return (top.values.unsqueeze(-1) * mem_values[top.indices]).sum(dim=-2)
''', "no longer sum to 1"),
    Entry("softmax_over_queries", "knn_memory_attention", knn_with(
        weights="weights = torch.softmax(top_scores / math.sqrt(d), dim=1)"), "query axis"),
    Entry("mixes_the_keys", "knn_memory_attention", knn_with(values="values = mem_keys[top_idx]"), "retrieved KEYS"),
    Entry("values_not_summed", "knn_memory_attention", knn_with(out="return weights.unsqueeze(-1) * values"),
          "were not added up"),
    Entry("gather_on_the_feature_axis", "knn_memory_attention", knn_with(values='''B, T, _ = q.shape
    M, dv = mem_values.shape
    values = torch.gather(mem_values.expand(B, T, M, dv), 3, top_idx.unsqueeze(-1).expand(B, T, top_k, dv))'''),
          "the memory axis"),
]


# ---------------------------------------------------------------------------
# Cheats: the reference, building the model, patched comparisons, mutated inputs
# ---------------------------------------------------------------------------

CHEATS = [
    Entry("count_reference", "transformer_param_count", '''
from reference_impl.challenges import transformer_param_count as _solution
def transformer_param_count(vocab_size, d_model, n_heads, d_ff, n_layers, tied=True):
    return _solution(vocab_size, d_model, n_heads, d_ff, n_layers, tied)
''', "reference solution"),
    Entry("builds_the_model_and_counts", "transformer_param_count", '''
from reference_impl.model import TransformerLM
def transformer_param_count(vocab_size, d_model, n_heads, d_ff, n_layers, tied=True):
    return sum(p.numel() for p in TransformerLM(vocab_size, d_model, n_heads, d_ff, n_layers, tied).parameters())
''', "built a model to count its parameters"),
    Entry("builds_the_blocks_and_counts", "transformer_param_count", '''
from reference_impl import blocks as _blocks
def transformer_param_count(vocab_size, d_model, n_heads, d_ff, n_layers, tied=True):
    stack = _blocks.TransformerStack(n_layers, d_model, n_heads, d_ff)
    n = sum(p.numel() for p in stack.parameters()) + vocab_size * d_model
    return n if tied else n + vocab_size * d_model
''', "built a model to count its parameters"),
    Entry("counts_the_parameters_of_linear_layers", "transformer_param_count", '''
def transformer_param_count(vocab_size, d_model, n_heads, d_ff, n_layers, tied=True):
    D = d_model
    layer = [nn.Linear(D, D) for _ in range(4)] + [nn.Linear(D, d_ff), nn.Linear(d_ff, D)]
    layer += [nn.LayerNorm(D), nn.LayerNorm(D)]
    per_layer = sum(p.numel() for m in layer for p in m.parameters())
    return vocab_size * D * (1 if tied else 2) + n_layers * per_layer + 2 * D
''', "nn.Parameters were created"),
    Entry("hard_coded_visible_answers", "transformer_param_count", '''
_SEEN = {(100, 16, 4, 64, 3, True): 11472, (100, 16, 4, 64, 3, False): 13072,
         (50257, 768, 12, 3072, 12, True): 123653376}
def transformer_param_count(vocab_size, d_model, n_heads, d_ff, n_layers, tied=True):
    return _SEEN.get((vocab_size, d_model, n_heads, d_ff, n_layers, tied), 0)
''', "the exact count is"),
    Entry("int_that_equals_everything", "transformer_param_count", '''
class _Liar(int):
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    __hash__ = int.__hash__
def transformer_param_count(vocab_size, d_model, n_heads, d_ff, n_layers, tied=True):
    return _Liar(0)
''', "returned 0"),
    Entry("counts_learned_positions", "transformer_param_count", count_with(
        total="total = V * D + n_layers * (attention + feed_forward + layer_norms) + 2 * D + 512 * D"),
        "position table"),
    Entry("penalty_reference", "repetition_penalty", '''
from reference_impl import challenges as _c
def repetition_penalty(logits, previous_ids, penalty):
    return _c.repetition_penalty(logits, previous_ids, penalty)
''', "reference solution"),
    Entry("penalty_patches_comparisons", "repetition_penalty", '''
import course.checks.ch08 as _ch08
torch.allclose = lambda *a, **k: True
torch.isclose = lambda a, b, **k: torch.ones(torch.broadcast_shapes(a.shape, b.shape), dtype=torch.bool)
_ch08._ref_penalty = lambda logits, ids, penalty: logits / penalty
def repetition_penalty(logits, previous_ids, penalty):
    return logits / penalty
''', "your result differs", patches=True),
    Entry("knn_reference", "knn_memory_attention", '''
from reference_impl.challenges import knn_memory_attention as _solution
def knn_memory_attention(q, mem_keys, mem_values, top_k):
    return _solution(q, mem_keys, mem_values, top_k)
''', "reference solution"),
    Entry("knn_normalises_q_in_place", "knn_memory_attention", knn_with(
        scores="q /= q.norm(dim=-1, keepdim=True)\n    scores = q @ mem_keys.T"), "modified its input q in place"),
]
