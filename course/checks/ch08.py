"""Chapter 8 checks (08_open_challenges): transformer_param_count, repetition_penalty, knn_memory_attention.

Expected results come from ``reference_impl.challenges`` (float64 where there are floats).
A wrong result is compared with a catalogue of classic mistakes computed on the same
inputs: for the parameter count, formulas that count the tied head, forget the biases, the
layer norms or the final norm, give every head its own d_model x d_model matrices, ...
(several mistakes can give the same number, e.g. the four attention biases and the two
layer norms are both 4*D per layer: the message then lists them all); for the repetition
penalty, dividing negative logits, penalising a token once per occurrence, penalising
across the batch rows, subtracting the penalty; for the memory lookup, the top_k smallest
scores, no or a wrong scaling, a softmax over the whole memory, the softmax over the query
axis, values read from the keys.

Cases of ``knn_memory_attention`` keep a clear gap between each query's top_k-th and
(top_k+1)-th memory scores, so that float32 rounding never changes which entries are
retrieved. ``transformer_param_count`` may not build a model and count its parameters (no
nn.Parameter may be created while it runs): the exercise is the formula.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import torch

from reference_impl import challenges as _ref

from .core import Case, Check, CheckFailed, register, sanitize
from .diagnose import close, describe, first_match, mismatch, modified_inputs, shape_str

ASSIGNMENT = "08_open_challenges"

_ref_knn = _ref.knn_memory_attention
_ref_count = _ref.transformer_param_count
_ref_penalty = _ref.repetition_penalty


def _randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float32)


# ---------------------------------------------------------------------------
# transformer_param_count
# ---------------------------------------------------------------------------


def _count_variant(V, D, H, F, L, tied, *, head="spec", attn_bias=True, ffn_bias=True, norms=2, norm_params=2,
                   final_norm=True, per_head=False, projections=4, layers=True, embedding=True, ffn_linears=2):
    """The parameter count with mistakes (the defaults give the spec's count)."""
    attn = projections * (H if per_head else 1) * (D * D + (D if attn_bias else 0))
    ffn = D * F + (F if ffn_bias else 0)
    if ffn_linears == 2:
        ffn += F * D + (D if ffn_bias else 0)
    per_layer = attn + ffn + norms * norm_params * D
    total = (V * D if embedding else 0) + (L if layers else 1) * per_layer + (norm_params * D if final_norm else 0)
    if head == "spec":
        total += 0 if tied else D * V
    elif head == "always":
        total += D * V
    elif head == "with_bias":
        total += 0 if tied else D * V + V
    # head == "never": nothing
    return total


_COUNT_MISTAKES = (
    ({"head": "always"},
     "it counts the output head although it is tied: with tied=True the head's weight IS the embedding table "
     "(one tensor, counted once); add D*V only when tied is False (and there is no second V x D table for the "
     "positions either: chapter 1's sinusoidal positions have no parameters)"),
    ({"head": "never"},
     "the output head is missing: with tied=False the model has its own head, a D x V matrix (no bias): add D*V"),
    ({"head": "with_bias"},
     "the untied head is counted with a bias; the spec's head has no bias: D*V"),
    ({"attn_bias": False},
     "the four attention biases are missing (w_q, w_k, w_v, w_o each have D*D weights AND D biases: 4*(D*D + D) "
     "per layer)"),
    ({"norms": 0},
     "the two layer norms of each block are missing (each has gamma and beta: 2*D, so 4*D per layer)"),
    ({"ffn_bias": False},
     "the feed-forward biases are missing (linear1 has F biases, linear2 has D: D*F + F + F*D + D per layer)"),
    ({"attn_bias": False, "ffn_bias": False},
     "all the biases are missing: 4*D in the attention and F + D in the feed-forward, per layer"),
    ({"norm_params": 1},
     "each layer norm is counted with D parameters; it has two vectors, gamma and beta: 2*D each"),
    ({"final_norm": False},
     "the final layer norm is missing (2*D, after the last block)"),
    ({"norm_params": 1, "final_norm": False},
     "each layer norm is counted with D parameters (gamma and beta make 2*D) and the final layer norm is "
     "missing"),
    ({"norms": 0, "final_norm": False},
     "all the layer norms are missing: two per block (4*D) and the final one (2*D)"),
    ({"per_head": True},
     "every head is given its own D x D projections (with biases); the heads SPLIT the D features (d_head = "
     "D // n_heads each), so the four projections are D x D (plus D biases) in total whatever n_heads is"),
    ({"per_head": True, "attn_bias": False},
     "every head is given its own D x D projections, and the attention biases are missing; the heads SPLIT the D "
     "features, so the attention has 4*(D*D + D) parameters whatever n_heads is"),
    ({"projections": 3},
     "the attention's output projection w_o is missing: four projections, 4*(D*D + D) per layer"),
    ({"ffn_linears": 1},
     "only one feed-forward layer is counted; there are two: linear1 (D*F + F) and linear2 (F*D + D)"),
    ({"layers": False},
     "the per-layer parameters are counted once; multiply them by n_layers"),
    ({"embedding": False},
     "the token embedding table (V*D) is missing"),
    ({"attn_bias": False, "head": "always"},
     "two mistakes: the attention biases are missing (4*D per layer) and the tied head is counted"),
    ({"norms": 0, "head": "always"},
     "two mistakes: the layer norms are missing (4*D per layer) and the tied head is counted"),
    ({"final_norm": False, "head": "always"},
     "two mistakes: the final layer norm is missing and the tied head is counted"),
)


def _as_count(value: Any) -> Any:
    """int for Python/NumPy integers and 0-d integer tensors; other values as they are."""
    if isinstance(value, bool) or isinstance(value, float):
        return value
    if isinstance(value, torch.Tensor):
        if value.numel() == 1 and not value.is_floating_point() and value.dtype != torch.bool:
            return int(value.item())
        return value
    try:
        return int(operator.index(value))
    except TypeError:
        return value


_register_parameter_hook = torch.nn.modules.module.register_module_parameter_registration_hook


class _ParameterCounter:
    """Counts the nn.Parameters registered on any nn.Module while active (a model being built)."""

    def __init__(self):
        self.count = 0

    def __call__(self, module, name, param):
        self.count += 1

    def __enter__(self):
        self.handle = _register_parameter_hook(self)
        return self

    def __exit__(self, *exc):
        self.handle.remove()
        return False


class TransformerParamCountCheck(Check):
    name = "transformer_param_count"
    assignment = ASSIGNMENT
    kind = "function"
    forbidden = ()
    reference = "reference_impl.challenges.transformer_param_count"
    timeout_s = 20.0

    # (label, V, D, H, F, L, tied: True | False | None (left to its default))
    VISIBLE = (
        ("vocab_size=100, d_model=16, n_heads=4, d_ff=64, n_layers=3, tied=True", 100, 16, 4, 64, 3, True),
        ("vocab_size=100, d_model=16, n_heads=4, d_ff=64, n_layers=3, tied=False", 100, 16, 4, 64, 3, False),
        ("GPT-2 small's sizes: vocab_size=50257, d_model=768, n_heads=12, d_ff=3072, n_layers=12, tied left to its "
         "default", 50257, 768, 12, 3072, 12, None),
    )
    HIDDEN = (
        ("vocab_size=37, d_model=12, n_heads=3, d_ff=20, n_layers=1, tied=False", 37, 12, 3, 20, 1, False),
        ("vocab_size=1000, d_model=64, n_heads=8, d_ff=256, n_layers=6, tied=True", 1000, 64, 8, 256, 6, True),
        ("vocab_size=5, d_model=6, n_heads=1, d_ff=7, n_layers=3, tied=False", 5, 6, 1, 7, 3, False),
        ("GPT-3's sizes: vocab_size=50257, d_model=12288, n_heads=96, d_ff=49152, n_layers=96, tied=True",
         50257, 12288, 96, 49152, 96, True),
        ("vocab_size=11, d_model=10, n_heads=5, d_ff=10, n_layers=4, tied left to its default", 11, 10, 5, 10, 4,
         None),
    )

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        cases = []
        for label, V, D, H, F_, L, tied in (self.HIDDEN if hidden else self.VISIBLE):
            want = _ref_count(V, D, H, F_, L) if tied is None else _ref_count(V, D, H, F_, L, tied=tied)
            inputs = {"vocab_size": V, "d_model": D, "n_heads": H, "d_ff": F_, "n_layers": L, "tied": tied}
            cases.append(Case(label, inputs, int(want)))
        return cases

    def invoke(self, obj: Any, inputs: dict) -> Any:
        args = tuple(inputs[k] for k in ("vocab_size", "d_model", "n_heads", "d_ff", "n_layers"))
        with _ParameterCounter() as built:
            result = obj(*args) if inputs["tied"] is None else obj(*args, tied=inputs["tied"])
        if built.count:
            raise CheckFailed(
                f"transformer_param_count built a model to count its parameters ({built.count} nn.Parameters were "
                "created during the call, e.g. by TransformerLM(...) or nn.Linear(...)). Count them with the "
                "formula instead, by arithmetic on the arguments: that is the exercise (and it works for GPT-3's "
                "175 billion parameters, which no laptop can build)."
            )
        return sanitize(_as_count(result))

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        want = case.expected
        inp = case.inputs
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            return f"transformer_param_count should return an int ({want:,}), but it returned {describe(got)}."
        if isinstance(got, float):
            if got == want:
                return (f"transformer_param_count returned the float {got!r}; return an int (use // instead of /, "
                        "and no float factors).")
            if abs(got - want) <= 1e-6 * want:
                return (f"transformer_param_count returned {got!r}, a float close to the exact count {want:,}: "
                        "floating-point arithmetic rounds large counts. Use integer arithmetic only (// instead "
                        "of /, no float factors) and return an int.")
            return f"transformer_param_count returned {got!r} (a float); expected the int {want:,}."
        if got == want:
            return None
        V, D, H, F_, L = (inp[k] for k in ("vocab_size", "d_model", "n_heads", "d_ff", "n_layers"))
        tied = True if inp["tied"] is None else inp["tied"]
        base = f"transformer_param_count returned {got:,}; the exact count is {want:,} (off by {got - want:+,})."
        if inp["tied"] is None and got == _count_variant(V, D, H, F_, L, False):
            return (f"{base} This call leaves tied to its default, and your count includes an output head: tied "
                    "must default to True (def transformer_param_count(..., tied=True)), and a tied head is not "
                    "counted.")
        matches = []
        for flags, text in _COUNT_MISTAKES:
            if _count_variant(V, D, H, F_, L, tied, **flags) == got and text not in matches:
                matches.append(text)
        if not matches and (got - want) % D == 0:
            k = (got - want) // D
            return (f"{base} That is {abs(k)} x d_model {'too many' if k > 0 else 'too few'}: vectors of D parameters "
                    "are counted wrongly somewhere: a bias (D for each of w_q, w_k, w_v, w_o and linear2), a layer "
                    "norm's gamma and beta (D each; 2 norms per block and a final one), or a position table "
                    "(sinusoidal positions have no parameters).")
        if not matches:
            return (f"{base} Per layer: attention 4*(D*D + D), feed-forward D*F + F + F*D + D, two layer norms 4*D; "
                    "plus the embedding V*D and the final layer norm 2*D; the head D*V only when tied is False.")
        if len(matches) == 1:
            return f"{base} It matches a known mistake: {matches[0]}."
        return f"{base} Several mistakes give exactly this number: " + "; or ".join(matches) + "."


# ---------------------------------------------------------------------------
# repetition_penalty
# ---------------------------------------------------------------------------


def _penalty_variant(logits, ids, penalty, *, mode="spec", rows="own", repeats="once"):
    """The repetition penalty with mistakes, float64."""
    x = logits.double()
    B, V = x.shape
    out = x.clone()
    for b in range(B):
        row_ids = ids.flatten().tolist() if rows == "all" else ids[b].tolist()
        if repeats == "once":
            row_ids = list(dict.fromkeys(row_ids))
        for t in row_ids:
            v = out[b, t]
            if mode == "spec":
                out[b, t] = v / penalty if v > 0 else v * penalty
            elif mode == "divide_all":
                out[b, t] = v / penalty
            elif mode == "multiply_all":
                out[b, t] = v * penalty
            elif mode == "inverted":
                out[b, t] = v * penalty if v > 0 else v / penalty
            elif mode == "positive_only":
                out[b, t] = v / penalty if v > 0 else v
            elif mode == "subtract":
                out[b, t] = v - penalty
            elif mode == "none":
                pass
        if mode == "others":
            keep = torch.zeros(V, dtype=torch.bool)
            keep[ids[b]] = True
            out[b] = torch.where(keep, x[b], torch.where(x[b] > 0, x[b] / penalty, x[b] * penalty))
    return out


_PENALTY_MISTAKES = (
    ({"mode": "divide_all"},
     "every used token's logit is divided by the penalty, negative ones too; dividing a negative logit by "
     "penalty > 1 brings it closer to 0, i.e. makes the token MORE likely. Divide positive logits, multiply the "
     "others: torch.where(x > 0, x / penalty, x * penalty)"),
    ({"mode": "multiply_all"},
     "every used token's logit is multiplied by the penalty, positive ones too (which makes them more likely); "
     "divide positive logits, multiply the others"),
    ({"mode": "inverted"},
     "the two rules are swapped (positive logits multiplied, negative ones divided); positive logits are "
     "DIVIDED by the penalty, the others multiplied"),
    ({"mode": "positive_only"},
     "only positive logits are penalised; negative ones must be multiplied by the penalty (pushed further down)"),
    ({"mode": "subtract"},
     "the penalty is subtracted from the logits (a presence penalty); CTRL's penalty divides positive logits by "
     "it and multiplies the others"),
    ({"repeats": "each"},
     "a token that appears several times in previous_ids is penalised once per occurrence; it must be penalised "
     "once, however often it appears (e.g. gather the used logits, penalise them, and scatter them back: a "
     "repeated id writes the same value twice)"),
    ({"rows": "all"},
     "the tokens used in ANY row are penalised in every row; each row of logits only gets the penalty for the "
     "ids in its own row of previous_ids"),
    ({"rows": "all", "repeats": "each"},
     "two mistakes: the ids of all rows are applied to every row, and repeated ids are penalised more than once"),
    ({"mode": "others"},
     "the penalty is applied to the tokens NOT in previous_ids; it belongs to the tokens already generated"),
    ({"mode": "none"},
     "nothing was penalised: the logits came back unchanged"),
)


class RepetitionPenaltyCheck(Check):
    name = "repetition_penalty"
    assignment = ASSIGNMENT
    kind = "function"
    forbidden = ()
    reference = "reference_impl.challenges.repetition_penalty"
    timeout_s = 20.0

    # (label, B, V, T, penalty, how the case is made)
    VISIBLE = (
        ("batch 2, vocabulary 8, 3 previous ids per row (row 1 repeats an id), penalty 1.2", 2, 8, 3, 1.2, "basic"),
        ("batch 1, vocabulary 5, a single previous id, penalty 2.0", 1, 5, 1, 2.0, "random"),
        ("batch 3, vocabulary 10, 6 previous ids per row with repeats, penalty 1.5", 3, 10, 6, 1.5, "random"),
    )
    HIDDEN = (
        ("logits of size 1e4 in row 0 and 1e-2 in row 1: batch 2, vocabulary 12, 5 ids per row, penalty 1.3",
         2, 12, 5, 1.3, "scales"),
        ("more previous ids than the vocabulary: batch 4, vocabulary 6, 8 ids per row, penalty 1.1", 4, 6, 8, 1.1,
         "random"),
        ("logits that are exactly 0 at used ids: batch 2, vocabulary 20, 4 ids per row, penalty 3.0", 2, 20, 4, 3.0,
         "zeros"),
        ("one id repeated seven times: batch 1, vocabulary 7, penalty 2.0", 1, 7, 7, 2.0, "same_id"),
        ("ids in one row only: batch 2, vocabulary 9, 3 ids per row, penalty 1.4", 2, 9, 3, 1.4, "disjoint"),
    )

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        g = torch.Generator().manual_seed(seed)
        cases = []
        for label, B, V, T, penalty, how in (self.HIDDEN if hidden else self.VISIBLE):
            logits = 2.0 * _randn(g, B, V)
            ids = torch.randint(0, V, (B, T), generator=g)
            if how == "basic":  # row 0: distinct ids, one logit of each sign; row 1 repeats an id
                ids = torch.tensor([[1, 4, 6], [0, 0, 7]])
                logits[0, 1], logits[0, 4], logits[1, 0] = 1.5, -0.75, -2.0
            elif how == "scales":
                logits[0] *= 5e3
                logits[1] *= 5e-3
            elif how == "zeros":
                logits[:, ids[0]] = 0.0
            elif how == "same_id":
                ids = torch.full((B, T), 3)
                logits[0, 3] = -1.25
            elif how == "disjoint":  # the rows use different ids
                ids = torch.tensor([[0, 2, 4], [5, 7, 8]])
            want = _ref_penalty(logits.double(), ids, penalty).float()
            inputs = {"logits": logits, "previous_ids": ids, "penalty": penalty}
            cases.append(Case(label, inputs, want))
        return cases

    def invoke(self, obj: Any, inputs: dict) -> Any:
        return sanitize(obj(inputs["logits"], inputs["previous_ids"], inputs["penalty"]))

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        changed = modified_inputs(case.inputs, inputs_after, ("logits", "previous_ids"), "your repetition_penalty")
        if changed:
            return changed
        want = case.expected
        wrong = mismatch("your result", want, got)
        if wrong is None:
            return None
        logits, ids, penalty = (case.inputs[k] for k in ("logits", "previous_ids", "penalty"))

        def catalogue():
            for flags, text in _PENALTY_MISTAKES:
                candidate = _penalty_variant(logits, ids, penalty, **flags)
                if not close(candidate, want):
                    yield candidate, text

        diag = first_match(got, catalogue())
        return f"{wrong} It matches a known mistake: {diag}." if diag else wrong


# ---------------------------------------------------------------------------
# knn_memory_attention
# ---------------------------------------------------------------------------


def _knn_variant(q, K, V, k, *, select="largest", scale="sqrt_d", over="top_k", renormalise=True,
                 softmax_dim=-1, values="values"):
    """Memory attention with mistakes, float64. Returns None where the mistake cannot run."""
    q, K, V = q.double(), K.double(), V.double()
    d, M = q.shape[-1], K.shape[0]
    factor = {"sqrt_d": math.sqrt(d), "none": 1.0, "d": float(d), "sqrt_dv": math.sqrt(V.shape[-1]),
              "sqrt_k": math.sqrt(k), "sqrt_m": math.sqrt(M)}[scale]
    table = K if values == "keys" else V
    if values == "keys" and K.shape[-1] != V.shape[-1]:
        return None
    scores = q @ K.T  # (B, T, M)
    if over == "all":
        return torch.softmax(scores / factor, dim=-1) @ table
    k = min(k, M)
    top, idx = scores.topk(k, dim=-1, largest=(select == "largest"))  # (B, T, k)
    if not renormalise:  # softmax over the whole memory, then only the top_k weights kept
        weights = torch.softmax(scores / factor, dim=-1).gather(-1, idx)
    else:
        weights = torch.softmax(top / factor, dim=softmax_dim)
    return (weights.unsqueeze(-1) * table[idx]).sum(dim=-2)  # (B, T, d_v)


_KNN_MISTAKES = (
    ({"select": "smallest"},
     "it attends to the top_k SMALLEST scores (topk(..., largest=False) or an ascending sort); a query retrieves "
     "the entries that match it best, the largest dot products"),
    ({"scale": "none"},
     "the scores are not scaled: the softmax runs over (retrieved scores) / math.sqrt(d), d = q.size(-1)"),
    ({"scale": "d"},
     "the scores are divided by d instead of sqrt(d)"),
    ({"scale": "sqrt_dv"},
     "the scores are scaled by 1/sqrt(d_v), the size of the values; use d = q.size(-1), the size of the vectors "
     "in each dot product"),
    ({"scale": "sqrt_k"},
     "the scores are scaled by 1/sqrt(top_k); the scale is 1/sqrt(d) with d = q.size(-1)"),
    ({"scale": "sqrt_m"},
     "the scores are scaled by 1/sqrt(M), the memory size; the scale is 1/sqrt(d) with d = q.size(-1)"),
    ({"over": "all"},
     "the softmax runs over ALL memory entries (top_k is ignored); each query attends only to its top_k best "
     "entries: a softmax over those top_k scores"),
    ({"renormalise": False},
     "the weights come from a softmax over the whole memory and then only the top_k of them are kept, so they "
     "no longer sum to 1; take the softmax over the top_k scores only"),
    ({"softmax_dim": 1},
     "the softmax runs over the query axis (dim=1); it must run over each query's top_k retrieved entries "
     "(dim=-1)"),
    ({"values": "keys"},
     "the output mixes the retrieved KEYS; it must mix the retrieved values: mem_values[indices]"),
    ({"select": "smallest", "scale": "none"},
     "two mistakes: the top_k SMALLEST scores are used (use the largest), and the scores are not scaled by "
     "1/sqrt(d)"),
    ({"over": "all", "scale": "none"},
     "two mistakes: the softmax runs over the whole memory (top_k ignored), and the scores are not scaled by "
     "1/sqrt(d)"),
)


def _with_gaps(g: torch.Generator, B: int, T: int, d: int, M: int, k: int, min_gap: float = 0.02):
    """q (B, T, d), mem_keys (M, d) whose scores separate each query's top_k from the rest by min_gap or more."""
    keys = _randn(g, M, d)
    q = _randn(g, B, T, d)
    if k >= M:
        return q, keys
    for _ in range(1000):
        scores = (q.double() @ keys.double().T).sort(dim=-1, descending=True).values  # (B, T, M)
        gap = scores[..., k - 1] - scores[..., k]  # (B, T)
        bad = gap < min_gap
        if not bool(bad.any()):
            return q, keys
        q[bad] = _randn(g, int(bad.sum()), d)
    raise RuntimeError("could not draw well-separated queries")


class KnnMemoryAttentionCheck(Check):
    name = "knn_memory_attention"
    assignment = ASSIGNMENT
    kind = "function"
    forbidden = ()
    reference = "reference_impl.challenges.knn_memory_attention"
    timeout_s = 20.0

    # (label, B, T, d, M, d_v, top_k)
    VISIBLE = (
        ("batch 2, 3 queries of size d=4, a memory of M=10 entries with values of size 5, top_k=3", 2, 3, 4, 10, 5, 3),
        ("batch 1, 4 queries, d=8, M=6, d_v=3, top_k=1 (only the best entry)", 1, 4, 8, 6, 3, 1),
        ("batch 2, 2 queries, d=6, M=5, d_v=6, top_k=5 = M (ordinary attention over the whole memory)",
         2, 2, 6, 5, 6, 5),
    )
    HIDDEN = (
        ("batch 3, 5 queries, d=16, M=40, d_v=7, top_k=4", 3, 5, 16, 40, 7, 4),
        ("a single query: batch 1, d=3, M=8, d_v=1, top_k=2", 1, 1, 3, 8, 1, 2),
        ("batch 2, 6 queries, d=5, M=12, d_v=5 (= d), top_k=6", 2, 6, 5, 12, 5, 6),
        ("batch 2, 3 queries, d=4, M=9, d_v=2, top_k=8 = M - 1", 2, 3, 4, 9, 2, 8),
    )

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        g = torch.Generator().manual_seed(seed)
        cases = []
        for label, B, T, d, M, d_v, k in (self.HIDDEN if hidden else self.VISIBLE):
            q, keys = _with_gaps(g, B, T, d, M, k)
            values = _randn(g, M, d_v)
            want = _ref_knn(q.double(), keys.double(), values.double(), k).float()
            inputs = {"q": q, "mem_keys": keys, "mem_values": values, "top_k": k}
            cases.append(Case(label, inputs, want))
        return cases

    def invoke(self, obj: Any, inputs: dict) -> Any:
        try:
            return sanitize(obj(inputs["q"], inputs["mem_keys"], inputs["mem_values"], inputs["top_k"]))
        except (RuntimeError, IndexError) as exc:
            if "out of bounds" in str(exc) or "out of range" in str(exc):
                raise CheckFailed(
                    f"your knn_memory_attention raised {type(exc).__name__}: {str(exc).rstrip('.')}. The top_k "
                    "indices count memory entries (0 .. M-1): use them on the memory axis, the axis of size M: "
                    "mem_values[indices] gives (B, T, top_k, d_v), or torch.gather along the axis of size M, not "
                    "the feature axis."
                ) from exc
            raise

    def judge(self, case: Case, got: Any, inputs_after: dict) -> str | None:
        changed = modified_inputs(case.inputs, inputs_after, ("q", "mem_keys", "mem_values"),
                                  "your knn_memory_attention")
        if changed:
            return changed
        want = case.expected
        wrong = mismatch("your result", want, got)
        if wrong is None:
            return None
        q, keys, values, k = (case.inputs[n] for n in ("q", "mem_keys", "mem_values", "top_k"))
        B, T, d_v = want.shape
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (B, T, min(k, keys.shape[0]), d_v) and k > 1:
            return (f"{wrong} It looks like the weighted values of the top_k entries were not added up: sum the "
                    "weighted values over the retrieved entries (the top_k axis, dim=-2).")
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (B, T, q.shape[-1]) and q.shape[-1] != d_v:
            return (f"{wrong} It has d = q.size(-1) features per query, the size of the keys: it mixes the retrieved "
                    "KEYS (or queries); it must mix the retrieved values, mem_values[indices], of size d_v.")
        if isinstance(got, torch.Tensor) and tuple(got.shape) != (B, T, d_v):
            return f"{wrong} Each query returns one mix of values: (B, T, d_v) = {shape_str(want.shape)}."

        def catalogue():
            for flags, text in _KNN_MISTAKES:
                candidate = _knn_variant(q, keys, values, k, **flags)
                if candidate is not None and not close(candidate, want):
                    yield candidate, text

        diag = first_match(got, catalogue())
        return f"{wrong} It matches a known mistake: {diag}." if diag else wrong


register(TransformerParamCountCheck())
register(RepetitionPenaltyCheck())
register(KnnMemoryAttentionCheck())
