"""Chapter 5's scratch normalisation against PyTorch: BatchNorm/LayerNorm values,
running statistics and gradients, in training and evaluation mode (float64), with
extreme and degenerate inputs and argument checks. The regularisers of the same chapter
are tested in `test_scratch_regularize.py`."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlcore.scratch.norm import (
    BatchNorm,
    LayerNorm,
    batch_norm_backward,
    batch_norm_forward,
    layer_norm_backward,
    layer_norm_forward,
)

D = torch.float64


def _grads(out: torch.Tensor, dy: torch.Tensor, *tensors: torch.Tensor):
    return torch.autograd.grad(out, tensors, dy)


@pytest.mark.parametrize("shape", [(16, 5), (6, 4, 7), (8, 3, 4, 4)])
def test_batch_norm_train_mode_matches_torch(shape):
    torch.manual_seed(0)
    C = shape[1]
    x = (3 * torch.randn(shape, dtype=D) + 2).requires_grad_()
    gamma = torch.randn(C, dtype=D, requires_grad=True)
    beta = torch.randn(C, dtype=D, requires_grad=True)
    rm, rv = torch.randn(C, dtype=D), torch.rand(C, dtype=D) + 0.5
    rm_t, rv_t = rm.clone(), rv.clone()
    y, cache = batch_norm_forward(
        x.detach(),
        gamma.detach(),
        beta.detach(),
        rm,
        rv,
        training=True,
        momentum=0.3,
        eps=1e-5,
    )
    y_t = F.batch_norm(
        x, rm_t, rv_t, gamma, beta, training=True, momentum=0.3, eps=1e-5
    )
    torch.testing.assert_close(y, y_t.detach())
    torch.testing.assert_close(rm, rm_t)
    torch.testing.assert_close(rv, rv_t)  # includes the unbiased n/(n-1) correction
    dy = torch.randn(shape, dtype=D)
    for ours, theirs in zip(
        batch_norm_backward(dy, cache), _grads(y_t, dy, x, gamma, beta)
    ):
        torch.testing.assert_close(ours, theirs)


def test_batch_norm_running_var_is_unbiased():
    x = torch.tensor([[0.0], [2.0]], dtype=D)  # biased var 1, unbiased var 2
    rm, rv = torch.zeros(1, dtype=D), torch.zeros(1, dtype=D)
    batch_norm_forward(
        x,
        torch.ones(1, dtype=D),
        torch.zeros(1, dtype=D),
        rm,
        rv,
        training=True,
        momentum=1.0,
    )
    assert rm.item() == 1.0 and rv.item() == 2.0


def test_batch_norm_eval_mode_uses_running_stats():
    torch.manual_seed(1)
    x = torch.randn(6, 4, 3, 3, dtype=D, requires_grad=True)
    gamma, beta = (
        torch.randn(4, dtype=D, requires_grad=True),
        torch.randn(4, dtype=D, requires_grad=True),
    )
    rm, rv = torch.randn(4, dtype=D), torch.rand(4, dtype=D) + 0.5
    rm0, rv0 = rm.clone(), rv.clone()
    y, cache = batch_norm_forward(
        x.detach(), gamma.detach(), beta.detach(), rm, rv, training=False
    )
    y_t = F.batch_norm(x, rm.clone(), rv.clone(), gamma, beta, training=False)
    torch.testing.assert_close(y, y_t.detach())
    assert torch.equal(rm, rm0) and torch.equal(
        rv, rv0
    )  # eval never touches the statistics
    dy = torch.randn_like(y)
    for ours, theirs in zip(
        batch_norm_backward(dy, cache), _grads(y_t, dy, x, gamma, beta)
    ):
        torch.testing.assert_close(ours, theirs)


def test_batch_norm_module_matches_nn_over_steps():
    torch.manual_seed(2)
    ours, ref = (
        BatchNorm(3, momentum=0.2).double(),
        nn.BatchNorm2d(3, momentum=0.2).double(),
    )
    with torch.no_grad():
        ours.weight.copy_(torch.randn(3))
        ours.bias.copy_(torch.randn(3))
    ref.load_state_dict(ours.state_dict())
    for _ in range(3):
        x = torch.randn(4, 3, 5, 5, dtype=D)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        (ours(xa) ** 2).sum().backward()
        (ref(xb) ** 2).sum().backward()
        torch.testing.assert_close(xa.grad, xb.grad)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
    for key, value in ref.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value)
    ours.eval()
    ref.eval()
    x = torch.randn(2, 3, 5, 5, dtype=D)
    torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize("shape,normalized", [((7, 10), (10,)), ((2, 5, 4, 6), (4, 6))])
def test_layer_norm_matches_torch(shape, normalized):
    torch.manual_seed(3)
    x = (2 * torch.randn(shape, dtype=D) - 1).requires_grad_()
    gamma = torch.randn(normalized, dtype=D, requires_grad=True)
    beta = torch.randn(normalized, dtype=D, requires_grad=True)
    y, cache = layer_norm_forward(x.detach(), gamma.detach(), beta.detach())
    y_t = F.layer_norm(x, normalized, gamma, beta)
    torch.testing.assert_close(y, y_t.detach())
    dy = torch.randn(shape, dtype=D)
    expected = _grads(y_t, dy, x, gamma, beta)
    for ours, theirs in zip(layer_norm_backward(dy, cache), expected):
        torch.testing.assert_close(ours, theirs)
    module = LayerNorm(normalized).double()
    with torch.no_grad():
        module.weight.copy_(gamma)
        module.bias.copy_(beta)
    xm = x.detach().clone().requires_grad_()
    module(xm).backward(dy)
    torch.testing.assert_close(xm.grad, expected[0])
    torch.testing.assert_close(module.weight.grad, expected[1])


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm1d_module_running_stats_and_eval(momentum):
    """(B, C) input, several training batches, then eval: outputs, gradients and buffers
    agree; momentum=None is the cumulative average."""
    torch.manual_seed(7)
    ours, ref = (
        BatchNorm(6, momentum=momentum).double(),
        nn.BatchNorm1d(6, momentum=momentum).double(),
    )
    for step in range(4):
        x = 2 * torch.randn(10, 6, dtype=D) + step
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = ours(xa), ref(xb)
        torch.testing.assert_close(ya, yb)
        dy = torch.randn_like(ya)
        ya.backward(dy)
        yb.backward(dy)
        torch.testing.assert_close(xa.grad, xb.grad)
    for key, value in ref.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value)
    ours.eval()
    ref.eval()
    x = torch.randn(3, 6, dtype=D)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(xa), ref(xb)
    torch.testing.assert_close(ya, yb)
    ya.sum().backward()
    yb.sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad)
    assert int(ours.num_batches_tracked) == 4


def test_batch_norm_needs_two_values_per_channel():
    with pytest.raises(ValueError):
        BatchNorm(3)(torch.randn(1, 3))


def test_layer_norm_is_per_example():
    """Changing one example does not change another's output (unlike BatchNorm in
    training)."""
    torch.manual_seed(8)
    ln = LayerNorm(5)
    x = torch.randn(4, 5)
    y = ln(x)
    x2 = x.clone()
    x2[0] = 100 * torch.randn(5)
    torch.testing.assert_close(ln(x2)[1:], y[1:])


# --------------------------------------------- extreme and degenerate inputs (float64)


def _bn_both(x, gamma, beta, training=True, eps=1e-5):
    """Ours and torch's BatchNorm on one float64 input: outputs and the 3 gradients."""
    C = x.shape[1]
    rm, rv = torch.zeros(C, dtype=D), torch.ones(C, dtype=D)
    xt, gt, bt = (t.clone().requires_grad_() for t in (x, gamma, beta))
    y, cache = batch_norm_forward(
        x, gamma, beta, rm.clone(), rv.clone(), training=training, eps=eps
    )
    y_t = F.batch_norm(xt, rm, rv, gt, bt, training=training, eps=eps)
    dy = torch.randn(x.shape, dtype=D, generator=torch.Generator().manual_seed(0))
    return (y, *batch_norm_backward(dy, cache)), (y_t, *_grads(y_t, dy, xt, gt, bt))


