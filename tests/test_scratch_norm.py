"""Chapter 5's scratch normalisation against PyTorch: BatchNorm/LayerNorm values, running
statistics and gradients, in training and evaluation mode (float64). The regularisers of the
same chapter are tested in `test_scratch_regularize.py`."""

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
    """(B, C) input, several training batches, then eval: outputs, gradients and buffers agree;
    momentum=None is the cumulative average."""
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
    """Changing one example does not change another's output (unlike BatchNorm in training)."""
    torch.manual_seed(8)
    ln = LayerNorm(5)
    x = torch.randn(4, 5)
    y = ln(x)
    x2 = x.clone()
    x2[0] = 100 * torch.randn(5)
    torch.testing.assert_close(ln(x2)[1:], y[1:])
