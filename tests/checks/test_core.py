"""The grading-checks framework itself (course/checks/core.py), on small self-test checks."""

import io
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import course.checks.core as core
from course.checks import (
    REGISTRY,
    Case,
    Check,
    CheckFailed,
    check,
    checks_for,
    execute,
    guard,
    register,
    run_check,
    sanitize,
    seed_for,
)
from course.checks.diagnose import mismatch
from reference_impl import attention as ref

REPO = Path(__file__).resolve().parents[2]


class DoubleCheck(Check):
    """Self-test: obj(x) must return 2 * x, without torch.mul, without the reference causal_mask."""

    name = "selftest_double"
    assignment = "_selftest"
    forbidden = ("torch.mul", "torch.ops.aten.mul")
    forbidden_hint = "Add x to itself."
    reference = "reference_impl.attention.causal_mask"
    timeout_s = 4.0  # generous: the passing tests run on a loaded 2-core CI machine

    def make_cases(self, seed, hidden):
        g = torch.Generator().manual_seed(seed)
        sizes = (5, 7) if hidden else (3,)
        return [Case(f"x of shape ({n},)", {"x": torch.randn(n, generator=g)}, None) for n in sizes]

    def invoke(self, obj, inputs):
        return sanitize(obj(inputs["x"]))

    def judge(self, case, got, inputs_after):
        if not torch.equal(inputs_after["x"], case.inputs["x"]):
            return "your function modified its input x in place"
        return mismatch("your result", case.inputs["x"] * 2, got)


DOUBLE = register(DoubleCheck())


def good_double(x):
    return x + x


# ---------------------------------------------------------------------------
# Registry, seeds, cases
# ---------------------------------------------------------------------------


def test_registry_and_names():
    assert REGISTRY["selftest_double"] is DOUBLE
    assert checks_for("_selftest") == [DOUBLE]
    with pytest.raises(ValueError):
        register(type("Other", (DoubleCheck,), {})())  # the name is taken
    for name, c in REGISTRY.items():
        assert c.name == name and c.kind in ("function", "class")
        if not c.assignment.startswith("_"):
            assert (REPO / "solutions" / c.assignment).is_dir(), c.assignment
        with guard(c):  # every forbidden name and reference path resolves
            pass


def test_seeds_are_fixed_and_distinct():
    assert seed_for("causal_mask", False) == seed_for("causal_mask", False)
    assert seed_for("causal_mask", False) != seed_for("causal_mask", True)
    assert seed_for("causal_mask", False) != seed_for("scaled_dot_product_attention", False)
    assert seed_for("causal_mask", False) == 747482677  # regrading must not change the cases


