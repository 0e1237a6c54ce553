"""Chapter 6 checks (06_vit): patchify, vit_embed, VisionTransformer and the training cell train_vit.

Expected results come from ``reference_impl.vit`` run in float64 (with known weights loaded)
and rounded to float32. A wrong result is compared with a catalogue of classic mistakes
computed on the same inputs: patches reshaped without permuting, patches in column-major
order or flattened in (p, p, C) order, the class token appended instead of prepended, the
positions missing, the projection applied after the concatenation, the logits read from
the mean of all tokens or from the last one, the final norm missing, ...

Each item is graded on its own: while ``vit_embed`` is checked, a ``patchify`` it looks up
in the learner's namespace is the course's for the duration of the call, and while
``VisionTransformer`` is checked, so are ``patchify`` and ``vit_embed``. A mistake in
patchify therefore costs patchify's points only. ``VisionTransformer`` must use chapter 3's
``TransformerBlock`` (the notebook's setup cell imports it from reference_impl).

``train_vit(X_train, y_train)`` is the graded training cell: the check calls it on the
training part of a split of scikit-learn's 8x8 digits (visible: ``load_digits_split()``;
hidden: another split), timing it in CPU seconds (one torch thread; the guard's
interception is lifted while it trains, see ``util_training``), then evaluates the model it
returns, under the guard, on the held-out images. The held-out labels never leave the
judge (``Case.expected``): the learner's code sees only images. It passes with at least 90%
held-out accuracy within a CPU-minute.
"""

from __future__ import annotations

import itertools
import types
from typing import Any

import torch
import torch.nn as nn

from reference_impl import blocks as _blocks
from reference_impl import vit as _ref

from .core import Case, Check, CheckFailed, register, sanitize
from .diagnose import close, describe, first_match, mismatch, modified_inputs, shape_str
from .util_modules import load_weights, random_norm, repeatable, uniform_linear
from .util_training import guard_lifted, process_time

ASSIGNMENT = "06_vit"

_ref_patchify = _ref.patchify
_ref_vit_embed = _ref.vit_embed
_RefViT = _ref.VisionTransformer
_RefBlock = _blocks.TransformerBlock

_UNFOLD = ("torch.nn.functional.unfold", "torch.nn.Unfold", "torch.ops.aten.im2col")
_ENCODER_BUILTINS = (
    "torch.nn.TransformerEncoderLayer",
    "torch.nn.TransformerEncoder",
    "torch.nn.Transformer",
    "torch.nn.MultiheadAttention",
    "torch._transformer_encoder_layer_fwd",
    "torch.ops.aten._transformer_encoder_layer_fwd",
)


def _randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float32)


def _image_words(shape, p) -> str:
    B, C, H, W = shape
    nh, nw = H // p, W // p
    return (f"images {shape_str(shape)}, patch_size={p} (a {nh}x{nw} grid of {nh * nw} patch"
            f"{'es' if nh * nw != 1 else ''} of {C}*{p}*{p}={C * p * p} numbers)")


# ---------------------------------------------------------------------------
# Swapping the course's helpers into the learner's namespace (grading one item at a time)
# ---------------------------------------------------------------------------


def _learner_globals(obj: Any) -> dict | None:
    """The global namespace the learner's function or class looks names up in (the notebook's)."""
    if isinstance(obj, types.FunctionType):
        return obj.__globals__
    if isinstance(obj, type):
        for klass in obj.__mro__:
            if klass.__module__.split(".")[0] in ("torch", "builtins"):
                continue
            for member in vars(klass).values():
                if isinstance(member, types.FunctionType):
                    return member.__globals__
    return None


class _Swapped:
    """For a block: ``namespace[name]`` is ``replacement`` where the learner defined ``name``.

    Only names the learner's namespace already holds as plain functions are replaced, and
    the previous values are put back afterwards.
    """

    def __init__(self, obj: Any, replacements: dict):
        self.namespace = _learner_globals(obj)
        self.replacements = replacements
        self.saved: list = []

    def __enter__(self):
        ns = self.namespace
        if ns is None:
            return self
        for name, value in self.replacements.items():
            old = ns.get(name)
            if isinstance(old, types.FunctionType) and old is not value:
                self.saved.append((name, old))
                ns[name] = value
        return self

    def __exit__(self, *exc):
        for name, old in reversed(self.saved):
            self.namespace[name] = old
        return False


# ---------------------------------------------------------------------------
# patchify
# ---------------------------------------------------------------------------

