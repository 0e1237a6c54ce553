"""Proof corpus for the chapter 5 checks: learner answers as notebook-cell source.

Same format as corpus_ch02 (``Entry``; ``expect`` None = must pass, else a piece of the
failure message).
"""

from __future__ import annotations

from .corpus_ch02 import Entry

RNN = '''
def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh):
    h = h0
    outputs = []
    for t in range(x.shape[1]):
        h = torch.tanh(x[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh)
        outputs.append(h)
    return torch.stack(outputs, dim=1), h
'''


def rnn_with(**replace: str) -> str:
    src = RNN
    for old, new in replace.items():
        old = {"init": "h = h0",
               "step": "h = torch.tanh(x[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh)",
               "loop": "for t in range(x.shape[1]):",
               "ret": "return torch.stack(outputs, dim=1), h"}[old]
        assert old in src, old
        src = src.replace(old, new)
    return src


GRAD = '''
def input_gradient_norms(model, x):
    x = x.detach().clone().requires_grad_(True)
    out = model(x)
    (grad,) = torch.autograd.grad(out[:, -1].sum(), x)
    return grad.pow(2).sum(dim=(0, 2)).sqrt()
'''


def grad_with(**replace: str) -> str:
    src = GRAD
    for old, new in replace.items():
        old = {"leaf": "x = x.detach().clone().requires_grad_(True)",
               "grad": "(grad,) = torch.autograd.grad(out[:, -1].sum(), x)",
               "ret": "return grad.pow(2).sum(dim=(0, 2)).sqrt()"}[old]
        assert old in src, old
        src = src.replace(old, new)
    return src


# ---------------------------------------------------------------------------
# Correct alternatives
# ---------------------------------------------------------------------------

CORRECT = [
    # rnn_forward
    Entry("loop_stack", "rnn_forward", RNN),
    Entry("input_projection_first", "rnn_forward", '''
def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh):
    x_proj = x @ w_ih.T + b_ih          # (B, T, H) all steps at once
    h, hs = h0, []
    for x_t in x_proj.unbind(dim=1):
        h = torch.tanh(x_t + h @ w_hh.T + b_hh)
        hs.append(h)
    outputs = torch.stack(hs, dim=1)
    return outputs, outputs[:, -1]
'''),
    Entry("f_linear_preallocated", "rnn_forward", '''
def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh):
    B, T, _ = x.shape
    outputs = x.new_zeros(B, T, h0.shape[-1])
    h = h0
    for t in range(T):
        h = torch.tanh(F.linear(x[:, t], w_ih, b_ih) + F.linear(h, w_hh, b_hh))
        outputs[:, t] = h
    return outputs, h
'''),
    Entry("einsum_addmm", "rnn_forward", '''
def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh):
    h = h0.clone()
    outs = []
    for t in range(x.size(1)):
        pre = torch.einsum("bi,hi->bh", x[:, t, :], w_ih) + torch.addmm(b_hh, h, w_hh.t()) + b_ih
        h = pre.tanh()
        outs.append(h.unsqueeze(1))
    return torch.cat(outs, dim=1), h
'''),
    Entry("time_major_internally", "rnn_forward", '''
def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh):
    xs = x.transpose(0, 1)              # (T, B, I)
    h, hs = h0, []
    for x_t in xs:
        h = torch.tanh(x_t @ w_ih.T + b_ih + h @ w_hh.T + b_hh)
        hs.append(h)
    return torch.stack(hs).transpose(0, 1), h
'''),
    # input_gradient_norms
    Entry("autograd_grad_fresh_leaf", "input_gradient_norms", GRAD),
    Entry("backward_then_zero_grad", "input_gradient_norms", '''
def input_gradient_norms(model, x):
    x_leaf = x.detach().clone().requires_grad_()
    model(x_leaf)[:, -1].sum().backward()
    model.zero_grad(set_to_none=True)
    return torch.linalg.vector_norm(x_leaf.grad, dim=(0, 2))
'''),
    Entry("one_leaf_per_position", "input_gradient_norms", '''
def input_gradient_norms(model, x):
    steps = [x[:, t].detach().clone().requires_grad_(True) for t in range(x.shape[1])]
    out = model(torch.stack(steps, dim=1))
    grads = torch.autograd.grad(out[:, -1].sum(), steps)
    return torch.stack([g.norm() for g in grads])
'''),
    Entry("per_position_loop_retain_graph", "input_gradient_norms", '''
def input_gradient_norms(model, x):
    x = x.detach().clone().requires_grad_(True)
    target = model(x)[:, -1].sum()
    (grad,) = torch.autograd.grad(target, x, retain_graph=True)
    norms = torch.zeros(x.shape[1])
    for t in range(x.shape[1]):
        norms[t] = torch.sqrt((grad[:, t] ** 2).sum())
    return norms
'''),
    Entry("enable_grad_and_functional_vjp", "input_gradient_norms", '''
def input_gradient_norms(model, x):
    with torch.enable_grad():
        x0 = x.detach()
        seed = torch.zeros_like(model(x0))
        seed[:, -1] = 1.0
        _, grad = torch.autograd.functional.vjp(model, x0, v=seed)
    return grad.norm(dim=2).pow(2).sum(dim=0).sqrt().detach()
'''),
    Entry("autograd_grad_on_callers_leaf_when_it_requires_grad", "input_gradient_norms", '''
def input_gradient_norms(model, x):
    leaf = x if x.requires_grad and x.is_leaf else x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(leaf)[:, -1].sum(), leaf)
    return grad.square().sum(dim=(0, 2)).sqrt()
'''),
]


