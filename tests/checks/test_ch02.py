"""The chapter 2 checks against the proof corpus: right answers pass, mistakes are named, cheats fail.

Also: the reference itself passes (through copies, since the check blocks the reference
by design), the cases have the shapes that expose the classic bugs, and the
out-of-process path (make_cases -> execute -> torch.save/load -> judge) gives the same
verdicts.
"""

import io
import types

import pytest
import torch
import torch.nn as nn

import course.checks.ch02 as ch02
import course.checks.core as core
import course.checks.diagnose as diagnose
from course.checks import REGISTRY, CheckFailed, check, checks_for, execute, seed_for
from reference_impl import attention as ref

from .corpus_ch02 import CHEATS, CORRECT, MISTAKES, PREAMBLE, Entry

ITEMS = ("causal_mask", "scaled_dot_product_attention", "MultiHeadAttention")


def load(entry: Entry):
    """Run the entry's source as a notebook cell would, return the graded object it defines."""
    namespace = {"__name__": f"learner_{entry.id}"}
    exec(compile(PREAMBLE + entry.source, f"<answer cell {entry.id}>", "exec"), namespace)
    return namespace[entry.item]


class GlobalState:
    """Snapshot of everything a cheating cell may patch, restored on exit."""

    def __init__(self):
        import course.checks as package

        self.modules = [torch, torch.nn.functional, torch.testing, package, core, diagnose, ch02]
        self.classes = [torch.Tensor, core.Check] + [type(c) for c in REGISTRY.values()]
        self.registry = dict(REGISTRY)

    def __enter__(self):
        self.saved_modules = [(m, dict(vars(m))) for m in self.modules]
        self.saved_classes = [(c, dict(vars(c))) for c in self.classes]
        self.saved_instances = [(c, dict(vars(c))) for c in self.registry.values()]
        return self

    def __exit__(self, *exc):
        for mod, saved in self.saved_modules:
            for key, val in saved.items():
                if vars(mod).get(key, object()) is not val:
                    setattr(mod, key, val)
        for klass, saved in self.saved_classes:
            for key in [k for k in vars(klass) if k not in saved]:
                delattr(klass, key)
            for key, val in saved.items():
                if vars(klass).get(key, object()) is not val:
                    setattr(klass, key, val)
        for inst, saved in self.saved_instances:
            vars(inst).clear()
            vars(inst).update(saved)
        REGISTRY.clear()
        REGISTRY.update(self.registry)
        return False


def failure_of(entry: Entry) -> str:
    """The message of the first failing check (visible first, then hidden); '' if all pass."""
    with GlobalState():
        obj = load(entry)
        for hidden in (False, True):
            try:
                check(entry.item, obj, hidden=hidden)
            except CheckFailed as exc:
                return str(exc)
    return ""


def test_corpus_covers_every_chapter_2_item():
    assert [c.name for c in checks_for("02_self_attention")] == list(ITEMS)
    for item in ITEMS:
        assert any(e.item == item for e in CORRECT), item
        assert any(e.item == item for e in MISTAKES), item
        assert any(e.item == item for e in CHEATS), item
    ids = [e.id for e in CORRECT + MISTAKES + CHEATS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("entry", CORRECT, ids=lambda e: f"{e.item}-{e.id}")
def test_correct_alternative_passes(entry):
    obj = load(entry)
    check(entry.item, obj)
    check(entry.item, obj, hidden=True)


@pytest.mark.parametrize("entry", MISTAKES + CHEATS, ids=lambda e: f"{e.item}-{e.id}")
def test_mistake_or_cheat_fails_with_its_diagnosis(entry):
    message = failure_of(entry)
    assert message, f"{entry.id} passed every case"
    assert message.startswith(f"{entry.item}: "), message
    assert "test case" in message, message
    assert entry.expect.lower() in message.lower(), message


def test_cheating_cells_are_undone_between_tests():
    assert torch.allclose(torch.zeros(1), torch.ones(1)) is False
    assert callable(core.run_check) and core.run_check is check
    assert "judge" not in vars(core.Check) or core.Check.judge is core.Check.__dict__["judge"]
    assert set(REGISTRY) >= set(ITEMS)


def test_learner_patches_survive_a_check():
    """The checks restore their own view of torch while they run, not permanently."""
    fake = lambda *a, **k: True  # noqa: E731
    with GlobalState():
        torch.allclose = fake
        check("causal_mask", load(CORRECT[0]))
        assert torch.allclose is fake


# ---------------------------------------------------------------------------
# The reference passes (through copies: the check blocks the reference's own code)
# ---------------------------------------------------------------------------


def copy_function(fn, owner=None):
    """The same function with a distinct code object (code objects compare by content)."""
    code = fn.__code__.replace(co_firstlineno=fn.__code__.co_firstlineno + 100_000)
    closure = fn.__closure__
    if owner is not None and "__class__" in code.co_freevars:  # zero-argument super() needs the new class
        closure = tuple(types.CellType(owner) if name == "__class__" else cell
                        for name, cell in zip(code.co_freevars, closure))
    return types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, closure)


