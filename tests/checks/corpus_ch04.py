"""Proof corpus for the chapter 4 checks: learner answers as notebook-cell source.

Same format as corpus_ch02 (``Entry``; ``expect`` None = must pass, else a piece of the
failure message). CORRECT: other valid formulations; MISTAKES: the classic ones, each
named by the check; CHEATS: forbidden built-ins, the reference, patched comparisons,
mutated inputs.
"""

from __future__ import annotations

from .corpus_ch02 import Entry

# ---------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------

SOFTMAX = '''
def stable_softmax(logits, temperature=1.0, dim=-1):
    z = logits / temperature
    z = z - z.amax(dim=dim, keepdim=True)
    e = torch.exp(z)
    return e / e.sum(dim=dim, keepdim=True)
'''


def softmax_with(**replace: str) -> str:
    src = SOFTMAX
    for old, new in replace.items():
        old = {"scale": "z = logits / temperature",
               "shift": "z = z - z.amax(dim=dim, keepdim=True)",
               "exp": "e = torch.exp(z)",
               "ret": "return e / e.sum(dim=dim, keepdim=True)"}[old]
        assert old in src, old
        src = src.replace(old, new)
    return src


CE = '''
def cross_entropy(logits, targets):
    m = logits.amax(dim=-1, keepdim=True)
    shifted = logits - m
    log_sum = torch.log(torch.exp(shifted).sum(dim=-1))
    target = shifted[torch.arange(logits.shape[0]), targets]
    return (log_sum - target).mean()
'''


def ce_with(**replace: str) -> str:
    src = CE
    for old, new in replace.items():
        old = {"max": "m = logits.amax(dim=-1, keepdim=True)",
               "shift": "shifted = logits - m",
               "lse": "log_sum = torch.log(torch.exp(shifted).sum(dim=-1))",
               "target": "target = shifted[torch.arange(logits.shape[0]), targets]",
               "ret": "return (log_sum - target).mean()"}[old]
        assert old in src, old
        src = src.replace(old, new)
    return src


TOPK = '''
def top_k_filter(logits, k):
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))
'''

GREEDY = '''
def greedy_decode(model, prompt, max_new_tokens):
    ids = prompt
    for _ in range(max_new_tokens):
        logits = model(ids)
        next_id = logits[:, -1, :].argmax(dim=-1, keepdim=True)
        ids = torch.cat([ids, next_id], dim=1)
    return ids
'''


def greedy_with(**replace: str) -> str:
    src = GREEDY
    for old, new in replace.items():
        old = {"call": "logits = model(ids)",
               "pick": "next_id = logits[:, -1, :].argmax(dim=-1, keepdim=True)",
               "append": "ids = torch.cat([ids, next_id], dim=1)",
               "loop": "for _ in range(max_new_tokens):",
               "ret": "return ids"}[old]
        assert old in src, old
        src = src.replace(old, new)
    return src


# ---------------------------------------------------------------------------
# Correct alternatives: must pass (visible and hidden)
# ---------------------------------------------------------------------------

