"""Proof corpus for the chapter 3 checks: learner answers as notebook-cell source.

Same conventions as corpus_ch02 (``Entry``; sources run after the setup cell's imports).
The block and stack entries import chapter 2's MultiHeadAttention from reference_impl, as
the notebook's setup cell does, and define the FeedForward (and TransformerBlock) they use,
as the notebook's earlier cells do.
"""

from __future__ import annotations

from .corpus_ch02 import Entry

SETUP = "from reference_impl.attention import MultiHeadAttention, causal_mask\n"

LAYER_NORM = '''
def layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta
'''


def layer_norm_with(**replace: str) -> str:
    src = LAYER_NORM
    for old, new in replace.items():
        old = {"mean": "mean = x.mean(dim=-1, keepdim=True)",
               "var": "var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)",
               "ret": "return (x - mean) / torch.sqrt(var + eps) * gamma + beta"}[old]
        assert old in src, old
        src = src.replace(old, new)
    return src


FEED_FORWARD = '''
class FeedForward(nn.Module):
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)

    def forward(self, x):
        return self.linear2(F.relu(self.linear1(x)))
'''


def feed_forward(forward: str = "return self.linear2(F.relu(self.linear1(x)))", init_extra: str = "") -> str:
    src = FEED_FORWARD.replace("return self.linear2(F.relu(self.linear1(x)))", forward)
    if init_extra:
        src = src.replace("        self.linear2 = nn.Linear(d_ff, d_model)\n",
                          "        self.linear2 = nn.Linear(d_ff, d_model)\n        " + init_extra + "\n")
    return src


BLOCK_FORWARD = '''
x = x + self.attn(self.norm1(x), mask=mask)
x = x + self.ff(self.norm2(x))
return x
'''


def block(forward: str = BLOCK_FORWARD, init: str = "", ff: str = FEED_FORWARD, helpers: str = "") -> str:
    """A TransformerBlock with the spec's attributes (unless ``init`` replaces them) and ``forward``."""
    init = init or '''
self.attn = MultiHeadAttention(d_model, n_heads)
self.ff = FeedForward(d_model, d_ff)
self.norm1 = nn.LayerNorm(d_model)
self.norm2 = nn.LayerNorm(d_model)
'''
    return (SETUP + ff + helpers + "\n\nclass TransformerBlock(nn.Module):\n"
            "    def __init__(self, d_model, n_heads, d_ff):\n        super().__init__()\n"
            + _indent(init, 8) + "\n    def forward(self, x, mask=None):\n" + _indent(forward, 8))


def _indent(body: str, n: int) -> str:
    return "\n".join(" " * n + line if line.strip() else "" for line in body.strip("\n").splitlines()) + "\n"


STACK_FORWARD = '''
for block in self.blocks:
    x = block(x, mask=mask)
return self.norm(x)
'''


def stack(forward: str = STACK_FORWARD, init: str = "", block_src: str | None = None) -> str:
    init = init or '''
self.blocks = nn.ModuleList([TransformerBlock(d_model, n_heads, d_ff) for _ in range(n_layers)])
self.norm = nn.LayerNorm(d_model)
'''
    return ((block() if block_src is None else block_src) + "\n\nclass TransformerStack(nn.Module):\n"
            "    def __init__(self, n_layers, d_model, n_heads, d_ff):\n        super().__init__()\n"
            + _indent(init, 8) + "\n    def forward(self, x, mask=None):\n" + _indent(forward, 8))


