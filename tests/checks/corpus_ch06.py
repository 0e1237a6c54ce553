"""Proof corpus for the chapter 6 checks: learner answers as notebook-cell source.

Same conventions as corpus_ch02 (``Entry``; sources run after the setup cell's imports).
The notebook's setup cell also imports chapter 3's TransformerBlock and the training helpers
(SETUP). Entries for vit_embed / VisionTransformer / train_vit define the earlier items they
use, as the notebook's earlier cells do.
"""

from __future__ import annotations

from .corpus_ch02 import Entry

SETUP = ("from reference_impl.blocks import TransformerBlock\n"
         "from reference_impl.data import load_digits_split\n"
         "from reference_impl.training import accuracy, train_classifier\n")

PATCHIFY = '''
def patchify(images, patch_size):
    B, C, H, W = images.shape
    p = patch_size
    x = images.reshape(B, C, H // p, p, W // p, p)
    x = x.permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B, (H // p) * (W // p), C * p * p)
'''

# a wrong patchify (no permute): the checks of vit_embed and VisionTransformer use the course's instead
WRONG_PATCHIFY = '''
def patchify(images, patch_size):
    B, C, H, W = images.shape
    p = patch_size
    return images.reshape(B, (H // p) * (W // p), C * p * p)
'''


def patchify_with(permute: str = "x.permute(0, 2, 4, 1, 3, 5)", split: str = "(B, C, H // p, p, W // p, p)",
                  final: str = "x.reshape(B, (H // p) * (W // p), C * p * p)") -> str:
    return (PATCHIFY.replace("x.permute(0, 2, 4, 1, 3, 5)", permute)
            .replace("(B, C, H // p, p, W // p, p)", split)
            .replace("x.reshape(B, (H // p) * (W // p), C * p * p)", final))


VIT_EMBED = '''
def vit_embed(images, patch_size, proj, cls_token, pos_embed):
    patches = proj(patchify(images, patch_size))
    cls = cls_token.expand(patches.shape[0], -1, -1)
    return torch.cat([cls, patches], dim=1) + pos_embed
'''


def vit_embed_body(body: str, helpers: str = PATCHIFY) -> str:
    lines = "\n".join("    " + line if line.strip() else "" for line in body.strip("\n").splitlines())
    return helpers + "\ndef vit_embed(images, patch_size, proj, cls_token, pos_embed):\n" + lines + "\n"


VIT_INIT = '''
class VisionTransformer(nn.Module):
    def __init__(self, image_size, patch_size, in_channels, n_classes, d_model, n_heads, n_layers, d_ff):
        super().__init__()
        self.patch_size = patch_size
        n_patches = (image_size // patch_size) ** 2
        self.proj = nn.Linear(in_channels * patch_size * patch_size, d_model)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, n_patches + 1, d_model))
        self.blocks = nn.ModuleList([TransformerBlock(d_model, n_heads, d_ff) for _ in range(n_layers)])
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_classes)
'''

VIT_FORWARD = '''
x = vit_embed(images, self.patch_size, self.proj, self.cls_token, self.pos_embed)
for block in self.blocks:
    x = block(x)
return self.head(self.norm(x)[:, 0])
'''

# the embedding written inline (not through vit_embed), for the mistakes that live in the model
INLINE_FORWARD = '''
B = images.shape[0]
patches = self.proj(patchify(images, self.patch_size))
x = torch.cat([self.cls_token.expand(B, -1, -1), patches], dim=1) + self.pos_embed
for block in self.blocks:
    x = block(x)
return self.head(self.norm(x)[:, 0])
'''


def vit(forward: str = VIT_FORWARD, init_replace: dict | None = None, helpers: str = PATCHIFY + VIT_EMBED) -> str:
    init = VIT_INIT
    for old, new in (init_replace or {}).items():
        assert old in init, old
        init = init.replace(old, new)
    body = "\n".join("        " + line if line.strip() else "" for line in forward.strip("\n").splitlines())
    return SETUP + helpers + init + "\n    def forward(self, images):\n" + body + "\n"


