"""Chapter 5's scratch regularisers against PyTorch: inverted dropout (masks, train vs
eval, expectation), L2 penalty vs coupled weight decay and decoupled decay vs AdamW,
gradient clipping, Xavier/He initialisation scales, early stopping."""

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
    torch.manual_seed(12)
    big = torch.full((400_000,), 3.0, dtype=D)
    for p in (0.2, 0.5, 0.9):
        y = dropout(big, p)
        assert (
            abs(y.mean().item() - 3.0) < 0.03
        )  # E[y] = x (std of the mean ≈ 0.014 for p = 0.9)
        assert abs((y == 0).double().mean().item() - p) < 0.005  # fraction dropped ≈ p


def test_dropout_gradient_matches_torch():
    """The reference is torch's own dropout with the same seed, not our output's mask
    (which would pass with a wrong p or a wrong scale)."""
    x = torch.randn(100, 20, dtype=D, requires_grad=True)
    x_t = x.detach().clone().requires_grad_()
    dy = torch.randn(100, 20, dtype=D)
    torch.manual_seed(13)
    dropout(x, 0.4).backward(dy)
    torch.manual_seed(13)
    F.dropout(x_t, 0.4, training=True).backward(dy)
    assert torch.equal(x.grad, x_t.grad)
    kept = x.grad != 0
    assert 0.55 < kept.double().mean() < 0.65  # about 1 − p of the units kept
    torch.testing.assert_close(x.grad[kept], dy[kept] / 0.6)


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_dropout_p_zero_and_one_values_and_gradients_like_torch(p):
    """p = 1 must keep the graph: output zeros *and* gradient zeros, as torch."""
    x = torch.randn(7, 5, dtype=D, requires_grad=True)
    x_t = x.detach().clone().requires_grad_()
    dy = torch.randn(7, 5, dtype=D)
    for layer in (lambda t: dropout(t, p), Dropout(p)):
        x.grad = None
        y = layer(x)
        y_t = F.dropout(x_t, p, training=True)
        assert y.dtype == D and y.requires_grad
        assert torch.equal(y, y_t)
        y.backward(dy)
        (g_t,) = torch.autograd.grad(y_t, x_t, dy)
        assert torch.equal(x.grad, g_t)
    assert torch.equal(x.grad, dy if p == 0 else torch.zeros_like(dy))


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), True, "0.5"])
def test_dropout_rejects_p_outside_unit_interval(p):
    x = torch.randn(3)
    with pytest.raises(ValueError, match="p must be in"):
        dropout(x, p)
    with pytest.raises(ValueError, match="p must be in"):
        Dropout(p)
    if isinstance(p, float):  # torch refuses the same values
        with pytest.raises((ValueError, RuntimeError)):
            F.dropout(x, p)


# ---------------------------------------------------------------- penalties and weight
# decay


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


# ------------------------------------------------- extreme and degenerate inputs, bad
# ones


def test_penalties_at_zero_strength_and_without_weights():
    model = _model()
    for penalty in (l1_penalty, l2_penalty):
        zero = penalty(model.parameters(), 0.0)
        assert zero.dtype == D and zero.item() == 0.0
        zero.backward()
        assert torch.equal(model[0].weight.grad, torch.zeros_like(model[0].weight))
        model.zero_grad()
        for params in ([], [model[0].bias, model[2].bias]):  # nothing of dim ≥ 2
            none = penalty(params, 0.5)
            assert isinstance(none, torch.Tensor) and none.item() == 0.0


def test_l1_gradient_at_exact_zero_weights_is_zero():
    """The subgradient at w = 0 is 0 (sign(0)), so zero weights stay put."""
    w = torch.tensor([[0.0, -2.0], [3.0, 0.0]], dtype=D, requires_grad=True)
    l1_penalty([w], 0.7).backward()
    torch.testing.assert_close(w.grad, 0.7 * torch.sign(w.detach()))
    assert w.grad[0, 0] == 0 and w.grad[1, 1] == 0


def test_penalties_match_torch_norms_for_large_weights():
    w = 1e150 * torch.randn(4, 3, dtype=D)
    torch.testing.assert_close(
        l1_penalty([w], 1e-150), 1e-150 * torch.linalg.vector_norm(w, 1)
    )
    torch.testing.assert_close(
        l2_penalty([w / 1e150], 2.0), torch.linalg.vector_norm(w / 1e150) ** 2
    )


