"""The chapter 3 checks against their proof corpus: right answers pass, mistakes are named, cheats fail.

Also: the reference passes (through copies), the expected values equal PyTorch's
F.layer_norm / nn.TransformerEncoderLayer / nn.TransformerEncoder with the weights mapped
across, the checks' own float64 model of the block agrees with them, float32 rounding
stays far inside the tolerance, and the out-of-process path gives the same verdicts.
"""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import course.checks.ch03 as ch03
import course.checks.util_modules as util_modules
from reference_impl import blocks as ref

from . import corpus_ch03 as corpus
from .corpus_ch03 import CHEATS, CORRECT, MISTAKES
from .harness import all_cases, corpus_suite
from .test_ch02 import out_of_process_verdicts

ITEMS = ("layer_norm", "FeedForward", "TransformerBlock", "TransformerStack")


# ---------------------------------------------------------------------------
# Expected values = PyTorch's modules; the checks' float64 model agrees
# ---------------------------------------------------------------------------


def test_layer_norm_expected_equals_f_layer_norm():
    for case in all_cases("layer_norm"):
        x, gamma, beta, eps = (case.inputs[k] for k in ("x", "gamma", "beta", "eps"))
        eps = 1e-5 if eps is None else eps
        want = F.layer_norm(x.double(), x.shape[-1:], gamma.double(), beta.double(), eps).float()
        torch.testing.assert_close(case.expected, want)


def torch_layer(W, prefix, D, H, F_):
    layer = nn.TransformerEncoderLayer(D, H, F_, dropout=0.0, batch_first=True, norm_first=True).double()
    a = f"{prefix}attn."
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(torch.cat([W[f"{a}w_q.weight"], W[f"{a}w_k.weight"], W[f"{a}w_v.weight"]]))
        layer.self_attn.in_proj_bias.copy_(torch.cat([W[f"{a}w_q.bias"], W[f"{a}w_k.bias"], W[f"{a}w_v.bias"]]))
        layer.self_attn.out_proj.weight.copy_(W[f"{a}w_o.weight"])
        layer.self_attn.out_proj.bias.copy_(W[f"{a}w_o.bias"])
        for name, target in (("ff.linear1", layer.linear1), ("ff.linear2", layer.linear2), ("norm1", layer.norm1),
                             ("norm2", layer.norm2)):
            target.weight.copy_(W[f"{prefix}{name}.weight"])
            target.bias.copy_(W[f"{prefix}{name}.bias"])
    return layer


def torch_masks(mask):
    """(src_mask, src_key_padding_mask) for PyTorch's encoder: True = blocked there."""
    if mask is None:
        return None, None
    if mask.dim() == 4:  # (B, 1, 1, T) padding mask
        return None, ~mask[:, 0, 0, :]
    return ~mask, None


def test_block_expected_equals_torch_encoder_layer():
    for case in all_cases("TransformerBlock"):
        inp = case.inputs
        layer = torch_layer(inp["weights"], "", inp["d_model"], inp["n_heads"], inp["d_ff"])
        src_mask, padding = torch_masks(inp["mask"])
        with torch.no_grad():
            out = layer(inp["x"].double(), src_mask=src_mask, src_key_padding_mask=padding)
        torch.testing.assert_close(case.expected, out.float(), msg=case.label)
        W = {k: v.double() for k, v in inp["weights"].items()}
        model = ch03._block_variant(W, "", inp["x"].double(), inp["mask"], inp["n_heads"])
        torch.testing.assert_close(case.expected, model.float(), msg=case.label)


def test_stack_expected_equals_torch_encoder():
    for case in all_cases("TransformerStack"):
        inp = case.inputs
        L, D, H, F_, W = inp["n_layers"], inp["d_model"], inp["n_heads"], inp["d_ff"], inp["weights"]
        layers = [torch_layer(W, f"blocks.{i}.", D, H, F_) for i in range(L)]
        norm = nn.LayerNorm(D).double()
        with torch.no_grad():
            norm.weight.copy_(W["norm.weight"])
            norm.bias.copy_(W["norm.bias"])
        encoder = nn.TransformerEncoder(layers[0], L, norm=norm, enable_nested_tensor=False)
        encoder.layers = nn.ModuleList(layers)
        src_mask, padding = torch_masks(inp["mask"])
        with torch.no_grad():
            out = encoder(inp["x"].double(), mask=src_mask, src_key_padding_mask=padding)
        torch.testing.assert_close(case.expected, out.float(), msg=case.label)
        Wd = {k: v.double() for k, v in W.items()}
        model = ch03._stack_variant(Wd, L, inp["x"].double(), inp["mask"], H)
        torch.testing.assert_close(case.expected, model.float(), msg=case.label)


