"""The from-scratch convolution and pooling equal PyTorch's, values and gradients, in float64."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlcore.scratch import conv

# (N, C, H, W, F, kh, kw, stride, padding, dilation): odd sizes, rectangular kernels, pairs
CONV_CASES = [
    (2, 3, 7, 6, 4, 3, 3, 1, 0, 1),
    (2, 3, 9, 8, 5, 3, 2, 2, 1, 1),
    (1, 2, 11, 10, 3, 3, 3, 1, 2, 2),
    (3, 4, 10, 9, 2, 2, 3, (2, 3), (1, 0), (3, 1)),
    (2, 1, 8, 8, 2, 5, 5, 3, 2, 1),
    (1, 3, 5, 5, 2, 1, 1, 1, 0, 1),
]


def _torch_conv(x, w, b, stride, padding, dilation):
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    out = F.conv2d(xt, wt, bt, stride=stride, padding=padding, dilation=dilation)
    return out, (xt, wt, bt)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_forward_and_backward_match_torch(case):
    n, c, h, w_, f, kh, kw, stride, padding, dilation = case
    rng = np.random.default_rng(0)
    x, w, b = (
        rng.normal(size=(n, c, h, w_)),
        rng.normal(size=(f, c, kh, kw)),
        rng.normal(size=f),
    )
    out, cache = conv.conv2d_forward(x, w, b, stride, padding, dilation)
    ref, leaves = _torch_conv(x, w, b, stride, padding, dilation)
    torch.testing.assert_close(
        torch.from_numpy(out), ref.detach(), rtol=1e-12, atol=1e-12
    )
    dout = rng.normal(size=out.shape)
    ref.backward(torch.from_numpy(dout))
    for ours, leaf in zip(conv.conv2d_backward(dout, cache), leaves):
        torch.testing.assert_close(
            torch.from_numpy(ours), leaf.grad, rtol=1e-12, atol=1e-12
        )


@pytest.mark.parametrize("case", CONV_CASES[:4])
def test_naive_loop_matches_torch(case):
    n, c, h, w_, f, kh, kw, stride, padding, dilation = case
    rng = np.random.default_rng(1)
    x, w, b = (
        rng.normal(size=(n, c, h, w_)),
        rng.normal(size=(f, c, kh, kw)),
        rng.normal(size=f),
    )
    ref, _ = _torch_conv(x, w, b, stride, padding, dilation)
    got = conv.conv2d_naive(x, w, b, stride, padding, dilation)
    torch.testing.assert_close(
        torch.from_numpy(got), ref.detach(), rtol=1e-12, atol=1e-12
    )


def test_col2im_is_the_adjoint_of_im2col():
    # <im2col(x), y> = <x, col2im(y)> for all x, y: the defining property of the adjoint
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 9, 7))
    args = dict(kh=3, kw=2, stride=(2, 1), padding=(1, 2), dilation=(1, 2))
    cols = conv.im2col(x, **args)
    y = rng.normal(size=cols.shape)
    assert np.vdot(cols, y) == pytest.approx(
        np.vdot(x, conv.col2im(y, x.shape, **args)), rel=1e-12
    )


@pytest.mark.parametrize(
    "h, k, p, s, d",
    [
        (32, 3, 1, 1, 1),
        (32, 3, 1, 2, 1),
        (28, 5, 0, 1, 1),
        (17, 3, 2, 3, 2),
        (7, 7, 3, 2, 1),
        (224, 7, 3, 2, 1),
    ],
)
def test_conv_output_size_matches_torch(h, k, p, s, d):
    shape = F.conv2d(
        torch.zeros(1, 1, h, h),
        torch.zeros(1, 1, k, k),
        padding=p,
        stride=s,
        dilation=d,
    ).shape
    assert conv.conv_output_size(h, k, p, s, d) == shape[-1]


def test_conv_output_size_rejects_a_kernel_that_does_not_fit():
    with pytest.raises(ValueError):
        conv.conv_output_size(4, 3, padding=0, stride=1, dilation=2)


# (N, C, H, W, kernel, stride, padding)
POOL_CASES = [
    (2, 3, 8, 8, 2, None, 0),
    (2, 2, 9, 7, 3, 2, 1),
    (1, 3, 10, 11, (3, 2), (1, 2), (1, 0)),
]


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_forward_and_backward_match_torch(case, kind):
    n, c, h, w_, kernel, stride, padding = case
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, c, h, w_))
    ours_fwd, ours_bwd, ref_fn = {
        "max": (conv.max_pool2d_forward, conv.max_pool2d_backward, F.max_pool2d),
        "avg": (conv.avg_pool2d_forward, conv.avg_pool2d_backward, F.avg_pool2d),
    }[kind]
    out, cache = ours_fwd(x, kernel, stride, padding)
    xt = torch.tensor(x, requires_grad=True)
    ref = ref_fn(xt, kernel, stride, padding)
    torch.testing.assert_close(
        torch.from_numpy(out), ref.detach(), rtol=1e-12, atol=1e-12
    )
    dout = rng.normal(size=out.shape)
    ref.backward(torch.from_numpy(dout))
    torch.testing.assert_close(
        torch.from_numpy(ours_bwd(dout, cache)), xt.grad, rtol=1e-12, atol=1e-12
    )


def test_receptive_field_recursion_and_gradient_support():
    # conv3 s1, conv3 s2, conv3 s1, conv3 s2 dilation 2: r = 3, 5, 9, 17
    layers = [(3, 1, 1), (3, 2, 1), (3, 1, 1), (3, 2, 2)]
    rf = conv.receptive_field(*zip(*layers))
    assert rf == [(3, 1), (5, 2), (9, 2), (17, 4)]
    x = torch.randn(1, 1, 41, 41, dtype=torch.float64, requires_grad=True)
    y = x
    for k, s, d in layers:
        y = F.conv2d(
            y, torch.rand(1, 1, k, k, dtype=torch.float64) + 0.1, stride=s, dilation=d
        )
    y[0, 0, y.shape[2] // 2, y.shape[3] // 2].backward()
    rows, cols = np.nonzero(x.grad[0, 0].numpy())
    assert rows.max() - rows.min() + 1 == rf[-1][0] == cols.max() - cols.min() + 1
