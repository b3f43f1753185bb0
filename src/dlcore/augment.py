"""Batched data augmentation for in-memory images, from scratch on (B, C, H, W) tensors.

Every function works on a whole batch at once, on whatever device the batch lives
(CPU or GPU): one random draw per image, no Python loop over images. The deterministic
cores (`pad`, `crop`, `hflip`, `cutout`) take the offsets / flags / boxes as arguments,
so they can be checked against `torchvision.transforms.v2.functional` (`pad`, `crop`,
`horizontal_flip`, `erase`); the `random_*` wrappers only draw those arguments.
`CifarAugment` chains them for `dlcore.loader(augment=...)`. Every function keeps the
dtype of its input (float64 stays float64) and rejects bad arguments with an error
that names them.

`normalize` is the book's one per-channel normalisation helper. The one-cycle learning
rate of the CIFAR-10 chapter is torch's `torch.optim.lr_scheduler.OneCycleLR` (its
from-scratch form is `dlcore.scratch.optim.one_cycle_lr`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------- argument checks


def _check_images(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a (B, C, H, W) tensor, got {shape}")


def _check_size(value: int, name: str, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _offsets(offset, b: int, name: str, device) -> torch.Tensor:
    """(B,) integer offsets as a long tensor on `device`; a ValueError names `name`."""
    offset = torch.as_tensor(offset, device=device)
    if offset.is_floating_point() or offset.is_complex() or offset.dtype == torch.bool:
        raise ValueError(f"{name} must hold integers, got dtype {offset.dtype}")
    if offset.shape != (b,):
        raise ValueError(f"{name} must have shape ({b},), got {tuple(offset.shape)}")
    return offset.long()


# ---------------------------------------------------------------- normalisation


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] -> float32 in [0, 1]; any other input is returned as it
    is (float64 stays float64)."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x


def channel_stats(
    x: torch.Tensor, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of images x: (N, C, H, W) over N, H and W
    (uint8 in [0, 255] is read as [0, 1]). Returns two (C,) float64 tensors (population
    std). Sums in float64, `chunk` images at a time, so a whole data set never needs a
    float copy; the sums are of x − k with k the first image's channel means, so that
    E[(x−k)²] − E[x−k]² does not cancel catastrophically when |mean| ≫ std."""
    _check_images(x)
    _check_size(chunk, "chunk", 1)
    if x.shape[0] == 0:
        raise ValueError("x must hold at least one image")
    scale = 255.0 if x.dtype == torch.uint8 else 1.0
    shift = x[:1].double().mean(dim=(0, 2, 3)) / scale  # k: (C,), close to the mean
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    squares = torch.zeros_like(total)
    for part in x.split(chunk):
        part = part.double() / scale - shift.view(1, -1, 1, 1)
        total += part.sum(dim=(0, 2, 3))
        squares += part.pow(2).sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count  # mean of x − k
    std = (squares / count - mean**2).clamp_min(0).sqrt()
    return (mean + shift).cpu(), std.cpu()


def _channel_vector(v, x: torch.Tensor, name: str) -> torch.Tensor:
    """mean or std as a (1, C, 1, 1) tensor like x; std must be > 0 everywhere (checked
    before the values move to x's device, so a list costs no device sync)."""
    v = torch.as_tensor(v, dtype=x.dtype).flatten()
    if v.numel() not in (1, x.shape[1]):
        raise ValueError(
            f"{name} must have 1 or {x.shape[1]} (channels) values, got {v.numel()}"
        )
    if name == "std" and not bool((v > 0).all()):
        raise ValueError(f"std must be > 0 in every channel, got {v.tolist()}")
    return v.to(x.device).view(1, -1, 1, 1)


def normalize(
    x: torch.Tensor,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
) -> torch.Tensor:
    """(x − mean_c) / std_c for every channel c. x: (B, C, H, W) float (or uint8, scaled
    to [0, 1] first); mean, std: C values (or one for all channels), every std > 0."""
    _check_images(x)
    x = to_float(x)
    if not x.is_floating_point():
        raise ValueError(f"x must be uint8 or floating point, got dtype {x.dtype}")
    mean, std = _channel_vector(mean, x, "mean"), _channel_vector(std, x, "std")
    return (x - mean) / std


def denormalize(
    x: torch.Tensor,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
) -> torch.Tensor:
    """The inverse of `normalize`: x·std_c + mean_c."""
    _check_images(x)
    x = to_float(x)
    return x * _channel_vector(std, x, "std") + _channel_vector(mean, x, "mean")


# ---------------------------------------------------------------- padding and cropping


def reflect_index(n: int, pad: int, device=None) -> torch.Tensor:
    """Source indices of a reflect-padded axis of length n + 2·pad: mirror at the border
    pixels without repeating them (…, 2, 1, 0, 1, 2, …, n−2, n−1, n−2, …), like
    `numpy.pad(mode="reflect")`."""
    _check_size(n, "n", 1)
    _check_size(pad, "pad")
    if pad >= n:
        raise ValueError(
            f"reflect padding {pad} must be smaller than the axis length {n}"
        )
    i = torch.arange(-pad, n + pad, device=device)
    i = i.abs()  # left border: -k -> k
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)  # right border: n-1+k -> n-1-k