_INNER_TEXT = {
    ("c", "i", "j"): None,
    ("i", "j", "c"): "each patch is flattened in (p, p, C) order (channels last, as in an H x W x C photo); the "
                     "spec flattens it in (C, p, p) order: all p*p pixels of channel 0, then all of channel 1, and "
                     "so on",
    ("c", "j", "i"): "inside each patch the pixels are read column by column; read them row by row: "
                     "(C, row inside the patch, column inside the patch)",
    ("j", "i", "c"): "each patch is flattened in (column, row, C) order; the spec's order is (C, row, column)",
    ("i", "c", "j"): "each patch is flattened in (row, C, column) order; the spec's order is (C, row, column)",
    ("j", "c", "i"): "each patch is flattened in (column, C, row) order; the spec's order is (C, row, column)",
}
_GRID_TEXT = {
    "rows": None,
    "columns": "the patches come column by column (down the first column of the grid first); the spec's order "
               "is row-major, like reading a page: left to right along the top row of patches, then the next "
               "row (patch n = row * (W // p) + column), so the grid-row axis comes before the grid-column axis",
}
_STRIDED_TEXT = ("your 'patches' are not contiguous p x p squares but strided samples of the whole image (every "
                 "(H // p)-th pixel): split each spatial axis as (number of patches, p), patch index first and "
                 "offset inside the patch second, i.e. reshape(B, C, H // p, p, W // p, p), not (B, C, p, H // p, "
                 "p, W // p)")
_NO_PERMUTE_TEXT = ("the patches are reshaped without permuting: a plain reshape/view of (B, C, H, W) to "
                    "(B, N, C*p*p) cuts the memory into runs of C*p*p consecutive numbers (pieces of pixel rows, "
                    "across channels), not p x p squares. Split the axes, move the two patch-grid axes in front "
                    "of (C, p, p), then flatten: images.reshape(B, C, H // p, p, W // p, p)"
                    ".permute(0, 2, 4, 1, 3, 5).reshape(B, N, C * p * p)")


def _patch_variant(images: torch.Tensor, p: int, grid="rows", inner=("c", "i", "j"), split="block"):
    B, C, H, W = images.shape
    nh, nw = H // p, W // p
    if split == "block":
        x = images.reshape(B, C, nh, p, nw, p)
        axes = {"c": 1, "r": 2, "i": 3, "s": 4, "j": 5}
    else:
        x = images.reshape(B, C, p, nh, p, nw)
        axes = {"c": 1, "i": 2, "r": 3, "j": 4, "s": 5}
    outer = ("r", "s") if grid == "rows" else ("s", "r")
    perm = [0] + [axes[a] for a in outer] + [axes[a] for a in inner]
    return x.permute(*perm).reshape(B, nh * nw, C * p * p)