CORRECT = [
    # layer_norm
    Entry("mean_of_squares", "layer_norm", LAYER_NORM),
    Entry("var_mean_rsqrt", "layer_norm", '''
def layer_norm(x, gamma, beta, eps=1e-5):
    var, mean = torch.var_mean(x, dim=-1, keepdim=True, unbiased=False)
    return (x - mean) * torch.rsqrt(var + eps) * gamma + beta
'''),
    Entry("var_correction_0", "layer_norm", layer_norm_with(var="var = x.var(dim=-1, keepdim=True, correction=0)")),
    Entry("e_x2_minus_mean2", "layer_norm", layer_norm_with(
        var="var = (x * x).mean(dim=-1, keepdim=True) - mean ** 2")),
    Entry("sum_over_d_and_unsqueeze", "layer_norm", '''
def layer_norm(x, gamma, beta, eps=1e-5):
    D = x.shape[-1]
    mean = (x.sum(-1) / D).unsqueeze(-1)
    centred = x - mean
    std = (centred.pow(2).sum(-1) / D + eps).sqrt().unsqueeze(-1)
    return gamma * (centred / std) + beta
'''),
    # FeedForward
    Entry("linear_relu_linear", "FeedForward", FEED_FORWARD),
    Entry("relu_module_and_sequential", "FeedForward", '''
class FeedForward(nn.Module):
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.relu = nn.ReLU(inplace=True)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.net = nn.Sequential(self.linear1, self.relu, self.linear2)

    def forward(self, x):
        return self.net(x)
'''),
    Entry("clamp_and_functional_linear", "FeedForward", feed_forward(
        "h = F.linear(x, self.linear1.weight, self.linear1.bias).clamp(min=0)\n"
        "        return F.linear(h, self.linear2.weight, self.linear2.bias)")),
    Entry("dropout_zero", "FeedForward", feed_forward(
        "return self.drop(self.linear2(torch.relu(self.linear1(x))))", init_extra="self.drop = nn.Dropout(0.0)")),
    # TransformerBlock
    Entry("pre_norm_block", "TransformerBlock", block()),
    Entry("named_steps_and_own_layer_norm", "TransformerBlock", block('''
h = layer_norm(x, self.norm1.weight, self.norm1.bias, self.norm1.eps)
x = x + self.attn(h, mask=mask)
h = layer_norm(x, self.norm2.weight, self.norm2.bias, self.norm2.eps)
return x + self.ff(h)
''', helpers=LAYER_NORM)),
    Entry("context_passed_explicitly", "TransformerBlock", block('''
h = self.norm1(x)
attended = self.attn(h, h, mask)
out = x + attended
return out + self.ff(self.norm2(out))
''')),
    Entry("reference_feed_forward", "TransformerBlock", block(ff="from reference_impl.blocks import FeedForward\n")),
    # graded on its own: the check puts the course's FeedForward in place of the learner's
    Entry("block_with_a_wrong_feed_forward", "TransformerBlock", block(ff=feed_forward(
        "return self.linear2(F.gelu(self.linear1(x)))"))),
    # TransformerStack
    Entry("loop_over_blocks", "TransformerStack", stack()),
    Entry("index_loop", "TransformerStack", stack('''
h = x
for i in range(len(self.blocks)):
    h = self.blocks[i](h, mask)
return self.norm(h)
''')),
    Entry("reduce_and_extra_attribute", "TransformerStack", stack('''
import functools
out = functools.reduce(lambda h, blk: blk(h, mask=mask), self.blocks, x)
return self.norm(out)
''', init='''
self.n_layers = n_layers
self.blocks = nn.ModuleList()
for _ in range(n_layers):
    self.blocks.append(TransformerBlock(d_model, n_heads, d_ff))
self.norm = nn.LayerNorm(d_model)
''')),
    Entry("reference_blocks_inside", "TransformerStack", stack(block_src=SETUP +
                                                              "from reference_impl.blocks import TransformerBlock\n")),
    # graded on its own: the check puts the course's blocks in place of the learner's
    Entry("stack_of_wrong_post_norm_blocks", "TransformerStack", stack(block_src=block('''
x = self.norm1(x + self.attn(x, mask=mask))
return self.norm2(x + self.ff(x))
'''))),
]