def pad(x: torch.Tensor, padding: int, mode: str = "reflect") -> torch.Tensor:
    """Pad the last two axes of x: (B, C, H, W) -> (B, C, H + 2p, W + 2p), p = padding
    ≥ 0. mode "reflect" mirrors the image (no edge repetition), "constant" pads with
    zeros."""
    _check_images(x)
    _check_size(padding, "padding")
    if mode not in ("reflect", "constant"):
        raise ValueError(f"unknown padding mode {mode!r}; known: reflect, constant")
    if padding == 0:
        return x
    p, (h, w) = padding, x.shape[-2:]
    if mode == "constant":
        out = x.new_zeros(*x.shape[:-2], h + 2 * p, w + 2 * p)
        out[..., p : p + h, p : p + w] = x
        return out
    if p >= min(h, w):
        raise ValueError(
            f"reflect padding {p} must be smaller than the image side {min(h, w)}"
        )
    # rows, then columns: the mirrored strips next to the image (see `reflect_index`)
    above, below = x[..., 1 : p + 1, :].flip(-2), x[..., h - p - 1 : h - 1, :].flip(-2)
    x = torch.cat([above, x, below], dim=-2)
    left, right = x[..., 1 : p + 1].flip(-1), x[..., w - p - 1 : w - 1].flip(-1)
    return torch.cat([left, x, right], dim=-1)


