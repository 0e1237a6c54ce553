"""Proof corpus for the chapter 2 checks: learner answers as notebook-cell source.

Each entry is what a learner's answer cell could contain (run after the locked setup
cell's imports, PREAMBLE). ``expect`` is None for answers that must pass, else a piece of
text the failure message must contain (the diagnosis). Entries marked ``patches`` change
global state (torch, course.checks) the way a cheating cell would; the tests undo it.
"""

from __future__ import annotations

from dataclasses import dataclass

PREAMBLE = "import math\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"


@dataclass(frozen=True)
class Entry:
    id: str
    item: str  # the graded item (check name) the source defines
    source: str
    expect: str | None = None  # None: must pass; else a substring of the failure message
    patches: bool = False  # changes global state: the test restores it


# A correct attention the MultiHeadAttention entries can build on (as in the notebook).
SDPA = '''
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights
'''


def mha(forward_body: str, init_extra: str = "", helpers: str = SDPA) -> str:
    """A MultiHeadAttention whose __init__ is the spec's and whose forward is ``forward_body``."""
    init = '''
class MultiHeadAttention(nn.Module):
    def __init__(self, d_model, n_heads):
        super().__init__()
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.w_q = nn.Linear(d_model, d_model)
        self.w_k = nn.Linear(d_model, d_model)
        self.w_v = nn.Linear(d_model, d_model)
        self.w_o = nn.Linear(d_model, d_model)
'''
    body = "\n".join("        " + line if line.strip() else "" for line in forward_body.strip("\n").splitlines())
    extra = "\n".join("        " + line for line in init_extra.strip("\n").splitlines()) + "\n" if init_extra else ""
    return helpers + init + extra + "\n    def forward(self, x, context=None, mask=None):\n" + body + "\n"


# the standard forward, with {split}/{merge} placeholders for the head-splitting variants
STANDARD_FORWARD = '''
context = x if context is None else context
B, T_q, D = x.shape
T_k = context.shape[1]
H, d = self.n_heads, self.d_head
q = self.w_q(x).view(B, T_q, H, d).transpose(1, 2)        # (B, H, T_q, d)
k = self.w_k(context).view(B, T_k, H, d).transpose(1, 2)  # (B, H, T_k, d)
v = self.w_v(context).view(B, T_k, H, d).transpose(1, 2)  # (B, H, T_k, d)
out, _ = scaled_dot_product_attention(q, k, v, mask)       # (B, H, T_q, d)
return self.w_o(out.transpose(1, 2).reshape(B, T_q, D))
'''


def standard_forward(**replace: str) -> str:
    body = STANDARD_FORWARD
    for old, new in replace.items():
        old = {"split_q": "self.w_q(x).view(B, T_q, H, d).transpose(1, 2)",
               "split_k": "self.w_k(context).view(B, T_k, H, d).transpose(1, 2)",
               "split_v": "self.w_v(context).view(B, T_k, H, d).transpose(1, 2)",
               "merge": "self.w_o(out.transpose(1, 2).reshape(B, T_q, D))",
               "ctx": "context = x if context is None else context",
               "attend": "scaled_dot_product_attention(q, k, v, mask)"}[old]
        assert old in body, old
        body = body.replace(old, new)
    return body


# ---------------------------------------------------------------------------
# Correct alternatives: must pass (visible and hidden)
# ---------------------------------------------------------------------------