MISTAKES = [
    # layer_norm
    Entry("unbiased_variance", "layer_norm", layer_norm_with(var="var = x.var(dim=-1, keepdim=True)"), "unbiased"),
    Entry("eps_outside_sqrt", "layer_norm", layer_norm_with(
        ret="return (x - mean) / (torch.sqrt(var) + eps) * gamma + beta"), "outside the square root"),
    Entry("std_unbiased_plus_eps", "layer_norm", '''
def layer_norm(x, gamma, beta, eps=1e-5):
    return (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + eps) * gamma + beta
''', "unbiased"),
    Entry("wrong_axis_dim_0", "layer_norm", layer_norm_with(
        mean="mean = x.mean(dim=0, keepdim=True)", var="var = ((x - mean) ** 2).mean(dim=0, keepdim=True)"),
        "first axis"),
    Entry("wrong_axis_dim_minus_2", "layer_norm", layer_norm_with(
        mean="mean = x.mean(dim=-2, keepdim=True)", var="var = ((x - mean) ** 2).mean(dim=-2, keepdim=True)"),
        "second-to-last"),
    Entry("whole_tensor_statistics", "layer_norm", layer_norm_with(
        mean="mean = x.mean()", var="var = ((x - mean) ** 2).mean()"), "whole tensor"),
    Entry("no_keepdim", "layer_norm", layer_norm_with(
        mean="mean = x.mean(dim=-1)", var="var = x.var(dim=-1, unbiased=False)"), "keepdim=True"),
    Entry("gamma_beta_missing", "layer_norm", layer_norm_with(ret="return (x - mean) / torch.sqrt(var + eps)"),
          "gamma and beta are missing"),
    Entry("gamma_beta_swapped", "layer_norm", layer_norm_with(
        ret="return (x - mean) / torch.sqrt(var + eps) * beta + gamma"), "swapped"),
    Entry("divides_by_variance", "layer_norm", layer_norm_with(ret="return (x - mean) / (var + eps) * gamma + beta"),
          "variance instead of the standard deviation"),
    Entry("eps_argument_ignored", "layer_norm", layer_norm_with(
        ret="return (x - mean) / torch.sqrt(var + 1e-5) * gamma + beta"), "ignores the eps argument"),
    # FeedForward
    Entry("no_activation", "FeedForward", feed_forward("return self.linear2(self.linear1(x))"), "no activation"),
    Entry("gelu", "FeedForward", feed_forward("return self.linear2(F.gelu(self.linear1(x)))"), "GELU"),
    Entry("sigmoid", "FeedForward", feed_forward("return self.linear2(torch.sigmoid(self.linear1(x)))"), "sigmoid"),
    Entry("relu_after_linear2", "FeedForward", feed_forward("return F.relu(self.linear2(F.relu(self.linear1(x))))"),
          "after linear2 too"),
    Entry("residual_inside", "FeedForward", feed_forward("return x + self.linear2(F.relu(self.linear1(x)))"),
          "residual connection belongs in TransformerBlock"),
    Entry("dropout_in_training", "FeedForward", feed_forward(
        "return self.linear2(self.drop(F.relu(self.linear1(x))))", init_extra="self.drop = nn.Dropout(0.1)"),
        "different results for the same input"),
    Entry("named_fc1_fc2", "FeedForward", FEED_FORWARD.replace("linear1", "fc1").replace("linear2", "fc2"),
          "FeedForward(8, 16).linear1 does not exist"),
    Entry("linear_without_bias", "FeedForward", FEED_FORWARD.replace(
        "nn.Linear(d_model, d_ff)", "nn.Linear(d_model, d_ff, bias=False)"), "has no bias"),
    Entry("linear1_shape_swapped", "FeedForward", '''
class FeedForward(nn.Module):
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.linear1 = nn.Linear(d_ff, d_model)
        self.linear2 = nn.Linear(d_model, d_ff)

    def forward(self, x):
        return self.linear1(F.relu(self.linear2(x)))
''', "linear1.weight has shape"),
    Entry("ff_not_a_module", "FeedForward", '''
class FeedForward:
    def __init__(self, d_model, d_ff):
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
''', "is not an nn.Module"),
    # TransformerBlock
    Entry("post_norm", "TransformerBlock", block('''
x = self.norm1(x + self.attn(x, mask=mask))
return self.norm2(x + self.ff(x))
'''), "POST-norm"),
    Entry("no_attention_residual", "TransformerBlock", block('''
x = self.attn(self.norm1(x), mask=mask)
return x + self.ff(self.norm2(x))
'''), "residual connection around the attention is missing"),
    Entry("no_ff_residual", "TransformerBlock", block('''
x = x + self.attn(self.norm1(x), mask=mask)
return self.ff(self.norm2(x))
'''), "residual connection around the feed-forward is missing"),
    Entry("no_residuals", "TransformerBlock", block('''
x = self.attn(self.norm1(x), mask=mask)
return self.ff(self.norm2(x))
'''), "both residual connections are missing"),
    Entry("norms_swapped", "TransformerBlock", block('''
x = x + self.attn(self.norm2(x), mask=mask)
return x + self.ff(self.norm1(x))
'''), "norm1 and norm2 are swapped"),
    Entry("mask_ignored", "TransformerBlock", block('''
x = x + self.attn(self.norm1(x))
return x + self.ff(self.norm2(x))
'''), "the mask is ignored"),
    Entry("mask_inverted", "TransformerBlock", block('''
x = x + self.attn(self.norm1(x), mask=None if mask is None else ~mask)
return x + self.ff(self.norm2(x))
'''), "inverted"),
    Entry("mask_as_context", "TransformerBlock", block('''
x = x + self.attn(self.norm1(x), mask)
return x + self.ff(self.norm2(x))
'''), "pass the mask by keyword"),
    Entry("residual_from_normalised", "TransformerBlock", block('''
h = self.norm1(x)
x = h + self.attn(h, mask=mask)
h = self.norm2(x)
return h + self.ff(h)
'''), "NORMALISED input"),
    Entry("parallel_attention_and_ff", "TransformerBlock", block('''
return x + self.attn(self.norm1(x), mask=mask) + self.ff(self.norm2(x))
'''), "both read the block's input"),
    Entry("ff_named_mlp", "TransformerBlock", block(init='''
self.attn = MultiHeadAttention(d_model, n_heads)
self.mlp = FeedForward(d_model, d_ff)
self.norm1 = nn.LayerNorm(d_model)
self.norm2 = nn.LayerNorm(d_model)
''', forward="x = x + self.attn(self.norm1(x), mask=mask)\nreturn x + self.mlp(self.norm2(x))"), ".ff does not exist"),
    Entry("functional_norm_without_parameters", "TransformerBlock", block(init='''
self.attn = MultiHeadAttention(d_model, n_heads)
self.ff = FeedForward(d_model, d_ff)
''', forward='''
x = x + self.attn(F.layer_norm(x, x.shape[-1:]), mask=mask)
return x + self.ff(F.layer_norm(x, x.shape[-1:]))
'''), ".norm1 does not exist"),
    Entry("block_dropout", "TransformerBlock", block(forward='''
x = x + self.drop(self.attn(self.norm1(x), mask=mask))
return x + self.drop(self.ff(self.norm2(x)))
''', init='''
self.attn = MultiHeadAttention(d_model, n_heads)
self.ff = FeedForward(d_model, d_ff)
self.norm1 = nn.LayerNorm(d_model)
self.norm2 = nn.LayerNorm(d_model)
self.drop = nn.Dropout(0.1)
'''), "different results"),
    # TransformerStack
    Entry("no_final_norm", "TransformerStack", stack('''
for block in self.blocks:
    x = block(x, mask=mask)
return x
'''), "final layer norm is missing"),
    Entry("blocks_reversed", "TransformerStack", stack('''
for block in reversed(self.blocks):
    x = block(x, mask=mask)
return self.norm(x)
'''), "reverse order"),
    Entry("every_block_reads_the_input", "TransformerStack", stack('''
out = x
for block in self.blocks:
    out = block(x, mask=mask)
return self.norm(out)
'''), "previous block's output"),
    Entry("norm_after_every_block", "TransformerStack", stack('''
for block in self.blocks:
    x = self.norm(block(x, mask=mask))
return x
'''), "after every block"),
    Entry("stack_mask_not_passed", "TransformerStack", stack('''
for block in self.blocks:
    x = block(x)
return self.norm(x)
'''), "not passed on to the blocks"),
    Entry("shared_weights", "TransformerStack", stack(init='''
self.blocks = nn.ModuleList([TransformerBlock(d_model, n_heads, d_ff)] * n_layers)
self.norm = nn.LayerNorm(d_model)
'''), "share their weights"),
    Entry("plain_list", "TransformerStack", stack(init='''
self.blocks = [TransformerBlock(d_model, n_heads, d_ff) for _ in range(n_layers)]
self.norm = nn.LayerNorm(d_model)
'''), "plain Python list"),
    Entry("one_block_too_few", "TransformerStack", stack(init='''
self.blocks = nn.ModuleList([TransformerBlock(d_model, n_heads, d_ff) for _ in range(n_layers - 1)])
self.norm = nn.LayerNorm(d_model)
'''), "expected n_layers = 2"),
    Entry("final_norm_named_ln_f", "TransformerStack", stack('''
for block in self.blocks:
    x = block(x, mask=mask)
return self.ln_f(x)
''', init='''
self.blocks = nn.ModuleList([TransformerBlock(d_model, n_heads, d_ff) for _ in range(n_layers)])
self.ln_f = nn.LayerNorm(d_model)
'''), ".norm does not exist"),
]