def _patch_catalogue(images: torch.Tensor, p: int, want: torch.Tensor):
    B, C, H, W = images.shape
    yield images.reshape(B, (H // p) * (W // p), C * p * p), _NO_PERMUTE_TEXT
    combos = []
    for split, grid, inner in itertools.product(("block", "strided"), _GRID_TEXT, _INNER_TEXT):
        parts = [t for t in (_STRIDED_TEXT if split == "strided" else None, _GRID_TEXT[grid], _INNER_TEXT[inner])
                 if t]
        if parts:
            combos.append((len(parts), split, grid, inner, parts))
    combos.sort(key=lambda c: c[0])
    for _, split, grid, inner, parts in combos:
        candidate = _patch_variant(images, p, grid, inner, split)
        if close(candidate, want):
            continue
        if len(parts) == 1:
            yield candidate, parts[0]
        else:
            yield candidate, "several mistakes at once: " + "; ".join(f"({i}) {t}" for i, t in enumerate(parts, 1))


class PatchifyCheck(Check):
    name = "patchify"
    assignment = ASSIGNMENT
    kind = "function"
    forbidden = _UNFOLD
    forbidden_hint = ("Cut the patches with reshape and permute: images.reshape(B, C, H // p, p, W // p, p), move the "
                      "two grid axes to the front, then flatten each patch.")
    reference = "reference_impl.vit.patchify"
    timeout_s = 20.0

    # (image shape (B, C, H, W), patch_size)
    VISIBLE = (((2, 2, 8, 12), 4), ((1, 3, 6, 9), 3), ((2, 1, 8, 8), 2))
    HIDDEN = (((3, 2, 6, 10), 2), ((1, 1, 4, 4), 4), ((2, 3, 5, 5), 1), ((2, 4, 9, 6), 3), ((1, 3, 12, 8), 4))

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        g = torch.Generator().manual_seed(seed)
        cases = []
        for shape, p in (self.HIDDEN if hidden else self.VISIBLE):
            images = _randn(g, *shape)
            label = _image_words(shape, p)
            cases.append(Case(label, {"images": images, "patch_size": p}, _ref_patchify(images, p).clone()))
        return cases

    def invoke(self, obj: Any, inputs: dict) -> Any:
        try:
            return sanitize(obj(inputs["images"], inputs["patch_size"]))
        except RuntimeError as exc:
            if "view size is not compatible" in str(exc):
                raise CheckFailed(
                    f"your patchify raised RuntimeError: {str(exc).rstrip('.')}. After a permute the tensor is no "
                    "longer contiguous in memory, so .view() cannot flatten it: use .reshape(...) (or "
                    ".contiguous().view(...))."
                ) from exc
            raise

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        changed = modified_inputs(case.inputs, inputs_after, ("images",), "your patchify")
        if changed:
            return changed
        want = case.expected
        images, p = case.inputs["images"], case.inputs["patch_size"]
        B, N, K = want.shape
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (B, K, N) and K != N \
                and close(got.transpose(1, 2), want):
            return (f"your result has shape {shape_str(got.shape)} = (B, C*p*p, N): the patches run along the last "
                    f"axis, as F.unfold returns them. The spec wants (B, N, C*p*p) = {shape_str(want.shape)}: one "
                    "row per patch (transpose the last two axes).")
        wrong = mismatch("your result", want, got)
        if wrong is None:
            return None
        if isinstance(got, torch.Tensor) and tuple(got.shape) != tuple(want.shape):
            H, W = images.shape[-2:]
            return (f"{wrong} Expected (B, N, C*p*p) with N = (H // p) * (W // p) = {H // p} * {W // p} patches "
                    f"and C*p*p = {K} numbers per patch.")
        diag = first_match(got, _patch_catalogue(images.double(), p, want.double()))
        return f"{wrong} It matches a known mistake: {diag}." if diag else wrong


# ---------------------------------------------------------------------------
# vit_embed
# ---------------------------------------------------------------------------


def _embed_variant(images, p, W, b, cls, pos, *, cls_at="front", pos_mode="all", proj_mode="ok",
                   patches="ok", cls_mode="token"):
    """The ViT input sequence with classic mistakes, float64. Returns None when the mistake cannot run."""
    images, W, b, cls, pos = images.double(), W.double(), b.double(), cls.double(), pos.double()
    B = images.shape[0]
    raw = _ref_patchify(images, p) if patches == "ok" else _patch_variant_no_permute(images, p)
    D = W.shape[0]
    token = cls if cls_mode == "token" else torch.zeros_like(cls)
    token = token.expand(B, -1, -1)
    if proj_mode in ("after_cat", "none"):
        if raw.shape[-1] != D:
            return None
        seq = torch.cat([token, raw], dim=1) if cls_at == "front" else torch.cat([raw, token], dim=1)
        if proj_mode == "after_cat":
            seq = seq @ W.T + b
        return seq + pos
    proj = raw @ W.T + (b if proj_mode == "ok" else 0.0)
    N = proj.shape[1]
    if pos_mode == "patches_only":
        return torch.cat([token, proj + pos[:, 1:]], dim=1)
    if pos_mode == "first_n":
        return torch.cat([token, proj + pos[:, :N]], dim=1)
    seq = torch.cat([token, proj], dim=1) if cls_at == "front" else torch.cat([proj, token], dim=1)
    return seq if pos_mode == "none" else seq + pos


def _patch_variant_no_permute(images, p):
    B, C, H, W = images.shape
    return images.reshape(B, (H // p) * (W // p), C * p * p)


_EMBED_MISTAKES = (
    ({"cls_at": "end"},
     "the class token is appended at the END (torch.cat([patches, cls])); it takes seat 0: "
     "torch.cat([cls, patches], dim=1), then + pos_embed"),
    ({"pos_mode": "none"},
     "pos_embed is not added: the result is torch.cat([cls, proj(patches)], dim=1) + pos_embed"),
    ({"pos_mode": "patches_only"},
     "pos_embed is added to the patches only (pos_embed[:, 1:]); it is added to the whole sequence, the class "
     "token included: torch.cat([cls, proj(patches)], dim=1) + pos_embed"),
    ({"pos_mode": "first_n"},
     "the first N rows of pos_embed are added to the patches and none to the class token; add all N+1 rows to "
     "the whole sequence after the concatenation: torch.cat([cls, proj(patches)], dim=1) + pos_embed"),
    ({"proj_mode": "after_cat"},
     "proj is applied after the concatenation (to the class token too); project the patches first, then put "
     "the class token in front: torch.cat([cls, proj(patchify(images, patch_size))], dim=1)"),
    ({"proj_mode": "none"},
     "the patches are not projected: apply proj to patchify(images, patch_size) before the concatenation"),
    ({"proj_mode": "no_bias"},
     "the projection has no bias (patches @ proj.weight.T); call the layer itself: proj(patches)"),
    ({"cls_mode": "zeros"},
     "the class token is a tensor of zeros instead of cls_token: use the cls_token argument, expanded to "
     "(B, 1, D): cls_token.expand(B, -1, -1)"),
    ({"patches": "no_permute"},
     "the patches are cut with a plain reshape, without permuting (see patchify): call patchify(images, "
     "patch_size)"),
    ({"cls_at": "end", "pos_mode": "none"},
     "two mistakes: the class token is appended at the end instead of prepended, and pos_embed is not added"),
)


class VitEmbedCheck(Check):
    name = "vit_embed"
    assignment = ASSIGNMENT
    kind = "function"
    forbidden = ()
    reference = "reference_impl.vit.vit_embed"
    timeout_s = 20.0

    # (image shape, patch_size, d_model, pass cls_token/pos_embed as nn.Parameter)
    VISIBLE = (((2, 1, 8, 8), 4, 6, True), ((1, 3, 6, 6), 3, 8, False), ((3, 2, 4, 6), 2, 5, True))
    HIDDEN = (((3, 2, 6, 8), 2, 5, False), ((1, 1, 4, 4), 4, 16, True), ((2, 1, 8, 8), 2, 4, True),
              ((2, 3, 4, 6), 2, 7, False))

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        g = torch.Generator().manual_seed(seed)
        cases = []
        for shape, p, D, as_params in (self.HIDDEN if hidden else self.VISIBLE):
            B, C, H, W = shape
            N, K = (H // p) * (W // p), C * p * p
            images = _randn(g, *shape)
            lin = uniform_linear(g, "proj", K, D)
            cls_token, pos_embed = _randn(g, 1, 1, D), 0.5 * _randn(g, 1, N + 1, D)
            inputs = {"images": images, "patch_size": p, "proj_weight": lin["proj.weight"],
                      "proj_bias": lin["proj.bias"], "cls_token": cls_token, "pos_embed": pos_embed,
                      "as_parameters": as_params}
            proj = _linear64(lin["proj.weight"], lin["proj.bias"])
            with torch.no_grad():
                want = _ref_vit_embed(images.double(), p, proj, cls_token.double(), pos_embed.double()).float()
            label = (f"{_image_words(shape, p)}, proj = nn.Linear({K}, {D}), cls_token (1, 1, {D}), "
                     f"pos_embed (1, {N + 1}, {D})" + (" (nn.Parameters)" if as_params else ""))
            cases.append(Case(label, inputs, want))
        return cases

    def invoke(self, obj: Any, inputs: dict) -> Any:
        W, b = inputs["proj_weight"], inputs["proj_bias"]
        with torch.random.fork_rng(devices=[]):  # nn.Linear's init draws from the global RNG
            proj = nn.Linear(W.shape[1], W.shape[0])
        with torch.no_grad():
            proj.weight.copy_(W)
            proj.bias.copy_(b)
        cls, pos = inputs["cls_token"], inputs["pos_embed"]
        if inputs["as_parameters"]:
            cls, pos = nn.Parameter(cls), nn.Parameter(pos)  # share storage with the inputs (mutation shows)
        try:
            with _Swapped(obj, {"patchify": _ref_patchify}):
                out = obj(inputs["images"], inputs["patch_size"], proj, cls, pos)
        except RuntimeError as exc:
            text = str(exc)
            if "Sizes of tensors must match" in text or "must match the size" in text:
                raise CheckFailed(
                    f"your vit_embed raised RuntimeError: {text.rstrip('.')}. The pieces do not fit together: "
                    "project the patches first (proj(patchify(images, patch_size)) has shape (B, N, D)), expand "
                    "cls_token from (1, 1, D) to (B, 1, D) (cls_token.expand(B, -1, -1)), concatenate along dim=1, "
                    "then add pos_embed (1, N+1, D)."
                ) from exc
            raise
        return sanitize(out)

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        changed = modified_inputs(case.inputs, inputs_after, ("images", "cls_token", "pos_embed"), "your vit_embed")
        if changed:
            return changed
        want = case.expected
        wrong = mismatch("your result", want, got)
        if wrong is None:
            return None
        inp = case.inputs
        args = (inp["images"], inp["patch_size"], inp["proj_weight"], inp["proj_bias"], inp["cls_token"],
                inp["pos_embed"])

        def catalogue():
            for flags, text in _EMBED_MISTAKES:
                candidate = _embed_variant(*args, **flags)
                if candidate is not None and not close(candidate, want):
                    yield candidate, text

        diag = first_match(got, catalogue())
        if diag:
            return f"{wrong} It matches a known mistake: {diag}."
        if isinstance(got, torch.Tensor) and tuple(got.shape) != tuple(want.shape):
            B, T, D = want.shape
            return (f"{wrong} The sequence is the class token plus N = {T - 1} patch tokens: "
                    f"(B, N+1, D) = ({B}, {T}, {D}).")
        return wrong


def _linear64(W: torch.Tensor, b: torch.Tensor) -> nn.Linear:
    with torch.random.fork_rng(devices=[]):
        lin = nn.Linear(W.shape[1], W.shape[0]).double()
    with torch.no_grad():
        lin.weight.copy_(W.double())
        lin.bias.copy_(b.double())
    return lin


# ---------------------------------------------------------------------------
# VisionTransformer
# ---------------------------------------------------------------------------


def _block_weights(g: torch.Generator, prefix: str, D: int, F_: int) -> dict:
    W = {}
    for name in ("w_q", "w_k", "w_v", "w_o"):
        W.update(uniform_linear(g, f"{prefix}attn.{name}", D, D))
    W.update(uniform_linear(g, f"{prefix}ff.linear1", D, F_))
    W.update(uniform_linear(g, f"{prefix}ff.linear2", F_, D))
    W.update(random_norm(g, f"{prefix}norm1", D))
    W.update(random_norm(g, f"{prefix}norm2", D))
    return W


def _vit_weights(g: torch.Generator, C: int, p: int, N: int, D: int, F_: int, L: int, n_classes: int) -> dict:
    W = uniform_linear(g, "proj", C * p * p, D)
    W["cls_token"] = _randn(g, 1, 1, D)
    W["pos_embed"] = 0.5 * _randn(g, 1, N + 1, D)
    for i in range(L):
        W.update(_block_weights(g, f"blocks.{i}.", D, F_))
    W.update(random_norm(g, "norm", D))
    W.update(uniform_linear(g, "head", D, n_classes))
    return W


def _sub(weights: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}


class _Model64:
    """The parts of a ViT with the case's weights, float64, to build mistaken forwards from."""

    def __init__(self, inp: dict):
        W = {k: v.double() for k, v in inp["weights"].items()}
        D, H, F_, L = inp["d_model"], inp["n_heads"], inp["d_ff"], inp["n_layers"]
        self.p = inp["patch_size"]
        self.W = W
        self.blocks = []
        for i in range(L):
            with torch.random.fork_rng(devices=[]):
                block = _RefBlock(D, H, F_).double()
            block.load_state_dict(_sub(W, f"blocks.{i}."))
            self.blocks.append(block)

    def linear(self, name, x):
        return x @ self.W[f"{name}.weight"].T + self.W[f"{name}.bias"]

    def norm(self, x):
        return nn.functional.layer_norm(x, x.shape[-1:], self.W["norm.weight"], self.W["norm.bias"], 1e-5)

    def forward(self, images, *, cls="front", pos=True, blocks="all", mask=False, final_norm="after",
                readout="first"):
        W = self.W
        x = images.double()
        B = x.shape[0]
        patches = self.linear("proj", _ref_patchify(x, self.p))  # (B, N, D)
        token = W["cls_token"].expand(B, -1, -1)
        P = W["pos_embed"]
        if cls == "front":
            seq = torch.cat([token, patches], dim=1) + (P if pos else 0.0)
        elif cls == "end":
            seq = torch.cat([patches, token], dim=1) + (P if pos else 0.0)
        elif cls == "none_pos_rest":
            seq = patches + (P[:, 1:] if pos else 0.0)
        else:  # "none_pos_first"
            seq = patches + (P[:, :patches.shape[1]] if pos else 0.0)
        T = seq.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool).tril() if mask else None
        order = {"all": list(range(len(self.blocks))), "none": [], "reversed": list(range(len(self.blocks)))[::-1],
                 "first_repeated": [0] * len(self.blocks)}[blocks]
        if final_norm == "before":
            seq = self.norm(seq)
        with torch.no_grad():
            for i in order:
                seq = self.blocks[i](seq, mask=causal)
        if final_norm == "after":
            seq = self.norm(seq)
        pooled = {"first": lambda s: s[:, 0], "last": lambda s: s[:, -1], "mean": lambda s: s.mean(dim=1),
                  "mean_patches": lambda s: s[:, 1:].mean(dim=1)}[readout](seq)
        return self.linear("head", pooled)


_VIT_MISTAKES = (
    ({"readout": "mean"},
     "the logits are read from the MEAN of all tokens (mean-pooling); the spec reads the class token alone, "
     "seat 0 after the final norm: self.head(self.norm(x)[:, 0])"),
    ({"readout": "mean_patches"},
     "the logits are read from the mean of the patch tokens; the spec reads the class token alone: "
     "self.head(self.norm(x)[:, 0])"),
    ({"readout": "last"},
     "the logits are read from the LAST token (x[:, -1]); the class token sits at position 0: "
     "self.head(self.norm(x)[:, 0])"),
    ({"final_norm": "none"},
     "the final norm is not applied: logits = self.head(self.norm(x)[:, 0]) after the last block"),
    ({"final_norm": "before"},
     "self.norm is applied before the blocks; it belongs after the last block: self.head(self.norm(x)[:, 0])"),
    ({"pos": False},
     "pos_embed is not added: the sequence is torch.cat([cls, proj(patches)], dim=1) + self.pos_embed"),
    ({"cls": "none_pos_rest"},
     "the class token is not prepended: logits are read from the first PATCH. Put self.cls_token (expanded to "
     "(B, 1, D)) in front of the projected patches before adding pos_embed"),
    ({"cls": "none_pos_first"},
     "the class token is not prepended: logits are read from the first PATCH. Put self.cls_token (expanded to "
     "(B, 1, D)) in front of the projected patches before adding pos_embed"),
    ({"cls": "none_pos_rest", "readout": "mean"},
     "the class token is not prepended (and the logits come from the mean of the patches); put self.cls_token "
     "in front of the patches and read the logits from it, seat 0"),
    ({"cls": "end", "readout": "last"},
     "the class token is appended at the END (torch.cat([patches, cls])); it takes seat 0: "
     "torch.cat([cls, patches], dim=1), and the logits are read from x[:, 0]"),
    ({"cls": "end"},
     "the class token is appended at the END, and the logits are read from seat 0, which then holds a patch; "
     "prepend it: torch.cat([cls, patches], dim=1)"),
    ({"blocks": "none"},
     "the Transformer blocks are not applied: x = block(x) for every block in self.blocks"),
    ({"blocks": "first_repeated"},
     "the first block is applied n_layers times; apply every block of self.blocks once, in order"),
    ({"blocks": "reversed"},
     "the blocks run in reverse order; block 0 comes first"),
    ({"mask": True},
     "the blocks get a causal mask; a ViT uses no mask: every patch (and the class token) may read every other"),
)


_VIT_SPEC = ("The spec asks for self.proj = nn.Linear(in_channels * patch_size**2, d_model), self.cls_token "
             "(1, 1, d_model) and self.pos_embed (1, N + 1, d_model) as nn.Parameters, self.blocks = "
             "nn.ModuleList of n_layers chapter 3 TransformerBlock(d_model, n_heads, d_ff), self.norm = "
             "nn.LayerNorm(d_model) and self.head = nn.Linear(d_model, n_classes); the checks copy known weights "
             "into them.")


class VisionTransformerCheck(Check):
    name = "VisionTransformer"
    assignment = ASSIGNMENT
    kind = "class"
    forbidden = _ENCODER_BUILTINS
    forbidden_hint = ("Stack chapter 3's TransformerBlock (imported in the setup cell) in an nn.ModuleList and run "
                      "them in a loop.")
    reference = "reference_impl.vit.VisionTransformer"
    timeout_s = 30.0

    # (label, B, image_size, patch_size, in_channels, n_classes, d_model, n_heads, n_layers, d_ff)
    VISIBLE = (
        ("2 grey 8x8 images, patch_size=4 (4 patches), d_model=8, 2 heads, 2 layers, d_ff=16, 10 classes",
         2, 8, 4, 1, 10, 8, 2, 2, 16),
        ("batch 1: a 3-channel 6x6 image, patch_size=2 (9 patches), d_model=12, 3 heads, 1 layer, d_ff=8, 4 classes",
         1, 6, 2, 3, 4, 12, 3, 1, 8),
    )
    HIDDEN = (
        ("3 grey 8x8 images, patch_size=2 (16 patches), d_model=8, 4 heads, 3 layers, d_ff=12, 10 classes",
         3, 8, 2, 1, 10, 8, 4, 3, 12),
        ("2 two-channel 4x4 images, patch_size=4 (a single patch), d_model=6, 2 heads, 1 layer, d_ff=6, 3 classes",
         2, 4, 4, 2, 3, 6, 2, 1, 6),
        ("2 RGB 9x9 images, patch_size=3 (9 patches), d_model=10, 5 heads, 2 layers, d_ff=20, 7 classes",
         2, 9, 3, 3, 7, 10, 5, 2, 20),
    )

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        g = torch.Generator().manual_seed(seed)
        cases = []
        for label, B, S, p, C, K, D, H, L, F_ in (self.HIDDEN if hidden else self.VISIBLE):
            N = (S // p) ** 2
            W = _vit_weights(g, C, p, N, D, F_, L, K)
            images = _randn(g, B, C, S, S)
            with torch.random.fork_rng(devices=[]):
                ref = _RefViT(S, p, C, K, D, H, L, F_)
            ref.load_state_dict(W)
            with torch.no_grad():
                want = ref.double()(images.double()).float()
            inputs = {"image_size": S, "patch_size": p, "in_channels": C, "n_classes": K, "d_model": D,
                      "n_heads": H, "n_layers": L, "d_ff": F_, "weights": W, "images": images}
            cases.append(Case(label, inputs, want))
        return cases

    def invoke(self, obj: Any, inputs: dict) -> Any:
        args = tuple(inputs[k] for k in ("image_size", "patch_size", "in_channels", "n_classes", "d_model",
                                           "n_heads", "n_layers", "d_ff"))
        call = f"VisionTransformer{args}"
        with torch.random.fork_rng(devices=[]):  # building layers draws from the global RNG: leave it alone
            module = obj(*args)
        if not isinstance(module, nn.Module):
            raise CheckFailed(f"{call} is not an nn.Module: declare it as class VisionTransformer(nn.Module) and "
                              "call super().__init__() first in __init__.")
        _check_structure(module, call, inputs)
        load_weights(module, inputs["weights"], call, _VIT_SPEC)
        with _Swapped(obj, {"patchify": _ref_patchify, "vit_embed": _ref_vit_embed}):
            out, same = repeatable(lambda: module(inputs["images"]))
        if same is False:
            raise CheckFailed(f"{call} gives different results for the same images (dropout, or something random in "
                              "forward?). The spec's model is deterministic: no dropout.")
        return sanitize(out)

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        changed = modified_inputs(case.inputs, inputs_after, ("images",), "forward")
        if changed:
            return changed
        want = case.expected
        wrong = mismatch("the output of forward", want, got)
        if wrong is None:
            return None
        inp = case.inputs
        B, K = want.shape
        if isinstance(got, torch.Tensor) and got.dim() == 3 and tuple(got.shape[::2]) == (B, K):
            return (f"{wrong} forward returns logits for every token; a ViT returns one row of logits per image, "
                    "read from the class token: self.head(self.norm(x)[:, 0]) -> (B, n_classes).")
        model = _Model64(inp)
        images = inp["images"]

        def catalogue():
            for flags, text in _VIT_MISTAKES:
                candidate = model.forward(images, **flags)
                if not close(candidate, want):
                    yield candidate, text

        diag = first_match(got, catalogue())
        return f"{wrong} It matches a known mistake: {diag}." if diag else wrong


def _check_structure(module: nn.Module, call: str, inputs: dict) -> None:
    L = inputs["n_layers"]
    blocks = getattr(module, "blocks", None)
    if blocks is None:
        raise CheckFailed(f"{call} has no attribute blocks. {_VIT_SPEC}")
    if isinstance(blocks, (list, tuple)):
        raise CheckFailed(f"{call}.blocks is a plain Python {type(blocks).__name__}: PyTorch does not see the modules "
                          "inside it (an optimizer would never train them). Wrap it: nn.ModuleList([...]).")
    if not isinstance(blocks, (nn.ModuleList, nn.Sequential)) or len(blocks) != L:
        what = f"holds {len(blocks)} blocks" if isinstance(blocks, (nn.ModuleList, nn.Sequential)) else \
            f"is {describe(blocks)}"
        raise CheckFailed(f"{call}.blocks {what}; expected an nn.ModuleList of n_layers = {L} TransformerBlocks.")
    for i, block in enumerate(blocks):
        if not isinstance(block, _RefBlock):
            raise CheckFailed(f"{call}.blocks[{i}] is a {type(block).__name__}, not chapter 3's TransformerBlock. Use "
                              "the TransformerBlock the setup cell imports from reference_impl.blocks: "
                              "TransformerBlock(d_model, n_heads, d_ff).")
    owner: dict[int, int] = {}
    for i, block in enumerate(blocks):
        for prm in block.parameters():
            j = owner.setdefault(id(prm), i)
            if j != i:
                raise CheckFailed(f"{call}: blocks[{j}] and blocks[{i}] share their weights (the same block object is "
                                  "used twice). Every layer needs its own block: nn.ModuleList([TransformerBlock(...) "
                                  "for _ in range(n_layers)]).")
    registered = dict(module.named_parameters())
    for name in ("cls_token", "pos_embed"):
        value = getattr(module, name, None)
        if isinstance(value, torch.Tensor) and name not in registered:
            raise CheckFailed(f"{call}.{name} is a plain tensor, not an nn.Parameter: it is not in "
                              "model.parameters(), so training would never change it. Wrap it: "
                              f"self.{name} = nn.Parameter(...).")


# ---------------------------------------------------------------------------
# train_vit: the graded training cell
# ---------------------------------------------------------------------------

CPU_BUDGET_S = 60.0
MIN_ACCURACY = 0.90


def _digits_split(seed: int):
    from reference_impl.data import load_digits_split

    return load_digits_split(test_size=0.25, seed=seed)


class TrainVitCheck(Check):
    name = "train_vit"
    assignment = ASSIGNMENT
    kind = "function"
    forbidden = ()
    # Train your own VisionTransformer: the course's is blocked (its code, however it was imported).
    reference = "reference_impl.vit.VisionTransformer"
    timeout_s = 150.0  # wall clock, a backstop; the graded limit is CPU_BUDGET_S of CPU time

    cpu_budget_s = CPU_BUDGET_S
    min_accuracy = MIN_ACCURACY

    # (label, split seed of load_digits_split)
    VISIBLE = (("the split of load_digits_split(): 1347 training and 450 held-out digits", 0),)
    HIDDEN = (("another stratified split, load_digits_split(seed=1): 1347 training and 450 held-out digits", 1),)

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        cases = []
        for label, split in (self.HIDDEN if hidden else self.VISIBLE):
            X_train, y_train, X_eval, y_eval = _digits_split(split)
            inputs = {"X_train": X_train, "y_train": y_train, "X_eval": X_eval, "torch_seed": split}
            cases.append(Case(label, inputs, y_eval))  # the held-out labels stay with the judge
        return cases

    def invoke(self, obj: Any, inputs: dict) -> Any:
        clock = process_time
        threads = torch.get_num_threads()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(inputs["torch_seed"])
            torch.set_num_threads(1)
            try:
                with guard_lifted(self.name):
                    start = clock()
                    model = obj(inputs["X_train"], inputs["y_train"])
                    cpu = clock() - start
            finally:
                torch.set_num_threads(threads)
        if isinstance(model, (tuple, list)) and model and isinstance(model[0], nn.Module):
            raise CheckFailed(f"train_vit returned {describe(model)}; return only the trained model "
                              "(return model).")
        if not isinstance(model, nn.Module):
            raise CheckFailed(f"train_vit must return the VisionTransformer it trained (an nn.Module), but it "
                              f"returned {describe(model)}.")
        if not any(k.__name__ == "VisionTransformer" for k in type(model).__mro__):
            raise CheckFailed(f"train_vit returned a {type(model).__name__}; it must train and return your "
                              "VisionTransformer (from the cells above).")
        X_eval = inputs["X_eval"]
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(X_eval[i:i + 256]) for i in range(0, len(X_eval), 256)])
        return {"logits": sanitize(logits), "cpu_seconds": float(cpu)}

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        changed = modified_inputs(case.inputs, inputs_after, ("X_train", "y_train", "X_eval"), "train_vit")
        if changed:
            return changed
        if not isinstance(got, dict) or not isinstance(got.get("cpu_seconds"), float):
            return f"internal: unexpected result {describe(got)}"
        labels = case.expected
        n = labels.shape[0]
        logits = got.get("logits")
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (n, 10):
            shape = shape_str(case.inputs["X_eval"].shape)
            return (f"the trained model should map the {n} held-out images (shape {shape})"
                    f" to logits of shape ({n}, 10), but it returned {describe(logits)}. Build the model with "
                    "image_size=8, in_channels=1 and n_classes=10.")
        if not bool(torch.isfinite(logits).all()):
            return ("the trained model's logits contain NaN or inf: training diverged (learning rate too large?). "
                    "The suggested settings are lr=3e-3 with AdamW (train_classifier's default optimiser).")
        acc = float((logits.argmax(dim=-1) == labels).double().mean())
        cpu = got["cpu_seconds"]
        problems = []
        if acc < self.min_accuracy:
            if acc < 0.2:
                why = ("it has hardly learned anything (chance is 10%): does train_vit train the model it returns "
                       "(train_classifier(model, X_train, y_train, ...)), with a learning rate above 0?")
            else:
                why = ("train it longer (more epochs) or a little larger; the notebook's suggested settings reach "
                       "about 97% in a few CPU seconds")
            problems.append(f"your trained ViT classifies {acc:.1%} of the {n} held-out digits correctly; it needs at "
                            f"least {self.min_accuracy:.0%}: {why}")
        if cpu > self.cpu_budget_s:
            problems.append(f"train_vit took {cpu:.1f} CPU seconds (one torch thread), more than the budget of "
                            f"{self.cpu_budget_s:g}: use fewer epochs, a smaller model (d_model, n_layers) or larger "
                            "patches (patch_size=4 gives 4 tokens per image, patch_size=2 gives 16)")
        if not problems:
            return None
        sentences = [p + ("" if p.endswith("?") else ".") for p in problems]
        return " Also, ".join([sentences[0][0].upper() + sentences[0][1:]] + sentences[1:])


register(PatchifyCheck())
register(VitEmbedCheck())
register(VisionTransformerCheck())
register(TrainVitCheck())
