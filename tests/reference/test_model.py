"""Reference language model and sequence classifier built from chapters 1-4."""

import math

import pytest
import torch
import torch.nn as nn
from torch.testing import assert_close

from reference_impl.attention import causal_mask
from reference_impl.blocks import to_torch_encoder
from reference_impl.embedding import input_embedding
from reference_impl.model import SequenceClassifier, TransformerLM


def formula(V, D, F_, n_layers, tied=True):
    """The count chapter 8's transformer_param_count must return (COURSE_SPEC)."""
    per_layer = 4 * (D * D + D) + D * F_ + F_ + F_ * D + D + 4 * D
    return V * D + n_layers * per_layer + 2 * D + (0 if tied else D * V)


@pytest.mark.parametrize(
    "V, D, H, F_, n_layers", [(13, 16, 2, 32, 2), (7, 6, 3, 5, 1), (50, 32, 4, 128, 3), (3, 4, 1, 4, 0)]
)
@pytest.mark.parametrize("tied", [True, False])
def test_parameter_count_formula(V, D, H, F_, n_layers, tied):
    model = TransformerLM(V, D, H, F_, n_layers, tied=tied)
    assert sum(p.numel() for p in model.parameters()) == formula(V, D, F_, n_layers, tied)
    assert sum(p.numel() for p in model.state_dict().values()) >= formula(V, D, F_, n_layers, tied)


def test_tied_head_shares_storage_and_gradient():
    model = TransformerLM(11, 8, 2, 16, 1, tied=True)
    assert model.head.weight is model.token_embedding.weight
    assert model.head.weight.data_ptr() == model.token_embedding.weight.data_ptr()
    assert model.head.bias is None
    with torch.no_grad():
        model.token_embedding.weight[3, 0] = 42.0
    assert model.head.weight[3, 0] == 42.0
    untied = TransformerLM(11, 8, 2, 16, 1, tied=False)
    assert untied.head.weight.data_ptr() != untied.token_embedding.weight.data_ptr()
    assert untied.head.bias is None


def test_forward_shape_and_composition():
    torch.manual_seed(1)
    model = TransformerLM(17, 12, 3, 20, 2)
    ids = torch.randint(0, 17, (3, 6))
    before = ids.clone()
    logits = model(ids)
    assert logits.shape == (3, 6, 17)
    # chapter 1 -> chapter 3 (causal) -> tied head, with PyTorch's encoder standing in for the stack
    x = input_embedding(ids, model.token_embedding.weight)
    h = to_torch_encoder(model.stack)(x, mask=~causal_mask(6))
    assert_close(logits, h @ model.token_embedding.weight.T)
    assert torch.equal(ids, before)


def test_embedding_init_scale():
    torch.manual_seed(0)
    model = TransformerLM(1000, 64, 4, 64, 1)
    std = model.token_embedding.weight.std().item()
    assert abs(std - 64**-0.5) < 0.01  # sqrt(D) scaling then gives unit-size token vectors


def test_causal_future_tokens_do_not_change_earlier_logits():
    torch.manual_seed(2)
    model = TransformerLM(20, 16, 4, 32, 3)
    ids = torch.randint(0, 20, (2, 9))
    changed = ids.clone()
    changed[:, 5:] = (changed[:, 5:] + 7) % 20
    a, b = model(ids), model(changed)
    assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])
    # and gradients: logit at position 4 does not depend on the embedding of token at position 6
    x = input_embedding(ids, model.token_embedding.weight).detach().requires_grad_()
    out = model.stack(x, mask=causal_mask(9))
    (g,) = torch.autograd.grad(out[:, 4].sum(), x)
    assert torch.all(g[:, 5:] == 0) and torch.any(g[:, :5] != 0)


def test_explicit_full_mask_makes_it_bidirectional():
    torch.manual_seed(3)
    model = TransformerLM(10, 8, 2, 16, 1)
    ids = torch.randint(0, 10, (1, 5))
    full = torch.ones(5, 5, dtype=torch.bool)
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 10
    assert not torch.allclose(model(ids, mask=full)[:, 0], model(changed, mask=full)[:, 0])


def test_lm_helpers():
    torch.manual_seed(4)
    model = TransformerLM(10, 8, 2, 16, 2)
    ids = torch.randint(0, 10, (2, 4))
    states = model.hidden_states(ids)
    assert len(states) == 3 and all(s.shape == (2, 4, 8) for s in states)
    assert_close(model.head(model.stack.norm(states[-1])), model(ids))
    maps = model.attention_maps(ids)
    assert len(maps) == 2 and all(m.shape == (2, 2, 4, 4) for m in maps)
    assert all(torch.all(m[..., ~causal_mask(4)] == 0) for m in maps)


def test_lm_trains_a_little():
    # a few Adam steps on one fixed batch must lower the loss (gradients reach everything)
    torch.manual_seed(5)
    model = TransformerLM(8, 16, 2, 32, 1)
    ids = torch.randint(0, 8, (4, 6))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        logits = model(ids[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, 8), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5
    # sensible start: within ~1.5 nats of uniform (an N(0, 1) table would start near 10-14:
    # tied logits of size sqrt(D)); the excess comes from the tied head favouring the input token
    assert math.log(8) - 1.0 < losses[0] < math.log(8) + 1.5


# ---------------------------------------------------------------- SequenceClassifier


@pytest.mark.parametrize("readout", ["mean", "first"])
def test_classifier_shapes_and_readout(readout):
    torch.manual_seed(6)
    model = SequenceClassifier(12, 3, 8, 2, 16, 2, max_len=10, readout=readout)
    ids = torch.randint(0, 12, (4, 7))
    logits = model(ids)
    assert logits.shape == (4, 3)
    h = to_torch_encoder(model.stack)(input_embedding(ids, model.token_embedding.weight))
    pooled = h.mean(1) if readout == "mean" else h[:, 0]
    assert_close(logits, model.head(pooled))


def test_classifier_is_bidirectional():
    torch.manual_seed(7)
    model = SequenceClassifier(12, 3, 8, 2, 16, 1, readout="first")
    ids = torch.randint(0, 12, (1, 6))
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 12
    assert not torch.allclose(model(ids), model(changed))  # position 0 sees the last token


def test_classifier_helpers_and_limits():
    torch.manual_seed(8)
    model = SequenceClassifier(12, 2, 8, 4, 16, 3, max_len=6)
    ids = torch.randint(0, 12, (2, 6))
    maps = model.attention_maps(ids)
    assert len(maps) == 3 and all(m.shape == (2, 4, 6, 6) for m in maps)
    assert_close(maps[0].sum(-1), torch.ones(2, 4, 6))
    assert all(not m.requires_grad for m in maps)
    states = model.hidden_states(ids)
    assert len(states) == 4 and all(s.shape == (2, 6, 8) for s in states)
    with pytest.raises(ValueError):
        model(torch.zeros(1, 7, dtype=torch.long))
    with pytest.raises(ValueError):
        SequenceClassifier(12, 2, 8, 4, 16, 1, readout="max")
    # the position table is not a parameter nor saved state
    assert "positions" not in model.state_dict()


def test_plot_helpers_return_plain_tensors():
    """hidden_states/attention_maps are for figures: no autograd history, ready for .numpy()."""
    from reference_impl.model import SequenceClassifier, TransformerLM

    ids = torch.randint(0, 11, (2, 5))
    for model in (TransformerLM(11, 8, 2, 16, 2), SequenceClassifier(11, 3, 8, 2, 16, 2)):
        for t in list(model.hidden_states(ids)) + list(model.attention_maps(ids)):
            assert not t.requires_grad
            t.numpy()