def _ln_both(x, gamma, beta, eps=1e-5):
    xt, gt, bt = (t.clone().requires_grad_() for t in (x, gamma, beta))
    y, cache = layer_norm_forward(x, gamma, beta, eps)
    y_t = F.layer_norm(xt, tuple(gamma.shape), gt, bt, eps)
    dy = torch.randn(x.shape, dtype=D, generator=torch.Generator().manual_seed(0))
    return (y, *layer_norm_backward(dy, cache)), (y_t, *_grads(y_t, dy, xt, gt, bt))


def _assert_all_close(ours, theirs, **tol):
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == D  # float64 stays float64
        torch.testing.assert_close(a, b.detach(), **tol)


def test_norms_large_mean_small_spread_no_cancellation():
    """Mean 1e8, spread 1: E[x²] − E[x]² loses the variance entirely in float64 (E[x²] ≈
    1e16, whose spacing is 2), the centred formula keeps it to ~1e-8."""
    g = torch.Generator().manual_seed(1)
    x = 1e8 + torch.randn(64, 3, dtype=D, generator=g)
    naive = (x * x).mean(0) - x.mean(0) ** 2
    true_var = x.var(0, unbiased=False)
    assert ((naive - true_var).abs() / true_var).max() > 0.1  # the known failure
    gamma, beta = torch.randn(3, dtype=D, generator=g), torch.randn(3, dtype=D)
    _assert_all_close(*_bn_both(x, gamma, beta), rtol=1e-6, atol=1e-6)
    y, _ = batch_norm_forward(
        x, torch.ones(3, dtype=D), torch.zeros(3, dtype=D),
        torch.zeros(3, dtype=D), torch.ones(3, dtype=D), training=True, eps=1e-12,
    )  # fmt: skip
    torch.testing.assert_close(y.var(0, unbiased=False), torch.ones(3, dtype=D))
    xl = 1e8 + torch.randn(5, 40, dtype=D, generator=g)
    gl, bl = torch.randn(40, dtype=D, generator=g), torch.randn(40, dtype=D)
    _assert_all_close(*_ln_both(xl, gl, bl), rtol=1e-6, atol=1e-6)


