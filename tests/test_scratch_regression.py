"""The losses and models of chapter I.2 against torch.nn.functional and torch.autograd
(float64). Extreme and degenerate inputs: test_scratch_edges_regression_layers.py."""

import pytest
import torch
import torch.nn.functional as F

from dlcore.scratch import regression as R

gen = torch.Generator().manual_seed(0)


def _randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=gen, dtype=torch.float64)


def _check(
    ours, ours_grad, theirs, pred: torch.Tensor, target: torch.Tensor, reduction: str
) -> None:
    """Our value equals torch's; our hand-derived derivative equals autograd of torch's
    loss."""
    p = pred.clone().requires_grad_()
    value = theirs(p, target, reduction=reduction)
    upstream = torch.randn(value.shape, generator=gen, dtype=torch.float64)
    (autograd,) = torch.autograd.grad(value, p, upstream)
    torch.testing.assert_close(ours(pred, target, reduction=reduction), value.detach())
    # the chain rule: ∂(u·ℓ)/∂pred = u ⊙ ℓ′ for "none", u ℓ′ for a scalar loss
    torch.testing.assert_close(
        upstream * ours_grad(pred, target, reduction=reduction), autograd
    )


REGRESSION = [
    (R.mse, R.mse_grad, F.mse_loss),
    (R.mae, R.mae_grad, F.l1_loss),
    (R.huber, R.huber_grad, F.huber_loss),
    (
        lambda p, t, reduction: R.huber(p, t, 0.3, reduction),
        lambda p, t, reduction: R.huber_grad(p, t, 0.3, reduction),
        lambda p, t, reduction: F.huber_loss(p, t, reduction=reduction, delta=0.3),
    ),
    (R.smooth_l1, R.smooth_l1_grad, F.smooth_l1_loss),
    (
        lambda p, t, reduction: R.smooth_l1(p, t, 2.5, reduction),
        lambda p, t, reduction: R.smooth_l1_grad(p, t, 2.5, reduction),
        lambda p, t, reduction: F.smooth_l1_loss(p, t, reduction=reduction, beta=2.5),
    ),
]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ours, ours_grad, theirs", REGRESSION)
def test_regression_losses_match_torch(ours, ours_grad, theirs, reduction):
    pred, target = _randn(40, 3, scale=3), _randn(40, 3)
    _check(ours, ours_grad, theirs, pred, target, reduction)


def test_huber_is_quadratic_inside_and_linear_outside():
    r = torch.tensor([0.5, 2.0, -4.0], dtype=torch.float64)
    zero = torch.zeros(3, dtype=torch.float64)
    torch.testing.assert_close(
        R.huber(r, zero, 1.0, "none"),
        torch.tensor([0.125, 1.5, 3.5], dtype=torch.float64),
    )
    torch.testing.assert_close(
        R.huber_grad(r, zero, 1.0, "none"),
        torch.tensor([0.5, 1.0, -1.0], dtype=torch.float64),
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("scale", [1.0, 300.0])  # 300: a naive exp would overflow
def test_cross_entropy_matches_torch(reduction, scale):
    logits, y = _randn(32, 7, scale=scale), torch.randint(0, 7, (32,), generator=gen)
    z = logits.clone().requires_grad_()
    value = F.cross_entropy(z, y, reduction=reduction)
    upstream = torch.randn(value.shape, generator=gen, dtype=torch.float64)
    (autograd,) = torch.autograd.grad(value, z, upstream)
    ours = R.cross_entropy(logits, y, reduction=reduction)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, value.detach())
    grad = R.cross_entropy_grad(logits, y, reduction=reduction)
    torch.testing.assert_close(
        grad * (upstream[:, None] if reduction == "none" else upstream), autograd
    )