CORRECT = [
    # causal_mask
    Entry("tril_ones", "causal_mask", '''
def causal_mask(seq_len):
    return torch.tril(torch.ones(seq_len, seq_len, dtype=torch.bool))
'''),
    Entry("arange_compare", "causal_mask", '''
def causal_mask(seq_len):
    i = torch.arange(seq_len)
    return i[None, :] <= i[:, None]   # [i, j]: j <= i
'''),
    Entry("python_loops", "causal_mask", '''
def causal_mask(seq_len):
    rows = [[j <= i for j in range(seq_len)] for i in range(seq_len)]
    return torch.tensor(rows, dtype=torch.bool)
'''),
    Entry("not_triu", "causal_mask", '''
def causal_mask(seq_len):
    return ~torch.triu(torch.ones(seq_len, seq_len, dtype=torch.bool), diagonal=1)
'''),
    Entry("float_then_bool", "causal_mask", '''
def causal_mask(seq_len):
    return torch.ones(seq_len, seq_len).tril().bool()
'''),
    # scaled_dot_product_attention
    Entry("matmul_masked_fill", "scaled_dot_product_attention", SDPA),
    Entry("einsum_where", "scaled_dot_product_attention", '''
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = torch.einsum("...qd,...kd->...qk", q, k) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = torch.where(mask, scores, torch.tensor(float("-inf")))
    weights = scores.softmax(dim=-1)
    return torch.einsum("...qk,...kv->...qv", weights, v), weights
'''),
    Entry("prescale_q_and_big_negative_fill", "scaled_dot_product_attention", '''
def scaled_dot_product_attention(q, k, v, mask=None):
    q = q * q.size(-1) ** -0.5
    scores = torch.matmul(q, k.transpose(-1, -2))
    if mask is not None:
        scores = scores.masked_fill(mask.logical_not(), -1e9)
    weights = F.softmax(scores, dim=-1)
    return torch.matmul(weights, v), weights
'''),
    Entry("manual_stable_softmax_additive_mask", "scaled_dot_product_attention", '''
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.mT / math.sqrt(k.shape[-1])
    if mask is not None:
        scores = scores + torch.zeros_like(scores).masked_fill(~mask, float("-inf"))
    scores = scores - scores.amax(dim=-1, keepdim=True)
    e = scores.exp()
    weights = e / e.sum(dim=-1, keepdim=True)
    return weights @ v, weights
'''),
    Entry("loop_over_queries", "scaled_dot_product_attention", '''
def scaled_dot_product_attention(q, k, v, mask=None):
    d_k = q.shape[-1]
    T_q = q.shape[-2]
    rows = []
    for i in range(T_q):
        s = (q[..., i:i + 1, :] @ k.transpose(-2, -1)) / math.sqrt(d_k)   # (..., 1, T_k)
        if mask is not None:
            m = mask.expand(*mask.shape[:-2], T_q, mask.shape[-1])[..., i:i + 1, :]
            s = s.masked_fill(~m, float("-inf"))
        rows.append(torch.softmax(s, dim=-1))
    weights = torch.cat(rows, dim=-2)
    return weights @ v, weights
'''),
    Entry("loop_over_batch_flattened", "scaled_dot_product_attention", '''
def scaled_dot_product_attention(q, k, v, mask=None):
    lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    T_q, T_k = q.shape[-2], k.shape[-2]
    if mask is None:
        mask = torch.ones(T_q, T_k, dtype=torch.bool)
    lead = torch.broadcast_shapes(lead, mask.shape[:-2])
    qb = q.expand(*lead, *q.shape[-2:]).reshape(-1, T_q, q.shape[-1])
    kb = k.expand(*lead, *k.shape[-2:]).reshape(-1, T_k, k.shape[-1])
    vb = v.expand(*lead, *v.shape[-2:]).reshape(-1, T_k, v.shape[-1])
    mb = mask.expand(*lead, T_q, T_k).reshape(-1, T_q, T_k)
    outs, ws = [], []
    for b in range(qb.shape[0]):
        s = qb[b] @ kb[b].T / math.sqrt(q.shape[-1])
        w = torch.softmax(s.masked_fill(~mb[b], float("-inf")), dim=-1)
        outs.append(w @ vb[b])
        ws.append(w)
    out = torch.stack(outs).reshape(*lead, T_q, v.shape[-1])
    weights = torch.stack(ws).reshape(*lead, T_q, T_k)
    return out, weights
'''),
    # MultiHeadAttention
    Entry("view_transpose", "MultiHeadAttention", mha(STANDARD_FORWARD)),
    Entry("unflatten_einsum", "MultiHeadAttention", mha('''
context = x if context is None else context
H = self.n_heads
q = self.w_q(x).unflatten(-1, (H, -1))        # (B, T_q, H, d)
k = self.w_k(context).unflatten(-1, (H, -1))  # (B, T_k, H, d)
v = self.w_v(context).unflatten(-1, (H, -1))
scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
if mask is not None:
    scores = scores.masked_fill(~mask, float("-inf"))
weights = scores.softmax(-1)
out = torch.einsum("bhqk,bkhd->bqhd", weights, v).flatten(2)
return self.w_o(out)
''')),
    Entry("loop_over_head_slices", "MultiHeadAttention", mha('''
context = x if context is None else context
q, k, v = self.w_q(x), self.w_k(context), self.w_v(context)
d = self.d_head
heads = []
for h in range(self.n_heads):
    sl = slice(h * d, (h + 1) * d)
    out_h, _ = scaled_dot_product_attention(q[..., sl], k[..., sl], v[..., sl], mask)
    heads.append(out_h)
return self.w_o(torch.cat(heads, dim=-1))
''')),
    Entry("chunk_stack", "MultiHeadAttention", mha('''
context = x if context is None else context
H = self.n_heads
split = lambda t: torch.stack(t.chunk(H, dim=-1), dim=1)   # (B, H, T, d)
out, _ = scaled_dot_product_attention(split(self.w_q(x)), split(self.w_k(context)), split(self.w_v(context)), mask)
return self.w_o(torch.cat(out.unbind(dim=1), dim=-1))
''')),
    Entry("uses_reference_sdpa_and_extra_modules", "MultiHeadAttention", mha(
        standard_forward(attend="_ref_attention(q, k, v, mask)"),
        init_extra="self.dropout = nn.Dropout(0.0)",
        helpers="from reference_impl.attention import scaled_dot_product_attention as _ref_attention\n")),
    Entry("functional_linear_and_default_none_check", "MultiHeadAttention", mha('''
if context is None:
    context = x
B, T_q, D = x.shape
H, d = self.n_heads, D // self.n_heads
def heads(t):
    return t.reshape(B, t.shape[1], H, d).permute(0, 2, 1, 3)
q = heads(F.linear(x, self.w_q.weight, self.w_q.bias))
k = heads(F.linear(context, self.w_k.weight, self.w_k.bias))
v = heads(F.linear(context, self.w_v.weight, self.w_v.bias))
out, _ = scaled_dot_product_attention(q, k, v, mask)
return self.w_o(out.permute(0, 2, 1, 3).reshape(B, T_q, D))
''')),
]