def copy_class(cls):
    plain = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
    new = type(cls.__name__, cls.__bases__, plain)
    for key, val in plain.items():
        if isinstance(val, types.FunctionType):
            setattr(new, key, copy_function(val, owner=new))
    return new


@pytest.mark.parametrize("hidden", [False, True], ids=["visible", "hidden"])
@pytest.mark.parametrize("item", ITEMS)
def test_reference_passes_its_own_checks(item, hidden):
    original = getattr(ref, item)
    clone = copy_class(original) if isinstance(original, type) else copy_function(original)
    check(item, clone, hidden=hidden)
    # and the judge accepts the reference's float32 results directly (no guard involved)
    c = REGISTRY[item]
    for case in c.make_cases(seed_for(item, hidden), hidden):
        work = core.clone_tree(case.inputs)
        assert c.judge(case, c.invoke(clone, work), work) is None, case.label


@pytest.mark.parametrize("item", ITEMS)
def test_the_reference_itself_is_blocked(item):
    with pytest.raises(CheckFailed, match="reference solution"):
        check(item, getattr(ref, item))


# ---------------------------------------------------------------------------
# The cases expose the classic bugs
# ---------------------------------------------------------------------------


def all_cases(item):
    c = REGISTRY[item]
    return [case for hidden in (False, True) for case in c.make_cases(seed_for(item, hidden), hidden)]


def test_attention_cases_cover_the_shapes_that_expose_bugs():
    cases = REGISTRY["scaled_dot_product_attention"].make_cases(seed_for("scaled_dot_product_attention", False), False)
    shapes = [(c.inputs["q"].shape, c.inputs["k"].shape, c.inputs["v"].shape, c.inputs["mask"]) for c in cases]
    assert any(k[-1] != v[-1] for q, k, v, m in shapes), "d_v != d_k"
    assert any(q[-2] != k[-2] for q, k, v, m in shapes), "T_k != T_q"
    assert any(q[0] == 1 and len(q) == 3 for q, k, v, m in shapes), "batch 1"
    assert any(len(q) > 3 for q, k, v, m in shapes), "extra leading dims"
    assert any(m is not None and m.dim() == 2 and len(q) > 2 for q, k, v, m in shapes), "(T_q, T_k) mask broadcast"
    assert all(s % 2 == 1 for s in shapes[2][0][-2:-1]), "an odd size"
    for case in all_cases("scaled_dot_product_attention"):
        mask = case.inputs["mask"]
        if mask is not None:
            assert mask.dtype == torch.bool and bool(mask.any(-1).all()), "no fully masked row"
        assert case.inputs["q"].shape[-1] > 1, "d_k = 1 would hide scaling mistakes"
    hidden = all_cases("scaled_dot_product_attention")
    assert any(c.inputs["q"].dim() == 2 for c in hidden), "no batch axis at all"


