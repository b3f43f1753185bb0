"""The from-scratch convolution and pooling equal PyTorch's (values and gradients, in
float64, edge cases included) and reject bad arguments with an error naming them."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlcore.scratch import conv

# (N, C, H, W, F, kh, kw, stride, padding, dilation): odd sizes, rectangular kernels
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


# ------------------------------------------------ edge cases against PyTorch, float64
# (N, C, H, W, F, kh, kw, stride, padding, dilation, what it probes)
EDGE_CONV_CASES = [
    (1, 1, 1, 1, 1, 1, 1, 1, 0, 1, "1×1 kernel on a 1×1 image, batch 1, one channel"),
    (1, 1, 1, 1, 2, 3, 3, 1, 1, 1, "1×1 image, 3×3 kernel, padding 1"),
    (2, 3, 5, 4, 2, 5, 4, 1, 0, 1, "kernel as large as the input"),
    (1, 1, 2, 2, 1, 4, 4, 1, 1, 1, "kernel as large as the padded input"),
    (1, 2, 9, 9, 3, 2, 2, 3, 0, 1, "stride 3 > kernel 2: pixels no window sees"),
    (2, 1, 7, 8, 1, 1, 1, 4, 0, 1, "1×1 kernel, stride 4"),
    (1, 1, 5, 5, 1, 3, 3, 1, 0, 2, "dilation 2: kernel spans the whole input"),
    (
        1,
        2,
        3,
        6,
        1,
        1,
        3,
        (1, 5),
        (0, 2),
        1,
        "rectangular, stride > kernel on one axis",
    ),
]


def _edge_arrays(case, rng, zeros=False, dtype=np.float64):
    n, c, h, w_, f, kh, kw = case[:7]
    make = np.zeros if zeros else (lambda size: rng.normal(size=size))
    return (
        make((n, c, h, w_)).astype(dtype),
        make((f, c, kh, kw)).astype(dtype),
        rng.normal(size=f).astype(dtype),
    )


@pytest.mark.parametrize("zeros", [False, True], ids=["random", "exact zeros"])
@pytest.mark.parametrize("case", EDGE_CONV_CASES, ids=[c[-1] for c in EDGE_CONV_CASES])
def test_conv2d_edge_cases_match_torch_and_stay_float64(case, zeros):
    stride, padding, dilation = case[7:10]
    rng = np.random.default_rng(4)
    x, w, b = _edge_arrays(case, rng, zeros)
    out, cache = conv.conv2d_forward(x, w, b, stride, padding, dilation)
    naive = conv.conv2d_naive(x, w, b, stride, padding, dilation)
    ref, leaves = _torch_conv(x, w, b, stride, padding, dilation)
    assert out.dtype == naive.dtype == np.float64 and out.shape == tuple(ref.shape)
    for ours in (out, naive):
        torch.testing.assert_close(
            torch.from_numpy(ours), ref.detach(), rtol=1e-12, atol=1e-12
        )
    dout = rng.normal(size=out.shape)
    ref.backward(torch.from_numpy(dout))
    for ours, leaf in zip(conv.conv2d_backward(dout, cache), leaves):
        assert ours.dtype == np.float64 and ours.shape == tuple(leaf.shape)
        torch.testing.assert_close(
            torch.from_numpy(ours), leaf.grad, rtol=1e-12, atol=1e-12
        )


def test_conv2d_float32_stays_float32_and_no_bias():
    rng = np.random.default_rng(5)
    x, w, _ = _edge_arrays(CONV_CASES[1], rng, dtype=np.float32)
    out, cache = conv.conv2d_forward(x, w, None, 2, 1)
    dx, dw, db = conv.conv2d_backward(np.ones_like(out), cache)
    assert out.dtype == dx.dtype == dw.dtype == np.float32 and db is None
    assert conv.conv2d_naive(x, w, None, 2, 1).dtype == np.float32
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=2, padding=1)
    torch.testing.assert_close(torch.from_numpy(out), ref, rtol=1e-5, atol=1e-5)


# (N, C, H, W, kernel, stride, padding, what it probes)
EDGE_POOL_CASES = [
    (1, 1, 1, 1, 1, None, 0, "1×1 window on a 1×1 image"),
    (2, 3, 5, 5, 1, 1, 0, "1×1 window: the identity"),
    (1, 2, 6, 4, (6, 4), None, 0, "window as large as the input: global pooling"),
    (1, 1, 9, 9, 2, 3, 0, "stride 3 > kernel 2: pixels no window sees"),
    (2, 1, 5, 6, 3, 1, 1, "padding 1 = half the kernel, overlapping windows"),
    (1, 2, 2, 2, 3, 2, 1, "2×2 image, 3×3 window, padding 1"),
]


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("fill", ["random", "zeros", "constant"])
@pytest.mark.parametrize("case", EDGE_POOL_CASES, ids=[c[-1] for c in EDGE_POOL_CASES])
def test_pooling_edge_cases_match_torch_and_stay_float64(case, fill, kind):
    """Exact zeros and constants make every window a tie: the gradient must still go to
    the same pixel as PyTorch's (the first maximum), and padding must never win."""
    n, c, h, w_, kernel, stride, padding, _ = case
    rng = np.random.default_rng(6)
    x = {
        "random": rng.normal(size=(n, c, h, w_)),
        "zeros": np.zeros((n, c, h, w_)),
        "constant": np.full((n, c, h, w_), -3.5),  # below zero: zero padding loses
    }[fill]
    ours_fwd, ours_bwd, ref_fn = {
        "max": (conv.max_pool2d_forward, conv.max_pool2d_backward, F.max_pool2d),
        "avg": (conv.avg_pool2d_forward, conv.avg_pool2d_backward, F.avg_pool2d),
    }[kind]
    out, cache = ours_fwd(x, kernel, stride, padding)
    xt = torch.tensor(x, requires_grad=True)
    ref = ref_fn(xt, kernel, stride, padding)
    assert out.dtype == np.float64 and out.shape == tuple(ref.shape)
    torch.testing.assert_close(
        torch.from_numpy(out), ref.detach(), rtol=1e-12, atol=1e-12
    )
    dout = rng.normal(size=out.shape)
    ref.backward(torch.from_numpy(dout))
    dx = ours_bwd(dout, cache)
    assert dx.dtype == np.float64
    torch.testing.assert_close(torch.from_numpy(dx), xt.grad, rtol=1e-12, atol=1e-12)


