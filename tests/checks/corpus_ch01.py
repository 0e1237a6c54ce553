"""Proof corpus for the chapter 1 checks: learner answers as notebook-cell source.

Same conventions as corpus_ch02 (``Entry``; sources run after the setup cell's imports):
``expect`` None must pass, otherwise a piece of text the failure message must contain.
"""

from __future__ import annotations

from .corpus_ch02 import Entry

EMBED = '''
def embed_tokens(token_ids, table):
    return table[token_ids]
'''

POSITIONS = '''
def sinusoidal_positions(seq_len, d_model):
    pos = torch.arange(seq_len, dtype=torch.float32)[:, None]                 # (T, 1)
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    angles = pos * freq                                                        # (T, D/2)
    pe = torch.zeros(seq_len, d_model)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles)
    return pe
'''


def positions_with(**replace: str) -> str:
    src = POSITIONS
    for old, new in replace.items():
        old = {"pos": "pos = torch.arange(seq_len, dtype=torch.float32)[:, None]",
               "freq": "freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * "
                       "(-math.log(10000.0) / d_model))",
               "sin": "pe[:, 0::2] = torch.sin(angles)",
               "cos": "pe[:, 1::2] = torch.cos(angles)",
               "ret": "return pe"}[old]
        assert old in src, old
        src = src.replace(old, new)
    return src


def input_embedding(body: str, helpers: str = EMBED + POSITIONS) -> str:
    return helpers + "\n\ndef input_embedding(token_ids, table):\n" + "\n".join(
        "    " + line for line in body.strip("\n").splitlines()) + "\n"


STANDARD_INPUT = '''
T, D = token_ids.shape[1], table.shape[1]
return embed_tokens(token_ids, table) * math.sqrt(D) + sinusoidal_positions(T, D)
'''

CORRECT = [
    # embed_tokens
    Entry("index_rows", "embed_tokens", EMBED),
    Entry("one_hot_matmul", "embed_tokens", '''
def embed_tokens(token_ids, table):
    one_hot = F.one_hot(token_ids, num_classes=table.shape[0]).to(table.dtype)   # (*S, V)
    return one_hot @ table                                                        # (*S, D)
'''),
    Entry("index_select_reshape", "embed_tokens", '''
def embed_tokens(token_ids, table):
    rows = table.index_select(0, token_ids.reshape(-1))          # (N, D)
    return rows.reshape(*token_ids.shape, table.shape[1])
'''),
    Entry("python_loop_over_ids", "embed_tokens", '''
def embed_tokens(token_ids, table):
    rows = [table[i] for i in token_ids.reshape(-1).tolist()]
    return torch.stack(rows).reshape(*token_ids.shape, table.shape[-1])
'''),
    Entry("one_hot_einsum", "embed_tokens", '''
def embed_tokens(token_ids, table):
    V = table.size(0)
    return torch.einsum("...v,vd->...d", F.one_hot(token_ids, V).float(), table)
'''),
    # sinusoidal_positions
    Entry("float32_exp_log", "sinusoidal_positions", POSITIONS),
    Entry("float32_pow_stack", "sinusoidal_positions", '''
def sinusoidal_positions(seq_len, d_model):
    pos = torch.arange(seq_len).float()[:, None]
    i = torch.arange(d_model // 2).float()
    angles = pos / (10000 ** (2 * i / d_model))
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(seq_len, d_model)
'''),
    Entry("python_loops_math", "sinusoidal_positions", '''
def sinusoidal_positions(seq_len, d_model):
    pe = torch.zeros(seq_len, d_model)
    for p in range(seq_len):
        for i in range(0, d_model, 2):
            angle = p / 10000 ** (i / d_model)
            pe[p, i] = math.sin(angle)
            pe[p, i + 1] = math.cos(angle)
    return pe
'''),
    Entry("float64_then_float", "sinusoidal_positions", '''
def sinusoidal_positions(seq_len, d_model):
    pos = torch.arange(seq_len, dtype=torch.float64).unsqueeze(1)
    freq = torch.pow(10000.0, -torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    pe = torch.empty(seq_len, d_model, dtype=torch.float64)
    pe[:, ::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe.float()
'''),
    Entry("cos_as_shifted_sin", "sinusoidal_positions", '''
def sinusoidal_positions(seq_len, d_model):
    pos = torch.arange(seq_len, dtype=torch.float32)[:, None]
    dim = torch.arange(d_model)
    freq = 1.0 / 10000 ** ((dim // 2 * 2).float() / d_model)      # the pair's frequency for every feature
    phase = (dim % 2).float() * (math.pi / 2)                       # cos(a) = sin(a + pi/2)
    return torch.sin(pos * freq + phase)
'''),
    # input_embedding
    Entry("uses_own_helpers", "input_embedding", input_embedding(STANDARD_INPUT)),
    Entry("inline_everything", "input_embedding", input_embedding('''
B, T = token_ids.shape
D = table.shape[-1]
x = table[token_ids] * D ** 0.5                          # (B, T, D)
pos = torch.arange(T, dtype=torch.float64)[:, None]
freq = 10000.0 ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
pe = torch.stack([torch.sin(pos * freq), torch.cos(pos * freq)], dim=-1).reshape(T, D)
return x + pe.to(table.dtype).unsqueeze(0)
''', helpers="")),
    Entry("tensor_sqrt_and_one_hot", "input_embedding", input_embedding('''
T, D = token_ids.size(-1), table.size(-1)
tok = F.one_hot(token_ids, table.size(0)).to(table.dtype) @ table
return tok * torch.sqrt(torch.tensor(float(D))) + sinusoidal_positions(T, D)[None]
''')),
    # graded on its own: the check runs it with the course's embed_tokens and sinusoidal_positions
    Entry("with_wrong_helpers", "input_embedding", input_embedding(STANDARD_INPUT, helpers='''
def embed_tokens(token_ids, table):
    return table[token_ids - 1]
''' + positions_with(sin="pe[:, 0::2] = torch.cos(angles)", cos="pe[:, 1::2] = torch.sin(angles)",
                     ret="return pe.double()"))),
]


