"""Grading checks, one module per chapter (``chNN.py``) on top of ``core``.

Test cells use ``check(name, obj)`` (see ``core.run_check``). Importing this package
imports every chapter module (which registers its checks) and then snapshots the
namespaces the checks rely on, so it must happen before any learner code runs: the
notebooks' locked setup cell does ``from course.checks import check``.

Writing a chapter's checks (``course/checks/chNN.py``, see ``ch02.py``)::

    from .core import Case, Check, CheckFailed, register, sanitize
    from .diagnose import close, describe, first_match, mismatch, modified_inputs

    class EmbedTokensCheck(Check):
        name = "embed_tokens"                 # == the answer cell's grade_id == the spec's name
        assignment = "01_embedding"
        kind = "function"                     # or "class"
        forbidden = ("torch.nn.functional.embedding",)   # torch callables / nn classes / torch.ops.aten.<op>
        forbidden_hint = "Index the table's rows yourself."
        reference = "reference_impl.embedding.embed_tokens"  # blocked while learner code runs

        def make_cases(self, seed, hidden):   # pure: a private torch.Generator(seed), the reference,
            ...                               # float32 inputs; expected in float64 -> float32 if useful
            return [Case("label in the learner's terms", {"token_ids": ids, "table": table}, expected)]

        def invoke(self, obj, inputs):        # the only code that touches the learner's object
            return sanitize(obj(inputs["token_ids"], inputs["table"]))

        def judge(self, case, got, inputs_after):   # pure; None = pass, else one helpful sentence
            return (modified_inputs(case.inputs, inputs_after, ("token_ids", "table"), "your function")
                    or mismatch("your result", case.expected, got))   # + a catalogue of known mistakes

    register(EmbedTokensCheck())

Cases and results must hold only tensors, numbers, strings, None and lists/tuples/dicts
(``torch.load(weights_only=True)`` reads them back in the grading pipeline); visible and
hidden cases use different shapes; never mask a whole row; keep every message in the
learner's terms.
"""

import importlib
import pkgutil
import re

from .core import (  # noqa: F401 (re-exported)
    REGISTRY,
    Case,
    Check,
    CheckFailed,
    check,
    checks_for,
    execute,
    format_failure,
    guard,
    register,
    run_check,
    sanitize,
    seed_for,
)
from .core import _seal

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if re.fullmatch(r"ch\d\d", _info.name):
        importlib.import_module(f"{__name__}.{_info.name}")

_seal()

__all__ = [
    "CheckFailed", "Case", "Check", "REGISTRY", "register", "checks_for", "seed_for", "guard",
    "execute", "format_failure", "sanitize", "run_check", "check",
]