def test_max_pool_of_integers_with_padding_never_picks_the_padding():
    x = -np.arange(1, 17, dtype=np.int64).reshape(1, 1, 4, 4)  # all negative
    out, _ = conv.max_pool2d_forward(x, 3, 2, 1)
    ref = F.max_pool2d(torch.from_numpy(x).double(), 3, 2, 1)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, ref.numpy().astype(np.int64))


# ---------------------------------------------- bad arguments: errors that name them
X4, W4 = np.zeros((1, 2, 5, 5)), np.zeros((3, 2, 3, 3))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(stride=0), "stride must be >= 1"),
        (dict(stride=-2), "stride must be >= 1"),
        (dict(stride=(1, 0)), "stride must be >= 1"),
        (dict(stride=(1, 2, 3)), "stride must be an int or a"),
        (dict(stride=1.5), "stride must be an int or a"),
        (dict(padding=-1), "padding must be >= 0"),
        (dict(padding=(0, -1)), "padding must be >= 0"),
        (dict(dilation=0), "dilation must be >= 1"),
        (dict(dilation=3), "kernel larger than the padded input"),
    ],
)
@pytest.mark.parametrize("fn", ["forward", "naive", "im2col"])
def test_conv_rejects_bad_geometry_naming_the_argument(fn, kwargs, match):
    call = {
        "forward": lambda: conv.conv2d_forward(X4, W4, None, **kwargs),
        "naive": lambda: conv.conv2d_naive(X4, W4, None, **kwargs),
        "im2col": lambda: conv.im2col(X4, 3, 3, **kwargs),
    }[fn]
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("fn", [conv.conv2d_forward, conv.conv2d_naive])
def test_conv_rejects_bad_shapes_naming_the_argument(fn):
    with pytest.raises(ValueError, match=r"x must be 4-D \(B, C, H, W\)"):
        fn(np.zeros((2, 5, 5)), W4)  # a 3-D input: the batch axis forgotten
    with pytest.raises(ValueError, match=r"w must be 4-D \(F, C, kh, kw\)"):
        fn(X4, np.zeros((3, 3, 3)))
    with pytest.raises(
        ValueError, match="channel mismatch: x has C = 2 .* w expects 3"
    ):
        fn(X4, np.zeros((4, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"b must have shape \(F,\) = \(3,\)"):
        fn(X4, W4, np.zeros(4))
    with pytest.raises(ValueError, match="kernel larger than the padded input"):
        fn(X4, np.zeros((3, 2, 6, 3)))  # 6 rows of kernel, 5 of image
    fn(X4, np.zeros((3, 2, 6, 3)), None, 1, 1)  # with padding 1 it fits: 5 + 2 = 7


def test_backward_passes_and_col2im_reject_a_wrong_shape():
    out, cache = conv.conv2d_forward(X4, W4)
    with pytest.raises(ValueError, match=r"dout must have the output's shape"):
        conv.conv2d_backward(np.zeros((1, 3, 3, 2)), cache)
    with pytest.raises(
        ValueError, match=r"cols must have shape \(C\*kh\*kw, N\*Ho\*Wo\)"
    ):
        conv.col2im(np.zeros((18, 8)), X4.shape, 3, 3)
    with pytest.raises(ValueError, match=r"x_shape must be \(N, C, H, W\)"):
        conv.col2im(np.zeros((18, 9)), (2, 5, 5), 3, 3)
    for forward, backward in [
        (conv.max_pool2d_forward, conv.max_pool2d_backward),
        (conv.avg_pool2d_forward, conv.avg_pool2d_backward),
    ]:
        out, cache = forward(X4, 2)
        with pytest.raises(ValueError, match=r"dout must have the output's shape"):
            backward(np.zeros((1, 2, 2, 3)), cache)


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.zeros((2, 5, 5)), 2), r"x must be 4-D \(B, C, H, W\)"),
        ((X4, 0), "kernel must be >= 1"),
        ((X4, 2, 0), "stride must be >= 1"),
        ((X4, 2, -1), "stride must be >= 1"),
        ((X4, 2, None, -1), "padding must be >= 0"),
        ((X4, 2, None, 2), "padding must be at most half the kernel"),
        ((X4, 6), "kernel larger than the padded input"),
    ],
)
@pytest.mark.parametrize("fn", [conv.max_pool2d_forward, conv.avg_pool2d_forward])
def test_pooling_rejects_bad_arguments_naming_them(fn, args, match):
    with pytest.raises(ValueError, match=match):
        fn(*args)