CORRECT = [
    # stable_softmax
    Entry("amax_exp_sum", "stable_softmax", SOFTMAX),
    Entry("max_values_shift_before_temperature", "stable_softmax", '''
def stable_softmax(logits, temperature=1.0, dim=-1):
    shifted = (logits - logits.max(dim=dim, keepdim=True).values) / temperature
    e = shifted.exp()
    return e / e.sum(dim, keepdim=True)
'''),
    Entry("movedim_to_last_axis", "stable_softmax", '''
def stable_softmax(logits, temperature=1.0, dim=-1):
    z = logits.movedim(dim, -1) * (1.0 / temperature)
    z = z - z.amax(-1, keepdim=True)
    p = z.exp() / z.exp().sum(-1, keepdim=True)
    return p.movedim(-1, dim)
'''),
    Entry("float64_inside", "stable_softmax", '''
def stable_softmax(logits, temperature=1.0, dim=-1):
    z = logits.double() / temperature
    e = torch.exp(z - z.amax(dim=dim, keepdim=True))
    return (e / e.sum(dim=dim, keepdim=True)).to(logits.dtype)
'''),
    # cross_entropy
    Entry("shift_gather_mean", "cross_entropy", CE),
    Entry("logsumexp_by_hand_minus_target", "cross_entropy", '''
def cross_entropy(logits, targets):
    m = logits.max(dim=1, keepdim=True).values
    lse = m.squeeze(1) + torch.log(torch.exp(logits - m).sum(dim=1))
    picked = logits.gather(1, targets.unsqueeze(1)).squeeze(1)
    return torch.mean(lse - picked)
'''),
    Entry("log_probs_times_one_hot", "cross_entropy", '''
def cross_entropy(logits, targets):
    shifted = logits - logits.amax(-1, keepdim=True)
    log_probs = shifted - shifted.exp().sum(-1, keepdim=True).log()
    one_hot = F.one_hot(targets, num_classes=logits.shape[-1]).to(logits.dtype)
    return -(log_probs * one_hot).sum() / logits.shape[0]
'''),
    Entry("python_loop_over_rows", "cross_entropy", '''
def cross_entropy(logits, targets):
    losses = []
    for row, t in zip(logits, targets):
        m = row.max()
        losses.append(m + torch.log(torch.exp(row - m).sum()) - row[t])
    return torch.stack(losses).mean()
'''),
    Entry("detached_max", "cross_entropy", ce_with(max="m = logits.detach().amax(dim=-1, keepdim=True)")),
    # top_k_filter
    Entry("topk_threshold_masked_fill", "top_k_filter", TOPK),
    Entry("topk_indices_scatter", "top_k_filter", '''
def top_k_filter(logits, k):
    values, indices = torch.topk(logits, k, dim=-1)
    out = torch.full_like(logits, float("-inf"))
    return out.scatter(-1, indices, values)
'''),
    Entry("sort_kth_where", "top_k_filter", '''
def top_k_filter(logits, k):
    kth = torch.sort(logits, dim=-1, descending=True).values[..., k - 1].unsqueeze(-1)
    return torch.where(logits >= kth, logits, torch.tensor(float("-inf")))
'''),
    Entry("kthvalue", "top_k_filter", '''
def top_k_filter(logits, k):
    V = logits.shape[-1]
    kth = torch.kthvalue(logits, V - k + 1, dim=-1, keepdim=True).values
    filtered = logits.clone()
    filtered[logits < kth] = -math.inf
    return filtered
'''),
    Entry("loop_over_rows", "top_k_filter", '''
def top_k_filter(logits, k):
    flat = logits.reshape(-1, logits.shape[-1])
    rows = []
    for row in flat:
        keep = set(row.argsort(descending=True)[:k].tolist())
        rows.append(torch.stack([row[i] if i in keep else torch.tensor(float("-inf")) for i in range(len(row))]))
    return torch.stack(rows).reshape(logits.shape)
'''),
    # greedy_decode
    Entry("cat_loop", "greedy_decode", GREEDY),
    Entry("no_grad_decorated_eval", "greedy_decode", '''
@torch.no_grad()
def greedy_decode(model, prompt, max_new_tokens):
    model.eval()
    ids = prompt.clone()
    for _ in range(max_new_tokens):
        next_id = model(ids)[:, -1].max(dim=-1).indices
        ids = torch.cat((ids, next_id[:, None]), dim=1)
    return ids
'''),
    Entry("preallocated_output", "greedy_decode", '''
def greedy_decode(model, prompt, max_new_tokens):
    B, T0 = prompt.shape
    out = torch.zeros(B, T0 + max_new_tokens, dtype=prompt.dtype)
    out[:, :T0] = prompt
    for t in range(T0, T0 + max_new_tokens):
        with torch.no_grad():
            out[:, t] = model(out[:, :t])[:, -1].argmax(-1)
    return out
'''),
    Entry("softmax_probabilities_then_argmax", "greedy_decode", '''
def greedy_decode(model, prompt, max_new_tokens):
    ids = prompt
    for _ in range(max_new_tokens):
        probs = torch.softmax(model(ids)[:, -1, :], dim=-1)
        ids = torch.cat([ids, torch.argmax(probs, dim=-1, keepdim=True)], dim=-1)
    return ids
'''),
    Entry("one_row_at_a_time", "greedy_decode", '''
def greedy_decode(model, prompt, max_new_tokens):
    rows = []
    for b in range(prompt.shape[0]):
        seq = prompt[b:b + 1]
        for _ in range(max_new_tokens):
            nxt = model(seq)[0, -1].argmax()
            seq = torch.cat([seq, nxt.view(1, 1)], dim=1)
        rows.append(seq)
    return torch.cat(rows, dim=0)
'''),
    Entry("python_lists", "greedy_decode", '''
def greedy_decode(model, prompt, max_new_tokens):
    seqs = prompt.tolist()
    for _ in range(max_new_tokens):
        logits = model(torch.tensor(seqs))
        for row, nxt in zip(seqs, logits[:, -1].argmax(-1).tolist()):
            row.append(nxt)
    return torch.tensor(seqs, dtype=torch.long)
'''),
]