# ---------------------------------------------------------------------------
# Classic mistakes: must fail, and the message must name the mistake
# ---------------------------------------------------------------------------


def sdpa_with(**replace: str) -> str:
    src = SDPA
    for old, new in replace.items():
        old = {"scale": "/ math.sqrt(q.size(-1))",
               "fill": 'scores = scores.masked_fill(~mask, float("-inf"))',
               "softmax": "weights = torch.softmax(scores, dim=-1)",
               "ret": "return weights @ v, weights"}[old]
        assert old in src, old
        src = src.replace(old, new)
    return src


MISTAKES = [
    # causal_mask
    Entry("strict_lower", "causal_mask", '''
def causal_mask(seq_len):
    return torch.ones(seq_len, seq_len, dtype=torch.bool).tril(diagonal=-1)
''', "off by one"),
    Entry("upper_triangle", "causal_mask", '''
def causal_mask(seq_len):
    return torch.ones(seq_len, seq_len, dtype=torch.bool).triu()
''', "transposed"),
    Entry("inverted", "causal_mask", '''
def causal_mask(seq_len):
    return torch.ones(seq_len, seq_len, dtype=torch.bool).triu(diagonal=1)
''', "inverted"),
    Entry("float_dtype", "causal_mask", '''
def causal_mask(seq_len):
    return torch.ones(seq_len, seq_len).tril()
''', "right pattern but dtype torch.float32"),
    Entry("additive_float", "causal_mask", '''
def causal_mask(seq_len):
    return torch.full((seq_len, seq_len), float("-inf")).triu(diagonal=1)
''', "additive float mask"),
    Entry("wrong_shape", "causal_mask", '''
def causal_mask(seq_len):
    return torch.ones(seq_len, seq_len + 1, dtype=torch.bool).tril()
''', "has shape"),
    # scaled_dot_product_attention
    Entry("no_scaling", "scaled_dot_product_attention", sdpa_with(scale=""), "the scores are not scaled"),
    Entry("scale_by_dk", "scaled_dot_product_attention", sdpa_with(scale="/ q.size(-1)"),
          "divided by d_k instead of sqrt(d_k)"),
    Entry("scale_by_dv", "scaled_dot_product_attention", sdpa_with(scale="/ math.sqrt(v.size(-1))"),
          "1/sqrt(d_v)"),
    Entry("scale_by_shape_1", "scaled_dot_product_attention", sdpa_with(scale="/ math.sqrt(q.shape[1])"),
          "a sequence length"),
    Entry("softmax_query_axis", "scaled_dot_product_attention",
          sdpa_with(softmax="weights = torch.softmax(scores, dim=-2)"), "QUERY axis"),
    Entry("softmax_dim_1", "scaled_dot_product_attention",
          sdpa_with(softmax="weights = torch.softmax(scores, dim=1)"), "QUERY axis"),
    Entry("mask_inverted", "scaled_dot_product_attention",
          sdpa_with(fill='scores = scores.masked_fill(mask, float("-inf"))'), "wrong way round"),
    Entry("mask_after_softmax", "scaled_dot_product_attention", '''
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    return weights @ v, weights
''', "AFTER the softmax"),
    Entry("mask_fill_zero", "scaled_dot_product_attention", sdpa_with(fill="scores = scores.masked_fill(~mask, 0.0)"),
          "set to 0 instead of -inf"),
    Entry("mask_ignored", "scaled_dot_product_attention", sdpa_with(fill="pass"), "the mask is ignored"),
    Entry("returns_swapped", "scaled_dot_product_attention", sdpa_with(ret="return weights, weights @ v"),
          "the order must be (output, weights)"),
    Entry("returns_only_output", "scaled_dot_product_attention", sdpa_with(ret="return weights @ v"),
          "must return a tuple (output, weights)"),
    Entry("returns_scores", "scaled_dot_product_attention", sdpa_with(ret="return weights @ v, scores"),
          "before the softmax"),
    Entry("no_scaling_and_query_axis", "scaled_dot_product_attention",
          sdpa_with(scale="", softmax="weights = torch.softmax(scores, dim=-2)"), "several mistakes at once"),
    Entry("transpose_1_2_breaks_leading_dims", "scaled_dot_product_attention",
          SDPA.replace("k.transpose(-2, -1)", "k.transpose(1, 2)"), "extra leading dims"),
    Entry("naive_softmax_overflows", "scaled_dot_product_attention",
          sdpa_with(softmax="weights = scores.exp() / scores.exp().sum(dim=-1, keepdim=True)"),
          "overflows"),
    # MultiHeadAttention
    Entry("split_without_transpose", "MultiHeadAttention", mha(standard_forward(
        split_q="self.w_q(x).view(B, H, T_q, d)", split_k="self.w_k(context).view(B, H, T_k, d)",
        split_v="self.w_v(context).view(B, H, T_k, d)")), "split with a plain reshape/view"),
    Entry("split_and_merge_without_transpose", "MultiHeadAttention", mha(standard_forward(
        split_q="self.w_q(x).view(B, H, T_q, d)", split_k="self.w_k(context).view(B, H, T_k, d)",
        split_v="self.w_v(context).view(B, H, T_k, d)", merge="self.w_o(out.reshape(B, T_q, D))")),
        "split and merged with reshape/view only"),
    Entry("merge_without_transpose", "MultiHeadAttention", mha(standard_forward(
        merge="self.w_o(out.reshape(B, T_q, D))")), "merged with a reshape straight"),
    Entry("interleaved_heads", "MultiHeadAttention", mha(standard_forward(
        split_q="self.w_q(x).view(B, T_q, d, H).permute(0, 3, 1, 2)",
        split_k="self.w_k(context).view(B, T_k, d, H).permute(0, 3, 1, 2)",
        split_v="self.w_v(context).view(B, T_k, d, H).permute(0, 3, 1, 2)",
        merge="self.w_o(out.permute(0, 2, 3, 1).reshape(B, T_q, D))")), "every n_heads-th feature"),
    Entry("no_output_projection", "MultiHeadAttention", mha(standard_forward(
        merge="out.transpose(1, 2).reshape(B, T_q, D)")), "output projection is missing"),
    Entry("keys_values_from_x", "MultiHeadAttention", mha(standard_forward(
        ctx="T_k = x.shape[1]", split_k="self.w_k(x).view(B, T_k, H, d).transpose(1, 2)",
        split_v="self.w_v(x).view(B, T_k, H, d).transpose(1, 2)").replace("T_k = context.shape[1]\n", "")),
        "keys and values come from x"),
    Entry("scale_by_d_model", "MultiHeadAttention", mha(standard_forward(
        attend="scaled_dot_product_attention(q * math.sqrt(d) / math.sqrt(D), k, v, mask)")),
        "1/sqrt(d_model) instead of 1/sqrt(d_head)"),
    Entry("single_head", "MultiHeadAttention", mha('''
context = x if context is None else context
out, _ = scaled_dot_product_attention(self.w_q(x), self.w_k(context), self.w_v(context), mask)
return self.w_o(out)
'''), "single head"),
    Entry("query_key_projections_swapped", "MultiHeadAttention", mha(standard_forward(
        split_q="self.w_k(x).view(B, T_q, H, d).transpose(1, 2)",
        split_k="self.w_q(context).view(B, T_k, H, d).transpose(1, 2)")), "swapped"),
    Entry("mha_mask_inverted", "MultiHeadAttention", mha(standard_forward(
        attend="scaled_dot_product_attention(q, k, v, None if mask is None else ~mask)")), "wrong way round"),
    Entry("mha_softmax_query_axis", "MultiHeadAttention", mha(STANDARD_FORWARD, helpers=sdpa_with(
        softmax="weights = torch.softmax(scores, dim=-2)")), "QUERY axis"),
    Entry("mha_uses_unscaled_attention", "MultiHeadAttention", mha(STANDARD_FORWARD, helpers=sdpa_with(scale="")),
          "not scaled"),
    Entry("returns_output_and_weights", "MultiHeadAttention", mha(standard_forward(
        merge="self.w_o(out.transpose(1, 2).reshape(B, T_q, D)), _")), "must return only the output tensor"),
    Entry("projections_named_differently", "MultiHeadAttention", '''
class MultiHeadAttention(nn.Module):
    def __init__(self, d_model, n_heads):
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x, context=None, mask=None):
        return self.out_proj(self.v_proj(x))
''', "has no attribute w_q"),
    Entry("projections_without_bias", "MultiHeadAttention", mha(STANDARD_FORWARD).replace(
        "nn.Linear(d_model, d_model)", "nn.Linear(d_model, d_model, bias=False)"), "has no bias"),
    Entry("projection_wrong_shape", "MultiHeadAttention", mha(STANDARD_FORWARD).replace(
        "self.w_q = nn.Linear(d_model, d_model)", "self.w_q = nn.Linear(d_model, self.d_head)"), "w_q.weight has shape"),
    Entry("not_a_module", "MultiHeadAttention", '''
class MultiHeadAttention:
    def __init__(self, d_model, n_heads):
        pass
''', "is not an nn.Module"),
]


