"""2-D convolution and pooling from scratch in NumPy: loops, im2col/col2im, backward.

Conventions (those of `torch.nn.functional.conv2d`): inputs `x: (N, C, H, W)`, filters
`w: (F, C, kh, kw)`, bias `b: (F,)`, outputs `(N, F, Ho, Wo)`. What is computed is a
*cross-correlation* (the kernel is not flipped), as in every deep-learning library.
`stride`, `padding` and `dilation` are an int or an `(height, width)` pair. Every public
function checks its arguments and names the one that is wrong; results keep the input's
floating-point dtype (float64 in, float64 out).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Pair = int | Sequence[int]


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _pair(v: Pair, name: str = "value") -> tuple[int, int]:
    """An int or a pair of ints -> (height, width); anything else is a ValueError."""
    if _is_int(v):
        return int(v), int(v)
    try:
        a, b = v
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be an int or a (height, width) pair, got {v!r}"
        ) from None
    if not (_is_int(a) and _is_int(b)):
        raise ValueError(f"{name} must hold integers, got {v!r}")
    return int(a), int(b)


def _at_least(v: Pair, name: str, low: int) -> tuple[int, int]:
    pair = _pair(v, name)
    if min(pair) < low:
        raise ValueError(f"{name} must be >= {low}, got {v!r}")
    return pair


def _geometry(
    stride: Pair, padding: Pair, dilation: Pair
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Validated pairs: stride >= 1, padding >= 0, dilation >= 1."""
    return (
        _at_least(stride, "stride", 1),
        _at_least(padding, "padding", 0),
        _at_least(dilation, "dilation", 1),
    )


def _check_4d(x: np.ndarray, name: str = "x") -> None:
    if np.ndim(x) != 4:
        raise ValueError(
            f"{name} must be 4-D (B, C, H, W), got shape {tuple(np.shape(x))}"
        )


