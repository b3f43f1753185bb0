"""Chapter 5's scratch regularisers against PyTorch: inverted dropout (masks, train vs eval,
expectation), L2 penalty vs coupled weight decay and decoupled decay vs AdamW, gradient clipping,
Xavier/He initialisation scales, early stopping."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlcore.scratch.regularize import (
    Dropout,
    EarlyStopping,
    clip_grad_norm_,
    clip_grad_value_,
    decay_weights_,
    dropout,
    he_std,
    l1_penalty,
    l2_penalty,
    xavier_std,
)

D = torch.float64


# ---------------------------------------------------------------- dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_same_masks_as_torch(p):
    x = torch.randn(200, 30, dtype=D)
    torch.manual_seed(4)
    theirs = F.dropout(x, p, training=True)
    torch.manual_seed(4)
    ours = dropout(x, p, training=True)
    assert torch.equal(
        ours, theirs
    )  # same mask and same rounding of the 1/(1 − p) scale
    kept = ours != 0
    torch.testing.assert_close(ours[kept], x[kept] / (1 - p))
    gen_a, gen_b = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(dropout(x, p, generator=gen_a), dropout(x, p, generator=gen_b))


def test_dropout_module_train_and_eval_like_nn_dropout():
    x = torch.randn(64, 50, dtype=D)
    ours, ref = Dropout(0.3), nn.Dropout(0.3)
    torch.manual_seed(11)
    y_ref = ref(x)
    torch.manual_seed(11)
    assert torch.equal(ours(x), y_ref)
    ours.eval()
    ref.eval()
    assert torch.equal(ours(x), x) and torch.equal(
        ref(x), x
    )  # eval: the identity, no rescaling


def test_dropout_eval_identity_edge_cases_and_expectation():
    x = torch.randn(10, dtype=D)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    with pytest.raises(ValueError):
        dropout(x, 1.5)
    torch.manual_seed(12)
    big = torch.full((400_000,), 3.0, dtype=D)
    for p in (0.2, 0.5, 0.9):
        y = dropout(big, p)
        assert (
            abs(y.mean().item() - 3.0) < 0.03
        )  # E[y] = x (std of the mean ≈ 0.014 for p = 0.9)
        assert abs((y == 0).double().mean().item() - p) < 0.005  # fraction dropped ≈ p


def test_dropout_gradient_flows_through_kept_units_only():
    x = torch.randn(100, 20, dtype=D, requires_grad=True)
    torch.manual_seed(13)
    y = dropout(x, 0.4)
    y.sum().backward()
    expected = (y != 0).double() / 0.6
    torch.testing.assert_close(x.grad, expected)


# ---------------------------------------------------------------- penalties and weight decay


def _model():
    torch.manual_seed(14)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).double()


def test_penalties_act_on_weights_only():
    model = _model()
    w = [model[0].weight, model[2].weight]
    torch.testing.assert_close(
        l2_penalty(model.parameters(), 0.3), 0.15 * sum((t**2).sum() for t in w)
    )
    torch.testing.assert_close(
        l1_penalty(model.parameters(), 0.3), 0.3 * sum(t.abs().sum() for t in w)
    )
    l2_penalty(model.parameters(), 0.3).backward()
    torch.testing.assert_close(model[0].weight.grad, 0.3 * model[0].weight)
    assert model[0].bias.grad is None


def _run(optimizer_cls, kwargs, penalty=0.0, decoupled=0.0, steps=5):
    model = _model()
    weights = [model[0].weight, model[2].weight]
    others = [model[0].bias, model[2].bias]
    opt = optimizer_cls(
        [{"params": weights, **kwargs}, {"params": others, "weight_decay": 0.0}]
    )
    x, y = (
        torch.randn(16, 6, dtype=D, generator=torch.Generator().manual_seed(1)),
        torch.arange(16) % 3,
    )
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y) + (
            l2_penalty(weights, penalty) if penalty else 0
        )
        opt.zero_grad()
        loss.backward()
        if decoupled:
            decay_weights_(weights, kwargs["lr"], decoupled)
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_l2_in_loss_equals_weight_decay_for_sgd_and_adam():
    lam = 0.05
    for cls, lr in ((torch.optim.SGD, 0.1), (torch.optim.Adam, 0.01)):
        torch.testing.assert_close(
            _run(cls, dict(lr=lr), penalty=lam),
            _run(cls, dict(lr=lr, weight_decay=lam)),
        )


def test_decoupled_decay_equals_l2_for_sgd_but_not_for_adam():
    lam = 0.05
    sgd_l2 = _run(torch.optim.SGD, dict(lr=0.1), penalty=lam)
    sgd_decoupled = _run(torch.optim.SGD, dict(lr=0.1), decoupled=lam)
    torch.testing.assert_close(sgd_l2, sgd_decoupled)
    adamw = _run(torch.optim.AdamW, dict(lr=0.01, weight_decay=lam))
    adam_decoupled = _run(torch.optim.Adam, dict(lr=0.01), decoupled=lam)
    torch.testing.assert_close(
        adam_decoupled, adamw
    )  # AdamW = decoupled decay + plain Adam
    adam_l2 = _run(torch.optim.Adam, dict(lr=0.01), penalty=lam)
    assert (
        adam_l2 - adamw
    ).abs().max() > 1e-4  # ... and that is not Adam with an L2 penalty


# ---------------------------------------------------------------- gradient clipping


def _params_with_grads(scale: float):
    torch.manual_seed(5)
    a = [
        torch.randn(4, 3, dtype=D, requires_grad=True),
        torch.randn(7, dtype=D, requires_grad=True),
        torch.randn(2, dtype=D, requires_grad=True),
    ]  # the last one gets no gradient
    b = [t.detach().clone().requires_grad_() for t in a]
    for params in (a, b):
        (scale * (params[0].sum() * 3 + (params[1] ** 2).sum())).backward()
    return a, b


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.1, 1e6])  # clipped, and left alone
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    a, b = _params_with_grads(scale=2.0)
    total = clip_grad_norm_(a, max_norm, norm_type=norm_type)
    total_t = nn.utils.clip_grad_norm_(b, max_norm, norm_type=norm_type)
    torch.testing.assert_close(total, total_t)
    for pa, pb in zip(a, b):
        if pb.grad is None:
            assert pa.grad is None
        else:
            torch.testing.assert_close(pa.grad, pb.grad)


def test_clip_grad_norm_keeps_direction_and_caps_length():
    a, _ = _params_with_grads(scale=5.0)
    before = torch.cat([p.grad.flatten() for p in a[:2]]).clone()
    total = clip_grad_norm_(a, 1.0)
    after = torch.cat([p.grad.flatten() for p in a[:2]])
    torch.testing.assert_close(total, torch.linalg.vector_norm(before))
    assert abs(torch.linalg.vector_norm(after).item() - 1.0) < 1e-5
    torch.testing.assert_close(
        after, before / torch.linalg.vector_norm(before), atol=1e-6, rtol=1e-5
    )


def test_clip_accepts_a_single_tensor_like_torch():
    w = torch.randn(5, 4, dtype=D, requires_grad=True)
    (w**3).sum().backward()
    w2 = w.detach().clone().requires_grad_()
    w2.grad = w.grad.clone()
    torch.testing.assert_close(
        clip_grad_norm_(w, 0.5), nn.utils.clip_grad_norm_(w2, 0.5)
    )
    torch.testing.assert_close(w.grad, w2.grad)


def test_clip_grad_value_matches_torch():
    a, b = _params_with_grads(scale=2.0)
    clip_grad_value_(a, 0.7)
    nn.utils.clip_grad_value_(b, 0.7)
    for pa, pb in zip(a[:2], b[:2]):
        torch.testing.assert_close(pa.grad, pb.grad)
    assert max(p.grad.abs().max().item() for p in a[:2]) <= 0.7


# ---------------------------------------------------------------- initialisation


@pytest.mark.parametrize("fan_out,fan_in", [(400, 600), (256, 784), (1000, 100)])
def test_init_scales_match_torch_init(fan_out, fan_in):
    torch.manual_seed(6)
    w = torch.empty(fan_out, fan_in)  # nn.Linear layout: (out, in)
    nn.init.xavier_normal_(w)
    assert abs(w.std().item() / xavier_std(fan_in, fan_out) - 1) < 0.02
    tanh_gain = nn.init.calculate_gain("tanh")
    nn.init.xavier_normal_(w, gain=tanh_gain)
    assert abs(w.std().item() / xavier_std(fan_in, fan_out, tanh_gain) - 1) < 0.02
    nn.init.kaiming_normal_(w, nonlinearity="relu")  # fan_in mode: the columns
    assert abs(w.std().item() / he_std(fan_in) - 1) < 0.02
    nn.init.kaiming_normal_(w, nonlinearity="linear")
    assert abs(w.std().item() / he_std(fan_in, gain=1.0) - 1) < 0.02
    assert math.isclose(he_std(fan_in), math.sqrt(2 / fan_in))
    assert math.isclose(xavier_std(fan_in, fan_out), math.sqrt(2 / (fan_in + fan_out)))


def test_he_init_preserves_second_moment_through_relu_layers():
    torch.manual_seed(15)
    x = torch.randn(2000, 256, dtype=D)
    h = x
    for _ in range(10):
        h = torch.relu(h @ (he_std(256) * torch.randn(256, 256, dtype=D)))
    ratio = (h**2).mean().item() / (x**2).mean().item()
    assert 0.5 < ratio < 2.0  # without the √2 gain it would be ≈ 2^-10


# ---------------------------------------------------------------- early stopping


def test_early_stopping_patience():
    stopper = EarlyStopping(patience=2)
    decisions = [stopper.step(v) for v in [1.0, 0.8, 0.9, 0.7, 0.75, 0.71]]
    assert decisions == [False, False, False, False, False, True]
    assert stopper.best_epoch == 4 and stopper.best == 0.7 and stopper.should_stop


def test_early_stopping_min_delta_improved_flag_and_nan():
    stopper = EarlyStopping(patience=3, min_delta=0.05)
    flags = []
    for v in [1.0, 0.97, 0.9, float("nan"), 0.89, 0.86]:
        stop = stopper.step(v)
        flags.append(stopper.improved)
    assert flags == [
        True,
        False,
        True,
        False,
        False,
        False,
    ]  # 0.97 and 0.86 are within min_delta
    assert stop and stopper.best_epoch == 3 and stopper.best == 0.9
    with pytest.raises(ValueError):
        EarlyStopping(patience=0)
