"""Two tiny checks for the grading pipeline's tests (assignment ``fake_double``).

Imported as ``fake_checks`` (tests/grading on sys.path): by the test process, the grading workers
and their fork servers, and by a notebook kernel's setup cell.
"""

from __future__ import annotations

import torch

from course.checks import Case, Check, register, sanitize

ASSIGNMENT = "fake_double"


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


class DoubleCheck(Check):
    name = "double"
    assignment = ASSIGNMENT
    kind = "function"
    forbidden = ("torch.mul",)
    timeout_s = 3.0

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        g = torch.Generator().manual_seed(seed)
        shapes = [(4, 1, 3)] if hidden else [(3,), (2, 5)]
        cases = []
        for shape in shapes:
            x = torch.randn(*shape, generator=g)
            cases.append(Case(f"x of shape {tuple(shape)}", {"x": x}, 2 * x))
        return cases

    def invoke(self, obj, inputs):
        return sanitize(obj(inputs["x"]))

    def judge(self, case, got, inputs_after):
        x = case.inputs["x"]
        if not torch.equal(inputs_after["x"], x):
            return "double changed its input x in place; return a new tensor instead"
        if not isinstance(got, torch.Tensor):
            return f"expected a tensor, got {type(got).__name__}"
        if got.shape != case.expected.shape:
            return f"expected shape {tuple(case.expected.shape)}, got {tuple(got.shape)}"
        if torch.allclose(got, case.expected):
            return None
        if torch.allclose(got, 3 * x):
            return "your result is 3 * x: double multiplies by 2"
        return f"wrong values (max abs error {_max_err(got, case.expected):.3g})"


class ScalerCheck(Check):
    name = "Scaler"
    assignment = ASSIGNMENT
    kind = "class"
    timeout_s = 3.0

    def make_cases(self, seed: int, hidden: bool) -> list[Case]:
        g = torch.Generator().manual_seed(seed)
        out = []
        for factor in ((0.5,) if hidden else (2.0, -1.0)):
            x = torch.randn(2, 3, generator=g)
            out.append(Case(f"factor={factor}", {"factor": factor, "x": x}, factor * x))
        return out

    def invoke(self, obj, inputs):
        module = obj(inputs["factor"])
        return sanitize(module(inputs["x"]))

    def judge(self, case, got, inputs_after):
        if not isinstance(got, torch.Tensor) or got.shape != case.expected.shape:
            return f"expected a tensor of shape {tuple(case.expected.shape)}"
        if not torch.allclose(got, case.expected):
            return f"wrong values (max abs error {_max_err(got, case.expected):.3g})"
        return None


register(DoubleCheck())
register(ScalerCheck())
