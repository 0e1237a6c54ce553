"""The course's PyTorch reference implementation, one module per chapter.

=================  ========================================================  =========
module             what                                                      chapter
=================  ========================================================  =========
``embedding``      token embedding, sinusoidal positions                      1
``attention``      scaled dot-product attention, causal mask, multi-head      2
``blocks``         layer norm, feed-forward, pre-norm block, stack            3
``output``         stable softmax, cross-entropy, top-k, decoding             4
``model``          ``TransformerLM`` (decoder-only LM), ``SequenceClassifier``  2-4
``rnn``            RNN by hand, input-gradient norms, RNN/GRU baselines       5
``vit``            patches, ViT embedding, ``VisionTransformer``              6
``scalable``       chunked, linear, sliding-window and LSH attention          7
``challenges``     kNN memory, parameter count, repetition penalty, RAG toy   8
``data``           the toy data sets (detective cases, recall, copy, digits)  all
``training``       a small training loop with a progress bar                  all
=================  ========================================================  =========

Every public name is also available here (``from reference_impl import MultiHeadAttention``);
the submodules are imported on first use, so ``import reference_impl`` stays cheap.
"""

import importlib

_MODULES = (
    "embedding", "attention", "blocks", "output", "model", "rnn", "vit", "scalable",
    "challenges", "data", "training",
)

_EXPORTS = {
    "embedding": ("embed_tokens", "sinusoidal_positions", "input_embedding"),
    "attention": ("scaled_dot_product_attention", "causal_mask", "split_heads", "merge_heads",
                  "MultiHeadAttention", "attention_weights", "to_torch_mha"),
    "blocks": ("layer_norm", "FeedForward", "TransformerBlock", "TransformerStack",
               "to_torch_encoder_layer", "to_torch_encoder"),
    "output": ("stable_softmax", "cross_entropy", "top_k_filter", "greedy_decode", "sample"),
    "model": ("TransformerLM", "SequenceClassifier"),
    "rnn": ("rnn_forward", "input_gradient_norms", "RNNEncoder", "TransformerEncoder",
            "RecurrentClassifier", "CausalTransformerClassifier"),
    "vit": ("patchify", "vit_embed", "VisionTransformer"),
    "scalable": ("chunked_attention", "linear_attention", "lsh_buckets", "sliding_window_mask",
                 "sliding_window_attention", "lsh_attention", "shared_qk_attention"),
    "challenges": ("knn_memory_attention", "transformer_param_count", "repetition_penalty",
                   "ban_tokens", "attention_cost", "DocumentStore", "answer_with_retrieval"),
    "data": ("make_case_dataset", "describe_case", "make_recall_dataset", "make_copy_dataset",
             "load_digits_split", "CASE_VOCAB"),
    "training": ("train_classifier", "accuracy"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_WHERE) | set(_MODULES))
