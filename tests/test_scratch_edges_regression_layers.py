"""Extreme and degenerate inputs for `scratch.regression` and `scratch.layers`.

Against PyTorch in float64: large |x|, exact zeros (the kinks of |r|, relu and the
z = 0 of a zero-initialised head), degenerate hyper-parameters (Huber δ → 0,
Smooth-L1 β = 0, dropout p ∈ {0, 1}), size-1 dimensions, dtypes kept (float64 in,
float64 out; float32 in, float32 out), and bad arguments rejected with an error that
names the argument instead of a silent wrong answer.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_scratch_layers import _TORCH_ACTS  # the torch reference of each activation

from dlcore.scratch import layers as L
from dlcore.scratch import regression as R

f64 = torch.float64
gen = torch.Generator().manual_seed(7)
rng = np.random.default_rng(7)


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=f64)


def _autograd(fn, *args: torch.Tensor) -> torch.Tensor:
    """d(sum fn(x, ...))/dx for the first argument."""
    x = args[0].clone().requires_grad_()
    (grad,) = torch.autograd.grad(fn(x, *args[1:]).sum(), x)
    return grad


# ====================================================== regression: regression losses

# (ours, ours_grad, torch's) with the hyper-parameter bound in
LOSSES = {
    "mse": (R.mse, R.mse_grad, F.mse_loss),
    "mae": (R.mae, R.mae_grad, F.l1_loss),
    "huber": (R.huber, R.huber_grad, F.huber_loss),
    "huber δ=1e-9": (
        lambda p, t, reduction="mean": R.huber(p, t, 1e-9, reduction),
        lambda p, t, reduction="mean": R.huber_grad(p, t, 1e-9, reduction),
        lambda p, t, reduction="mean": F.huber_loss(p, t, reduction, delta=1e-9),
    ),
    "huber δ=1e9": (
        lambda p, t, reduction="mean": R.huber(p, t, 1e9, reduction),
        lambda p, t, reduction="mean": R.huber_grad(p, t, 1e9, reduction),
        lambda p, t, reduction="mean": F.huber_loss(p, t, reduction, delta=1e9),
    ),
    "smooth_l1 β=0": (
        lambda p, t, reduction="mean": R.smooth_l1(p, t, 0.0, reduction),
        lambda p, t, reduction="mean": R.smooth_l1_grad(p, t, 0.0, reduction),
        lambda p, t, reduction="mean": F.smooth_l1_loss(
            p, t, reduction=reduction, beta=0.0
        ),
    ),
    "smooth_l1 β=1e-9": (
        lambda p, t, reduction="mean": R.smooth_l1(p, t, 1e-9, reduction),
        lambda p, t, reduction="mean": R.smooth_l1_grad(p, t, 1e-9, reduction),
        lambda p, t, reduction="mean": F.smooth_l1_loss(
            p, t, reduction=reduction, beta=1e-9
        ),
    ),
}

# residuals: exact zeros, ±δ for δ = 1 (the Huber boundary), tiny and huge values
EDGE_PRED = _t([0.0, 0.0, 1.0, -1.0, 1e-300, -3e-12, 5e7, -1e100, 2.0, 0.5])
EDGE_TARGET = _t([0.0, -0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.5])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_regression_losses_at_extreme_and_zero_residuals(name, reduction):
    ours, ours_grad, theirs = LOSSES[name]
    pred, target = EDGE_PRED, EDGE_TARGET
    value = ours(pred, target, reduction=reduction)
    expected = theirs(pred, target, reduction=reduction)
    assert value.dtype == f64
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=0)
    # hand derivative = autograd of torch's loss, including at r = 0 exactly
    p = pred.clone().requires_grad_()
    (torch_grad,) = torch.autograd.grad(theirs(p, target, reduction=reduction).sum(), p)
    grad = ours_grad(pred, target, reduction=reduction)
    assert grad.dtype == f64
    torch.testing.assert_close(grad, torch_grad, rtol=1e-12, atol=0)
    # and autograd through our loss agrees too (the |r| kink at r = 0 included)
    ours_autograd = _autograd(
        lambda q, t: ours(q, t, reduction=reduction), pred, target
    )
    torch.testing.assert_close(ours_autograd, torch_grad, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("shape", [(), (1,), (1, 1), (3, 1, 2)])
def test_regression_losses_size_one_and_float32(name, shape):
    ours, ours_grad, theirs = LOSSES[name]
    pred = torch.randn(shape, generator=gen)  # float32
    target = torch.randn(shape, generator=gen)
    for reduction in ("mean", "none"):
        value = ours(pred, target, reduction=reduction)
        assert (
            value.dtype == torch.float32
            and value.shape == theirs(pred, target, reduction=reduction).shape
        )
        torch.testing.assert_close(value, theirs(pred, target, reduction=reduction))
        grad = ours_grad(pred, target, reduction=reduction)
        assert grad.dtype == torch.float32 and grad.shape == pred.shape


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_regression_losses_refuse_to_broadcast_b1_against_b(name):
    ours, ours_grad, _ = LOSSES[name]
    pred, target = torch.zeros(5, 1, dtype=f64), torch.zeros(5, dtype=f64)
    for fn in (ours, ours_grad):
        with pytest.raises(ValueError, match=r"same shape.*\(5, 1\).*\(5,\)"):
            fn(pred, target)


@pytest.mark.parametrize("delta", [0.0, -1.0, float("nan"), float("inf"), "1"])
def test_huber_rejects_a_non_positive_delta(delta):
    x = torch.zeros(3, dtype=f64)
    for fn in (R.huber, R.huber_grad):
        with pytest.raises(ValueError, match="delta"):
            fn(x, x, delta)
    if isinstance(delta, float) and delta <= 0:  # PyTorch refuses it too
        with pytest.raises(RuntimeError, match="delta"):
            F.huber_loss(x, x, delta=delta)


@pytest.mark.parametrize("beta", [-1.0, -1e-12, float("nan")])
def test_smooth_l1_rejects_a_negative_beta(beta):
    x = torch.zeros(3, dtype=f64)
    for fn in (R.smooth_l1, R.smooth_l1_grad):
        with pytest.raises(ValueError, match="beta"):
            fn(x, x, beta)


def test_bad_reduction_is_rejected_by_every_loss():
    x, y = torch.zeros(2, 3, dtype=f64), torch.tensor([0, 1])
    fns = [
        lambda r: R.mse(x, x, r),
        lambda r: R.mae_grad(x, x, r),
        lambda r: R.huber(x, x, 1.0, r),
        lambda r: R.smooth_l1_grad(x, x, 0.0, r),
        lambda r: R.cross_entropy(x, y, r),
        lambda r: R.cross_entropy_grad(x, y, r),
        lambda r: R.bce_with_logits(x, x, r),
        lambda r: R.bce_with_logits_grad(x, x, r),
    ]
    for fn in fns:
        with pytest.raises(ValueError, match="reduction"):
            fn("avg")


# ====================================================== regression: classification


@pytest.mark.parametrize("scale", [1.0, 1e4, 1e300])
def test_cross_entropy_at_huge_logits_float64(scale):
    logits = scale * torch.randn(6, 5, generator=gen, dtype=f64)
    y = torch.randint(0, 5, (6,), generator=gen)
    torch.testing.assert_close(
        R.cross_entropy(logits, y, "none"), F.cross_entropy(logits, y, reduction="none")
    )
    torch_grad = _autograd(
        lambda z, t: F.cross_entropy(z, t, reduction="sum"), logits, y
    )
    grad = R.cross_entropy_grad(logits, y, "sum")
    assert grad.dtype == f64 and torch.isfinite(grad).all()
    torch.testing.assert_close(grad, torch_grad)
    # autograd through our log_softmax, too
    ours = _autograd(lambda z, t: R.cross_entropy(z, t, "sum"), logits, y)
    torch.testing.assert_close(ours, torch_grad)


def test_cross_entropy_exact_zeros_ties_minus_inf_and_size_one():
    cases = [
        (torch.zeros(4, 3, dtype=f64), torch.tensor([0, 1, 2, 0])),  # all tied
        (torch.zeros(2, 1, dtype=f64), torch.tensor([0, 0])),  # K = 1: loss 0
        (_t([[2.0, -1.0, 0.5]]), torch.tensor([2])),  # B = 1
        (_t([[0.0, -math.inf, 3.0]]), torch.tensor([2])),  # a masked logit
    ]
    for logits, y in cases:
        expected = F.cross_entropy(logits, y, reduction="none")
        torch.testing.assert_close(R.cross_entropy(logits, y, "none"), expected)
        torch.testing.assert_close(
            R.cross_entropy_grad(logits, y, "mean"),
            _autograd(F.cross_entropy, logits, y),
        )
        torch.testing.assert_close(
            R.log_softmax(logits), torch.log_softmax(logits, dim=-1)
        )
        torch.testing.assert_close(R.logsumexp(logits), torch.logsumexp(logits, dim=-1))


@pytest.mark.parametrize("bad", [-1, 3, 100])
def test_labels_outside_the_classes_are_rejected(bad):
    logits, y = torch.zeros(2, 3, dtype=f64), torch.tensor([0, bad])
    for fn in (R.cross_entropy, R.cross_entropy_grad):
        with pytest.raises(ValueError, match=r"y .*\[0, 3\)"):
            fn(logits, y)
    with pytest.raises(ValueError, match="y"):
        R.softmax_regression_grads(
            torch.zeros(2, 4, dtype=f64), y, torch.zeros(4, 3, dtype=f64),
            torch.zeros(3, dtype=f64),
        )  # fmt: skip


def test_cross_entropy_argument_shapes_and_dtypes():
    logits = torch.zeros(4, 3, dtype=f64)
    with pytest.raises(TypeError, match="y must hold integer"):
        R.cross_entropy(logits, torch.tensor([0.0, 1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match=r"y must have shape \(4,\)"):
        R.cross_entropy(logits, torch.tensor([[0], [1], [2], [0]]))
    with pytest.raises(ValueError, match=r"logits must have shape \(B, K\)"):
        R.cross_entropy_grad(torch.zeros(3, dtype=f64), torch.tensor([0, 1, 2]))


def test_sigmoid_tails_and_its_gradient_at_zero_through_autograd():
    z = _t([-1e308, -800.0, -745.0, -700.0, -40.0, -1e-300, 0.0, 1e-300, 40.0, 800.0])
    # atol: at z = −745 ours keeps e^z = 5e-324 where torch returns 0
    torch.testing.assert_close(R.sigmoid(z), torch.sigmoid(z), rtol=1e-12, atol=1e-300)
    ours = _autograd(R.sigmoid, z)
    expected = _autograd(torch.sigmoid, z)
    assert torch.isfinite(ours).all()
    # torch's σ(1 − σ) rounds to 0 from |z| ≈ 37 on; exact σ′ = e^{−|z|}/(1 + e^{−|z|})²
    e = torch.exp(-z.abs())
    torch.testing.assert_close(ours, e / (1 + e) ** 2, rtol=1e-12, atol=0)
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-15)
    assert ours[6].item() == 0.25  # σ′(0) = ¼: an `abs` inside would give 0
    # float32: far left σ(z) ≈ e^z is a (subnormal) number, so its log is finite
    z32 = torch.tensor([-85.0, -50.0])  # the textbook 1/(1 + e^{−z}) gives 0 at −89
    assert (R.sigmoid(z32) > 0).all() and R.sigmoid(z32).dtype == torch.float32
    torch.testing.assert_close(R.sigmoid(z32).log(), z32, rtol=1e-5, atol=0)


def test_bce_gradient_at_a_zero_initialised_head_through_autograd():
    """A zero-initialised head outputs z = 0 exactly: autograd through our loss must
    give σ(0) − t = ½ − t, as PyTorch does (abs/clamp have slope 0 at 0)."""
    z = torch.zeros(4, dtype=f64)
    t = _t([0.0, 1.0, 0.25, 1.0])
    expected = _autograd(lambda q, s: F.binary_cross_entropy_with_logits(q, s), z, t)
    torch.testing.assert_close(_autograd(R.bce_with_logits, z, t), expected)
    torch.testing.assert_close(expected, (0.5 - t) / 4)
    torch.testing.assert_close(R.bce_with_logits_grad(z, t), expected)


def test_bce_with_logits_at_extreme_logits_values_and_gradients():
    z = _t([-1e4, -800.0, -40.0, -0.0, 0.0, 40.0, 800.0, 1e4])
    t = _t([1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.5])
    theirs = lambda q, s: F.binary_cross_entropy_with_logits(q, s, reduction="none")
    torch.testing.assert_close(R.bce_with_logits(z, t, "none"), theirs(z, t))
    expected = _autograd(theirs, z, t)
    torch.testing.assert_close(R.bce_with_logits_grad(z, t, "none"), expected)
    ours = _autograd(lambda q, s: R.bce_with_logits(q, s, "none"), z, t)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, expected)
    with pytest.raises(ValueError, match="z and t must have the same shape"):
        R.bce_with_logits(torch.zeros(3, 1), torch.zeros(3))


def test_softmax_family_autograd_at_large_logits_and_size_one():
    for z in (
        1e4 * torch.randn(3, 4, generator=gen, dtype=f64),
        torch.zeros(2, 1, dtype=f64),
    ):
        weights = torch.randn(z.shape, generator=gen, dtype=f64)
        for ours, theirs in [
            (R.log_softmax, lambda v: torch.log_softmax(v, -1)),
            (R.softmax, lambda v: torch.softmax(v, -1)),
        ]:
            torch.testing.assert_close(ours(z), theirs(z))
            torch.testing.assert_close(
                _autograd(lambda v, w, fn=ours: fn(v) * w, z, weights),
                _autograd(lambda v, w, fn=theirs: fn(v) * w, z, weights),
            )
        torch.testing.assert_close(
            _autograd(R.logsumexp, z), _autograd(lambda v: torch.logsumexp(v, -1), z)
        )


# ====================================================== regression: the two models


def test_normal_equations_edges_and_bad_arguments():
    X = torch.randn(4, 3, generator=gen, dtype=f64)  # N = D + 1: an exact fit
    y = X @ _t([1.0, -2.0, 0.5]) + 3.0
    w, b = R.normal_equations(X, y)
    assert w.dtype == f64 and w.shape == (3,) and b.shape == ()
    torch.testing.assert_close(w, _t([1.0, -2.0, 0.5]))
    torch.testing.assert_close(b, _t(3.0))
    w1, b1 = R.normal_equations(X[:, :1], y)  # D = 1
    assert w1.shape == (1,)
    with pytest.raises(ValueError, match="l2"):
        R.normal_equations(X, y, l2=-1.0)
    with pytest.raises(ValueError, match=r"y must have shape \(4,\)"):
        R.normal_equations(X, y[:, None])
    with pytest.raises(ValueError, match=r"X must have shape \(N, D\)"):
        R.normal_equations(y, y)


def test_linear_regression_grads_size_one_and_bad_shapes():
    X, y = _t([[2.0]]), _t([1.0])
    w, b = _t([0.0]), _t(0.0)  # exact zeros: r = −1
    loss, dw, db = R.linear_regression_grads(X, y, w, b)
    wt, bt = w.clone().requires_grad_(), b.clone().requires_grad_()
    F.mse_loss(X @ wt + bt, y).backward()
    torch.testing.assert_close(dw, wt.grad)
    torch.testing.assert_close(db, bt.grad)
    assert loss.dtype == dw.dtype == db.dtype == f64
    X5, y5 = torch.zeros(5, 2, dtype=f64), torch.zeros(5, dtype=f64)
    w2, b0 = torch.zeros(2, dtype=f64), _t(0.0)
    with pytest.raises(ValueError, match=r"y must have shape \(5,\)"):
        R.linear_regression_grads(X5, y5[:, None], w2, b0)  # would broadcast (5, 5)
    with pytest.raises(ValueError, match=r"w must have shape \(2,\)"):
        R.linear_regression_grads(X5, y5, w2[:, None], b0)
    with pytest.raises(ValueError, match="b must be a scalar"):
        R.linear_regression_grads(X5, y5, w2, b0[None])


def test_softmax_regression_grads_shapes_and_dtypes():
    X, y = torch.randn(1, 3, generator=gen, dtype=f64), torch.tensor([1])  # B = 1
    W, b = torch.zeros(3, 2, dtype=f64), torch.zeros(2, dtype=f64)
    loss, dW, db = R.softmax_regression_grads(X, y, W, b)
    Wt, bt = W.clone().requires_grad_(), b.clone().requires_grad_()
    F.cross_entropy(X @ Wt + bt, y).backward()
    torch.testing.assert_close(dW, Wt.grad)
    torch.testing.assert_close(db, bt.grad)
    assert dW.dtype == db.dtype == loss.dtype == f64
    with pytest.raises(ValueError, match=r"W must have shape \(3, K\)"):
        R.softmax_regression_grads(X, y, W.T, b)
    with pytest.raises(ValueError, match=r"b must have shape \(2,\)"):
        R.softmax_regression_grads(X, y, W, b[:1])


# ====================================================== layers: elementwise layers

EDGE_X = np.array(
    [[-1e3, -800.0, -40.0, -1e-300, 0.0], [-0.0, 1e-300, 40.0, 800.0, 1e3]]
)


@pytest.mark.parametrize(
    "make, torch_fn",
    [
        (L.ReLU, torch.relu),
        (lambda: L.LeakyReLU(0.1), lambda x: F.leaky_relu(x, 0.1)),
        (L.Sigmoid, torch.sigmoid),
        (L.Tanh, torch.tanh),
    ],
)
def test_activation_layers_at_extremes_and_exact_zeros(make, torch_fn):
    layer = make()
    out = layer.forward(EDGE_X)
    dout = rng.normal(size=out.shape)
    dx = layer.backward(dout)
    xt = torch.tensor(EDGE_X, requires_grad=True)
    yt = torch_fn(xt)
    yt.backward(torch.tensor(dout))
    assert out.dtype == dx.dtype == np.float64
    assert np.isfinite(dx).all()
    torch.testing.assert_close(torch.tensor(out), yt.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.tensor(dx), xt.grad, rtol=1e-12, atol=1e-300)
    x32 = EDGE_X.astype(np.float32)
    layer32 = make()
    out32 = layer32.forward(x32)
    assert out32.dtype == np.float32
    assert layer32.backward(np.ones_like(out32)).dtype == np.float32


def test_layers_refuse_backward_before_forward_and_wrong_dout():
    for layer in (L.ReLU(), L.Sigmoid(), L.Tanh(), L.Dropout(0.5), L.LeakyReLU()):
        with pytest.raises(RuntimeError, match="before forward"):
            layer.backward(np.ones((2, 2)))
        layer.forward(np.ones((2, 2)))
        with pytest.raises(ValueError, match="dout"):
            layer.backward(np.ones((2, 3)))


def test_affine_size_one_dims_and_bad_shapes():
    W, b = np.array([[3.0]]), np.array([-1.0])
    layer = L.Affine(W, b)
    x = np.array([[0.0]])  # B = D = H = 1, an exact zero input
    out = layer.forward(x)
    dx = layer.backward(np.array([[2.0]]))
    xt = torch.tensor(x, requires_grad=True)
    Wt, bt = torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True)
    (xt @ Wt + bt).backward(torch.tensor([[2.0]], dtype=f64))
    for ours, theirs in [(out, (xt @ Wt + bt).detach()), (dx, xt.grad)]:
        torch.testing.assert_close(torch.tensor(ours), theirs)
    torch.testing.assert_close(torch.tensor(layer.dW), Wt.grad)
    torch.testing.assert_close(torch.tensor(layer.db), bt.grad)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1\)"):
        layer.forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"x must have shape"):
        layer.forward(np.zeros(1))
    with pytest.raises(ValueError, match=r"b must have shape \(1,\)"):
        L.Affine(W, np.zeros(2))
    with pytest.raises(ValueError, match=r"W must have shape \(D, H\)"):
        L.Affine(np.zeros(3), np.zeros(3))
    with pytest.raises(RuntimeError, match="before forward"):
        L.Affine(W, b).backward(np.ones((1, 1)))


# ====================================================== layers: dropout


def check_dropout(layer: L.Dropout, p: float, x: np.ndarray) -> None:
    """An independent check of inverted dropout with probability p.

    Nothing is read from the layer: the kept units are reconstructed from the zeros of
    its output (x has none), kept values must equal x/(1 − p), the keep rate must be
    1 − p within 5 binomial standard deviations — the law `F.dropout` follows, checked
    on the same shape — and backward must equal autograd of that reconstructed map."""
    out = layer.forward(x)
    kept = out != 0
    n = x.size
    tolerance = 5 * math.sqrt(p * (1 - p) / n) + 1e-12
    assert abs(kept.mean() - (1 - p)) <= tolerance, "keep rate is not 1 − p"
    if p < 1:
        np.testing.assert_allclose(out[kept], x[kept] / (1 - p), rtol=1e-12)
    torch_out = F.dropout(torch.tensor(x), p, training=True)
    torch_kept = (torch_out != 0).numpy()
    assert abs(torch_kept.mean() - (1 - p)) <= tolerance  # torch follows the same law
    if p < 1:
        np.testing.assert_allclose(
            torch_out.numpy()[torch_kept], x[torch_kept] / (1 - p), rtol=1e-6
        )
    dout = rng.normal(size=x.shape)
    xt = torch.tensor(x, requires_grad=True)
    scale = 0.0 if p == 1 else 1 / (1 - p)
    (xt * torch.tensor(kept) * scale).backward(torch.tensor(dout))
    torch.testing.assert_close(torch.tensor(layer.backward(dout)), xt.grad)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_dropout_independent_check_for_p_in_0_to_1(p):
    x = rng.uniform(0.5, 1.5, size=(200, 100)) * rng.choice([-1, 1], size=(200, 100))
    layer = L.Dropout(p, np.random.default_rng(3))
    check_dropout(layer, p, x)
    layer.training = False  # evaluation: the identity, whatever p
    np.testing.assert_array_equal(layer.forward(x), x)
    x32 = x.astype(np.float32)
    assert L.Dropout(p, np.random.default_rng(0)).forward(x32).dtype == np.float32


class _WrongScale(L.Dropout):
    def forward(self, x):
        self.scale = (self.rng.random(x.shape) >= self.p).astype(x.dtype) / self.p
        return x * self.scale


class _WrongRate(L.Dropout):
    def forward(self, x):
        keep = self.rng.random(x.shape) >= self.p / 2  # drops half as often
        self.scale = keep.astype(x.dtype) / (1 - self.p)
        return x * self.scale


@pytest.mark.parametrize("broken", [_WrongScale, _WrongRate])
def test_the_dropout_check_catches_a_wrong_scale_or_rate(broken):
    x = rng.uniform(0.5, 1.5, size=(200, 100))
    with pytest.raises(AssertionError):
        check_dropout(broken(0.3, np.random.default_rng(0)), 0.3, x)


@pytest.mark.parametrize("p", [-0.1, 1.01, float("nan"), "0.5", None])
def test_dropout_rejects_p_outside_0_1(p):
    with pytest.raises(ValueError, match="dropout probability"):
        L.Dropout(p)


# ====================================================== layers: losses


@pytest.mark.parametrize("scale", [1.0, 1e4, 1e300])
def test_softmax_with_loss_at_huge_logits(scale):
    z = scale * rng.normal(size=(5, 4))
    t = rng.integers(0, 4, 5)
    layer = L.SoftmaxWithLoss()
    loss = layer.forward(z, t)
    dz = layer.backward()
    zt = torch.tensor(z, requires_grad=True)
    lt = F.cross_entropy(zt, torch.tensor(t))
    lt.backward()
    assert math.isfinite(loss) and np.isfinite(dz).all() and dz.dtype == np.float64
    assert math.isclose(loss, lt.item(), rel_tol=1e-12, abs_tol=1e-12)
    torch.testing.assert_close(torch.tensor(dz), zt.grad)


def test_softmax_with_loss_size_one_float32_and_bad_labels():
    layer = L.SoftmaxWithLoss()
    assert layer.forward(np.zeros((3, 1)), np.array([0, 0, 0])) == 0.0  # K = 1
    np.testing.assert_array_equal(layer.backward(), np.zeros((3, 1)))
    z32 = rng.normal(size=(1, 3)).astype(np.float32)  # B = 1
    layer.forward(z32, np.array([2]))
    assert layer.backward().dtype == np.float32
    z = np.zeros((2, 3))
    for t, match in [
        (np.array([0, -1]), r"t \(class indices\) must lie in \[0, 3\)"),
        (np.array([0, 3]), r"\[0, 3\)"),
        (np.array([[0], [1]]), r"t must have shape \(2,\)"),
    ]:
        with pytest.raises(ValueError, match=match):
            layer.forward(z, t)
    with pytest.raises(TypeError, match="t must hold integer"):
        layer.forward(z, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"z must have shape \(B, K\)"):
        layer.forward(np.zeros(3), np.array([0, 1, 2]))


def test_mse_loss_refuses_to_broadcast_and_keeps_float64():
    layer = L.MSELoss()
    with pytest.raises(ValueError, match=r"same shape.*\(4, 1\).*\(4,\)"):
        layer.forward(np.zeros((4, 1)), np.zeros(4))
    y, t = np.array([[1e150], [0.0]]), np.array([[0.0], [0.0]])  # large and exact zeros
    loss = layer.forward(y, t)
    yt = torch.tensor(y, requires_grad=True)
    lt = F.mse_loss(yt, torch.tensor(t))
    lt.backward()
    assert math.isclose(loss, lt.item(), rel_tol=1e-12)
    grad = layer.backward()
    assert grad.dtype == np.float64
    torch.testing.assert_close(torch.tensor(grad), yt.grad)


def test_layer_softmax_extremes_and_size_one():
    z = np.array([[1e300, -1e300, 0.0], [-800.0, -800.0, -800.0]])
    torch.testing.assert_close(
        torch.tensor(L.softmax(z)), torch.softmax(torch.tensor(z), -1)
    )
    np.testing.assert_array_equal(L.softmax(np.zeros((2, 1))), np.ones((2, 1)))
    assert L.softmax(np.array([[1e30, 0.0]], dtype=np.float32)).dtype == np.float32


# ====================================================== layers: networks


def test_mlp_rejects_bad_arguments_by_name():
    for kwargs, match in [
        ({"sizes": [4]}, "sizes"),
        ({"sizes": [4, 0, 2]}, "sizes"),
        ({"sizes": [4, 2.5, 2]}, "sizes"),
        ({"sizes": [4, 2], "activation": "swish"}, "activation"),
        ({"sizes": [4, 2], "loss": "hinge"}, "loss"),
        ({"sizes": [4, 3, 2], "dropout": 1.5}, "dropout"),
    ]:
        with pytest.raises(ValueError, match=match):
            L.MLP(**kwargs)
    with pytest.raises(TypeError, match="dtype"):
        L.MLP([4, 2], dtype=np.int64)
    net = L.MLP([3, 2])
    with pytest.raises(ValueError, match="batch"):
        net.accuracy(np.zeros((4, 3)), np.zeros(4, dtype=int), batch=0)
    with pytest.raises(ValueError, match="same non-zero length"):
        net.accuracy(np.zeros((4, 3)), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        net.gradient(np.zeros((2, 3)), np.array([0, -1]))


def test_mlp_docstring_names_the_initialisation_it_uses():
    """std √(gain/fan_in): He (gain 2) for relu, LeCun (gain 1) for tanh; not Glorot,
    whose √(2/(fan_in + fan_out)) would be 26 % larger here for tanh."""
    assert "LeCun" in L.MLP.__doc__ and "He initialisation" in L.MLP.__doc__
    for activation, gain in [("relu", 2.0), ("tanh", 1.0)]:
        W = L.MLP([2000, 500, 3], activation=activation, seed=0).params["W1"]
        assert abs(W.std() / math.sqrt(gain / 2000) - 1) < 0.01
    glorot = math.sqrt(2 / (2000 + 500))
    assert abs(W.std() / glorot - 1) > 0.2


def test_mlp_float32_and_float64_throughout_and_dropout_eval():
    x, t = rng.normal(size=(3, 4)), np.array([0, 2, 1])
    for dtype in (np.float32, np.float64):
        net = L.MLP([4, 5, 3], activation="sigmoid", seed=1, dtype=dtype)
        loss, grads = net.gradient(x.astype(dtype), t)
        assert math.isfinite(loss)
        assert all(g.dtype == dtype for g in grads.values())
    plain = L.MLP([4, 5, 3], seed=2)
    dropped = L.MLP([4, 5, 3], dropout=0.5, seed=2).train(False)
    np.testing.assert_allclose(dropped.predict(x), plain.predict(x))
    # far-out inputs: a saturated sigmoid net still has finite gradients
    net = L.MLP([4, 5, 3], activation="sigmoid", seed=1)
    loss, grads = net.gradient(1e6 * x, t)
    assert math.isfinite(loss) and all(np.isfinite(g).all() for g in grads.values())


def test_mlp_size_one_layers_match_autograd():
    net = L.MLP([1, 1, 1], activation="tanh", loss="mse", seed=0)
    x, y = np.array([[0.0], [2.0]]), np.array([[1.0], [-1.0]])
    _, grads = net.gradient(x, y)
    p = {k: torch.tensor(v, requires_grad=True) for k, v in net.params.items()}
    out = torch.tanh(torch.tensor(x) @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
    F.mse_loss(out, torch.tensor(y)).backward()
    for k in p:
        torch.testing.assert_close(torch.tensor(grads[k]), p[k].grad)


# ====================================================== layers: optimisers


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: L.SGD(lr=-0.1), "lr"),
        (lambda: L.SGD(lr=float("nan")), "lr"),
        (lambda: L.SGD(0.1, momentum=-0.5), "momentum"),
        (lambda: L.Adam(lr=-1e-3), "lr"),
        (lambda: L.Adam(betas=(1.0, 0.999)), r"betas\[0\]"),
        (lambda: L.Adam(betas=(0.9, -0.1)), r"betas\[1\]"),
        (lambda: L.Adam(betas=(0.9,)), "betas"),
        (lambda: L.Adam(eps=-1e-8), "eps"),
    ],
)
def test_optimisers_reject_bad_hyper_parameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("opt", [L.SGD(0.1, momentum=0.9), L.Adam(0.01)])
def test_optimisers_reject_a_list_or_mismatched_grads(opt):
    params = {"W": np.zeros((2, 2))}
    with pytest.raises(TypeError, match="two dicts"):
        opt.update([params["W"]], {"W": np.ones((2, 2))})
    with pytest.raises(KeyError, match="'V'"):
        opt.update(params, {"V": np.ones((2, 2))})
    with pytest.raises(ValueError, match="shape"):
        opt.update(params, {"W": np.ones((2, 1))})


@pytest.mark.parametrize(
    "make_ours, make_torch",
    [
        (lambda: L.SGD(0.0), lambda p: torch.optim.SGD(p, lr=0.0)),
        (
            lambda: L.SGD(0.05, momentum=0.9),
            lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
        ),
        (lambda: L.Adam(0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
        (
            lambda: L.Adam(0.01, betas=(0.0, 0.0)),
            lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.0, 0.0)),
        ),
    ],
)
def test_optimisers_match_torch_with_zero_and_huge_gradients(make_ours, make_torch):
    params = {"W": np.array([[0.0, 1.0], [-2.0, 3.0]]), "b": np.zeros(1)}
    tparams = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    ours, theirs = make_ours(), make_torch(list(tparams.values()))
    steps = [
        {"W": np.array([[0.0, 1e100], [-1e-100, 2.0]]), "b": np.array([5.0])},
        {"W": np.array([[1.0, -1e100], [1e-100, 0.5]]), "b": np.array([-3.0])},
        {"W": np.array([[0.5, 1.0], [0.0, -1.0]]), "b": np.array([1.0])},
    ]
    for grads in steps:
        ours.update(params, grads)
        for k, p in tparams.items():
            p.grad = torch.tensor(grads[k])
        theirs.step()
        for k in params:
            torch.testing.assert_close(torch.tensor(params[k]), tparams[k].detach())


# ====================================================== layers: the activation gallery


@pytest.mark.parametrize("name", sorted(L.ACTIVATIONS))
def test_gallery_at_extremes_and_exact_zero(name):
    f, df = L.ACTIVATIONS[name]
    x = np.array([-1e3, -800.0, -40.0, -10.0, -1e-300, 0.0, 1e-300, 10.0, 40.0, 800.0])
    xt = torch.tensor(x, requires_grad=True)
    yt = _TORCH_ACTS[name](xt)
    yt.sum().backward()
    value, slope = f(x), df(x)
    assert value.dtype == slope.dtype == np.float64
    assert np.isfinite(value).all() and np.isfinite(slope).all()
    torch.testing.assert_close(torch.tensor(value), yt.detach())
    torch.testing.assert_close(torch.tensor(slope), xt.grad)  # relu′(0) = 0 as torch
    x32 = x.astype(np.float32)
    assert f(x32).dtype == np.float32 and df(x32).dtype == np.float32


def test_gelu_keeps_its_left_tail():
    """Φ(x) through erfc: x Φ(x) at x = −10 is −7.6e-23, not 0 (1 + erf rounds)."""
    f, _ = L.ACTIVATIONS["gelu"]
    x = np.array([-10.0, -20.0])
    exact = (
        x * 0.5 * np.array([math.erfc(10 / math.sqrt(2)), math.erfc(20 / math.sqrt(2))])
    )
    np.testing.assert_allclose(f(x), exact, rtol=1e-12)
    assert (f(x) < 0).all()