def test_logsumexp_matches_torch_and_survives_large_logits():
    for scale in (1.0, 1000.0):
        z = _randn(5, 4, 9, scale=scale)
        torch.testing.assert_close(R.logsumexp(z), torch.logsumexp(z, dim=-1))
    z32 = torch.tensor([[1000.0, 999.0, 998.0], [-1000.0, -1001.0, -1002.0]])
    naive = (
        z32.exp().sum(-1).log()
    )  # e^1000 = inf in float32 (and float64); e^-1000 = 0
    assert torch.isinf(naive).all()
    torch.testing.assert_close(R.logsumexp(z32), torch.logsumexp(z32, dim=-1))
    # float32, large logits: log-probabilities must not lose digits by adding m back
    # and removing it
    torch.testing.assert_close(R.log_softmax(z32), torch.log_softmax(z32, dim=-1))
    torch.testing.assert_close(
        R.cross_entropy(z32, torch.tensor([0, 2]), "none"),
        F.cross_entropy(z32, torch.tensor([0, 2]), reduction="none"),
    )
    inf = float("inf")
    edge = torch.tensor([[-inf, -inf], [-inf, 0.0], [inf, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(R.logsumexp(edge), torch.logsumexp(edge, dim=-1))
    torch.testing.assert_close(
        R.log_softmax(edge[1:2]), torch.log_softmax(edge[1:2], dim=-1)
    )


def test_softmax_is_stable_and_matches_torch():
    z = _randn(16, 10, scale=1000)
    torch.testing.assert_close(R.softmax(z), torch.softmax(z, dim=-1))
    torch.testing.assert_close(R.log_softmax(z), torch.log_softmax(z, dim=-1))
    torch.testing.assert_close(R.sigmoid(z), torch.sigmoid(z))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("soft", [False, True])
def test_bce_with_logits_matches_torch(reduction, soft):
    z = _randn(50, 2, scale=20)
    t = torch.rand(50, 2, generator=gen, dtype=torch.float64)
    t = t if soft else t.round()
    _check(
        R.bce_with_logits,
        R.bce_with_logits_grad,
        F.binary_cross_entropy_with_logits,
        z,
        t,
        reduction,
    )


def test_bce_with_logits_survives_extreme_logits():
    z = torch.tensor([-1000.0, -800.0, 0.0, 800.0, 1000.0], dtype=torch.float64)
    t = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    ours = R.bce_with_logits(z, t, reduction="none")
    torch.testing.assert_close(
        ours, F.binary_cross_entropy_with_logits(z, t, reduction="none")
    )
    torch.testing.assert_close(
        ours,
        torch.tensor(
            [1000.0, 0.0, 0.6931471805599453, 0.0, 1000.0], dtype=torch.float64
        ),
    )
    # the naive formula through σ(z) breaks: log σ(−1000) = log 0 = −inf
    naive = -(t * torch.sigmoid(z).log() + (1 - t) * (1 - torch.sigmoid(z)).log())
    assert not torch.isfinite(naive).all()


def test_bad_reduction_is_rejected():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="reduction"):
        R.mse(x, x, reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        R.mse_grad(x, x, reduction="avg")


def test_normal_equations_match_lstsq():
    X = _randn(60, 4)
    y = X @ _randn(4) + 3.0 + 0.1 * _randn(60)
    w, b = R.normal_equations(X, y)
    theta = torch.linalg.lstsq(R.add_bias_column(X), y[:, None]).solution.squeeze(1)
    torch.testing.assert_close(torch.cat([b[None], w]), theta)
    # at the minimum the gradient of the mean squared error vanishes
    _, dw, db = R.linear_regression_grads(X, y, w, b)
    torch.testing.assert_close(
        dw, torch.zeros(4, dtype=torch.float64), atol=1e-10, rtol=0
    )
    torch.testing.assert_close(
        db, torch.zeros((), dtype=torch.float64), atol=1e-10, rtol=0
    )


def test_ridge_shrinks_weights_but_not_bias():
    X, y = _randn(60, 4), 5.0 + _randn(60)
    w0, _ = R.normal_equations(X, y)
    w1, b1 = R.normal_equations(X, y, l2=1e6)
    assert w1.norm() < 1e-3 * w0.norm()
    torch.testing.assert_close(
        b1, y.mean(), atol=1e-3, rtol=0
    )  # all weights ≈ 0: b is the mean


def test_linear_regression_grads_match_autograd():
    X, y, w, b = _randn(20, 5), _randn(20), _randn(5), _randn(())
    loss, dw, db = R.linear_regression_grads(X, y, w, b)
    wt, bt = w.clone().requires_grad_(), b.clone().requires_grad_()
    ref = F.mse_loss(X @ wt + bt, y)
    ref.backward()
    torch.testing.assert_close(loss, ref.detach())
    torch.testing.assert_close(dw, wt.grad)
    torch.testing.assert_close(db, bt.grad)


def test_softmax_regression_grads_match_autograd():
    X, y = _randn(24, 6), torch.randint(0, 4, (24,), generator=gen)
    W, b = _randn(6, 4), _randn(4)
    loss, dW, db = R.softmax_regression_grads(X, y, W, b)
    Wt, bt = W.clone().requires_grad_(), b.clone().requires_grad_()
    ref = F.cross_entropy(X @ Wt + bt, y)
    ref.backward()
    torch.testing.assert_close(loss, ref.detach())
    torch.testing.assert_close(dW, Wt.grad)
    torch.testing.assert_close(db, bt.grad)


def test_gradient_descent_with_hand_gradients_reaches_the_closed_form():
    X = _randn(100, 3)
    y = (
        X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
        + 4.0
        + 0.1 * _randn(100)
    )
    w, b = torch.zeros(3, dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    for _ in range(500):
        _, dw, db = R.linear_regression_grads(X, y, w, b)
        w, b = w - 0.1 * dw, b - 0.1 * db
    w_star, b_star = R.normal_equations(X, y)
    torch.testing.assert_close(w, w_star)
    torch.testing.assert_close(b, b_star)


def test_cross_entropy_grad_is_softmax_jacobian_times_dlogp():
    """p − onehot(y) equals the long way: Jᵀ ∂ℓ/∂p with J = diag(p) − ppᵀ and
    ∂ℓ/∂p = −onehot/p."""
    z, y = _randn(6, 5), torch.randint(0, 5, (6,), generator=gen)
    p, onehot = R.softmax(z), F.one_hot(y, 5).to(torch.float64)
    jac = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # (B, K, K), symmetric
    long_way = (jac @ (-onehot / p)[:, :, None]).squeeze(-1)
    torch.testing.assert_close(R.cross_entropy_grad(z, y, reduction="sum"), long_way)
    torch.testing.assert_close(long_way, p - onehot)


def test_hand_sgd_step_equals_nn_linear_with_torch_optim():
    """One SGD step with hand gradients = one step of nn.Linear + F.cross_entropy +
    optim.SGD."""
    X, y = _randn(32, 12), torch.randint(0, 3, (32,), generator=gen)
    W, b = _randn(12, 3), _randn(3)
    model = torch.nn.Linear(12, 3).double()
    with torch.no_grad():
        model.weight.copy_(W.T)  # nn.Linear stores (out, in) and computes x Wᵀ + b
        model.bias.copy_(b)
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    F.cross_entropy(model(X), y).backward()
    opt.step()
    _, dW, db = R.softmax_regression_grads(X, y, W, b)
    torch.testing.assert_close(W - 0.3 * dW, model.weight.detach().T)
    torch.testing.assert_close(b - 0.3 * db, model.bias.detach())