def _check_conv_args(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> None:
    _check_4d(x, "x")
    if np.ndim(w) != 4:
        raise ValueError(f"w must be 4-D (F, C, kh, kw), got shape {np.shape(w)}")
    if x.shape[1] != w.shape[1]:
        raise ValueError(
            f"channel mismatch: x has C = {x.shape[1]} channels (x: (B, C, H, W) = "
            f"{x.shape}) but w expects {w.shape[1]} (w: (F, C, kh, kw) = {w.shape})"
        )
    if b is not None and np.shape(b) != (w.shape[0],):
        raise ValueError(f"b must have shape (F,) = ({w.shape[0]},), got {np.shape(b)}")


def conv_output_size(
    size: int, kernel: int, padding: int = 0, stride: int = 1, dilation: int = 1
) -> int:
    """Output length along one axis: floor((size + 2p - d(k-1) - 1) / s) + 1.

    Raises ValueError (naming the argument) for size < 1, kernel < 1, padding < 0,
    stride < 1, dilation < 1, or a dilated kernel longer than the padded input.
    """
    for name, value, low in [
        ("size", size, 1),
        ("kernel", kernel, 1),
        ("padding", padding, 0),
        ("stride", stride, 1),
        ("dilation", dilation, 1),
    ]:
        if not _is_int(value):
            raise ValueError(f"{name} must be an int, got {value!r}")
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    extent = dilation * (kernel - 1) + 1  # span of the dilated kernel, in input pixels
    if extent > size + 2 * padding:
        raise ValueError(
            f"kernel larger than the padded input: kernel {kernel} (dilation "
            f"{dilation}) spans {extent} pixels, the padded input has "
            f"{size} + 2·{padding} = {size + 2 * padding}"
        )
    return (size + 2 * padding - extent) // stride + 1


def _out_hw(
    x_shape: tuple, kh: int, kw: int, stride: Pair, padding: Pair, dilation: Pair
) -> tuple[int, int]:
    (sh, sw), (ph, pw), (dh, dw) = _geometry(stride, padding, dilation)
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
    """The definition, one output value at a time.

    x: (N, C, H, W), w: (F, C, kh, kw), b: (F,) or None -> (N, F, Ho, Wo), with
    out[n, f, i, j] = b[f] + sum_{c,u,v} w[f,c,u,v] * xpad[n, c, i*sh+u*dh, j*sw+v*dw]
    """
    _check_conv_args(x, w, b)
    (sh, sw), (ph, pw), (dh, dw) = _geometry(stride, padding, dilation)
    n_img, kh, kw = x.shape[0], w.shape[2], w.shape[3]
    ho, wo = _out_hw(x.shape, kh, kw, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = np.zeros((n_img, w.shape[0], ho, wo), dtype=np.result_type(x, w))
    for n in range(n_img):
        for f in range(w.shape[0]):
            for i in range(ho):
                for j in range(wo):
                    # the receptive window: every dh-th row, dw-th column
                    window = xp[
                        n,
                        :,
                        i * sh : i * sh + dh * (kh - 1) + 1 : dh,
                        j * sw : j * sw + dw * (kw - 1) + 1 : dw,
                    ]
                    out[n, f, i, j] = np.sum(window * w[f])
    if b is not None:
        out = out + b[None, :, None, None]
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
    """Unfold every receptive window into a column.

    x: (N, C, H, W) -> cols: (C*kh*kw, N*Ho*Wo). Row index (c, u, v) matches
    `w.reshape(F, -1)`; column index (n, i, j) is the output position. The loop runs
    over the kh*kw kernel offsets only: each offset copies one strided slice.
    """
    _check_4d(x, "x")
    (sh, sw), (ph, pw), (dh, dw) = _geometry(stride, padding, dilation)
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
    """The adjoint of `im2col`: scatter-add columns back.

    cols: (C*kh*kw, N*Ho*Wo) -> (N, C, H, W) with x_shape = (N, C, H, W). A pixel that
    lies in several windows receives the sum of their entries: that sum is the gradient,
    because im2col copied the pixel to each of those places.
    """
    if len(x_shape) != 4:
        raise ValueError(f"x_shape must be (N, C, H, W), got {tuple(x_shape)}")
    (sh, sw), (ph, pw), (dh, dw) = _geometry(stride, padding, dilation)
    n_img, c, h, w_ = x_shape
    ho, wo = _out_hw(x_shape, kh, kw, stride, padding, dilation)
    expected = (c * kh * kw, n_img * ho * wo)
    if np.shape(cols) != expected:
        raise ValueError(
            f"cols must have shape (C*kh*kw, N*Ho*Wo) = {expected}, "
            f"got {np.shape(cols)}"
        )
    cols6 = cols.reshape(c, kh, kw, n_img, ho, wo)
    xp = np.zeros((n_img, c, h + 2 * ph, w_ + 2 * pw), dtype=cols.dtype)
    for u in range(kh):
        for v in range(kw):
            # within one offset the strided positions are distinct: += cannot collide
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
    """Convolution as one matrix product.

    x: (N, C, H, W), w: (F, C, kh, kw), b: (F,) or None. Returns out: (N, F, Ho, Wo)
    and a cache for `conv2d_backward`.
    """
    _check_conv_args(x, w, b)
    n_img, f = x.shape[0], w.shape[0]
    kh, kw = w.shape[2:]
    ho, wo = _out_hw(x.shape, kh, kw, stride, padding, dilation)
    cols = im2col(x, kh, kw, stride, padding, dilation)  # (C*kh*kw, N*Ho*Wo)
    out = w.reshape(f, -1) @ cols  # (F, N*Ho*Wo): one GEMM
    if b is not None:
        out = out + b[:, None]
    out = out.reshape(f, n_img, ho, wo).transpose(1, 0, 2, 3)
    cache = (x.shape, w, b is not None, cols, stride, padding, dilation, out.shape)
    return np.ascontiguousarray(out), cache


def conv2d_backward(
    dout: np.ndarray, cache: tuple
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients of a loss through `conv2d_forward`. dout: (N, F, Ho, Wo) -> dx, dw, db.

    With out = W2 @ cols + b: dW2 = dout2 @ cols.T, dcols = W2.T @ dout2, db = sum of
    dout, and dx = col2im(dcols).
    """
    x_shape, w, has_bias, cols, stride, padding, dilation, out_shape = cache
    if np.shape(dout) != out_shape:
        raise ValueError(
            f"dout must have the output's shape (N, F, Ho, Wo) = {out_shape}, "
            f"got {np.shape(dout)}"
        )
    f, _, kh, kw = w.shape
    dout2 = dout.transpose(1, 0, 2, 3).reshape(f, -1)  # (F, N*Ho*Wo)
    dw = (dout2 @ cols.T).reshape(w.shape)
    dx = col2im(w.reshape(f, -1).T @ dout2, x_shape, kh, kw, stride, padding, dilation)
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw, db


def _pool_cols(
    x: np.ndarray, kernel: Pair, stride: Pair | None, padding: Pair, pad_value: float
) -> tuple[np.ndarray, tuple]:
    """Windows of each channel separately: x (N, C, H, W) -> (kh*kw, N*C*Ho*Wo)."""
    _check_4d(x, "x")
    kh, kw = _at_least(kernel, "kernel", 1)
    stride = (kh, kw) if stride is None else _at_least(stride, "stride", 1)
    ph, pw = _at_least(padding, "padding", 0)
    if ph > kh // 2 or pw > kw // 2:  # PyTorch's rule: no window of padding alone
        raise ValueError(
            f"padding must be at most half the kernel, got padding {padding!r} "
            f"for kernel {kernel!r}"
        )
    n_img, c, h, w_ = x.shape
    ho, wo = _out_hw(x.shape, kh, kw, stride, (ph, pw), 1)
    # channels become images, so im2col never mixes them
    cols = im2col(
        x.reshape(n_img * c, 1, h, w_), kh, kw, stride, (ph, pw), 1, pad_value
    )
    return cols, (x.shape, kh, kw, stride, (ph, pw), ho, wo)


def _pool_dx(dcols: np.ndarray, geom: tuple) -> np.ndarray:
    (n_img, c, h, w_), kh, kw, stride, padding, _, _ = geom
    return col2im(dcols, (n_img * c, 1, h, w_), kh, kw, stride, padding, 1).reshape(
        n_img, c, h, w_
    )


def _check_dout(dout: np.ndarray, geom: tuple) -> None:
    (n_img, c, _, _), *_, ho, wo = geom
    if np.shape(dout) != (n_img, c, ho, wo):
        raise ValueError(
            f"dout must have the output's shape (N, C, Ho, Wo) = {(n_img, c, ho, wo)}, "
            f"got {np.shape(dout)}"
        )


def _lowest(dtype: np.dtype) -> float:
    """The padding value that never wins a max: -inf, or the lowest integer."""
    return np.iinfo(dtype).min if np.issubdtype(dtype, np.integer) else -np.inf


def max_pool2d_forward(
    x: np.ndarray, kernel: Pair, stride: Pair | None = None, padding: Pair = 0
) -> tuple[np.ndarray, tuple]:
    """Max over each window. x: (N, C, H, W) -> (N, C, Ho, Wo), cache.

    Padding never wins. `stride` defaults to `kernel`; padding may be at most half the
    kernel (as in PyTorch).
    Ties go to the first maximum in row-major window order, as in PyTorch.
    """
    cols, geom = _pool_cols(x, kernel, stride, padding, _lowest(np.asarray(x).dtype))
    arg = cols.argmax(axis=0)  # first maximum, like PyTorch
    out = cols[arg, np.arange(cols.shape[1])]
    (n_img, c, _, _), *_, ho, wo = geom
    return out.reshape(n_img, c, ho, wo), (arg, cols.shape, geom)


def max_pool2d_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """The gradient goes only to each window's maximum. dout: (N, C, Ho, Wo) -> dx."""
    arg, cols_shape, geom = cache
    _check_dout(dout, geom)
    dcols = np.zeros(cols_shape, dtype=dout.dtype)
    dcols[arg, np.arange(cols_shape[1])] = dout.ravel()
    return _pool_dx(dcols, geom)


def avg_pool2d_forward(
    x: np.ndarray, kernel: Pair, stride: Pair | None = None, padding: Pair = 0
) -> tuple[np.ndarray, tuple]:
    """Mean over each window. x: (N, C, H, W) -> (N, C, Ho, Wo), cache.

    Zero padding is counted in the mean (PyTorch's default `count_include_pad=True`);
    `stride` defaults to `kernel`; padding may be at most half the kernel.
    """
    cols, geom = _pool_cols(x, kernel, stride, padding, 0.0)
    (n_img, c, _, _), *_, ho, wo = geom
    return cols.mean(axis=0).reshape(n_img, c, ho, wo), (cols.shape, geom)


def avg_pool2d_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """Each window spreads its gradient evenly, 1/(kh*kw) per pixel. dout -> dx."""
    cols_shape, geom = cache
    _check_dout(dout, geom)
    dcols = np.broadcast_to(dout.ravel() / cols_shape[0], cols_shape)
    return _pool_dx(np.ascontiguousarray(dcols), geom)


def receptive_field(
    kernels: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int] | None = None,
) -> list[tuple[int, int]]:
    """(receptive field r_l, jump j_l) after each layer, in input pixels; r_0 = j_0 = 1.

    r_l = r_{l-1} + (k_l' - 1) * j_{l-1} with the dilated kernel k' = d(k-1) + 1, and
    j_l = j_{l-1} * s_l = the product of the strides so far. The three lists must have
    one entry per layer (kernels, strides, dilations >= 1).
    """
    kernels, strides = list(kernels), list(strides)
    dilations = [1] * len(kernels) if dilations is None else list(dilations)
    if not len(kernels) == len(strides) == len(dilations):
        raise ValueError(
            "kernels, strides and dilations must have one entry per layer, got lengths "
            f"{len(kernels)}, {len(strides)} and {len(dilations)}"
        )
    for name, values in (
        ("kernels", kernels),
        ("strides", strides),
        ("dilations", dilations),
    ):
        if any(not _is_int(v) or v < 1 for v in values):
            raise ValueError(f"{name} must be integers >= 1, got {values}")
    r, j, out = 1, 1, []
    for k, s, d in zip(kernels, strides, dilations):
        r += d * (k - 1) * j
        j *= s
        out.append((r, j))
    return out