def inline(**replace: str) -> str:
    body = INLINE_FORWARD
    for old, new in replace.items():
        old = {"cat": "x = torch.cat([self.cls_token.expand(B, -1, -1), patches], dim=1) + self.pos_embed",
               "blocks": "for block in self.blocks:\n    x = block(x)",
               "out": "return self.head(self.norm(x)[:, 0])"}[old]
        assert old in body, old
        body = body.replace(old, new)
    return vit(body)


def train(body: str, model_src: str | None = None) -> str:
    """A train_vit whose body is ``body``, after a correct VisionTransformer (or ``model_src``)."""
    lines = "\n".join("    " + line if line.strip() else "" for line in body.strip("\n").splitlines())
    return (model_src or vit()) + "\ndef train_vit(X_train, y_train):\n" + lines + "\n"


TRAIN_FAST = '''
torch.manual_seed(0)
model = VisionTransformer(image_size=8, patch_size=4, in_channels=1, n_classes=10,
                          d_model=32, n_heads=4, n_layers=2, d_ff=64)
train_classifier(model, X_train, y_train, epochs=6, batch_size=64, lr=5e-3, seed=0, progress=False)
return model
'''


# ---------------------------------------------------------------------------
# Correct alternatives: must pass (visible and hidden)
# ---------------------------------------------------------------------------

CORRECT = [
    # patchify
    Entry("reshape_permute", "patchify", PATCHIFY),
    Entry("tensor_unfold_method", "patchify", '''
def patchify(images, patch_size):
    p = patch_size
    B, C = images.shape[:2]
    x = images.unfold(2, p, p).unfold(3, p, p)        # (B, C, rows, columns, p, p): Tensor.unfold is a view
    return x.permute(0, 2, 3, 1, 4, 5).reshape(B, -1, C * p * p)
'''),
    Entry("loops_over_grid", "patchify", '''
def patchify(images, patch_size):
    B, C, H, W = images.shape
    p = patch_size
    cards = []
    for r in range(H // p):
        for s in range(W // p):
            cards.append(images[:, :, r * p:(r + 1) * p, s * p:(s + 1) * p].reshape(B, -1))
    return torch.stack(cards, dim=1)
'''),
    Entry("unflatten_flatten", "patchify", '''
def patchify(images, patch_size):
    p = patch_size
    x = images.unflatten(2, (-1, p)).unflatten(4, (-1, p))   # (B, C, rows, p, columns, p)
    return x.permute(0, 2, 4, 1, 3, 5).flatten(3).flatten(1, 2)
'''),
    Entry("contiguous_view_einsum", "patchify", '''
def patchify(images, patch_size):
    B, C, H, W = images.shape
    p = patch_size
    x = images.view(B, C, H // p, p, W // p, p)
    x = torch.einsum("bcrisj->brscij", x).contiguous()
    return x.view(B, (H // p) * (W // p), C * p * p)
'''),
    Entry("split_rows_then_columns", "patchify", '''
def patchify(images, patch_size):
    B, C = images.shape[:2]
    p = patch_size
    rows = images.split(p, dim=2)                                     # strips of p pixel rows
    cards = [c.reshape(B, -1) for strip in rows for c in strip.split(p, dim=3)]
    return torch.stack(cards, dim=1)
'''),
    # vit_embed
    Entry("cat_expand", "vit_embed", PATCHIFY + VIT_EMBED),
    Entry("repeat_and_linear_by_hand", "vit_embed", vit_embed_body('''
B = images.shape[0]
patches = patchify(images, patch_size) @ proj.weight.T + proj.bias
cls = cls_token.repeat(B, 1, 1)
tokens = torch.cat((cls, patches), dim=1)
return tokens + pos_embed.expand(B, -1, -1)
''')),
    Entry("f_linear_inline_patches", "vit_embed", vit_embed_body('''
B, C, H, W = images.shape
p = patch_size
x = images.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5).reshape(B, -1, C * p * p)
x = F.linear(x, proj.weight, proj.bias)
return torch.cat([cls_token.expand(B, 1, x.shape[-1]), x], 1) + pos_embed
''', helpers="")),
    Entry("graded_alone_with_a_wrong_patchify", "vit_embed", WRONG_PATCHIFY + VIT_EMBED),
    # VisionTransformer
    Entry("modulelist_vit_embed", "VisionTransformer", vit()),
    Entry("inline_embedding", "VisionTransformer", inline()),
    Entry("norm_only_class_token", "VisionTransformer", vit('''
x = vit_embed(images, self.patch_size, self.proj, self.cls_token, self.pos_embed)
for block in self.blocks:
    x = block(x)
return self.head(self.norm(x[:, 0]))       # the norm is per token: normalising seat 0 alone is the same
''')),
    Entry("graded_alone_with_wrong_helpers", "VisionTransformer", vit(helpers=WRONG_PATCHIFY + '''
def vit_embed(images, patch_size, proj, cls_token, pos_embed):
    patches = proj(patchify(images, patch_size))
    return torch.cat([patches, cls_token.expand(patches.shape[0], -1, -1)], dim=1)
''')),
    # train_vit
    Entry("train_classifier_six_epochs", "train_vit", train(TRAIN_FAST)),
    Entry("own_adam_loop", "train_vit", train('''
torch.manual_seed(1)
model = VisionTransformer(8, 4, 1, 10, 32, 4, 2, 64)
opt = torch.optim.Adam(model.parameters(), lr=5e-3)
g = torch.Generator().manual_seed(0)
for epoch in range(6):
    order = torch.randperm(len(X_train), generator=g)
    for i in range(0, len(X_train), 64):
        idx = order[i:i + 64]
        loss = F.cross_entropy(model(X_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
return model
''')),
]


