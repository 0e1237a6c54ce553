"""Chapter 5 reference: rnn_forward against nn.RNN, input_gradient_norms against a per-step loop."""

import pytest
import torch
import torch.nn as nn
from torch.testing import assert_close

from reference_impl.attention import causal_mask
from reference_impl.embedding import input_embedding
from reference_impl.rnn import (
    CausalTransformerClassifier,
    RecurrentClassifier,
    RNNEncoder,
    TransformerEncoder,
    input_gradient_norms,
    rnn_forward,
)


@pytest.mark.parametrize("B,T,I,H", [(1, 1, 1, 1), (1, 7, 3, 5), (4, 9, 6, 8), (3, 20, 2, 16)])
def test_rnn_forward_matches_nn_rnn(B, T, I, H):
    ref = nn.RNN(I, H, batch_first=True)
    x = torch.randn(B, T, I)
    h0 = torch.randn(B, H)
    x_before, h0_before = x.clone(), h0.clone()
    out, h_last = rnn_forward(x, h0, ref.weight_ih_l0, ref.weight_hh_l0, ref.bias_ih_l0, ref.bias_hh_l0)
    ref_out, ref_h = ref(x, h0.unsqueeze(0))
    assert out.shape == (B, T, H) and h_last.shape == (B, H)
    assert_close(out, ref_out)
    assert_close(h_last, ref_h[0])
    assert torch.equal(x, x_before) and torch.equal(h0, h0_before)


def test_rnn_forward_gradients_match_nn_rnn():
    ref = nn.RNN(3, 4, batch_first=True)
    x = torch.randn(2, 6, 3, requires_grad=True)
    h0 = torch.zeros(2, 4)
    out, _ = rnn_forward(x, h0, ref.weight_ih_l0, ref.weight_hh_l0, ref.bias_ih_l0, ref.bias_hh_l0)
    (g_ours,) = torch.autograd.grad(out.sum(), x)
    (g_ref,) = torch.autograd.grad(ref(x, h0.unsqueeze(0))[0].sum(), x)
    assert_close(g_ours, g_ref)


def _loop_gradient_norms(model, x):
    """Independent check: one autograd call per time step, float64."""
    model = model.double()
    norms = []
    for t in range(x.shape[1]):
        xx = x.detach().double().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xx)[:, -1].sum(), xx)
        norms.append(torch.linalg.vector_norm(g[:, t]))
    return torch.stack(norms)


@pytest.mark.parametrize(
    "make_model",
    [
        lambda: RNNEncoder(3, 8, "rnn"),
        lambda: RNNEncoder(3, 8, "gru"),
        lambda: TransformerEncoder(3, 16, 2, 32, 2, causal=True),
        lambda: TransformerEncoder(3, 16, 4, 32, 1, causal=False),
    ],
)
@pytest.mark.parametrize("B,T", [(1, 5), (3, 11)])
def test_input_gradient_norms_matches_loop(make_model, B, T):
    model = make_model()
    x = torch.randn(B, T, 3)
    x_before = x.clone()
    norms = input_gradient_norms(model, x)
    assert norms.shape == (T,)
    assert torch.equal(x, x_before) and not x.requires_grad
    assert all(p.grad is None for p in model.parameters())
    expected = _loop_gradient_norms(model, x).float()
    assert_close(norms.detach(), expected, rtol=1e-4, atol=1e-6)


def test_input_gradient_norms_of_a_plain_function():
    # model(x)[:, -1] = 2 * x[:, -1] + x[:, 0]**2 summed over features: closed form.
    def model(x):
        out = 2 * x.clone()
        out[:, -1] = out[:, -1] + x[:, 0] ** 2
        return out

    x = torch.randn(2, 4, 3)
    norms = input_gradient_norms(model, x)
    expected = torch.tensor([torch.linalg.vector_norm(2 * x[:, 0]), 0.0, 0.0, 2 * 6**0.5])
    assert_close(norms, expected)