# ---------------------------------------------------------------------------
# Classic mistakes: must fail, and the message must name the mistake
# ---------------------------------------------------------------------------

MISTAKES = [
    # stable_softmax
    Entry("no_max_subtraction", "stable_softmax", softmax_with(shift=""), "maximum is not subtracted"),
    Entry("global_max", "stable_softmax", softmax_with(shift="z = z - z.max()"), "WHOLE tensor"),
    Entry("temperature_multiplied", "stable_softmax", softmax_with(scale="z = logits * temperature"),
          "MULTIPLIED by the temperature"),
    Entry("temperature_ignored", "stable_softmax", softmax_with(scale="z = logits"), "temperature is ignored"),
    Entry("temperature_after_softmax", "stable_softmax",
          softmax_with(scale="z = logits", ret="return e / e.sum(dim=dim, keepdim=True) / temperature"),
          "AFTER the softmax"),
    Entry("dim_argument_ignored", "stable_softmax",
          softmax_with(shift="z = z - z.amax(dim=-1, keepdim=True)", ret="return e / e.sum(dim=-1, keepdim=True)"),
          "although dim=0 was asked for"),
    Entry("softmax_over_dim_0", "stable_softmax",
          softmax_with(shift="z = z - z.amax(dim=0, keepdim=True)", ret="return e / e.sum(dim=0, keepdim=True)"),
          "runs over dim=0"),
    Entry("max_without_keepdim", "stable_softmax", softmax_with(shift="z = z - z.amax(dim=dim)"), "keepdim=True"),
    Entry("sum_without_keepdim", "stable_softmax", softmax_with(ret="return e / e.sum(dim=dim)"), "keepdim=True"),
    Entry("max_along_other_axis", "stable_softmax", softmax_with(shift="z = z - z.amax(dim=0, keepdim=True)"),
          "maximum is taken along dim=0"),
    Entry("exp_of_z_minus_logsumexp", "stable_softmax", '''
def stable_softmax(logits, temperature=1.0, dim=-1):
    z = logits / temperature
    m = torch.max(z, dim=dim, keepdim=True)[0]
    log_norm = m + torch.log(torch.sum(torch.exp(z - m), dim=dim, keepdim=True))
    return torch.exp(z - log_norm)
''', "loses three digits"),
    Entry("not_normalised", "stable_softmax", softmax_with(ret="return e"), "not divided by their sum"),
    Entry("returns_log_softmax", "stable_softmax",
          softmax_with(ret="return z - torch.log(e.sum(dim=dim, keepdim=True))"), "log-probabilities"),
    Entry("returns_float64", "stable_softmax", softmax_with(scale="z = logits.double() / temperature"),
          "dtype torch.float64"),
    Entry("divides_logits_in_place", "stable_softmax", softmax_with(scale="logits /= temperature\n    z = logits"),
          "modified its input logits in place"),
    # cross_entropy
    Entry("ce_no_max_subtraction", "cross_entropy", ce_with(max="m = 0.0"), "maximum is not subtracted"),
    Entry("ce_global_max", "cross_entropy", ce_with(max="m = logits.max()"), "WHOLE batch"),
    Entry("ce_log_of_probabilities", "cross_entropy", '''
def cross_entropy(logits, targets):
    e = torch.exp(logits - logits.amax(dim=-1, keepdim=True))
    probs = e / e.sum(dim=-1, keepdim=True)
    return -torch.log(probs[torch.arange(len(targets)), targets]).mean()
''', "log of probabilities"),
    Entry("ce_sum_not_mean", "cross_entropy", ce_with(ret="return (log_sum - target).sum()"), "SUM of the per-example"),
    Entry("ce_sign_flipped", "cross_entropy", ce_with(ret="return (target - log_sum).mean()"), "sign is flipped"),
    Entry("ce_targets_one_based", "cross_entropy",
          ce_with(target="target = shifted[torch.arange(logits.shape[0]), targets - 1]"), "off by one"),
    Entry("ce_column_block", "cross_entropy", ce_with(target="target = shifted[:, targets]"), "N x N block"),
    Entry("ce_mean_over_all_classes", "cross_entropy", ce_with(target="target = shifted",
                                                               ret="return (log_sum[:, None] - target).mean()"),
          "EVERY class"),
    Entry("ce_probabilities_without_log", "cross_entropy", '''
def cross_entropy(logits, targets):
    e = torch.exp(logits - logits.amax(dim=-1, keepdim=True))
    probs = e / e.sum(dim=-1, keepdim=True)
    return -probs[torch.arange(len(targets)), targets].mean()
''', "without the log"),
    Entry("ce_max_not_added_back", "cross_entropy",
          ce_with(target="target = logits[torch.arange(logits.shape[0]), targets]"), "not added back"),
    Entry("ce_per_example", "cross_entropy", ce_with(ret="return log_sum - target"), "one loss per example"),
    Entry("ce_item", "cross_entropy", ce_with(ret="return (log_sum - target).mean().item()"), "Python float"),
    Entry("ce_under_no_grad", "cross_entropy", '''
@torch.no_grad()
''' + CE.lstrip("\n"), "does not backpropagate"),
    Entry("ce_subtracts_in_place", "cross_entropy", ce_with(shift="logits -= m\n    shifted = logits"),
          "modified its input logits in place"),
    Entry("ce_gather_without_unsqueeze", "cross_entropy",
          ce_with(target="target = shifted.gather(1, targets)"), "targets[:, None]"),
    # top_k_filter
    Entry("keeps_k_smallest", "top_k_filter", '''
def top_k_filter(logits, k):
    kth = torch.topk(logits, k, dim=-1, largest=False).values[..., -1:]
    return logits.masked_fill(logits > kth, float("-inf"))
''', "SMALLEST"),
    Entry("fills_zero", "top_k_filter", TOPK.replace('float("-inf")', "0.0"), "set to 0 instead of"),
    Entry("fills_minus_1e9", "top_k_filter", TOPK.replace('float("-inf")', "-1e9"), "set to -1e+09 instead of"),
    Entry("keeps_k_plus_one", "top_k_filter", TOPK.replace("torch.topk(logits, k, dim=-1).values[..., -1:]",
                                                          "torch.sort(logits, dim=-1, descending=True).values"
                                                          "[..., k:k + 1]"), "k + 1"),
    Entry("keeps_k_minus_one", "top_k_filter", TOPK.replace("logits < kth", "logits <= kth"), "k - 1"),
    Entry("returns_topk_values", "top_k_filter", '''
def top_k_filter(logits, k):
    return torch.topk(logits, k, dim=-1).values
''', "only the k values"),
    Entry("returns_mask", "top_k_filter", TOPK.replace('logits.masked_fill(logits < kth, float("-inf"))',
                                                      "logits >= kth"), "boolean mask"),
    Entry("kth_without_keepdim", "top_k_filter", TOPK.replace("[..., -1:]", "[..., -1]"), "keepdim"),
    Entry("topk_along_dim_0", "top_k_filter", '''
def top_k_filter(logits, k):
    kth = torch.topk(logits, k, dim=0).values[-1:]
    return logits.masked_fill(logits < kth, float("-inf"))
''', "the LAST axis"),
    Entry("masked_fill_in_place", "top_k_filter", TOPK.replace("return logits.masked_fill(",
                                                               "return logits.masked_fill_("), "in place"),
    Entry("returns_sorted", "top_k_filter", '''
def top_k_filter(logits, k):
    values = torch.sort(logits, dim=-1, descending=True).values
    return torch.cat([values[..., :k], torch.full_like(values[..., k:], float("-inf"))], dim=-1)
''', "each logit at its position"),
    # greedy_decode
    Entry("feeds_only_newest_token", "greedy_decode", '''
def greedy_decode(model, prompt, max_new_tokens):
    ids, step_input = prompt, prompt
    for _ in range(max_new_tokens):
        next_id = model(step_input)[:, -1].argmax(dim=-1, keepdim=True)
        ids = torch.cat([ids, next_id], dim=1)
        step_input = next_id
    return ids
''', "only the newest token"),
    Entry("never_fed_back", "greedy_decode", '''
def greedy_decode(model, prompt, max_new_tokens):
    new = []
    for _ in range(max_new_tokens):
        new.append(model(prompt)[:, -1].argmax(dim=-1, keepdim=True))
    return torch.cat([prompt] + new, dim=1)
''', "never fed back"),
    Entry("first_position", "greedy_decode", greedy_with(pick="next_id = logits[:, 0, :].argmax(dim=-1, keepdim=True)"),
          "FIRST position"),
    Entry("returns_only_new_tokens", "greedy_decode", greedy_with(ret="return ids[:, prompt.shape[1]:]"),
          "only the"),
    Entry("argmax_without_dim", "greedy_decode",
          greedy_with(pick="next_id = logits[:, -1, :].argmax().expand(ids.shape[0], 1)"), "without dim"),
    Entry("ties_to_highest_id", "greedy_decode", greedy_with(
        pick="V = logits.shape[-1]\n        next_id = V - 1 - logits[:, -1, :].flip(-1).argmax(dim=-1, keepdim=True)"),
        "LOWEST id"),
    Entry("one_step_too_few", "greedy_decode", greedy_with(loop="for _ in range(max_new_tokens - 1):"), "too few"),
    Entry("float_ids", "greedy_decode", greedy_with(append="ids = torch.cat([ids.float(), next_id.float()], dim=1)"),
          "LongTensor"),
    Entry("argmax_over_batch_axis", "greedy_decode",
          greedy_with(pick="next_id = logits[:, -1, :].argmax(dim=0, keepdim=True)"), "raised RuntimeError"),
]


