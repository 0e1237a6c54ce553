"""Chapter 6 reference: patchify against F.unfold, vit_embed against float64, the ViT end to end."""

import time

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

from reference_impl.blocks import TransformerBlock
from reference_impl.vit import VisionTransformer, patchify, vit_embed


@pytest.mark.parametrize(
    "B,C,H,W,p",
    [(1, 1, 8, 8, 4), (2, 3, 8, 8, 2), (3, 1, 8, 12, 4), (2, 3, 6, 9, 3), (1, 3, 10, 7, 2), (2, 2, 5, 5, 5), (1, 1, 4, 4, 1)],
)
def test_patchify_matches_unfold(B, C, H, W, p):
    images = torch.randn(B, C, H, W)
    before = images.clone()
    patches = patchify(images, p)
    expected = F.unfold(images, p, stride=p).transpose(1, 2)
    assert patches.shape == ((B, (H // p) * (W // p), C * p * p))
    assert_close(patches, expected, rtol=0, atol=0)
    assert torch.equal(images, before)


@settings(max_examples=30, deadline=None)
@given(
    B=st.integers(1, 3), C=st.integers(1, 4), H=st.integers(1, 12), W=st.integers(1, 12), p=st.integers(1, 5)
)
def test_patchify_matches_unfold_property(B, C, H, W, p):
    assume(p <= H and p <= W)
    images = torch.randn(B, C, H, W)
    assert_close(patchify(images, p), F.unfold(images, p, stride=p).transpose(1, 2), rtol=0, atol=0)


def test_patchify_order_is_row_major_then_c_p_p():
    images = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(1, 2, 4, 6)  # C=2, H=4, W=6
    patches = patchify(images, 2)  # 2 x 3 patches
    # Patch 1 is the top row's second patch: rows 0-1, columns 2-3, channel 0 then channel 1.
    expected = torch.cat([images[0, 0, 0:2, 2:4].flatten(), images[0, 1, 0:2, 2:4].flatten()])
    assert_close(patches[0, 1], expected, rtol=0, atol=0)
    # Patch 3 starts the second row of patches.
    assert_close(patches[0, 3, :4], images[0, 0, 2:4, 0:2].flatten(), rtol=0, atol=0)


def _naive_vit_embed(images, p, proj, cls_token, pos_embed):
    """float64, one patch at a time."""
    x = images.double()
    W_, b_ = proj.weight.double(), proj.bias.double()
    B, C, H, W = x.shape
    rows = []
    for b in range(B):
        seq = [cls_token[0, 0].double()]
        for i in range(H // p):
            for j in range(W // p):
                patch = x[b, :, i * p : (i + 1) * p, j * p : (j + 1) * p].reshape(-1)
                seq.append(W_ @ patch + b_)
        rows.append(torch.stack(seq) + pos_embed[0].double())
    return torch.stack(rows)


@pytest.mark.parametrize("B,C,H,W,p,D", [(1, 1, 8, 8, 4, 16), (3, 3, 8, 12, 4, 8), (2, 3, 9, 6, 3, 10)])
def test_vit_embed_matches_float64(B, C, H, W, p, D):
    N = (H // p) * (W // p)
    proj = nn.Linear(C * p * p, D)
    cls_token = torch.randn(1, 1, D)
    pos_embed = torch.randn(1, N + 1, D)
    images = torch.randn(B, C, H, W)
    out = vit_embed(images, p, proj, cls_token, pos_embed)
    assert out.shape == (B, N + 1, D) and out.dtype == torch.float32
    assert_close(out, _naive_vit_embed(images, p, proj, cls_token, pos_embed).float())


def test_vision_transformer_structure_and_shapes():
    model = VisionTransformer(
        image_size=8, patch_size=4, in_channels=1, n_classes=10, d_model=16, n_heads=2, n_layers=3, d_ff=32
    )
    assert isinstance(model.proj, nn.Linear) and model.proj.in_features == 16
    assert isinstance(model.cls_token, nn.Parameter) and model.cls_token.shape == (1, 1, 16)
    assert isinstance(model.pos_embed, nn.Parameter) and model.pos_embed.shape == (1, 5, 16)
    assert isinstance(model.blocks, nn.ModuleList) and len(model.blocks) == 3
    assert all(isinstance(block, TransformerBlock) for block in model.blocks)
    assert isinstance(model.norm, nn.LayerNorm)
    assert isinstance(model.head, nn.Linear) and model.head.out_features == 10
    images = torch.randn(5, 1, 8, 8)
    logits = model(images)
    assert logits.shape == (5, 10)
    maps = model.attention_maps(images)
    assert len(maps) == 3 and maps[0].shape == (5, 2, 5, 5)
    assert_close(maps[0].sum(-1), torch.ones(5, 2, 5))


def test_vision_transformer_forward_by_hand_and_non_square():
    model = VisionTransformer((8, 12), 4, 3, 7, d_model=12, n_heads=3, n_layers=2, d_ff=24)
    images = torch.randn(2, 3, 8, 12)
    x = vit_embed(images, 4, model.proj, model.cls_token, model.pos_embed)  # (2, 7, 12)
    assert x.shape == (2, 7, 12)
    for block in model.blocks:
        x = block(x)
    assert_close(model(images), model.head(model.norm(x)[:, 0]))


def test_vision_transformer_reads_the_class_token():
    model = VisionTransformer(8, 4, 1, 10, d_model=16, n_heads=2, n_layers=1, d_ff=32)
    images = torch.randn(4, 1, 8, 8)
    # Changing the class token's learned vector changes the prediction; it is the read-out slot.
    before = model(images)
    with torch.no_grad():
        model.cls_token.add_(1.0)
    assert not torch.allclose(before, model(images))


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one thread; two threads on a busy 2-core machine crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_tiny_vit_learns_digits(one_thread):
    from reference_impl.data import load_digits_split
    from reference_impl.training import accuracy, train_classifier

    X_train, y_train, X_test, y_test = load_digits_split(test_size=0.25, seed=0)
    torch.manual_seed(0)
    model = VisionTransformer(8, 4, 1, 10, d_model=64, n_heads=4, n_layers=2, d_ff=128)
    cpu = time.process_time()
    train_classifier(model, X_train, y_train, epochs=12, batch_size=64, lr=3e-3, seed=0, progress=False)
    assert time.process_time() - cpu < 30  # CPU seconds (~3-4 measured): wall time depends on the machine's load
    assert accuracy(model, X_test, y_test) >= 0.90