CHEATS = [
    Entry("builtin_f_layer_norm", "layer_norm", '''
def layer_norm(x, gamma, beta, eps=1e-5):
    return F.layer_norm(x, x.shape[-1:], gamma, beta, eps)
''', "must not call F.layer_norm"),
    Entry("builtin_layer_norm_captured", "layer_norm", '''
_ln = torch.layer_norm
def layer_norm(x, gamma, beta, eps=1e-5):
    return _ln(x, [x.shape[-1]], gamma, beta, eps)
''', "must not call torch.layer_norm"),
    Entry("builtin_nn_layernorm_module", "layer_norm", '''
def layer_norm(x, gamma, beta, eps=1e-5):
    norm = nn.LayerNorm(x.shape[-1], eps=eps)
    with torch.no_grad():
        norm.weight.copy_(gamma)
        norm.bias.copy_(beta)
    return norm(x)
''', "must not call nn.LayerNorm"),
    Entry("group_norm_trick", "layer_norm", '''
def layer_norm(x, gamma, beta, eps=1e-5):
    D = x.shape[-1]
    y = F.group_norm(x.reshape(-1, D, 1), 1, eps=eps).reshape(x.shape)
    return y * gamma + beta
''', "must not call F.group_norm"),
    Entry("layer_norm_reference", "layer_norm", '''
from reference_impl.blocks import layer_norm as _solution
def layer_norm(x, gamma, beta, eps=1e-5):
    return _solution(x, gamma, beta, eps)
''', "reference solution"),
    Entry("layer_norm_mutates_x", "layer_norm", '''
def layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    x -= mean
    return x / torch.sqrt(var + eps) * gamma + beta
''', "modified its input x in place"),
    Entry("patch_comparisons_unbiased", "layer_norm", '''
import course.checks.ch03 as _ch03
torch.allclose = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
_ch03._ref_layer_norm = lambda x, gamma, beta, eps=1e-5: x
''' + layer_norm_with(var="var = x.var(dim=-1, keepdim=True)"), "unbiased", patches=True),
    Entry("feed_forward_reference_subclass", "FeedForward", '''
from reference_impl.blocks import FeedForward as _FF
class FeedForward(_FF):
    pass
''', "reference solution"),
    Entry("block_wraps_torch_encoder_layer", "TransformerBlock", block('''
layer = nn.TransformerEncoderLayer(x.shape[-1], self.attn.n_heads, self.ff.linear1.out_features, dropout=0.0,
                                   batch_first=True, norm_first=True)
return layer(x, src_mask=None if mask is None else ~mask)
'''), "must not call nn.TransformerEncoderLayer"),
    Entry("block_reference_captured", "TransformerBlock", SETUP + '''
from reference_impl.blocks import TransformerBlock as _Block
class TransformerBlock(_Block):
    def forward(self, x, mask=None):
        return super().forward(x, mask=mask)
''', "reference solution"),
    Entry("block_mutates_x", "TransformerBlock", block('''
x += self.attn(self.norm1(x), mask=mask)
x += self.ff(self.norm2(x))
return x
'''), "modified its input x in place"),
    Entry("stack_uses_torch_encoder", "TransformerStack", stack('''
enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(x.shape[-1], 2, 8, batch_first=True), len(self.blocks))
enc(x)
for block in self.blocks:
    x = block(x, mask=mask)
return self.norm(x)
'''), "must not call nn.Transformer"),
    Entry("stack_reference_module_attribute", "TransformerStack", SETUP + '''
import reference_impl.blocks as _blocks
class TransformerStack(_blocks.TransformerStack):
    pass
''', "reference solution"),
]