MISTAKES = [
    # embed_tokens
    Entry("columns_instead_of_rows", "embed_tokens", '''
def embed_tokens(token_ids, table):
    return table[:, token_ids]
''', "not columns"),
    Entry("ids_flattened", "embed_tokens", '''
def embed_tokens(token_ids, table):
    return table[token_ids.flatten()]
''', "the ids were flattened"),
    Entry("off_by_one", "embed_tokens", '''
def embed_tokens(token_ids, table):
    return table[token_ids - 1]
''', "off by one"),
    Entry("one_hot_float64", "embed_tokens", '''
def embed_tokens(token_ids, table):
    return F.one_hot(token_ids, table.shape[0]).double() @ table.double()
''', "dtype is torch.float64"),
    Entry("one_hot_only", "embed_tokens", '''
def embed_tokens(token_ids, table):
    return F.one_hot(token_ids, table.shape[0]).to(table.dtype)
''', "one-hot encoding"),
    Entry("one_hot_without_num_classes", "embed_tokens", '''
def embed_tokens(token_ids, table):
    return F.one_hot(token_ids).to(table.dtype) @ table
''', "num_classes=table.shape[0]"),
    # sinusoidal_positions
    Entry("sin_cos_swapped", "sinusoidal_positions",
          positions_with(sin="pe[:, 0::2] = torch.cos(angles)", cos="pe[:, 1::2] = torch.sin(angles)"),
          "sin and cos are swapped"),
    Entry("positions_from_1", "sinusoidal_positions",
          positions_with(pos="pos = torch.arange(1, seq_len + 1, dtype=torch.float32)[:, None]"), "start at 1"),
    Entry("dimension_index_exponent", "sinusoidal_positions", '''
def sinusoidal_positions(seq_len, d_model):
    pos = torch.arange(seq_len, dtype=torch.float32)[:, None]
    div = 10000 ** (torch.arange(d_model, dtype=torch.float32) / d_model)   # one exponent per feature j
    pe = torch.zeros(seq_len, d_model)
    pe[:, 0::2] = torch.sin(pos / div[0::2])
    pe[:, 1::2] = torch.cos(pos / div[1::2])
    return pe
''', "its own index"),
    Entry("pair_index_without_2", "sinusoidal_positions",
          positions_with(freq="freq = 10000.0 ** (-torch.arange(d_model // 2, dtype=torch.float32) / d_model)"),
          "i / d_model for pair i"),
    Entry("two_applied_twice", "sinusoidal_positions",
          positions_with(freq="freq = 10000.0 ** (-2 * torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)"),
          "applied twice"),
    Entry("concatenated_halves", "sinusoidal_positions",
          positions_with(sin="", cos="", ret="return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)"),
          "two halves"),
    Entry("multiplied_not_divided", "sinusoidal_positions",
          positions_with(freq="freq = 10000.0 ** (torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)"),
          "multiplied"),
    Entry("integer_division_exponent", "sinusoidal_positions", '''
def sinusoidal_positions(seq_len, d_model):
    pe = torch.zeros(seq_len, d_model)
    for p in range(seq_len):
        for i in range(d_model // 2):
            angle = p / 10000 ** ((2 * i) // d_model)
            pe[p, 2 * i] = math.sin(angle)
            pe[p, 2 * i + 1] = math.cos(angle)
    return pe
''', "integer division"),
    Entry("float64_output", "sinusoidal_positions", '''
def sinusoidal_positions(seq_len, d_model):
    pos = torch.arange(seq_len, dtype=torch.float64)[:, None]
    angles = pos / 10000 ** (torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    return torch.stack([angles.sin(), angles.cos()], -1).reshape(seq_len, d_model)
''', "right values but dtype torch.float64"),
    Entry("transposed", "sinusoidal_positions", positions_with(ret="return pe.T"), "one row per position"),
    Entry("not_interleaved_stacked", "sinusoidal_positions",
          positions_with(sin="", cos="", ret="return torch.stack([angles.sin(), angles.cos()], dim=-1)"),
          "interleaved"),
    Entry("swapped_and_from_1", "sinusoidal_positions", positions_with(
        pos="pos = torch.arange(1, seq_len + 1, dtype=torch.float32)[:, None]",
        sin="pe[:, 0::2] = torch.cos(angles)", cos="pe[:, 1::2] = torch.sin(angles)"), "several mistakes at once"),
    Entry("cached_max_len_100", "sinusoidal_positions", '''
_PE = {}
def sinusoidal_positions(seq_len, d_model):
    if d_model not in _PE:
        pos = torch.arange(100, dtype=torch.float32)[:, None]
        angles = pos / 10000 ** (torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
        _PE[d_model] = torch.stack([angles.sin(), angles.cos()], -1).reshape(100, d_model)
    return _PE[d_model][:seq_len]
''', "has shape (100, 12)"),
    # input_embedding
    Entry("no_sqrt_scaling", "input_embedding", input_embedding('''
T, D = token_ids.shape[1], table.shape[1]
return embed_tokens(token_ids, table) + sinusoidal_positions(T, D)
'''), "not scaled"),
    Entry("positions_scaled_too", "input_embedding", input_embedding('''
T, D = token_ids.shape[1], table.shape[1]
return (embed_tokens(token_ids, table) + sinusoidal_positions(T, D)) * math.sqrt(D)
'''), "positions are multiplied by sqrt(D) too"),
    Entry("divided_by_sqrt", "input_embedding", input_embedding('''
T, D = token_ids.shape[1], table.shape[1]
return embed_tokens(token_ids, table) / math.sqrt(D) + sinusoidal_positions(T, D)
'''), "divided by sqrt(D)"),
    Entry("scaled_by_d", "input_embedding", input_embedding('''
T, D = token_ids.shape[1], table.shape[1]
return embed_tokens(token_ids, table) * D + sinusoidal_positions(T, D)
'''), "instead of sqrt(D)"),
    Entry("scaled_by_vocab", "input_embedding", input_embedding('''
T, V = token_ids.shape[1], table.shape[0]
return embed_tokens(token_ids, table) * math.sqrt(V) + sinusoidal_positions(T, table.shape[1])
'''), "vocabulary size"),
    Entry("positions_missing", "input_embedding", input_embedding('''
return embed_tokens(token_ids, table) * math.sqrt(table.shape[1])
'''), "positions are missing"),
    Entry("seq_len_from_batch_axis", "input_embedding", input_embedding('''
T, D = token_ids.shape[0], table.shape[1]
return embed_tokens(token_ids, table) * math.sqrt(D) + sinusoidal_positions(T, D)
'''), "token_ids.shape[0] is the batch size"),
    Entry("inline_positions_sin_cos_swapped", "input_embedding", input_embedding('''
T, D = token_ids.shape[1], table.shape[1]
pos = torch.arange(T, dtype=torch.float32)[:, None]
angles = pos / 10000 ** (torch.arange(0, D, 2, dtype=torch.float32) / D)
pe = torch.stack([angles.cos(), angles.sin()], dim=-1).reshape(T, D)
return embed_tokens(token_ids, table) * math.sqrt(D) + pe
'''), "the positions you add are wrong: sin and cos are swapped"),
    Entry("inline_float64_positions", "input_embedding", input_embedding('''
T, D = token_ids.shape[1], table.shape[1]
pos = torch.arange(T, dtype=torch.float64)[:, None]
angles = pos / 10000 ** (torch.arange(0, D, 2, dtype=torch.float64) / D)
pe = torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(T, D)
return embed_tokens(token_ids, table) * math.sqrt(D) + pe
'''), "the result must be torch.float32"),
]