def crop(
    x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Cut a height×width window out of every image, at its own offset.

    x: (B, C, H, W); top, left: (B,) integers, 0 ≤ top ≤ H − height and
    0 ≤ left ≤ W − width (a box outside the image is a ValueError). Returns
    (B, C, height, width) with
    out[b] = x[b, :, top[b]:top[b]+height, left[b]:left[b]+width].
    """
    _check_images(x)
    b, c, h_in, w_in = x.shape
    top, left = _crop_box(x, top, left, height, width)
    rows = top + torch.arange(height, device=x.device).view(1, height, 1)  # (B, h, 1)
    cols = left + torch.arange(width, device=x.device).view(1, 1, width)  # (B, 1, w)
    index = (rows * w_in + cols).view(b, 1, height * width)  # flat pixel index
    # one gather over the flattened pixels, the same index for every channel
    out = x.reshape(b, c, h_in * w_in).gather(2, index.expand(b, c, height * width))
    return out.view(b, c, height, width)


def _crop_box(x, top, left, height: int, width: int):
    """`crop`'s offsets as (B, 1, 1) long tensors, once the box is checked to fit."""
    b, _, h_in, w_in = x.shape
    _check_size(height, "height", 1)
    _check_size(width, "width", 1)
    if height > h_in or width > w_in:
        raise ValueError(
            f"crop height {height}, width {width} do not fit in {h_in}×{w_in} images"
        )
    top, left = _offsets(top, b, "top", x.device), _offsets(left, b, "left", x.device)
    for name, v, limit in (("top", top, h_in - height), ("left", left, w_in - width)):
        if b and (v.min() < 0 or v.max() > limit):
            raise ValueError(
                f"{name} must lie in [0, {limit}] for this crop, got values from "
                f"{int(v.min())} to {int(v.max())} (box outside the image)"
            )
    return top.view(b, 1, 1), left.view(b, 1, 1)


def random_crop(
    x: torch.Tensor,
    padding: int = 4,
    mode: str = "reflect",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pad by `padding` pixels, then crop back to the original size at a uniformly
    random offset per image (each of the (2p+1)² translations equally likely)."""
    padded = pad(x, padding, mode)  # checks x, padding and mode
    if padding == 0:
        return x
    b, _, h, w = x.shape
    top, left = torch.randint(
        0,
        2 * padding + 1,
        (2, b),
        generator=generator,
        device=_gen_device(generator, x),
    )
    return crop(padded, top, left, h, w)


# ---------------------------------------------------------------- flipping


def hflip(x: torch.Tensor, flip: torch.Tensor | None = None) -> torch.Tensor:
    """Mirror images left-right. x: (B, C, H, W); flip: (B,) bool, which images to
    mirror (all of them when None)."""
    _check_images(x)
    flipped = x.flip(-1)
    if flip is None:
        return flipped
    flip = torch.as_tensor(flip, device=x.device)
    if flip.dtype != torch.bool or flip.shape != (x.shape[0],):
        raise ValueError(
            f"flip must be a ({x.shape[0]},) bool tensor, got {flip.dtype} "
            f"{tuple(flip.shape)}"
        )
    return torch.where(flip.view(-1, 1, 1, 1), flipped, x)


def random_hflip(
    x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mirror each image independently with probability p ∈ [0, 1]."""
    _check_images(x)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must lie in [0, 1], got {p!r}")
    dev = _gen_device(generator, x)
    return hflip(x, torch.rand(x.shape[0], generator=generator, device=dev) < p)


# ---------------------------------------------------------------- cutout


def cutout_mask(
    shape: Sequence[int],
    top: torch.Tensor,
    left: torch.Tensor,
    height: int,
    width: int,
    device=None,
) -> torch.Tensor:
    """(B, 1, H, W) bool mask, True inside the box [top, top+height) ×
    [left, left+width) of each image. Offsets may be negative or run past the border:
    the box is clipped to the image."""
    b, _, h, w = shape
    _check_size(height, "height")
    _check_size(width, "width")
    top = _offsets(top, b, "top", device).view(b, 1, 1)
    left = _offsets(left, b, "left", device).view(b, 1, 1)
    r = torch.arange(h, device=device).view(1, h, 1)
    c = torch.arange(w, device=device).view(1, 1, w)
    inside = (r >= top) & (r < top + height) & (c >= left) & (c < left + width)
    return inside.unsqueeze(1)


def cutout(
    x: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    height: int,
    width: int,
    value: float = 0.0,
) -> torch.Tensor:
    """Set the box of every image (all channels) to `value` (0 = the mean colour after
    `normalize`). x: (B, C, H, W); top, left: (B,) box corners, clipped to the image as
    in `cutout_mask`."""
    _check_images(x)
    mask = cutout_mask(x.shape, top, left, height, width, x.device)
    return x.masked_fill(mask, value)


def random_cutout(
    x: torch.Tensor, size: int = 8, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Cutout (DeVries & Taylor, 2017): a size×size square whose centre is uniform over
    the image, clipped at the border, set to 0 in every image (size 0: no change)."""
    _check_images(x)
    _check_size(size, "size")
    b, _, h, w = x.shape
    dev = _gen_device(generator, x)
    cy = torch.randint(0, h, (b,), generator=generator, device=dev)
    cx = torch.randint(0, w, (b,), generator=generator, device=dev)
    return cutout(x, cy - size // 2, cx - size // 2, size, size)


# ---------------------------------------------------------------- the pipeline


class CifarAugment:
    """The standard CIFAR augmentation as one batched callable: random crop with
    `padding` (reflect), horizontal flip with probability 0.5, cutout of `cutout` pixels
    (0: off).
    Use on normalised float batches, e.g.
    `dlcore.loader(data, 256, augment=CifarAugment())`."""

    def __init__(
        self,
        padding: int = 4,
        flip: bool = True,
        cutout: int = 8,
        mode: str = "reflect",
        generator: torch.Generator | None = None,
    ):
        _check_size(padding, "padding")
        _check_size(cutout, "cutout")
        if mode not in ("reflect", "constant"):
            raise ValueError(f"unknown padding mode {mode!r}; known: reflect, constant")
        self.padding, self.flip, self.cutout = padding, flip, cutout
        self.mode, self.generator = mode, generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding:
            x = random_crop(x, self.padding, self.mode, self.generator)
        if self.flip:
            x = random_hflip(x, 0.5, self.generator)
        if self.cutout:
            x = random_cutout(x, self.cutout, self.generator)
        return x

    def __repr__(self) -> str:
        return (
            f"CifarAugment(padding={self.padding}, flip={self.flip}, "
            f"cutout={self.cutout}, mode={self.mode!r})"
        )


def _gen_device(generator: torch.Generator | None, x: torch.Tensor) -> torch.device:
    """Random numbers are drawn where the generator lives (else on x's device)."""
    return generator.device if generator is not None else x.device


# ---------------------------------------------------------------- training helpers


def label_smoothing_cross_entropy(
    logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.1
) -> torch.Tensor:
    """Cross-entropy against the smoothed target q = (1 − ε)·onehot(y) + ε/K, averaged
    over the batch. logits: (B, K); y: (B,) labels in [0, K); ε = smoothing ∈ [0, 1].
    Equals `F.cross_entropy(logits, y, label_smoothing=ε)`; float16/bfloat16 logits are
    computed in float32, float64 stays float64."""
    _check_labels(logits, y, smoothing)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    logp = F.log_softmax(logits, dim=-1)
    nll = -logp.gather(1, y.view(-1, 1)).squeeze(1)
    uniform = -logp.mean(dim=-1)
    return ((1 - smoothing) * nll + smoothing * uniform).mean()


def _check_labels(logits: torch.Tensor, y: torch.Tensor, smoothing: float) -> None:
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise ValueError(f"logits must be (B, K) with B ≥ 1, got {tuple(logits.shape)}")
    if y.shape != logits.shape[:1] or y.is_floating_point():
        raise ValueError(
            f"y must be {logits.shape[0]} integer labels (shape ({logits.shape[0]},)), "
            f"got {y.dtype} {tuple(y.shape)}"
        )
    if y.min() < 0 or y.max() >= logits.shape[1]:
        raise ValueError(f"y must lie in [0, {logits.shape[1] - 1}], got {y.tolist()}")
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"smoothing must lie in [0, 1], got {smoothing!r}")


def flip_tta(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Test-time augmentation: the mean of the logits for x and for x mirrored."""
    _check_images(x)
    return 0.5 * (model(x) + model(x.flip(-1)))