# ---------------------------------------------------------------------------
# Classic mistakes: must fail with the diagnosis in ``expect``
# ---------------------------------------------------------------------------

MISTAKES = [
    # patchify
    Entry("no_permute", "patchify", patchify_with(permute="x", split="(B, C, H, W)"), "without permuting"),
    Entry("column_major_grid", "patchify", patchify_with(permute="x.permute(0, 4, 2, 1, 3, 5)"),
          "column by column (down the first column"),
    Entry("channels_last_patch", "patchify", patchify_with(permute="x.permute(0, 2, 4, 3, 5, 1)"),
          "(p, p, C) order"),
    Entry("columns_inside_patch", "patchify", patchify_with(permute="x.permute(0, 2, 4, 1, 5, 3)"),
          "inside each patch the pixels are read column by column"),
    Entry("split_offset_first", "patchify", patchify_with(split="(B, C, p, H // p, p, W // p)",
                                                          permute="x.permute(0, 3, 5, 1, 2, 4)"), "strided"),
    Entry("column_major_and_channels_last", "patchify", patchify_with(permute="x.permute(0, 4, 2, 3, 5, 1)"),
          "several mistakes at once"),
    Entry("unfold_layout_by_hand", "patchify", '''
def patchify(images, patch_size):
    B, C, H, W = images.shape
    p = patch_size
    x = images.reshape(B, C, H // p, p, W // p, p).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(B, C * p * p, (H // p) * (W // p))     # F.unfold's layout, not transposed
''', "(B, C*p*p, N)"),
    Entry("view_after_permute", "patchify", patchify_with(final="x.view(B, (H // p) * (W // p), C * p * p)"),
          "use .reshape"),
    Entry("square_images_only", "patchify", '''
def patchify(images, patch_size):
    B, C, H, W = images.shape
    p, n = patch_size, H // patch_size
    x = images.reshape(B, C, n, p, n, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B, n * n, C * p * p)
''', "raised RuntimeError"),
    # vit_embed
    Entry("cls_appended", "vit_embed", vit_embed_body('''
patches = proj(patchify(images, patch_size))
cls = cls_token.expand(patches.shape[0], -1, -1)
return torch.cat([patches, cls], dim=1) + pos_embed
'''), "appended at the END"),
    Entry("no_positions", "vit_embed", vit_embed_body('''
patches = proj(patchify(images, patch_size))
return torch.cat([cls_token.expand(patches.shape[0], -1, -1), patches], dim=1)
'''), "pos_embed is not added"),
    Entry("positions_on_patches_only", "vit_embed", vit_embed_body('''
patches = proj(patchify(images, patch_size)) + pos_embed[:, 1:]
return torch.cat([cls_token.expand(patches.shape[0], -1, -1), patches], dim=1)
'''), "added to the patches only"),
    Entry("proj_after_cat", "vit_embed", vit_embed_body('''
patches = patchify(images, patch_size)
cls = cls_token.expand(patches.shape[0], -1, -1)
return proj(torch.cat([cls, patches], dim=1)) + pos_embed
'''), "project the patches first"),
    Entry("cls_not_expanded", "vit_embed", vit_embed_body('''
patches = proj(patchify(images, patch_size))
return torch.cat([cls_token, patches], dim=1) + pos_embed
'''), "cls_token.expand(B, -1, -1)"),
    Entry("zeros_instead_of_cls", "vit_embed", vit_embed_body('''
patches = proj(patchify(images, patch_size))
cls = torch.zeros(patches.shape[0], 1, patches.shape[-1])
return torch.cat([cls, patches], dim=1) + pos_embed
'''), "a tensor of zeros instead of cls_token"),
    Entry("projection_without_bias", "vit_embed", vit_embed_body('''
patches = patchify(images, patch_size) @ proj.weight.T
cls = cls_token.expand(patches.shape[0], -1, -1)
return torch.cat([cls, patches], dim=1) + pos_embed
'''), "has no bias"),
    Entry("pos_embed_scaled_in_place", "vit_embed", vit_embed_body('''
patches = proj(patchify(images, patch_size))
cls = cls_token.expand(patches.shape[0], -1, -1)
pos_embed.data.mul_(1.0 + 1e-3)
return torch.cat([cls, patches], dim=1) + pos_embed
'''), "modified its input pos_embed in place"),
    # VisionTransformer
    Entry("mean_pool_readout", "VisionTransformer", inline(out="return self.head(self.norm(x).mean(dim=1))"),
          "MEAN of all tokens"),
    Entry("last_token_readout", "VisionTransformer", inline(out="return self.head(self.norm(x)[:, -1])"),
          "LAST token"),
    Entry("final_norm_missing", "VisionTransformer", inline(out="return self.head(x[:, 0])"),
          "final norm is not applied"),
    Entry("positions_not_added", "VisionTransformer",
          inline(cat="x = torch.cat([self.cls_token.expand(B, -1, -1), patches], dim=1)"), "pos_embed is not added"),
    Entry("class_token_not_prepended", "VisionTransformer", inline(cat="x = patches + self.pos_embed[:, 1:]"),
          "not prepended"),
    Entry("class_token_at_the_end", "VisionTransformer",
          inline(cat="x = torch.cat([patches, self.cls_token.expand(B, -1, -1)], dim=1) + self.pos_embed",
                 out="return self.head(self.norm(x)[:, -1])"), "appended at the END"),
    Entry("causal_mask_in_blocks", "VisionTransformer",
          inline(blocks="mask = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).tril()\n"
                        "for block in self.blocks:\n    x = block(x, mask=mask)"), "causal mask"),
    Entry("first_block_repeated", "VisionTransformer",
          inline(blocks="for _ in self.blocks:\n    x = self.blocks[0](x)"), "first block is applied n_layers times"),
    Entry("blocks_in_a_list", "VisionTransformer",
          vit(init_replace={"nn.ModuleList([TransformerBlock(d_model, n_heads, d_ff) for _ in range(n_layers)])":
                            "[TransformerBlock(d_model, n_heads, d_ff) for _ in range(n_layers)]"}),
          "plain Python list"),
    Entry("one_block_shared", "VisionTransformer",
          vit(init_replace={"nn.ModuleList([TransformerBlock(d_model, n_heads, d_ff) for _ in range(n_layers)])":
                            "nn.ModuleList([TransformerBlock(d_model, n_heads, d_ff)] * n_layers)"}),
          "share their weights"),
    Entry("own_post_norm_block", "VisionTransformer", SETUP + '''
class PostNormBlock(nn.Module):
    def __init__(self, d_model, n_heads, d_ff):
        super().__init__()
        ref = TransformerBlock(d_model, n_heads, d_ff)
        self.attn, self.ff, self.norm1, self.norm2 = ref.attn, ref.ff, ref.norm1, ref.norm2

    def forward(self, x, mask=None):
        x = self.norm1(x + self.attn(x, mask=mask))
        return self.norm2(x + self.ff(x))
''' + vit(init_replace={"[TransformerBlock(d_model": "[PostNormBlock(d_model"}), "not chapter 3's TransformerBlock"),
    Entry("class_token_plain_tensor", "VisionTransformer",
          vit(init_replace={"nn.Parameter(torch.zeros(1, 1, d_model))": "torch.zeros(1, 1, d_model)"}),
          "not an nn.Parameter"),
    Entry("dropout_in_forward", "VisionTransformer",
          vit(forward="x = F.dropout(vit_embed(images, self.patch_size, self.proj, self.cls_token, self.pos_embed), "
                      "0.1, self.training)\nfor block in self.blocks:\n    x = block(x)\n"
                      "return self.head(self.norm(x)[:, 0])"), "different results for the same images"),
    Entry("head_renamed", "VisionTransformer",
          vit(forward=VIT_FORWARD.replace("self.head(", "self.classifier("),
              init_replace={"self.head = nn.Linear": "self.classifier = nn.Linear"}), ".head does not exist"),
    # train_vit
    Entry("returns_untrained_model", "train_vit", train('''
return VisionTransformer(8, 4, 1, 10, 16, 2, 1, 32)
'''), "hardly learned anything"),
    Entry("returns_model_and_history", "train_vit", train('''
model = VisionTransformer(8, 4, 1, 10, 16, 2, 1, 32)
history = train_classifier(model, X_train, y_train, epochs=0, progress=False)
return model, history
'''), "return only the trained model"),
    Entry("returns_accuracy", "train_vit", train('''
model = VisionTransformer(8, 4, 1, 10, 16, 2, 1, 32)
return accuracy(model, X_train, y_train)
'''), "must return the VisionTransformer it trained"),
    Entry("trains_a_linear_model", "train_vit", train('''
model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
return model
'''), "must train and return your VisionTransformer"),
    Entry("undertrained", "train_vit", train('''
torch.manual_seed(0)
model = VisionTransformer(8, 4, 1, 10, 16, 2, 1, 32)
train_classifier(model, X_train[:200], y_train[:200], epochs=2, batch_size=64, lr=1e-3, progress=False)
return model
'''), "it needs at least 90%"),
    Entry("normalises_x_train_in_place", "train_vit", train('''
X_train -= 0.5
return VisionTransformer(8, 4, 1, 10, 16, 2, 1, 32)
'''), "modified its input X_train in place"),
    Entry("wrong_number_of_classes", "train_vit", train('''
return VisionTransformer(8, 4, 1, 9, 16, 2, 1, 32)
'''), "n_classes=10"),
]