# ---------------------------------------------------------------------------
# Classic mistakes
# ---------------------------------------------------------------------------

MISTAKES = [
    # rnn_forward
    Entry("no_recurrence", "rnn_forward", rnn_with(step="h = torch.tanh(x[:, t] @ w_ih.T + b_ih + b_hh)"),
          "no recurrence"),
    Entry("missing_b_hh", "rnn_forward", rnn_with(step="h = torch.tanh(x[:, t] @ w_ih.T + b_ih + h @ w_hh.T)"),
          "b_hh is missing"),
    Entry("missing_b_ih", "rnn_forward", rnn_with(step="h = torch.tanh(x[:, t] @ w_ih.T + h @ w_hh.T + b_hh)"),
          "b_ih is missing"),
    Entry("tanh_omitted", "rnn_forward", rnn_with(step="h = x[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh"),
          "tanh is missing"),
    Entry("relu_instead_of_tanh", "rnn_forward",
          rnn_with(step="h = torch.relu(x[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh)"), "relu instead of tanh"),
    Entry("h0_ignored", "rnn_forward", rnn_with(init="h = torch.zeros_like(h0)"), "h0 is ignored"),
    Entry("returns_first_step_state", "rnn_forward", rnn_with(ret="return torch.stack(outputs, dim=1), outputs[0]"),
          "FIRST step"),
    Entry("stacked_time_major", "rnn_forward", rnn_with(ret="return torch.stack(outputs), h"), "(T, B, H)"),
    Entry("loops_over_batch_axis", "rnn_forward", rnn_with(
        loop="for t in range(x.shape[0]):",
        step="h = torch.tanh(x[t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh)"), "step t reads x[:, t]"),
    Entry("w_hh_not_transposed", "rnn_forward",
          rnn_with(step="h = torch.tanh(x[:, t] @ w_ih.T + b_ih + h @ w_hh + b_hh)"), "w_hh is not transposed"),
    Entry("w_ih_not_transposed", "rnn_forward",
          rnn_with(step="h = torch.tanh(x[:, t] @ w_ih + b_ih + h @ w_hh.T + b_hh)"), "x_t @ w_ih.T"),
    Entry("returns_swapped", "rnn_forward", rnn_with(ret="return h, torch.stack(outputs, dim=1)"), "order must be"),
    Entry("returns_only_outputs", "rnn_forward", rnn_with(ret="return torch.stack(outputs, dim=1)"),
          "must return a tuple"),
    Entry("outputs_shifted_by_one", "rnn_forward", '''
def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh):
    h = h0
    outputs = []
    for t in range(x.shape[1]):
        outputs.append(h)
        h = torch.tanh(x[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh)
    return torch.stack(outputs, dim=1), h
''', "shifted by one step"),
    Entry("updates_h0_in_place", "rnn_forward", rnn_with(
        step="h = torch.tanh(x[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh)\n        h0.copy_(h)"),
        "modified its input h0 in place"),
    # input_gradient_norms
    Entry("first_position", "input_gradient_norms", grad_with(grad="(grad,) = torch.autograd.grad(out[:, 0].sum(), x)"),
          "FIRST position"),
    Entry("all_positions", "input_gradient_norms", grad_with(grad="(grad,) = torch.autograd.grad(out.sum(), x)"),
          "sum of ALL outputs"),
    Entry("batch_index", "input_gradient_norms", grad_with(grad="(grad,) = torch.autograd.grad(out[-1].sum(), x)"),
          "last EXAMPLE"),
    Entry("per_example_norms", "input_gradient_norms", grad_with(ret="return grad.norm(dim=2)"),
          "one row of norms per example"),
    Entry("summed_per_example_norms", "input_gradient_norms", grad_with(ret="return grad.norm(dim=2).sum(dim=0)"),
          "adds up one norm per example"),
    Entry("squared_norms", "input_gradient_norms", grad_with(ret="return grad.pow(2).sum(dim=(0, 2))"), "SQUARED"),
    Entry("mean_not_sum", "input_gradient_norms",
          grad_with(grad="(grad,) = torch.autograd.grad(out[:, -1].mean(), x)"), ".mean() instead of .sum()"),
    Entry("returns_the_gradient", "input_gradient_norms", grad_with(ret="return grad"), "the gradient itself"),
    Entry("requires_grad_on_callers_x", "input_gradient_norms", grad_with(leaf="x.requires_grad_(True)"),
          "switched on requires_grad of the caller's x"),
    Entry("leaves_parameter_grads", "input_gradient_norms", '''
def input_gradient_norms(model, x):
    x = x.detach().clone().requires_grad_(True)
    model(x)[:, -1].sum().backward()
    return x.grad.norm(dim=(0, 2))
''', "gradients in the model's parameters"),
    Entry("clone_is_not_a_leaf", "input_gradient_norms", '''
def input_gradient_norms(model, x):
    x = x.clone().requires_grad_(True)
    model(x)[:, -1].sum().backward()
    model.zero_grad()
    return x.grad.norm(dim=(0, 2))
''', "is NOT a leaf"),
    Entry("freezes_the_model", "input_gradient_norms", '''
def input_gradient_norms(model, x):
    model.requires_grad_(False)
    x = x.detach().clone().requires_grad_(True)
    model(x)[:, -1].sum().backward()
    return x.grad.norm(dim=(0, 2))
''', "changed requires_grad of the model's parameters"),
    Entry("norms_still_attached", "input_gradient_norms",
          grad_with(grad="(grad,) = torch.autograd.grad(out[:, -1].sum(), x, create_graph=True)"), "still attached"),
]