def test_rnn_hears_recent_inputs_best():
    torch.manual_seed(1)
    model = RNNEncoder(4, 32, "rnn")
    norms = input_gradient_norms(model, torch.randn(8, 40, 4))
    # The signal fades with every hand-over: from the last step back, the norms shrink...
    assert norms[-1] > norms[-5] > norms[-10] > norms[-20] > norms[0]
    # ...and the first inputs are all but forgotten.
    assert norms[:10].max() < 1e-3 * norms[-1]


def test_transformer_hears_far_back():
    torch.manual_seed(1)
    model = TransformerEncoder(4, 32, 4, 64, 2, causal=True)
    norms = input_gradient_norms(model, torch.randn(8, 40, 4))
    # Every position, however far back, reaches the last output through one attention step.
    assert norms[:-1].min() > 1e-3 * norms[-1]


def test_transformer_readout_avoids_the_layer_norm_zero_sum():
    # Without a layer after the final LayerNorm (gamma = 1, beta = 0) each output row sums to 0,
    # so model(x)[:, -1].sum() is constant and all its input gradients vanish.
    torch.manual_seed(1)
    model = TransformerEncoder(4, 32, 4, 64, 2, causal=True)
    x = torch.randn(2, 6, 4)
    no_readout = lambda x: model.stack(model.proj(x))  # noqa: E731
    assert input_gradient_norms(no_readout, x).max() < 1e-4
    assert input_gradient_norms(model, x).min() > 1e-3


def test_recurrent_classifier_shapes_and_gradients():
    for kind in ("rnn", "gru"):
        model = RecurrentClassifier(vocab_size=11, n_classes=5, hidden=16, kind=kind)
        tokens = torch.randint(11, (3, 9))
        logits = model(tokens)
        assert logits.shape == (3, 5)
        logits.sum().backward()
        assert model.embed.weight.grad is not None
    with pytest.raises(ValueError):
        RecurrentClassifier(11, 5, 16, kind="lstm")


def test_recurrent_classifier_reads_the_last_hidden_state():
    model = RecurrentClassifier(vocab_size=7, n_classes=3, hidden=8, kind="gru")
    tokens = torch.randint(7, (2, 5))
    _, h_last = model.encoder.rnn(model.embed(tokens))
    assert_close(model(tokens), model.head(h_last[0]))


def test_causal_transformer_classifier_reads_the_last_position():
    model = CausalTransformerClassifier(vocab_size=13, n_classes=4, d_model=16, n_heads=2, d_ff=32, n_layers=2)
    tokens = torch.randint(13, (3, 8))
    logits = model(tokens)
    assert logits.shape == (3, 4)
    x = input_embedding(tokens, model.token_embedding.weight)
    h = model.stack(x, mask=causal_mask(8))
    assert_close(logits, model.head(h[:, -1]))
    # The last position sees every token: changing the first one changes the answer.
    changed = tokens.clone()
    changed[:, 0] = (changed[:, 0] + 1) % 13
    assert not torch.allclose(model(changed), logits)


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one thread; two threads on a busy 2-core machine crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_copy_over_a_distance_rnn_forgets_transformer_remembers(one_thread):
    from reference_impl.data import make_copy_dataset
    from reference_impl.training import accuracy, train_classifier

    X, y = make_copy_dataset(4000, distance=30, seed=0)
    X_test, y_test = make_copy_dataset(1000, distance=30, seed=1)
    results = {}
    for name, make in [
        ("rnn", lambda: RecurrentClassifier(17, 8, hidden=32, kind="rnn")),
        ("transformer", lambda: CausalTransformerClassifier(17, 8, d_model=32, n_heads=4, d_ff=64, n_layers=1)),
    ]:
        torch.manual_seed(0)
        model = make()
        train_classifier(model, X, y, epochs=5, batch_size=64, lr=3e-3, seed=0, progress=False)
        results[name] = accuracy(model, X_test, y_test)
    assert results["rnn"] < 0.3  # chance is 1/8
    assert results["transformer"] > 0.95
