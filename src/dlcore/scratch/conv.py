"""2-D convolution and pooling from scratch in NumPy: a naive loop, im2col/col2im, backward passes.

Conventions (those of `torch.nn.functional.conv2d`): inputs `x: (N, C, H, W)`, filters
`w: (F, C, kh, kw)`, bias `b: (F,)`, outputs `(N, F, Ho, Wo)`. What is computed is a
*cross-correlation* (the kernel is not flipped), as in every deep-learning library.
`stride`, `padding` and `dilation` are an int or an `(height, width)` pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np

Pair = Union[int, Sequence[int]]


def _pair(v: Pair) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def conv_output_size(
    size: int, kernel: int, padding: int = 0, stride: int = 1, dilation: int = 1
) -> int:
    """Output length along one axis: floor((size + 2p - d(k-1) - 1) / s) + 1."""
    extent = dilation * (kernel - 1) + 1  # span of the dilated kernel, in input pixels
    out = (size + 2 * padding - extent) // stride + 1
    if out < 1:
        raise ValueError(
            f"kernel extent {extent} does not fit in padded size {size + 2 * padding}"
        )
    return out


def _out_hw(
    x_shape: tuple, kh: int, kw: int, stride: Pair, padding: Pair, dilation: Pair
) -> tuple[int, int]:
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    return (
        conv_output_size(x_shape[2], kh, ph, sh, dh),
        conv_output_size(x_shape[3], kw, pw, sw, dw),
    )


def conv2d_naive(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
) -> np.ndarray:
    """The definition, one output value at a time. x: (N, C, H, W), w: (F, C, kh, kw) -> (N, F, Ho, Wo).

    out[n, f, i, j] = b[f] + sum_{c, u, v} w[f, c, u, v] * xpad[n, c, i*sh + u*dh, j*sw + v*dw]
    """
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n_img, _, kh, kw = x.shape[0], x.shape[1], w.shape[2], w.shape[3]
    ho, wo = _out_hw(x.shape, kh, kw, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = np.zeros((n_img, w.shape[0], ho, wo), dtype=np.result_type(x, w))
    for n in range(n_img):
        for f in range(w.shape[0]):
            for i in range(ho):
                for j in range(wo):
                    # the receptive window: every dh-th row and dw-th column from (i*sh, j*sw)
                    window = xp[
                        n,
                        :,
                        i * sh : i * sh + dh * (kh - 1) + 1 : dh,
                        j * sw : j * sw + dw * (kw - 1) + 1 : dw,
                    ]
                    out[n, f, i, j] = np.sum(window * w[f])
    if b is not None:
        out += b[None, :, None, None]
    return out


def im2col(
    x: np.ndarray,
    kh: int,
    kw: int,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    pad_value: float = 0.0,
) -> np.ndarray:
    """Unfold every receptive window into a column. x: (N, C, H, W) -> cols: (C*kh*kw, N*Ho*Wo).

    Row index (c, u, v) matches `w.reshape(F, -1)`; column index (n, i, j) is the output position.
    The loop runs over the kh*kw kernel offsets only: each offset copies one strided slice.
    """
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n_img, c = x.shape[:2]
    ho, wo = _out_hw(x.shape, kh, kw, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    cols = np.empty((c, kh, kw, n_img, ho, wo), dtype=x.dtype)
    for u in range(kh):
        for v in range(kw):
            patch = xp[
                :,
                :,
                u * dh : u * dh + sh * (ho - 1) + 1 : sh,
                v * dw : v * dw + sw * (wo - 1) + 1 : sw,
            ]
            cols[:, u, v] = patch.transpose(1, 0, 2, 3)  # (C, N, Ho, Wo)
    return cols.reshape(c * kh * kw, n_img * ho * wo)


def col2im(
    cols: np.ndarray,
    x_shape: tuple,
    kh: int,
    kw: int,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
) -> np.ndarray:
    """The adjoint of `im2col`: scatter-add columns back. cols: (C*kh*kw, N*Ho*Wo) -> (N, C, H, W).

    A pixel that lies in several windows receives the sum of their entries: that sum is the
    gradient, because im2col copied the pixel to each of those places.
    """
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n_img, c, h, w_ = x_shape
    ho, wo = _out_hw(x_shape, kh, kw, stride, padding, dilation)
    cols6 = cols.reshape(c, kh, kw, n_img, ho, wo)
    xp = np.zeros((n_img, c, h + 2 * ph, w_ + 2 * pw), dtype=cols.dtype)
    for u in range(kh):
        for v in range(kw):
            # within one offset the strided positions are distinct, so += does not collide
            xp[
                :,
                :,
                u * dh : u * dh + sh * (ho - 1) + 1 : sh,
                v * dw : v * dw + sw * (wo - 1) + 1 : sw,
            ] += cols6[:, u, v].transpose(1, 0, 2, 3)
    return xp[:, :, ph : ph + h, pw : pw + w_]


def conv2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
) -> tuple[np.ndarray, tuple]:
    """Convolution as one matrix product. x: (N, C, H, W), w: (F, C, kh, kw), b: (F,) or None.

    Returns out: (N, F, Ho, Wo) and a cache for `conv2d_backward`.
    """
    n_img, f = x.shape[0], w.shape[0]
    kh, kw = w.shape[2:]
    ho, wo = _out_hw(x.shape, kh, kw, stride, padding, dilation)
    cols = im2col(x, kh, kw, stride, padding, dilation)  # (C*kh*kw, N*Ho*Wo)
    out = w.reshape(f, -1) @ cols  # (F, N*Ho*Wo): one GEMM
    if b is not None:
        out += b[:, None]
    out = out.reshape(f, n_img, ho, wo).transpose(1, 0, 2, 3)
    cache = (x.shape, w, b is not None, cols, stride, padding, dilation)
    return np.ascontiguousarray(out), cache


def conv2d_backward(
    dout: np.ndarray, cache: tuple
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients of a loss through `conv2d_forward`. dout: (N, F, Ho, Wo) -> dx, dw, db.

    With out = W2 @ cols + b: dW2 = dout2 @ cols.T, dcols = W2.T @ dout2, db = sum of dout,
    and dx = col2im(dcols).
    """
    x_shape, w, has_bias, cols, stride, padding, dilation = cache
    f, _, kh, kw = w.shape
    dout2 = dout.transpose(1, 0, 2, 3).reshape(f, -1)  # (F, N*Ho*Wo)
    dw = (dout2 @ cols.T).reshape(w.shape)
    dx = col2im(w.reshape(f, -1).T @ dout2, x_shape, kh, kw, stride, padding, dilation)
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw, db