# ---------------------------------------------------------------------------
# Cheats: must fail
# ---------------------------------------------------------------------------

CHEATS = [
    Entry("torch_softmax", "stable_softmax", '''
def stable_softmax(logits, temperature=1.0, dim=-1):
    return torch.softmax(logits / temperature, dim=dim)
''', "must not call torch.softmax"),
    Entry("tensor_softmax_method", "stable_softmax", '''
def stable_softmax(logits, temperature=1.0, dim=-1):
    return (logits / temperature).softmax(dim)
''', "must not call"),
    Entry("f_softmax_captured_at_import", "stable_softmax", '''
_sm = F.softmax
def stable_softmax(logits, temperature=1.0, dim=-1):
    return _sm(logits / temperature, dim=dim)
''', "must not call"),
    Entry("nn_softmax_module", "stable_softmax", '''
def stable_softmax(logits, temperature=1.0, dim=-1):
    return nn.Softmax(dim=dim)(logits / temperature)
''', "must not call"),
    Entry("logsumexp_builtin", "stable_softmax", '''
def stable_softmax(logits, temperature=1.0, dim=-1):
    z = logits / temperature
    return torch.exp(z - torch.logsumexp(z, dim=dim, keepdim=True))
''', "must not call torch.logsumexp"),
    Entry("categorical_probs", "stable_softmax", '''
def stable_softmax(logits, temperature=1.0, dim=-1):
    z = (logits / temperature).movedim(dim, -1)
    return torch.distributions.Categorical(logits=z).probs.movedim(-1, dim)
''', "must not call"),
    Entry("reference_softmax_captured", "stable_softmax", '''
from reference_impl.output import stable_softmax as _solution
def stable_softmax(logits, temperature=1.0, dim=-1):
    return _solution(logits, temperature, dim)
''', "reference solution"),
    Entry("patch_allclose_wrong_softmax", "stable_softmax",
          "torch.allclose = lambda *a, **k: True\n"
          "torch.isclose = lambda a, b, **k: torch.ones(a.shape, dtype=torch.bool)\n"
          + softmax_with(scale="z = logits * temperature"), "MULTIPLIED", patches=True),
    Entry("f_cross_entropy", "cross_entropy", '''
def cross_entropy(logits, targets):
    return F.cross_entropy(logits, targets)
''', "must not call F.cross_entropy"),
    Entry("log_softmax_and_nll", "cross_entropy", '''
def cross_entropy(logits, targets):
    return F.nll_loss(torch.log_softmax(logits, dim=-1), targets)
''', "must not call"),
    Entry("own_log_probs_with_nll_loss", "cross_entropy", '''
def cross_entropy(logits, targets):
    shifted = logits - logits.amax(-1, keepdim=True)
    return F.nll_loss(shifted - shifted.exp().sum(-1, keepdim=True).log(), targets)
''', "must not call F.nll_loss"),
    Entry("cross_entropy_loss_module", "cross_entropy", '''
def cross_entropy(logits, targets):
    return nn.CrossEntropyLoss()(logits, targets)
''', "must not call"),
    Entry("reference_cross_entropy_via_package", "cross_entropy", '''
import reference_impl
def cross_entropy(logits, targets):
    return reference_impl.cross_entropy(logits, targets)
''', "reference solution"),
    Entry("patch_checks_namespace", "cross_entropy", '''
import course.checks.ch04 as _ch04
_ch04._ref_cross_entropy = lambda logits, targets: (logits.sum() * 0.0)
_ch04.CrossEntropyCheck.judge = lambda self, case, got, after: None
''' + ce_with(ret="return (log_sum - target).sum()"), "SUM of the per-example", patches=True),
    Entry("reference_top_k_captured", "top_k_filter", '''
from reference_impl.output import top_k_filter as _tk
def top_k_filter(logits, k):
    return _tk(logits, k)
''', "reference solution"),
    Entry("reference_greedy_captured", "greedy_decode", '''
from reference_impl.output import greedy_decode as _gd
def greedy_decode(model, prompt, max_new_tokens):
    return _gd(model, prompt, max_new_tokens)
''', "reference solution"),
    Entry("reference_greedy_unwrapped", "greedy_decode", '''
import reference_impl.output as _out
_inner = _out.greedy_decode.__wrapped__
def greedy_decode(model, prompt, max_new_tokens):
    return _inner(model, prompt, max_new_tokens)
''', "reference solution"),
    Entry("reference_sample_top_1", "greedy_decode", '''
from reference_impl.output import sample as _sample
def greedy_decode(model, prompt, max_new_tokens):
    return _sample(model, prompt, max_new_tokens, top_k=1)
''', "LOWEST id"),
    Entry("greedy_mutates_prompt", "greedy_decode", '''
def greedy_decode(model, prompt, max_new_tokens):
    ids = prompt
    for _ in range(max_new_tokens):
        next_id = model(ids)[:, -1].argmax(dim=-1, keepdim=True)
        ids = torch.cat([ids, next_id], dim=1)
    prompt.zero_()
    return ids
''', "modified its input prompt in place"),
]