def test_feed_forward_expected_equals_the_formula():
    for case in all_cases("FeedForward"):
        W, x = case.inputs["weights"], case.inputs["x"].double()
        h = torch.clamp(x @ W["linear1.weight"].double().T + W["linear1.bias"].double(), min=0)
        want = h @ W["linear2.weight"].double().T + W["linear2.bias"].double()
        torch.testing.assert_close(case.expected, want.float())


@pytest.mark.parametrize("item", ["layer_norm", "TransformerBlock", "TransformerStack"])
def test_float32_rounding_stays_far_inside_the_tolerance(item):
    """The reference run in float32 (what a learner computes) is within a tenth of assert_close's tolerance."""
    for case in all_cases(item):
        inp = case.inputs
        if item == "layer_norm":
            eps = 1e-5 if inp["eps"] is None else inp["eps"]
            got = ref.layer_norm(inp["x"], inp["gamma"], inp["beta"], eps)
        else:
            args = (inp["d_model"], inp["n_heads"], inp["d_ff"])
            module = ref.TransformerBlock(*args) if item == "TransformerBlock" else ref.TransformerStack(
                inp["n_layers"], *args)
            module.load_state_dict(inp["weights"])
            with torch.no_grad():
                got = module(inp["x"], mask=inp["mask"])
        want = case.expected.double()
        err = (got.double() - want).abs() / (1e-5 + 1.3e-6 * want.abs())
        assert float(err.max()) < 0.1, (case.label, float(err.max()))


def test_cases_expose_the_bugs():
    ln = all_cases("layer_norm")
    assert any(c.inputs["eps"] is not None and c.inputs["eps"] >= 0.1 for c in ln), "an explicit, large eps"
    assert any(float(c.inputs["x"].std(-1).min()) < 0.02 for c in ln), "rows whose variance is near eps"
    assert any(c.inputs["x"].dim() == 2 for c in ln) and any(c.inputs["x"].dim() == 4 for c in ln)
    assert all(c.inputs["x"].shape[-1] > 1 for c in ln)
    blocks = all_cases("TransformerBlock") + all_cases("TransformerStack")
    kinds = {None if c.inputs["mask"] is None else tuple(c.inputs["mask"].shape)[:-2] for c in blocks}
    assert None in kinds and () in kinds and {(2, 1), (3, 1)} & kinds, kinds  # none, (T, T), (B, 1, 1, T)
    for c in blocks:
        m = c.inputs["mask"]
        if m is not None:
            assert bool(m.any(-1).all()), "no fully masked row"
        W = c.inputs["weights"]
        norms = [k for k in W if "norm" in k and k.endswith("weight")]
        assert all(not torch.allclose(W[k], torch.ones_like(W[k])) for k in norms), "non-trivial norms"
    assert any(c.inputs["x"].shape[0] == 1 for c in blocks)
    assert {c.inputs["n_layers"] for c in all_cases("TransformerStack")} >= {1, 2, 3, 4}


def test_out_of_process_path_gives_the_same_verdicts():
    good = next(e for e in CORRECT if e.id == "pre_norm_block")
    assert out_of_process_verdicts(good) == [None] * len(all_cases("TransformerBlock", False))
    for entry_id in ("post_norm", "unbiased_variance", "shared_weights", "builtin_f_layer_norm"):
        entry = next(e for e in MISTAKES + CHEATS if e.id == entry_id)
        messages = [v for v in out_of_process_verdicts(entry) if v]
        assert messages and entry.expect.lower() in messages[0].lower(), messages


globals().update(corpus_suite("03_ffn_stacking", ITEMS, corpus, (ch03, util_modules), ref))
