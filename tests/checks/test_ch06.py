"""The chapter 6 checks against their proof corpus: right answers pass, mistakes are named, cheats fail.

Also: the reference passes (through copies), the expected values equal PyTorch's F.unfold /
nn.TransformerEncoderLayer computations with the weights mapped across, the checks' float64
model of the ViT agrees with them, the training check keeps the held-out labels to itself,
measures CPU time without the guard's overhead and without trusting the learner's clock, and
the out-of-process path gives the same verdicts.
"""

import pytest
import torch
import torch.nn.functional as F

import course.checks.ch06 as ch06
import course.checks.util_modules as util_modules
import course.checks.util_training as util_training
from course.checks import REGISTRY, CheckFailed, check, execute
from reference_impl import vit as ref
from reference_impl.data import load_digits_split

from .corpus_ch02 import Entry
from . import corpus_ch06 as corpus
from .corpus_ch06 import CHEATS, CHEATS_DURING_CALL, CORRECT, MISTAKES, SETUP, train
from .harness import all_cases, corpus_suite, failure_of
from .test_ch02 import load, out_of_process_verdicts
from .test_ch03 import torch_layer

ITEMS = ("patchify", "vit_embed", "VisionTransformer", "train_vit")
MODULES = (ch06, util_modules, util_training)


def entry(entry_id):
    return next(e for e in CORRECT + MISTAKES + CHEATS + CHEATS_DURING_CALL if e.id == entry_id)


def test_no_mode_or_profiler_is_left_behind():
    import sys

    modes = torch._C._len_torch_function_stack(), torch._C._len_torch_dispatch_stack()
    profile = sys.getprofile()
    for item, entry_id in (("patchify", "reshape_permute"), ("train_vit", "returns_untrained_model"),
                           ("train_vit", "train_leaves_a_mode_on")):
        try:
            check(item, load(entry(entry_id)))
        except CheckFailed:
            pass
        assert (torch._C._len_torch_function_stack(), torch._C._len_torch_dispatch_stack()) == modes
        assert sys.getprofile() is profile


# ---------------------------------------------------------------------------
# Expected values = PyTorch's computations; the checks' float64 model agrees
# ---------------------------------------------------------------------------


def test_patchify_expected_equals_f_unfold():
    for case in all_cases("patchify"):
        images, p = case.inputs["images"], case.inputs["patch_size"]
        torch.testing.assert_close(case.expected, F.unfold(images, p, stride=p).transpose(1, 2), rtol=0, atol=0)


def test_vit_embed_expected_equals_unfold_linear_cat():
    for case in all_cases("vit_embed"):
        inp = case.inputs
        p = inp["patch_size"]
        patches = F.unfold(inp["images"].double(), p, stride=p).transpose(1, 2)
        tokens = F.linear(patches, inp["proj_weight"].double(), inp["proj_bias"].double())
        cls = inp["cls_token"].double().expand(tokens.shape[0], 1, -1)
        want = torch.cat([cls, tokens], dim=1) + inp["pos_embed"].double()
        torch.testing.assert_close(case.expected, want.float(), msg=case.label)


def vit_with_torch_layers(inp):
    """The ViT forward written with F.unfold, nn.TransformerEncoderLayer (mapped weights) and F.layer_norm."""
    W = {k: v.double() for k, v in inp["weights"].items()}
    p, D, H, F_ = inp["patch_size"], inp["d_model"], inp["n_heads"], inp["d_ff"]
    x = F.unfold(inp["images"].double(), p, stride=p).transpose(1, 2) @ W["proj.weight"].T + W["proj.bias"]
    x = torch.cat([W["cls_token"].expand(x.shape[0], 1, D), x], dim=1) + W["pos_embed"]
    with torch.no_grad():
        for i in range(inp["n_layers"]):
            x = torch_layer(W, f"blocks.{i}.", D, H, F_)(x)
    x = F.layer_norm(x, (D,), W["norm.weight"], W["norm.bias"], 1e-5)
    return x[:, 0] @ W["head.weight"].T + W["head.bias"]


def test_vision_transformer_expected_equals_torch_encoder_layers():
    for case in all_cases("VisionTransformer"):
        torch.testing.assert_close(case.expected, vit_with_torch_layers(case.inputs).float(), msg=case.label)
        model = ch06._Model64(case.inputs).forward(case.inputs["images"])
        torch.testing.assert_close(case.expected, model.float(), msg=case.label)