def test_mha_cases_cover_cross_attention_and_masks():
    cases = all_cases("MultiHeadAttention")
    ctx = [c for c in cases if c.inputs["context"] is not None]
    assert any(c.inputs["context"].shape[1] != c.inputs["x"].shape[1] and c.inputs["mask"] is None for c in ctx)
    assert any(c.inputs["mask"] is not None and c.inputs["mask"].shape[0] != c.inputs["mask"].shape[1] for c in ctx)
    assert any(c.inputs["n_heads"] == 1 for c in cases) and any(c.inputs["n_heads"] > 2 for c in cases)
    assert any(c.inputs["x"].shape[0] == 1 for c in cases)


def test_mha_expected_values_equal_torch_multihead_attention():
    """The expected results are PyTorch's nn.MultiheadAttention with the weights mapped across."""
    for case in all_cases("MultiHeadAttention"):
        inp = case.inputs
        D, H, W = inp["d_model"], inp["n_heads"], inp["weights"]
        torch_mha = nn.MultiheadAttention(D, H, batch_first=True)
        with torch.no_grad():
            torch_mha.in_proj_weight.copy_(torch.cat([W["w_q.weight"], W["w_k.weight"], W["w_v.weight"]]))
            torch_mha.in_proj_bias.copy_(torch.cat([W["w_q.bias"], W["w_k.bias"], W["w_v.bias"]]))
            torch_mha.out_proj.weight.copy_(W["w_o.weight"])
            torch_mha.out_proj.bias.copy_(W["w_o.bias"])
            ctx = inp["x"] if inp["context"] is None else inp["context"]
            mask = None if inp["mask"] is None else ~inp["mask"]
            out, _ = torch_mha(inp["x"], ctx, ctx, attn_mask=mask, need_weights=False)
        torch.testing.assert_close(out, case.expected, rtol=1e-5, atol=1e-5)


def test_visible_and_hidden_cases_differ():
    for item in ITEMS:
        c = REGISTRY[item]
        visible = [case.label for case in c.make_cases(seed_for(item, False), False)]
        hidden = [case.label for case in c.make_cases(seed_for(item, True), True)]
        assert not set(visible) & set(hidden), item


# ---------------------------------------------------------------------------
# The out-of-process path used by `course grade`: same verdicts
# ---------------------------------------------------------------------------


def roundtrip(value):
    buffer = io.BytesIO()
    torch.save(value, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def tree_equal(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(tree_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(tree_equal, a, b))
    return a == b


def out_of_process_verdicts(entry: Entry):
    c = REGISTRY[entry.item]
    obj = load(entry)
    verdicts = []
    for case in c.make_cases(seed_for(entry.item, False), False):
        parent_case = core.Case(case.label, roundtrip(case.inputs), roundtrip(case.expected))
        try:
            got, after = execute(c, obj, roundtrip(parent_case.inputs), case.label)  # the child's part
        except CheckFailed as exc:
            verdicts.append(str(exc))
            continue
        verdicts.append(c.judge(parent_case, roundtrip(got), roundtrip(after)))  # the parent's part
        assert tree_equal(parent_case.inputs, case.inputs) and tree_equal(parent_case.expected, case.expected)
    return verdicts


@pytest.mark.parametrize("entry_id", ["matmul_masked_fill", "view_transpose", "tril_ones"])
def test_out_of_process_path_passes_correct_answers(entry_id):
    entry = next(e for e in CORRECT if e.id == entry_id)
    verdicts = out_of_process_verdicts(entry)
    assert verdicts and verdicts == [None] * len(verdicts)


@pytest.mark.parametrize("entry_id", ["softmax_query_axis", "split_without_transpose", "strict_lower",
                                      "mutates_input_q", "builtin_sdpa_captured_at_import",
                                      "stores_attention_weights_on_self"])
def test_out_of_process_path_names_the_mistake(entry_id):
    entry = next(e for e in MISTAKES + CHEATS if e.id == entry_id)
    messages = [v for v in out_of_process_verdicts(entry) if v]
    assert messages and entry.expect.lower() in messages[0].lower(), messages