WRONG_POSITIONS = positions_with(pos="pos = torch.arange(1, seq_len + 1, dtype=torch.float32)[:, None]")

CHEATS = [
    Entry("builtin_f_embedding", "embed_tokens", '''
def embed_tokens(token_ids, table):
    return F.embedding(token_ids, table)
''', "must not call F.embedding"),
    Entry("builtin_nn_embedding", "embed_tokens", '''
def embed_tokens(token_ids, table):
    return nn.Embedding.from_pretrained(table)(token_ids)
''', "must not call"),
    Entry("builtin_embedding_captured_at_import", "embed_tokens", '''
_lookup = torch.embedding
def embed_tokens(token_ids, table):
    return _lookup(table, token_ids)
''', "must not call torch.embedding"),
    Entry("reference_captured", "embed_tokens", '''
from reference_impl.embedding import embed_tokens as _solution
def embed_tokens(token_ids, table):
    return _solution(token_ids, table)
''', "reference solution"),
    Entry("mutates_table", "embed_tokens", '''
def embed_tokens(token_ids, table):
    rows = table[token_ids]
    table.zero_()
    return rows
''', "modified its input table in place"),
    Entry("reference_positions_module_attribute", "sinusoidal_positions", '''
import reference_impl.embedding as _emb
def sinusoidal_positions(seq_len, d_model):
    return _emb.sinusoidal_positions(seq_len, d_model)
''', "reference solution"),
    Entry("patch_allclose_and_checks_module", "sinusoidal_positions", '''
import course.checks.ch01 as _ch01
import course.checks.diagnose as _diag
torch.allclose = lambda *a, **k: True
torch.isclose = lambda a, b, **k: torch.ones(torch.broadcast_shapes(a.shape, b.shape), dtype=torch.bool)
_ch01._ref_positions = lambda seq_len, d_model: torch.zeros(seq_len, d_model)
_ch01.mismatch = lambda *a, **k: None
_diag.mismatch = lambda *a, **k: None
''' + WRONG_POSITIONS, "start at 1", patches=True),
    Entry("input_embedding_builtin", "input_embedding", input_embedding('''
T, D = token_ids.shape[1], table.shape[1]
return F.embedding(token_ids, table) * math.sqrt(D) + sinusoidal_positions(T, D)
'''), "must not call F.embedding"),
    Entry("input_embedding_reference", "input_embedding", '''
from reference_impl import embedding as _e
def input_embedding(token_ids, table):
    return _e.input_embedding(token_ids, table)
''', "reference solution"),
    Entry("input_embedding_mutates_table", "input_embedding", input_embedding('''
T, D = token_ids.shape[1], table.shape[1]
table.mul_(math.sqrt(D))
return embed_tokens(token_ids, table) + sinusoidal_positions(T, D)
'''), "modified its input table in place"),
]
