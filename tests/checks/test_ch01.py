"""The chapter 1 checks against their proof corpus: right answers pass, mistakes are named, cheats fail.

Also: the reference passes (through copies), the expected values equal PyTorch's
F.embedding and the paper's formula, the cases hold the shapes that expose the classic
bugs, the positions' tolerance leaves room for float32 implementations, and the
out-of-process path gives the same verdicts.
"""

import math

import pytest
import torch
import torch.nn.functional as F

import course.checks.ch01 as ch01
import course.checks.util_modules as util_modules
from course.checks import CheckFailed, check
from reference_impl import embedding as ref

from . import corpus_ch01 as corpus
from .corpus_ch01 import CHEATS, CORRECT, MISTAKES
from .harness import all_cases, corpus_suite
from .test_ch02 import load, out_of_process_verdicts

ITEMS = ("embed_tokens", "sinusoidal_positions", "input_embedding")


# ---------------------------------------------------------------------------
# Expected values and the cases that expose the bugs
# ---------------------------------------------------------------------------


def paper_positions(seq_len, d_model):
    """float64 loops straight from the paper's formula: PE[p, 2i] = sin(p / 10000^(2i/D)), PE[p, 2i+1] = cos."""
    rows = []
    for p in range(seq_len):
        row = []
        for i in range(d_model // 2):
            angle = p / 10000 ** (2 * i / d_model)
            row += [math.sin(angle), math.cos(angle)]
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


def test_expected_values_equal_pytorch_and_the_paper():
    for case in all_cases("embed_tokens"):
        torch.testing.assert_close(case.expected, F.embedding(case.inputs["token_ids"], case.inputs["table"]),
                                   rtol=0, atol=0)
    for case in all_cases("sinusoidal_positions"):
        T, D = case.inputs["seq_len"], case.inputs["d_model"]
        assert case.expected.dtype == torch.float32
        torch.testing.assert_close(case.expected.double(), paper_positions(T, D), rtol=0, atol=1e-7)
    for case in all_cases("input_embedding"):
        ids, table = case.inputs["token_ids"], case.inputs["table"]
        D = table.shape[1]
        want = F.embedding(ids, table.double()) * math.sqrt(D) + paper_positions(ids.shape[1], D)
        torch.testing.assert_close(case.expected, want.float())


def test_embedding_cases_expose_the_bugs():
    cases = all_cases("embed_tokens")
    shapes = [tuple(c.inputs["token_ids"].shape) for c in cases]
    assert () in shapes and any(len(s) == 1 for s in shapes) and any(len(s) == 3 for s in shapes)
    assert any(s[:1] == (1,) for s in shapes), "batch 1"
    for c in cases:
        ids = c.inputs["token_ids"].reshape(-1)
        assert ids.dtype == torch.long
        if ids.numel() > 1:
            assert ids.unique().numel() < ids.numel(), f"repeated ids: {c.label}"
    assert any(int(c.inputs["token_ids"].max()) == c.inputs["table"].shape[0] - 1 for c in cases), "the last row"
    visible = all_cases("embed_tokens", False)
    assert any(int(c.inputs["token_ids"].max()) < c.inputs["table"].shape[0] - 1 for c in visible), \
        "a visible case without the last row (exposes one_hot without num_classes)"


def test_position_cases_expose_the_bugs():
    sizes = [(c.inputs["seq_len"], c.inputs["d_model"]) for c in all_cases("sinusoidal_positions")]
    assert (1, 6) in sizes, "seq_len 1 visible (positions from 0)"
    assert any((D // 2) % 2 == 1 for _, D in sizes), "an odd number of pairs"
    assert any(T > 200 for T, _ in sizes) and any(D == 2 for _, D in sizes)
    for T, D in sizes:
        assert D % 2 == 0, "the spec says d_model is even"
    inputs = [tuple(c.inputs["token_ids"].shape) for c in all_cases("input_embedding")]
    assert any(B == 1 and T > 1 for B, T in inputs), "batch 1 with T > 1 (seq_len taken from the batch axis)"
    assert any(B > 1 and B != T for B, T in inputs)


@pytest.mark.parametrize("seq_len, d_model", [(257, 12), (50, 16), (20, 64), (1000, 8), (512, 32)])
def test_positions_tolerance_leaves_room_for_float32(seq_len, d_model):
    """Float32 formulations stay within a third of the tolerance; every catalogued mistake is far outside it."""
    want = paper_positions(seq_len, d_model)
    atol = ch01.positions_atol(seq_len)
    pos = torch.arange(seq_len, dtype=torch.float32)[:, None]
    two_i = torch.arange(0, d_model, 2, dtype=torch.float32)
    for freq in (torch.exp(two_i * (-math.log(10000.0) / d_model)), 1 / 10000 ** (two_i / d_model),
                 torch.pow(torch.tensor(10000.0), -two_i / d_model)):
        got = torch.stack([torch.sin(pos * freq), torch.cos(pos * freq)], -1).reshape(seq_len, d_model)
        assert float((got.double() - want).abs().max()) < atol / 3
    for wrong, parts in ch01._positions_mistakes(seq_len, d_model):
        assert float((wrong - want).abs().max()) > 100 * atol, parts


def test_out_of_process_path_gives_the_same_verdicts():
    good = next(e for e in CORRECT if e.id == "one_hot_matmul")
    assert out_of_process_verdicts(good) == [None] * len(all_cases("embed_tokens", False))
    for entry_id in ("sin_cos_swapped", "no_sqrt_scaling", "builtin_f_embedding"):
        entry = next(e for e in MISTAKES + CHEATS if e.id == entry_id)
        messages = [v for v in out_of_process_verdicts(entry) if v]
        assert messages and entry.expect.lower() in messages[0].lower(), messages


def test_input_embedding_is_graded_with_the_course_helpers_which_are_put_back():
    entry = next(e for e in CORRECT if e.id == "with_wrong_helpers")
    obj = load(entry)
    mine = {name: obj.__globals__[name] for name in ("embed_tokens", "sinusoidal_positions")}
    check("input_embedding", obj)
    for name, fn in mine.items():
        assert obj.__globals__[name] is fn
    with pytest.raises(CheckFailed):  # the learner's own helpers are still graded (and wrong)
        check("sinusoidal_positions", mine["sinusoidal_positions"])


globals().update(corpus_suite("01_embedding", ITEMS, corpus, (ch01, util_modules), ref))