def test_float32_rounding_stays_far_inside_the_tolerance():
    for case in all_cases("VisionTransformer"):
        inp = case.inputs
        module = ref.VisionTransformer(*(inp[k] for k in ("image_size", "patch_size", "in_channels", "n_classes",
                                                          "d_model", "n_heads", "n_layers", "d_ff")))
        module.load_state_dict(inp["weights"])
        with torch.no_grad():
            got = module(inp["images"])
        want = case.expected.double()
        err = (got.double() - want).abs() / (1e-5 + 1.3e-6 * want.abs())
        assert float(err.max()) < 0.1, (case.label, float(err.max()))


def test_cases_expose_the_bugs():
    shapes = [(c.inputs["images"].shape, c.inputs["patch_size"]) for c in all_cases("patchify")]
    grids = [(s[2] // p, s[3] // p) for s, p in shapes]
    assert any(a != b and a > 1 and b > 1 for a, b in grids), "a non-square grid shows column-major order"
    assert any(s[1] > 1 and p > 1 for s, p in shapes), "channels and patches > 1 show the (p, p, C) order"
    assert any(s[0] == 1 for s, p in shapes) and any(p == 1 for s, p in shapes)
    visible = [c for c in all_cases("patchify", False)]
    assert any(c.inputs["images"].shape[1] > 1 and c.inputs["images"].shape[2] != c.inputs["images"].shape[3]
               for c in visible)
    embed = all_cases("vit_embed")
    assert any(c.inputs["proj_weight"].shape[0] == c.inputs["proj_weight"].shape[1] for c in embed), \
        "D == C*p*p: a projection after the concatenation runs (and is diagnosed)"
    assert any(c.inputs["images"].shape[0] > 1 for c in all_cases("vit_embed", False)), "unexpanded cls fails"
    assert {c.inputs["as_parameters"] for c in embed} == {True, False}
    for c in embed + all_cases("VisionTransformer"):
        cls = c.inputs["cls_token"] if "cls_token" in c.inputs else c.inputs["weights"]["cls_token"]
        assert float(cls.abs().max()) > 0.1, "a class token that is not zeros (a missing one shows)"
    vits = all_cases("VisionTransformer")
    assert {c.inputs["n_layers"] for c in vits} >= {1, 2, 3}
    assert any(c.inputs["images"].shape[0] == 1 for c in vits) and any(c.inputs["in_channels"] > 1 for c in vits)


# ---------------------------------------------------------------------------
# The graded training cell
# ---------------------------------------------------------------------------


def test_training_cases_are_the_digits_splits_and_keep_the_labels_to_the_judge():
    (visible,), (hidden,) = all_cases("train_vit", False), all_cases("train_vit", True)
    X_train, y_train, X_test, y_test = load_digits_split()
    assert torch.equal(visible.inputs["X_train"], X_train) and torch.equal(visible.inputs["y_train"], y_train)
    assert torch.equal(visible.inputs["X_eval"], X_test) and torch.equal(visible.expected, y_test)
    assert not torch.equal(hidden.inputs["X_eval"], X_test)
    for case in (visible, hidden):
        assert set(case.inputs) == {"X_train", "y_train", "X_eval", "torch_seed"}
        assert case.expected.shape == (450,) and case.inputs["X_eval"].shape == (450, 1, 8, 8)


def test_training_judge_counts_accuracy_and_cpu_time():
    c = REGISTRY["train_vit"]
    case = all_cases("train_vit", False)[0]
    labels = case.expected
    perfect = F.one_hot(labels, 10).float()
    assert c.judge(case, {"logits": perfect, "cpu_seconds": 59.0}, case.inputs) is None
    slow = c.judge(case, {"logits": perfect, "cpu_seconds": 75.0}, case.inputs)
    assert "75.0 CPU seconds" in slow and "budget of 60" in slow
    wrong = perfect.clone()
    wrong[:60] = F.one_hot((labels[:60] + 1) % 10, 10).float()  # 60 of 450 wrong: 86.7%
    msg = c.judge(case, {"logits": wrong, "cpu_seconds": 5.0}, case.inputs)
    assert "86.7%" in msg and "at least 90%" in msg
    both = c.judge(case, {"logits": wrong, "cpu_seconds": 61.0}, case.inputs)
    assert "86.7%" in both and "61.0 CPU seconds" in both
    nan = c.judge(case, {"logits": torch.full((450, 10), float("nan")), "cpu_seconds": 1.0}, case.inputs)
    assert "NaN" in nan


BUSY = '''
X = torch.randn(8, 8)
for _ in range({n}):
    X = torch.tanh(X @ X.T / 8 + 0.1)
return VisionTransformer(8, 4, 1, 10, 16, 2, 1, 32)
'''


def test_training_time_is_measured_without_the_guards_overhead():
    """A torch-heavy Python loop costs about the same CPU time inside the check as outside it."""
    obj = load(Entry("busy", "train_vit", train(BUSY.format(n=4000))))
    inputs = all_cases("train_vit", False)[0].inputs
    start = util_training.process_time()
    obj(inputs["X_train"], inputs["y_train"])
    plain = util_training.process_time() - start
    got, _ = execute(REGISTRY["train_vit"], obj, inputs)  # under guard(check), as in a test cell
    assert got["cpu_seconds"] < 1.6 * plain + 0.05, (got["cpu_seconds"], plain)


def test_a_patched_clock_does_not_change_the_measured_time():
    source = "import time\n" + train("time.process_time = lambda: 0.0\ntime.perf_counter = lambda: 0.0\n"
                                     + BUSY.format(n=2000))
    obj = load(Entry("patched_clock", "train_vit", source))
    import time

    saved = (time.process_time, time.perf_counter)
    try:
        got, _ = execute(REGISTRY["train_vit"], obj, all_cases("train_vit", False)[0].inputs)
    finally:
        time.process_time, time.perf_counter = saved
    assert got["cpu_seconds"] > 0.01


def test_training_runs_on_one_thread_and_restores_the_thread_count():
    seen = []
    source = train("seen.append(torch.get_num_threads())\nreturn VisionTransformer(8, 4, 1, 10, 16, 2, 1, 32)")
    obj = load(Entry("threads", "train_vit", source))
    obj.__globals__["seen"] = seen
    before = torch.get_num_threads()
    with pytest.raises(CheckFailed, match="hardly learned"):
        check("train_vit", obj)
    assert seen == [1] and torch.get_num_threads() == before


# ---------------------------------------------------------------------------
# The out-of-process path used by `course grade`: same verdicts
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("entry_id", ["reshape_permute", "cat_expand", "modulelist_vit_embed",
                                      "train_classifier_six_epochs"])
def test_out_of_process_path_passes_correct_answers(entry_id):
    verdicts = out_of_process_verdicts(entry(entry_id))
    assert verdicts and verdicts == [None] * len(verdicts)


@pytest.mark.parametrize("entry_id", ["no_permute", "builtin_unfold", "cls_appended", "mean_pool_readout",
                                      "returns_untrained_model", "train_with_captured_reference_model"])
def test_out_of_process_path_names_the_mistake(entry_id):
    e = entry(entry_id)
    messages = [v for v in out_of_process_verdicts(e) if v]
    assert messages and e.expect.lower() in messages[0].lower(), messages


# ---------------------------------------------------------------------------
# Patches made while the graded function runs, and the real grading sandbox
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("entry", CHEATS_DURING_CALL, ids=lambda e: f"{e.item}-{e.id}")
def test_patches_made_during_the_call_are_undone_before_judging_in_kernel(entry):
    message = failure_of(entry, *MODULES)
    assert message and entry.expect.lower() in message.lower(), message


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    from course.grading.pipeline import default_modules
    from course.grading.sandbox import ForkServer

    server = ForkServer(default_modules()).start()
    yield server, tmp_path_factory.mktemp("ch06_sandbox") / "work"
    server.close()


def sandbox_verdict(sandbox, source: str, name: str) -> str:
    """Run the setup cell and ``source`` in a real grading child; the parent judges ``name``'s check."""
    import time

    from course.grading import judge
    from course.grading.sandbox import Limits

    server, work = sandbox
    work.mkdir(parents=True, exist_ok=True)
    child = server.spawn(work, Limits())
    try:
        for cell in ("import math\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
                     "from course.checks import check\n" + SETUP, source):
            header, _ = child.request({"op": "exec", "source": cell}, 120)
            assert header.get("error") is None, header
        item, lost = judge.run_check(child, f"test_{name}", name, time.monotonic() + 300)
        assert lost is None
        return "" if item.passed else item.message
    finally:
        child.close()


@pytest.mark.parametrize("entry", CHEATS_DURING_CALL, ids=lambda e: f"{e.item}-{e.id}")
def test_the_grading_sandbox_judges_patches_made_during_the_call(sandbox, entry):
    message = sandbox_verdict(sandbox, entry.source, entry.item)
    assert message and entry.expect.lower() in message.lower(), message


def test_the_grading_sandbox_trains_and_grades_a_correct_train_vit(sandbox):
    assert sandbox_verdict(sandbox, entry("train_classifier_six_epochs").source, "train_vit") == ""


globals().update(corpus_suite("06_vit", ITEMS, corpus, (*MODULES,), ref, reference_items=ITEMS[:3]))