def _pool_cols(
    x: np.ndarray, kernel: Pair, stride: Pair | None, padding: Pair, pad_value: float
) -> tuple[np.ndarray, tuple]:
    """Windows of every channel separately: x (N, C, H, W) -> cols (kh*kw, N*C*Ho*Wo)."""
    kh, kw = _pair(kernel)
    stride = (kh, kw) if stride is None else _pair(stride)
    n_img, c, h, w_ = x.shape
    ho, wo = _out_hw(x.shape, kh, kw, stride, padding, 1)
    # channels become images, so im2col never mixes them
    cols = im2col(x.reshape(n_img * c, 1, h, w_), kh, kw, stride, padding, 1, pad_value)
    return cols, (x.shape, kh, kw, stride, padding, ho, wo)


def _pool_dx(dcols: np.ndarray, geom: tuple) -> np.ndarray:
    (n_img, c, h, w_), kh, kw, stride, padding, _, _ = geom
    return col2im(dcols, (n_img * c, 1, h, w_), kh, kw, stride, padding, 1).reshape(
        n_img, c, h, w_
    )


def max_pool2d_forward(
    x: np.ndarray, kernel: Pair, stride: Pair | None = None, padding: Pair = 0
) -> tuple[np.ndarray, tuple]:
    """Max over each window (padding counts as -inf). x: (N, C, H, W) -> (N, C, Ho, Wo), cache."""
    cols, geom = _pool_cols(x, kernel, stride, padding, -np.inf)
    arg = cols.argmax(axis=0)  # first maximum, like PyTorch
    out = cols[arg, np.arange(cols.shape[1])]
    (n_img, c, _, _), *_, ho, wo = geom
    return out.reshape(n_img, c, ho, wo), (arg, cols.shape, geom)


def max_pool2d_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """The gradient goes only to the maximum of each window. dout: (N, C, Ho, Wo) -> dx: (N, C, H, W)."""
    arg, cols_shape, geom = cache
    dcols = np.zeros(cols_shape, dtype=dout.dtype)
    dcols[arg, np.arange(cols_shape[1])] = dout.ravel()
    return _pool_dx(dcols, geom)


def avg_pool2d_forward(
    x: np.ndarray, kernel: Pair, stride: Pair | None = None, padding: Pair = 0
) -> tuple[np.ndarray, tuple]:
    """Mean over each window; zero padding is counted in the mean (PyTorch's default
    `count_include_pad=True`). x: (N, C, H, W) -> (N, C, Ho, Wo), cache."""
    cols, geom = _pool_cols(x, kernel, stride, padding, 0.0)
    (n_img, c, _, _), *_, ho, wo = geom
    return cols.mean(axis=0).reshape(n_img, c, ho, wo), (cols.shape, geom)


def avg_pool2d_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """Each window spreads its gradient evenly, 1/(kh*kw) per pixel. dout: (N, C, Ho, Wo) -> dx."""
    cols_shape, geom = cache
    dcols = np.broadcast_to(dout.ravel() / cols_shape[0], cols_shape)
    return _pool_dx(np.ascontiguousarray(dcols), geom)


def receptive_field(
    kernels: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int] | None = None,
) -> list[tuple[int, int]]:
    """(receptive field r_l, jump j_l) after each layer, in input pixels, starting at r_0 = j_0 = 1.

    r_l = r_{l-1} + (k_l' - 1) * j_{l-1} with the dilated kernel k' = d(k-1) + 1, and
    j_l = j_{l-1} * s_l = the product of the strides so far.
    """
    dilations = dilations or [1] * len(kernels)
    r, j, out = 1, 1, []
    for k, s, d in zip(kernels, strides, dilations):
        r += d * (k - 1) * j
        j *= s
        out.append((r, j))
    return out