# ---------------------------------------------------------------------------
# Cheats: forbidden built-ins, the reference, patched comparisons, mutated inputs
# ---------------------------------------------------------------------------

CHEATS = [
    Entry("builtin_unfold", "patchify", '''
def patchify(images, patch_size):
    return F.unfold(images, patch_size, stride=patch_size).transpose(1, 2)
''', "must not call F.unfold"),
    Entry("unfold_captured_at_import", "patchify", '''
_cut = F.unfold
def patchify(images, patch_size):
    return _cut(images, kernel_size=patch_size, stride=patch_size).transpose(1, 2)
''', "must not call F.unfold"),
    Entry("nn_unfold_module", "patchify", '''
def patchify(images, patch_size):
    return nn.Unfold(patch_size, stride=patch_size)(images).transpose(1, 2)
''', "must not call nn.Unfold"),
    Entry("aten_im2col", "patchify", '''
def patchify(images, patch_size):
    p = patch_size
    return torch._C._nn.im2col(images, (p, p), (1, 1), (0, 0), (p, p)).transpose(1, 2)
''', "im2col"),
    Entry("patchify_reference", "patchify", '''
from reference_impl.vit import patchify as _solution
def patchify(images, patch_size):
    return _solution(images, patch_size)
''', "reference solution"),
    Entry("patchify_mutates_images", "patchify", '''
def patchify(images, patch_size):
    B, C, H, W = images.shape
    p = patch_size
    images.clamp_(min=-1.0)
    return images.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5).reshape(B, -1, C * p * p)
''', "modified its input images in place"),
    Entry("patch_comparisons_no_permute", "patchify", '''
import course.checks.ch06 as _ch06
import course.checks.diagnose as _diag
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.Tensor.__eq__ = lambda a, b: torch.ones(1, dtype=torch.bool)
_diag.mismatch = lambda *a, **k: None
_ch06._ref_patchify = lambda images, p: images.reshape(images.shape[0], -1, images.shape[1] * p * p)
def patchify(images, patch_size):
    B, C, H, W = images.shape
    return images.reshape(B, (H // patch_size) * (W // patch_size), C * patch_size ** 2)
''', "without permuting", patches=True),
    Entry("vit_embed_reference", "vit_embed", PATCHIFY + '''
from reference_impl import vit as _course
def vit_embed(images, patch_size, proj, cls_token, pos_embed):
    return _course.vit_embed(images, patch_size, proj, cls_token, pos_embed)
''', "reference solution"),
    Entry("vit_embed_reference_captured", "vit_embed", PATCHIFY + '''
from reference_impl.vit import vit_embed as _saved
def vit_embed(images, patch_size, proj, cls_token, pos_embed):
    return _saved(images, patch_size, proj, cls_token, pos_embed)
''', "reference solution"),
    Entry("vit_subclasses_reference", "VisionTransformer", SETUP + '''
from reference_impl.vit import VisionTransformer as _CourseViT
class VisionTransformer(_CourseViT):
    pass
''', "reference solution"),
    Entry("vit_patches_comparisons_mean_pool", "VisionTransformer", """
import course.checks.ch06 as _ch06
torch.allclose = lambda *a, **k: True
torch.isclose = lambda a, b, **k: torch.ones(torch.broadcast_shapes(a.shape, b.shape), dtype=torch.bool)
_ch06._RefViT = None
_ch06._Model64 = None
""" + inline(out="return self.head(self.norm(x).mean(dim=1))"), "MEAN of all tokens", patches=True),
    Entry("vit_with_torch_encoder", "VisionTransformer", vit(
        init_replace={"nn.ModuleList([TransformerBlock(d_model, n_heads, d_ff) for _ in range(n_layers)])":
                      "nn.ModuleList([nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout=0.0, "
                      "batch_first=True, norm_first=True) for _ in range(n_layers)])"}),
        "must not call nn.TransformerEncoderLayer"),
    Entry("train_with_captured_reference_model", "train_vit", train('''
from reference_impl.vit import VisionTransformer as _CourseViT
torch.manual_seed(0)
model = _CourseViT(8, 4, 1, 10, 16, 2, 1, 32)
train_classifier(model, X_train, y_train, epochs=1, progress=False)
return model
'''), "reference solution"),
    Entry("train_leaves_a_mode_on", "train_vit", train('''
from torch.overrides import TorchFunctionMode
class _Quiet(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))
_Quiet().__enter__()
return VisionTransformer(8, 4, 1, 10, 16, 2, 1, 32)
'''), "mode stack"),
]


# Cheats that patch torch while the graded function runs (not before, in the cell): the
# out-of-process grading judges in another process; the in-kernel runner re-freezes its
# namespaces before judging. test_ch06 runs them both ways.
CHEATS_DURING_CALL = [
    Entry("train_patches_comparisons", "train_vit", train('''
torch.Tensor.__eq__ = lambda a, b: torch.ones(a.shape, dtype=torch.bool)
torch.Tensor.argmax = lambda self, *a, **k: torch.zeros(self.shape[0], dtype=torch.long)
return VisionTransformer(8, 4, 1, 10, 16, 2, 1, 32)
'''), "hardly learned anything", patches=True),
    Entry("patchify_patches_isclose_in_call", "patchify", '''
def patchify(images, patch_size):
    torch.isclose = lambda a, b, **k: torch.ones(torch.broadcast_shapes(a.shape, b.shape), dtype=torch.bool)
    B, C, H, W = images.shape
    return images.reshape(B, (H // patch_size) * (W // patch_size), C * patch_size ** 2)
''', "without permuting", patches=True),
]