def tree_equal(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(tree_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(tree_equal, a, b))
    return a == b


def roundtrip(value, weights_only=True):
    buffer = io.BytesIO()
    torch.save(value, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=weights_only)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_make_cases_is_deterministic_pure_and_picklable(name):
    c = REGISTRY[name]
    for hidden in (False, True):
        rng = torch.random.get_rng_state()
        first = c.make_cases(seed_for(name, hidden), hidden)
        assert torch.equal(rng, torch.random.get_rng_state()), "make_cases must not use the global RNG"
        second = c.make_cases(seed_for(name, hidden), hidden)
        assert first, name
        for a, b in zip(first, second, strict=True):
            assert a.label == b.label and tree_equal(a.inputs, b.inputs) and tree_equal(a.expected, b.expected)
            assert a.label.strip()
            # what the grading pipeline ships between processes: plain data, weights_only loadable
            assert tree_equal(roundtrip(a.inputs), a.inputs)
            assert tree_equal(roundtrip(a.expected), a.expected)
            whole = roundtrip(a, weights_only=False)
            assert isinstance(whole, Case) and tree_equal(whole.inputs, a.inputs)


# ---------------------------------------------------------------------------
# run_check
# ---------------------------------------------------------------------------


def test_pass_and_fail():
    assert check("selftest_double", good_double) is None
    assert run_check("selftest_double", good_double, hidden=True) is None
    with pytest.raises(CheckFailed, match=r"selftest_double: visible test case 1 of 1 failed \(x of shape"):
        check("selftest_double", lambda x: x * 3)
    with pytest.raises(CheckFailed, match="hidden test case"):
        check("selftest_double", lambda x: x + x if x.numel() < 5 else x, hidden=True)


def test_check_failed_is_an_assertion_error_with_a_message():
    assert issubclass(CheckFailed, AssertionError)
    assert str(CheckFailed("")) and str(CheckFailed(None))


@pytest.mark.parametrize("learner, needle", [
    (lambda x: None, "None (did you forget a return statement?)"),
    (lambda x: "2x", "it is a str"),
    (lambda x: (x + x, x), "it is a tuple of 2 values"),
    (lambda x: x.double() + x.double(), "dtype torch.float64"),
    (lambda x: torch.cat([x, x]), "has shape"),
])
def test_wrong_results_are_described(learner, needle):
    with pytest.raises(CheckFailed) as info:
        check("selftest_double", learner)
    assert needle in str(info.value)


def raise_bare(x):
    assert False


def raise_value_error(x):
    raise ValueError("boom")


@pytest.mark.parametrize("learner, needle", [
    (raise_bare, "raised AssertionError"),
    (raise_value_error, "raised ValueError: boom"),
    (None, "is None: run the cell"),
    (3, "must be a function"),
    (DoubleCheck, "must be a function"),
])
def test_messages_are_never_bare(learner, needle):
    with pytest.raises(CheckFailed) as info:
        check("selftest_double", learner)
    assert type(info.value) is CheckFailed
    assert needle in str(info.value) and str(info.value).strip()
    if learner in (raise_bare, raise_value_error):
        assert info.value.__cause__ is not None  # the learner's own traceback stays attached


def test_unknown_check_name():
    with pytest.raises(CheckFailed, match="no check named"):
        check("no_such_item", good_double)


def test_inputs_are_clones_and_mutation_is_reported():
    seen = []

    def mutating(x):
        seen.append(x)
        x.mul_(2)
        return x

    with pytest.raises(CheckFailed, match="modified its input x in place"):
        check("selftest_double", mutating)
    case = DOUBLE.make_cases(seed_for("selftest_double", False), False)[0]
    assert not torch.equal(seen[0], case.inputs["x"])  # the learner got a clone, the case is intact


def test_execute_returns_result_and_inputs_after_without_touching_the_originals():
    case = DOUBLE.make_cases(0, False)[0]
    original = case.inputs["x"].clone()

    def mutating(x):
        x.add_(1)
        return x + x

    got, after = execute(DOUBLE, mutating, case.inputs, case.label)
    assert torch.equal(case.inputs["x"], original)
    assert torch.equal(after["x"], original + 1)
    assert DOUBLE.judge(case, got, after) == "your function modified its input x in place"
    with pytest.raises(CheckFailed, match="raised ValueError"):
        execute(DOUBLE, raise_value_error, case.inputs, case.label)


def test_no_stderr_and_warnings_are_silenced(capfd):
    def noisy(x):
        warnings.warn("a learner warning")
        print("to stderr", file=sys.stderr)
        return x + x

    def noisy_wrong(x):
        warnings.warn("a learner warning")
        return x

    check("selftest_double", noisy)
    with pytest.raises(CheckFailed):
        check("selftest_double", noisy_wrong)
    assert capfd.readouterr().err == ""


def test_timeout():
    def slow(x):
        time.sleep(60)
        return x + x

    start = time.perf_counter()
    with pytest.raises(CheckFailed, match="took longer than 4 s"):
        check("selftest_double", slow)
    assert time.perf_counter() - start < 20


def test_sanitize():
    p = torch.nn.Parameter(torch.ones(2))
    out = sanitize({"a": (p, 1, "s", None), "b": [torch.zeros(1)]})
    assert type(out["a"][0]) is torch.Tensor and not out["a"][0].requires_grad
    assert out["a"][1:] == (1, "s", None) and isinstance(out["b"], list)

    class Sub(torch.Tensor):
        pass

    assert core.UNSUPPORTED in sanitize(torch.zeros(1).as_subclass(Sub))
    assert core.UNSUPPORTED in sanitize(object())
    assert roundtrip(sanitize([object(), torch.zeros(1)]))  # always weights_only-picklable


# ---------------------------------------------------------------------------
# guard
# ---------------------------------------------------------------------------


def state():
    return (sys.getprofile(), threading.getprofile(), torch._C._len_torch_function_stack(),
            torch._C._len_torch_dispatch_stack(), ref.causal_mask)


def test_guard_blocks_forbidden_callables_however_obtained():
    before = state()
    x = torch.ones(3)
    captured = torch.mul
    for call in (lambda: torch.mul(x, 2), lambda: captured(x, 2), lambda: x.mul(2), lambda: x * 2,
                 lambda: torch.ops.aten.mul.Tensor(x, x)):
        with pytest.raises(CheckFailed, match=r"must not call torch\.(ops\.aten\.)?mul.*Add x to itself"):
            with guard(DOUBLE):
                call()
    assert state() == before
    assert torch.equal(torch.mul(x, 2), x + x)  # usable again outside the guard


def test_guard_blocks_the_reference_item_but_not_the_others():
    before = state()
    captured = ref.causal_mask
    with pytest.raises(CheckFailed, match="reference solution"):
        with guard(DOUBLE):
            ref.causal_mask(3)
    with pytest.raises(CheckFailed, match="reference solution"):
        with guard(DOUBLE):
            captured(3)
    with guard(DOUBLE):
        out, _ = ref.scaled_dot_product_attention(torch.ones(1, 2, 2), torch.ones(1, 2, 2), torch.ones(1, 2, 2))
        torch.softmax(out, -1)
    assert state() == before
    assert torch.equal(ref.causal_mask(2), torch.tensor([[True, False], [True, True]]))


def test_guard_reraises_a_swallowed_violation():
    with pytest.raises(CheckFailed, match="must not call torch.mul"):
        with guard(DOUBLE):
            try:
                torch.mul(torch.ones(1), 2)
            except CheckFailed:
                pass
    with pytest.raises(CheckFailed, match="reference solution"):
        with guard(DOUBLE):
            for _ in range(2):  # the profile hook is gone after it fired once; the violation stays recorded
                try:
                    ref.causal_mask(2)
                except CheckFailed:
                    pass


def test_guard_removes_modes_left_behind():
    from torch.overrides import TorchFunctionMode

    class Lingering(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    def left_on_top():
        Lingering().__enter__()

    def ours_swapped_for_theirs():
        torch._C._pop_torch_function_stack()
        torch._C._push_on_torch_function_stack(Lingering())

    def dispatch_mode_removed():
        torch._C._pop_torch_dispatch_stack(None)

    before = state()
    for tamper in (left_on_top, ours_swapped_for_theirs, dispatch_mode_removed):
        with pytest.raises(CheckFailed, match="mode stack"):
            with guard(DOUBLE):
                tamper()
        assert state() == before


def test_guard_is_off_outside():
    with guard(DOUBLE):
        pass
    assert torch.equal(torch.mul(torch.ones(2), 2), torch.full((2,), 2.0))
    assert F.softmax(torch.zeros(2), -1).sum() == 1


# ---------------------------------------------------------------------------
# tamper resistance of the in-kernel runner
# ---------------------------------------------------------------------------


@pytest.fixture
def restore():
    saved = [(m, dict(vars(m))) for m in (torch, torch.testing, core)]
    saved_classes = [(c, dict(vars(c))) for c in (torch.Tensor, Check, DoubleCheck)]
    registry = dict(REGISTRY)
    yield
    for mod, d in saved:
        for k, v in d.items():
            if vars(mod).get(k, object()) is not v:
                setattr(mod, k, v)
    for klass, d in saved_classes:
        for k in [k for k in vars(klass) if k not in d]:
            delattr(klass, k)
        for k, v in d.items():
            if vars(klass).get(k, object()) is not v:
                setattr(klass, k, v)
    REGISTRY.clear()
    REGISTRY.update(registry)


def wrong(x):
    return x + x + x


@pytest.mark.parametrize("patch", [
    lambda: setattr(torch, "allclose", lambda *a, **k: True),
    lambda: setattr(torch, "equal", lambda *a, **k: True),
    lambda: setattr(torch, "isclose", lambda a, b, **k: torch.ones(a.shape, dtype=torch.bool)),
    lambda: setattr(torch.testing, "assert_close", lambda *a, **k: None),
    lambda: setattr(torch.Tensor, "all", lambda self, *a, **k: torch.tensor(True)),
    lambda: setattr(torch.Tensor, "__ne__", lambda self, other: torch.zeros(self.shape, dtype=torch.bool)),
    lambda: setattr(DoubleCheck, "judge", lambda *a, **k: None),
    lambda: setattr(DOUBLE, "judge", lambda *a, **k: None),
    lambda: REGISTRY.clear(),
    lambda: [setattr(core, n, lambda *a, **k: None) for n in core.__all__],
])
def test_patches_do_not_turn_a_wrong_answer_into_a_pass(patch, restore):
    patch()
    with pytest.raises(CheckFailed, match="differs from the expected values"):
        check("selftest_double", wrong)


def test_patching_the_checks_during_the_call_does_not_pass_a_wrong_answer():
    """A learner function that patches the judge's helpers *while it runs* still fails."""
    import course.checks.ch02 as ch02_module
    from course.checks import CheckFailed, run_check

    original = ch02_module.mismatch if hasattr(ch02_module, "mismatch") else None

    def causal_mask(seq_len):
        import course.checks.ch02 as target
        import course.checks.diagnose as diag

        target.mismatch = lambda *a, **k: None
        diag.mismatch = lambda *a, **k: None
        return torch.ones(seq_len, seq_len, dtype=torch.bool)  # wrong: nothing is masked

    try:
        with pytest.raises(CheckFailed):
            run_check("causal_mask", causal_mask)
    finally:
        if original is not None:
            ch02_module.mismatch = original