@pytest.mark.parametrize(
    "args, match",
    [
        ((0, 3), "size must be >= 1"),
        ((5, 0), "kernel must be >= 1"),
        ((5, 3, -1), "padding must be >= 0"),
        ((5, 3, 0, 0), "stride must be >= 1"),
        ((5, 3, 0, 1, 0), "dilation must be >= 1"),
        ((5, 3.0), "kernel must be an int"),
        ((2, 4, 0), "kernel larger than the padded input"),
    ],
)
def test_conv_output_size_rejects_bad_arguments_naming_them(args, match):
    with pytest.raises(ValueError, match=match):
        conv.conv_output_size(*args)


def test_conv_output_size_edges_match_torch():
    # kernel = padded input (one output), stride > input, size 1 everywhere
    for h, k, p, s, d in [
        (4, 6, 1, 1, 1),
        (5, 2, 0, 9, 1),
        (1, 1, 0, 1, 1),
        (1, 3, 1, 1, 1),
    ]:
        x, w = torch.zeros(1, 1, h, h), torch.zeros(1, 1, k, k)
        expected = F.conv2d(x, w, padding=p, stride=s, dilation=d).shape[-1]
        assert conv.conv_output_size(h, k, p, s, d) == expected


def test_receptive_field_rejects_mismatched_lists_and_bad_values():
    with pytest.raises(ValueError, match="one entry per layer, got lengths 2, 1 and 2"):
        conv.receptive_field([3, 3], [1])  # zip would silently drop the second layer
    with pytest.raises(ValueError, match="lengths 2, 2 and 1"):
        conv.receptive_field([3, 3], [1, 1], [2])
    with pytest.raises(ValueError, match="strides must be integers >= 1"):
        conv.receptive_field([3], [0])
    with pytest.raises(ValueError, match="kernels must be integers >= 1"):
        conv.receptive_field([0], [1])
    assert conv.receptive_field([], []) == []
    assert conv.receptive_field([1], [1]) == [(1, 1)]  # a 1×1 layer sees one pixel
