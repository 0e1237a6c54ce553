"""Chapter 6: the Vision Transformer. An image becomes a sequence of patch "witness statements".

Public names:
- `patchify(images, patch_size)`: (B, C, H, W) -> (B, N, C*p*p), equals F.unfold(..).transpose(1, 2).
- `vit_embed(images, patch_size, proj, cls_token, pos_embed)`: class token + projected patches
  + learned positions, (B, N+1, D).
- `VisionTransformer(image_size, patch_size, in_channels, n_classes, d_model, n_heads, n_layers, d_ff)`.
  `.attention_maps(images)` gives every layer's attention weights (B, H, N+1, N+1), for figures.
"""

import torch
import torch.nn as nn

from reference_impl.attention import attention_weights
from reference_impl.blocks import TransformerBlock


def patchify(images, patch_size):
    """Cut images into non-overlapping p x p patches and flatten each one.

    images (B, C, H, W) -> (B, N, C*p*p) with N = (H // p) * (W // p). Patches are in
    row-major order (left to right, then top to bottom); each patch is flattened in
    (C, p, p) order. Rows/columns beyond the last full patch are dropped, exactly as
    F.unfold(images, p, stride=p).transpose(1, 2) does.
    """
    B, C, H, W = images.shape
    p = patch_size
    nh, nw = H // p, W // p
    x = images[:, :, : nh * p, : nw * p]  # (B, C, nh*p, nw*p)
    x = x.reshape(B, C, nh, p, nw, p)  # (B, C, nh, p, nw, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, nh, nw, C, p, p)
    return x.reshape(B, nh * nw, C * p * p)  # (B, N, C*p*p)


def vit_embed(images, patch_size, proj, cls_token, pos_embed):
    """The ViT input sequence: [class token, projected patches] plus learned positions.

    images (B, C, H, W), proj an nn.Linear(C*p*p, D), cls_token (1, 1, D), pos_embed (1, N+1, D)
    -> (B, N+1, D).
    """
    patches = proj(patchify(images, patch_size))  # (B, N, D)
    cls = cls_token.expand(patches.shape[0], -1, -1)  # (B, 1, D)
    return torch.cat([cls, patches], dim=1) + pos_embed  # (B, N+1, D)


def _pair(size):
    return (size, size) if isinstance(size, int) else tuple(size)


class VisionTransformer(nn.Module):
    """A small ViT (Dosovitskiy et al., 2021) built from the chapter 3 TransformerBlock.

    image_size an int (square) or (H, W). forward(images (B, C, H, W)) -> logits (B, n_classes),
    read from the class token after the final LayerNorm.
    """

    def __init__(self, image_size, patch_size, in_channels, n_classes, d_model, n_heads, n_layers, d_ff):
        super().__init__()
        H, W = _pair(image_size)
        self.patch_size = patch_size
        n_patches = (H // patch_size) * (W // patch_size)
        self.proj = nn.Linear(in_channels * patch_size * patch_size, d_model)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        self.pos_embed = nn.Parameter(torch.randn(1, n_patches + 1, d_model) * 0.02)
        self.blocks = nn.ModuleList([TransformerBlock(d_model, n_heads, d_ff) for _ in range(n_layers)])
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_classes)

    def embed(self, images):
        """(B, C, H, W) -> (B, N+1, D)."""
        return vit_embed(images, self.patch_size, self.proj, self.cls_token, self.pos_embed)

    def forward(self, images):
        x = self.embed(images)  # (B, N+1, D)
        for block in self.blocks:
            x = block(x)  # (B, N+1, D)
        return self.head(self.norm(x)[:, 0])  # (B, n_classes)

    def attention_maps(self, images):
        """Every layer's attention weights, for figures: a list of n_layers tensors (B, H, N+1, N+1).

        Token 0 is the class token, tokens 1..N the patches in row-major order: row 0 of a map
        without its first entry, reshaped to (H // p, W // p), shows which patches the class
        token read. Runs under torch.no_grad().
        """
        maps = []
        with torch.no_grad():
            x = self.embed(images)  # (B, N+1, D)
            for block in self.blocks:
                maps.append(attention_weights(block.attn, block.norm1(x)))  # (B, H, N+1, N+1)
                x = block(x)
        return maps