# ---------------------------------------------------------------------------
# Cheats: must fail
# ---------------------------------------------------------------------------

WRONG_SDPA = sdpa_with(scale="")  # diagnosed "the scores are not scaled"
WRONG_MASK = '''
def causal_mask(seq_len):
    return torch.ones(seq_len, seq_len, dtype=torch.bool).triu()
'''

CHEATS = [
    Entry("patch_torch_allclose", "scaled_dot_product_attention",
          "torch.allclose = lambda *a, **k: True\n" + WRONG_SDPA, "not scaled", patches=True),
    Entry("patch_assert_close", "scaled_dot_product_attention",
          "torch.testing.assert_close = lambda *a, **k: None\n" + WRONG_SDPA, "not scaled", patches=True),
    Entry("patch_torch_equal", "causal_mask", "torch.equal = lambda *a, **k: True\n" + WRONG_MASK, "transposed",
          patches=True),
    Entry("patch_isclose_and_tensor_methods", "scaled_dot_product_attention", '''
torch.isclose = lambda a, b, **k: torch.ones(a.shape, dtype=torch.bool)
torch.Tensor.all = lambda self, *a, **k: torch.tensor(True)
torch.Tensor.any = lambda self, *a, **k: torch.tensor(False)
torch.Tensor.__ne__ = lambda self, other: torch.zeros(self.shape, dtype=torch.bool)
''' + WRONG_SDPA, "not scaled", patches=True),
    Entry("replace_every_public_name_of_the_checks", "scaled_dot_product_attention", '''
import course.checks
import course.checks.core as _core
import course.checks.diagnose as _diag
import course.checks.ch02 as _ch02
_yes = lambda *a, **k: None
_core.Check.judge = _yes
_ch02.ScaledDotProductAttentionCheck.judge = _yes
for _c in list(_core.REGISTRY.values()):
    _c.judge = _yes
_core.REGISTRY.clear()
for _mod in (_core, _diag, _ch02, course.checks):
    for _name in list(vars(_mod)):
        if not _name.startswith("_") and callable(getattr(_mod, _name)):
            setattr(_mod, _name, _yes)
_ch02._ref_sdpa = lambda q, k, v, mask=None: (torch.zeros(1), torch.zeros(1))
''' + WRONG_SDPA, "not scaled", patches=True),
    Entry("builtin_sdpa_module_attribute", "scaled_dot_product_attention", '''
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), weights
''', "must not call F.scaled_dot_product_attention"),
    Entry("builtin_sdpa_captured_at_import", "scaled_dot_product_attention", '''
_fast = torch._C._nn.scaled_dot_product_attention
''' + sdpa_with(ret="return _fast(q, k, v, attn_mask=mask), weights"), "must not call"),
    Entry("builtin_sdpa_with_torch_function_disabled", "scaled_dot_product_attention", '''
_fast = F.scaled_dot_product_attention
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    with torch._C.DisableTorchFunction():
        out = _fast(q, k, v, attn_mask=mask)
    return out, weights
''', "must not call"),
    Entry("builtin_sdpa_swallowing_the_error", "scaled_dot_product_attention", '''
def scaled_dot_product_attention(q, k, v, mask=None):
    try:
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    except Exception:
        pass
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights
''', "must not call F.scaled_dot_product_attention"),
    Entry("reference_module_attribute", "scaled_dot_product_attention", '''
import reference_impl.attention
def scaled_dot_product_attention(q, k, v, mask=None):
    return reference_impl.attention.scaled_dot_product_attention(q, k, v, mask)
''', "reference solution"),
    Entry("reference_captured_retry_after_error", "scaled_dot_product_attention", '''
from reference_impl.attention import scaled_dot_product_attention as _solution
def scaled_dot_product_attention(q, k, v, mask=None):
    try:
        return _solution(q, k, v, mask)
    except BaseException:
        return _solution(q, k, v, mask)
''', "reference solution"),
    Entry("reference_captured_profiler_removed", "causal_mask", '''
import sys
from reference_impl.attention import causal_mask as _solution
def causal_mask(seq_len):
    sys.setprofile(None)
    return _solution(seq_len)
''', "profiler"),
    Entry("reference_causal_mask_captured", "causal_mask", '''
from reference_impl.attention import causal_mask as _cm
def causal_mask(seq_len):
    return _cm(seq_len)
''', "reference solution"),
    Entry("reference_class_subclassed", "MultiHeadAttention", '''
import reference_impl.attention as _ra
class MultiHeadAttention(_ra.MultiHeadAttention):
    pass
''', "reference solution"),
    Entry("builtin_multihead_attention_wrapped", "MultiHeadAttention", mha('''
mha = nn.MultiheadAttention(self.w_q.in_features, self.n_heads, batch_first=True)
context = x if context is None else context
return mha(x, context, context, need_weights=False)[0]
''', helpers=""), "must not call nn.MultiheadAttention"),
    Entry("functional_multi_head_attention_forward", "MultiHeadAttention", mha('''
context = x if context is None else context
D = x.shape[-1]
w = torch.cat([self.w_q.weight, self.w_k.weight, self.w_v.weight])
b = torch.cat([self.w_q.bias, self.w_k.bias, self.w_v.bias])
out, _ = F.multi_head_attention_forward(
    x.transpose(0, 1), context.transpose(0, 1), context.transpose(0, 1), D, self.n_heads, w, b,
    None, None, False, 0.0, self.w_o.weight, self.w_o.bias, need_weights=False,
    attn_mask=None if mask is None else ~mask)
return out.transpose(0, 1)
''', helpers=""), "must not call F.multi_head_attention_forward"),
    Entry("mutates_input_q", "scaled_dot_product_attention", '''
def scaled_dot_product_attention(q, k, v, mask=None):
    q.mul_(1.0 / math.sqrt(q.size(-1)))
    scores = q @ k.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights
''', "modified its input q in place"),
    Entry("mutates_input_mask", "scaled_dot_product_attention", '''
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        mask.logical_not_()
        scores = scores.masked_fill(mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights
''', "modified its input mask in place"),
    Entry("mha_mutates_x", "MultiHeadAttention", mha("x.mul_(2.0)\n" + standard_forward(
        ctx="context = x / 2.0 if context is None else context",
        split_q="self.w_q(x / 2.0).view(B, T_q, H, d).transpose(1, 2)")),
          "forward modified its input x in place"),
    Entry("stores_attention_weights_on_self", "MultiHeadAttention", mha(standard_forward(
        attend="scaled_dot_product_attention(q, k, v, mask)\nself.attn_weights = _")),
          "no side effects"),
    Entry("stores_in_preexisting_dict", "MultiHeadAttention", mha(standard_forward(
        attend="scaled_dot_product_attention(q, k, v, mask)\nself.cache['weights'] = _"),
        init_extra="self.cache = {}"), "no side effects"),
    Entry("registers_buffer_in_forward", "MultiHeadAttention", mha(standard_forward(
        attend="scaled_dot_product_attention(q, k, v, mask)\nself.register_buffer('last', _)")),
          "no side effects"),
    Entry("leaves_a_lying_torch_function_mode", "scaled_dot_product_attention", '''
from torch.overrides import TorchFunctionMode
class _Liar(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in ("isclose", "allclose", "equal", "all"):
            return torch.tensor(True)
        return func(*args, **(kwargs or {}))
''' + sdpa_with(ret="_Liar().__enter__()\n    return weights @ v, weights", scale=""), "mode stack"),
    Entry("returns_tensor_subclass", "scaled_dot_product_attention", '''
class _Agreeable(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in ("isclose", "allclose", "equal", "all", "__eq__", "__ne__"):
            return torch.tensor(True)
        return super().__torch_function__(func, types, args, kwargs)
''' + sdpa_with(ret="return (weights @ v).as_subclass(_Agreeable), weights.as_subclass(_Agreeable)", scale=""),
          "subclass of torch.Tensor"),
]