def test_norms_exact_zero_variance_match_torch():
    """A constant channel / row: x̂ = 0, the output is β, the gradients stay finite."""
    x = torch.full((8, 3), 2.5, dtype=D)
    x[:, 1] = torch.arange(8, dtype=D)  # one channel that is not constant
    gamma, beta = torch.tensor([2.0, 1.0, -1.0], dtype=D), torch.randn(3, dtype=D)
    ours, theirs = _bn_both(x, gamma, beta)
    _assert_all_close(ours, theirs)
    torch.testing.assert_close(ours[0][:, 0], beta[0].expand(8))
    xl = torch.full((4, 6), -7.0, dtype=D)
    _assert_all_close(*_ln_both(xl, torch.randn(6, dtype=D), torch.randn(6, dtype=D)))


def test_norms_size_one_dims_like_torch():
    torch.manual_seed(9)
    gamma, beta = torch.randn(4, dtype=D), torch.randn(4, dtype=D)
    # batch of one with spatial positions: allowed in training (N = H·W values)
    _assert_all_close(*_bn_both(torch.randn(1, 4, 3, 3, dtype=D), gamma, beta))
    # batch of one without spatial positions: torch refuses in training, so do we
    one = torch.randn(1, 4, dtype=D)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(one, None, None, gamma, beta, training=True)
    with pytest.raises(ValueError, match=r"x has shape \(1, 4\)"):
        BatchNorm(4).double()(one)
    # ... and evaluation mode is fine with a batch of one
    _assert_all_close(*_bn_both(one, gamma, beta, training=False))
    # one channel
    _assert_all_close(*_bn_both(torch.randn(6, 1, dtype=D), gamma[:1], beta[:1]))
    # LayerNorm over a single feature: x̂ = 0, output β, gradient 0 (torch agrees)
    ours, theirs = _ln_both(torch.randn(5, 1, dtype=D), gamma[:1], beta[:1])
    _assert_all_close(ours, theirs)
    assert torch.equal(ours[1], torch.zeros(5, 1, dtype=D))


def test_norm_modules_keep_float64_tiny_eps():
    x = torch.randn(6, 3, dtype=D, requires_grad=True)
    for module, ref in ((BatchNorm(3, eps=1e-300), nn.BatchNorm1d(3, eps=1e-300)),
                        (LayerNorm(3, eps=0.0), nn.LayerNorm(3, eps=0.0))):  # fmt: skip
        y = module.double()(x)
        assert y.dtype == D
        torch.testing.assert_close(y, ref.double()(x))
        (g,) = torch.autograd.grad(y.pow(3).sum(), x)
        assert g.dtype == D


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: batch_norm_forward(*_bn_args(x=torch.randn(5)), training=True), "x"),
        (lambda: batch_norm_forward(*_bn_args(gamma=torch.ones(2)), training=True),
         "gamma"),
        (lambda: batch_norm_forward(*_bn_args(beta=torch.ones(4)), training=True),
         "beta"),
        (lambda: batch_norm_forward(*_bn_args(rm=torch.ones(1)), training=False),
         "running_mean"),
        (lambda: batch_norm_forward(*_bn_args(rv=torch.ones(2, 3)), training=False),
         "running_var"),
        (lambda: batch_norm_forward(*_bn_args(), training=True, momentum=1.5),
         "momentum"),
        (lambda: batch_norm_forward(*_bn_args(), training=True, eps=0.0), "eps"),
        (lambda: batch_norm_forward(*_bn_args(), training=False, eps=-1.0), "eps"),
        (lambda: layer_norm_forward(torch.randn(4, 5), torch.ones(3), torch.zeros(3)),
         "x must end in"),
        (lambda: layer_norm_forward(torch.randn(4, 3), torch.ones(3), torch.zeros(2)),
         "gamma and beta"),
        (lambda: layer_norm_forward(torch.randn(4, 3), torch.ones(3), torch.zeros(3),
                                    eps=-1.0), "eps"),
        (lambda: LayerNorm(4)(torch.randn(2, 5)), "x must end in"),
        (lambda: BatchNorm(3)(torch.randn(4, 5)), "gamma must have shape"),
        (lambda: BatchNorm(0), "num_features"),
        (lambda: BatchNorm(3, momentum=-0.1), "momentum"),
        (lambda: BatchNorm(3, eps=0.0), "eps"),
        (lambda: LayerNorm(0), "normalized_shape"),
        (lambda: LayerNorm((3, -1)), "normalized_shape"),
    ],
)  # fmt: skip
def test_norm_arguments_are_validated_with_named_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _bn_args(x=None, gamma=None, beta=None, rm=None, rv=None):
    C = 3
    return (
        torch.randn(4, C) if x is None else x,
        torch.ones(C) if gamma is None else gamma,
        torch.zeros(C) if beta is None else beta,
        torch.zeros(C) if rm is None else rm,
        torch.ones(C) if rv is None else rv,
    )