# ---------------------------------------------------------------------------
# Cheats
# ---------------------------------------------------------------------------

CHEATS = [
    Entry("nn_rnn_module", "rnn_forward", '''
def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh):
    rnn = nn.RNN(x.shape[-1], h0.shape[-1], batch_first=True)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(w_ih); rnn.weight_hh_l0.copy_(w_hh)
        rnn.bias_ih_l0.copy_(b_ih); rnn.bias_hh_l0.copy_(b_hh)
        out, h = rnn(x, h0.unsqueeze(0))
    return out, h[0]
''', "must not call nn.RNN"),
    Entry("rnn_tanh_captured_at_import", "rnn_forward", '''
_kernel = torch.rnn_tanh
def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh):
    out, h = _kernel(x, h0.unsqueeze(0), [w_ih, w_hh, b_ih, b_hh], True, 1, 0.0, False, False, True)
    return out, h[0]
''', "must not call torch.rnn_tanh"),
    Entry("rnn_cell", "rnn_forward", '''
def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh):
    cell = nn.RNNCell(x.shape[-1], h0.shape[-1])
    with torch.no_grad():
        cell.weight_ih.copy_(w_ih); cell.weight_hh.copy_(w_hh); cell.bias_ih.copy_(b_ih); cell.bias_hh.copy_(b_hh)
        h, hs = h0, []
        for t in range(x.shape[1]):
            h = cell(x[:, t], h)
            hs.append(h)
    return torch.stack(hs, 1), h
''', "must not call nn.RNNCell"),
    Entry("reference_rnn_forward", "rnn_forward", '''
from reference_impl.rnn import rnn_forward as _solution
def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh):
    return _solution(x, h0, w_ih, w_hh, b_ih, b_hh)
''', "reference solution"),
    Entry("patch_equal_wrong_rnn", "rnn_forward",
          "torch.equal = lambda *a, **k: True\ntorch.allclose = lambda *a, **k: True\n"
          + rnn_with(init="h = torch.zeros_like(h0)"), "h0 is ignored", patches=True),
    Entry("reference_gradient_norms_via_package", "input_gradient_norms", '''
import reference_impl
def input_gradient_norms(model, x):
    return reference_impl.input_gradient_norms(model, x)
''', "reference solution"),
    Entry("norms_as_tensor_subclass", "input_gradient_norms", '''
class _Agree(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in ("isclose", "allclose", "equal", "all", "__eq__"):
            return torch.tensor(True)
        return super().__torch_function__(func, types, args, kwargs)
''' + grad_with(ret="return grad.pow(2).sum(dim=(0, 2)).as_subclass(_Agree)"), "subclass of torch.Tensor"),
]