def test_decay_at_zero_is_the_identity_and_matches_adamw_at_large_decay():
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    decay_weights_(model.parameters(), lr=0.1, weight_decay=0.0)
    decay_weights_(model.parameters(), lr=0.0, weight_decay=5.0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    w = torch.randn(5, 4, dtype=D, requires_grad=True)
    w_t = w.detach().clone().requires_grad_()
    w_t.grad = torch.zeros_like(w_t)
    opt = torch.optim.AdamW([w_t], lr=0.5, weight_decay=1.9)  # factor 1 − 0.95
    opt.step()  # zero gradient: Adam's step is 0, only the decay acts
    decay_weights_([w], 0.5, 1.9)
    torch.testing.assert_close(w, w_t)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda w: l2_penalty(w, 0.1), TypeError, "params must be an iterable"),
        (lambda w: l1_penalty(w, 0.1), TypeError, "params must be an iterable"),
        (lambda w: decay_weights_(w, 0.1, 0.1), TypeError, "params must be"),
        (lambda w: l2_penalty([w], -0.1), ValueError, "lam"),
        (lambda w: l1_penalty([w], float("nan")), ValueError, "lam"),
        (lambda w: decay_weights_([w], -0.1, 0.1), ValueError, "lr"),
        (lambda w: decay_weights_([w], 0.1, -1.0), ValueError, "weight_decay"),
        (lambda w: EarlyStopping(patience=0), ValueError, "patience"),
        (lambda w: EarlyStopping(patience=2.5), ValueError, "patience"),
        (lambda w: EarlyStopping(min_delta=-0.1), ValueError, "min_delta"),
        (lambda w: xavier_std(0, 10), ValueError, "fan_in"),
        (lambda w: xavier_std(10, -3), ValueError, "fan_out"),
        (lambda w: he_std(2.5), ValueError, "fan_in"),
        (lambda w: clip_grad_norm_([w], -1.0), ValueError, "max_norm"),
        (lambda w: clip_grad_norm_([w], 1.0, norm_type=0), ValueError, "norm_type"),
        (lambda w: clip_grad_norm_([w], 1.0, norm_type=-2), ValueError, "norm_type"),
        (lambda w: clip_grad_value_([w], -0.5), ValueError, "clip_value"),
    ],
)
def test_bad_arguments_get_errors_that_name_them(call, error, match):
    w = torch.randn(3, 2, dtype=D, requires_grad=True)
    w.grad = torch.ones_like(w)
    before = (w.detach().clone(), w.grad.clone())
    with pytest.raises(error, match=match):
        call(w)
    assert torch.equal(w.detach(), before[0]) and torch.equal(w.grad, before[1])


def test_negative_clip_thresholds_would_silently_flip_gradients_in_torch():
    """Why we refuse them: torch accepts a negative max_norm / clip_value and returns
    gradients pointing the other way."""
    w = torch.randn(3, dtype=D, requires_grad=True)
    w.grad = torch.tensor([1.0, 2.0, 3.0], dtype=D)
    nn.utils.clip_grad_value_([w], -0.5)
    assert (w.grad < 0).all()


def test_init_scales_at_fan_one():
    assert xavier_std(1, 1) == 1.0 and he_std(1) == math.sqrt(2.0)
    w = torch.empty(20_000, 1)  # fan_in 1, fan_out 20 000
    nn.init.kaiming_normal_(w, nonlinearity="relu")
    assert abs(w.std().item() / he_std(1) - 1) < 0.03


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
def test_clip_grad_norm_extremes_match_torch(norm_type):
    cases = {
        "zero gradients": [torch.zeros(4, 3, dtype=D), torch.zeros(2, dtype=D)],
        "huge gradients": [1e200 * torch.ones(4, 3, dtype=D), torch.ones(2, dtype=D)],
        "tiny gradients": [1e-200 * torch.ones(4, 3, dtype=D), torch.zeros(2, dtype=D)],
    }
    for name, grads in cases.items():
        for max_norm in (0.0, 1.0):
            a = [torch.zeros_like(g, requires_grad=True) for g in grads]
            b = [torch.zeros_like(g, requires_grad=True) for g in grads]
            for pa, pb, g in zip(a, b, grads):
                pa.grad, pb.grad = g.clone(), g.clone()
            total = clip_grad_norm_(a, max_norm, norm_type=norm_type)
            total_t = nn.utils.clip_grad_norm_(b, max_norm, norm_type=norm_type)
            assert total.dtype == D, name
            torch.testing.assert_close(total, total_t, msg=name)
            for pa, pb in zip(a, b):
                torch.testing.assert_close(pa.grad, pb.grad, msg=name, equal_nan=True)


def test_clip_with_no_gradients_and_clip_value_zero_like_torch():
    w = torch.randn(3, dtype=D, requires_grad=True)  # no .grad yet
    assert clip_grad_norm_([w], 1.0).item() == nn.utils.clip_grad_norm_([w], 1.0)
    assert clip_grad_norm_([], 1.0).item() == 0.0
    w.grad = torch.tensor([-3.0, 0.0, 2.0], dtype=D)
    clip_grad_value_(w, 0.0)
    assert torch.equal(w.grad.abs(), torch.zeros(3, dtype=D))
