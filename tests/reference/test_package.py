"""The package front door: every advertised name resolves to its chapter module's object."""

import importlib

import reference_impl


def test_every_export_resolves_to_its_module_object():
    for module, names in reference_impl._EXPORTS.items():
        mod = importlib.import_module(f"reference_impl.{module}")
        for name in names:
            assert getattr(reference_impl, name) is getattr(mod, name), f"{module}.{name}"


def test_every_spec_item_is_exported():
    spec_items = {
        "embed_tokens", "sinusoidal_positions", "input_embedding", "scaled_dot_product_attention",
        "causal_mask", "MultiHeadAttention", "layer_norm", "FeedForward", "TransformerBlock",
        "TransformerStack", "stable_softmax", "cross_entropy", "top_k_filter", "greedy_decode",
        "rnn_forward", "input_gradient_norms", "patchify", "vit_embed", "VisionTransformer",
        "chunked_attention", "linear_attention", "lsh_buckets", "sliding_window_mask",
        "knn_memory_attention", "transformer_param_count", "repetition_penalty",
    }
    assert spec_items <= set(reference_impl.__all__)


def test_unknown_name_raises_attribute_error():
    try:
        reference_impl.no_such_thing
    except AttributeError as err:
        assert "no_such_thing" in str(err)
    else:
        raise AssertionError("expected AttributeError")
