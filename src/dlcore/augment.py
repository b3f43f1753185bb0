"""Batched data augmentation for images kept in memory, written from scratch on (B, C, H, W) tensors.

Every function works on a whole batch at once, on whatever device the batch lives (CPU or GPU):
one random draw per image, no Python loop over images. The deterministic cores (`pad`, `crop`,
`hflip`, `cutout`) take the offsets / flags / boxes as arguments, so they can be checked against
`torchvision.transforms.v2.functional` (`pad`, `crop`, `horizontal_flip`, `erase`); the `random_*`
wrappers only draw those arguments. `CifarAugment` chains them for `dlcore.loader(augment=...)`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------- normalisation


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] -> float32 in [0, 1]; floating-point input is returned as it is."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x


def channel_stats(
    x: torch.Tensor, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of images x: (N, C, H, W) (uint8 in [0, 255] is
    read as [0, 1]), over N, H and W. Sums in float64, `chunk` images at a time, so a whole data
    set never needs a float copy. Returns two (C,) float64 tensors (population std)."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for part in x.split(chunk):
        part = part.double() / 255 if part.dtype == torch.uint8 else part.double()
        total += part.sum(dim=(0, 2, 3)).cpu()
        squares += part.pow(2).sum(dim=(0, 2, 3)).cpu()
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    return mean, (squares / count - mean**2).clamp_min(0).sqrt()


def normalize(
    x: torch.Tensor,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
) -> torch.Tensor:
    """(x - mean_c) / std_c for every channel c. x: (B, C, H, W) float (or uint8, scaled to [0, 1] first)."""
    x = to_float(x)
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def denormalize(
    x: torch.Tensor,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
) -> torch.Tensor:
    """The inverse of `normalize`: x·std_c + mean_c."""
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return x * std + mean


# ---------------------------------------------------------------- padding and cropping


def reflect_index(n: int, pad: int, device=None) -> torch.Tensor:
    """Source indices of a reflect-padded axis of length n + 2·pad: mirror at the border pixels
    without repeating them (…, 2, 1, 0, 1, 2, …, n−2, n−1, n−2, …), like `numpy.pad(mode="reflect")`."""
    if pad >= n:
        raise ValueError(
            f"reflect padding {pad} must be smaller than the axis length {n}"
        )
    i = torch.arange(-pad, n + pad, device=device)
    i = i.abs()  # left border: -k -> k
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)  # right border: n-1+k -> n-1-k


def pad(x: torch.Tensor, padding: int, mode: str = "reflect") -> torch.Tensor:
    """Pad the last two axes of x: (B, C, H, W) -> (B, C, H + 2p, W + 2p).
    mode "reflect" mirrors the image (no edge repetition), "constant" pads with zeros."""
    if padding == 0:
        return x
    h, w = x.shape[-2:]
    if (
        mode == "reflect"
    ):  # rows, then columns: the mirrored strips next to the image (see `reflect_index`)
        if padding >= min(h, w):
            raise ValueError(
                f"reflect padding {padding} must be smaller than the image side {min(h, w)}"
            )
        p = padding
        x = torch.cat(
            [x[..., 1 : p + 1, :].flip(-2), x, x[..., h - p - 1 : h - 1, :].flip(-2)],
            dim=-2,
        )
        return torch.cat(
            [x[..., 1 : p + 1].flip(-1), x, x[..., w - p - 1 : w - 1].flip(-1)], dim=-1
        )
    if mode == "constant":
        out = x.new_zeros(*x.shape[:-2], h + 2 * padding, w + 2 * padding)
        out[..., padding : padding + h, padding : padding + w] = x
        return out
    raise ValueError(f"unknown padding mode {mode!r}; known: reflect, constant")


def crop(
    x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Cut a height×width window out of every image, at its own offset.

    x: (B, C, H, W); top, left: (B,) integer offsets with 0 ≤ top ≤ H − height, 0 ≤ left ≤ W − width.
    Returns (B, C, height, width) with out[b] = x[b, :, top[b]:top[b]+height, left[b]:left[b]+width].
    """
    b, c, h_in, w_in = x.shape
    top, left = (
        top.to(x.device).long().view(b, 1, 1),
        left.to(x.device).long().view(b, 1, 1),
    )
    rows = top + torch.arange(height, device=x.device).view(
        1, height, 1
    )  # (B, height, 1)
    cols = left + torch.arange(width, device=x.device).view(
        1, 1, width
    )  # (B, 1, width)
    index = (rows * w_in + cols).view(
        b, 1, height * width
    )  # flat pixel index per image
    # one gather over the flattened pixels, the same index for every channel
    out = x.reshape(b, c, h_in * w_in).gather(2, index.expand(b, c, height * width))
    return out.view(b, c, height, width)


def random_crop(
    x: torch.Tensor,
    padding: int = 4,
    mode: str = "reflect",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pad by `padding` pixels, then crop back to the original size at a uniformly random offset
    per image (each of the (2p+1)² translations equally likely)."""
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
    return crop(pad(x, padding, mode), top, left, h, w)


# ---------------------------------------------------------------- flipping


def hflip(x: torch.Tensor, flip: torch.Tensor | None = None) -> torch.Tensor:
    """Mirror images left-right. x: (B, C, H, W); flip: (B,) bool, which images to mirror
    (all of them when None)."""
    flipped = x.flip(-1)
    if flip is None:
        return flipped
    return torch.where(flip.to(x.device).view(-1, 1, 1, 1), flipped, x)


def random_hflip(
    x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mirror each image independently with probability p."""
    flip = (
        torch.rand(x.shape[0], generator=generator, device=_gen_device(generator, x))
        < p
    )
    return hflip(x, flip)


# ---------------------------------------------------------------- cutout


def cutout_mask(
    shape: Sequence[int],
    top: torch.Tensor,
    left: torch.Tensor,
    height: int,
    width: int,
    device=None,
) -> torch.Tensor:
    """(B, 1, H, W) bool mask, True inside the box [top, top+height) × [left, left+width) of each
    image. Offsets may be negative or run past the border: the box is clipped to the image."""
    b, _, h, w = shape
    top, left = (
        top.to(device).long().view(b, 1, 1),
        left.to(device).long().view(b, 1, 1),
    )
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
    """Set the box of every image (all channels) to `value` (0 = the mean colour after `normalize`).
    x: (B, C, H, W); top, left: (B,) box corners, clipped to the image as in `cutout_mask`."""
    mask = cutout_mask(x.shape, top, left, height, width, x.device)
    return x.masked_fill(mask, value)


def random_cutout(
    x: torch.Tensor, size: int = 8, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Cutout (DeVries & Taylor, 2017): a size×size square whose centre is uniform over the image,
    clipped at the border, set to 0 in every image."""
    b, _, h, w = x.shape
    dev = _gen_device(generator, x)
    cy = torch.randint(0, h, (b,), generator=generator, device=dev)
    cx = torch.randint(0, w, (b,), generator=generator, device=dev)
    return cutout(x, cy - size // 2, cx - size // 2, size, size)


# ---------------------------------------------------------------- the pipeline


class CifarAugment:
    """The standard CIFAR augmentation as one batched callable: random crop with `padding`
    (reflect), horizontal flip with probability 0.5, cutout of `cutout` pixels (0: off).
    Use on normalised float batches, e.g. `dlcore.loader(data, 256, augment=CifarAugment())`."""

    def __init__(
        self,
        padding: int = 4,
        flip: bool = True,
        cutout: int = 8,
        mode: str = "reflect",
        generator: torch.Generator | None = None,
    ):
        self.padding, self.flip, self.cutout, self.mode, self.generator = (
            padding,
            flip,
            cutout,
            mode,
            generator,
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding:
            x = random_crop(x, self.padding, self.mode, self.generator)
        if self.flip:
            x = random_hflip(x, 0.5, self.generator)
        if self.cutout:
            x = random_cutout(x, self.cutout, self.generator)
        return x

    def __repr__(self) -> str:
        return f"CifarAugment(padding={self.padding}, flip={self.flip}, cutout={self.cutout}, mode={self.mode!r})"


def _gen_device(generator: torch.Generator | None, x: torch.Tensor) -> torch.device:
    """Random numbers are drawn where the generator lives (or on x's device without one)."""
    return generator.device if generator is not None else x.device


# ---------------------------------------------------------------- training helpers


def label_smoothing_cross_entropy(
    logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.1
) -> torch.Tensor:
    """Cross-entropy against the smoothed target q = (1 − ε)·onehot(y) + ε/K, averaged over the batch.
    logits: (B, K); y: (B,). Equals `F.cross_entropy(logits, y, label_smoothing=ε)`."""
    logp = F.log_softmax(logits.float(), dim=-1)
    nll = -logp.gather(1, y.view(-1, 1)).squeeze(1)
    uniform = -logp.mean(dim=-1)
    return ((1 - smoothing) * nll + smoothing * uniform).mean()


def one_cycle(
    step: int,
    total: int,
    peak: float = 1.0,
    warmup: float = 0.25,
    start: float = 0.0,
    end: float = 0.0,
) -> float:
    """A piecewise-linear one-cycle learning rate: `start` → `peak` over the first `warmup` fraction
    of the `total` steps, then linearly down to `end` at the last step."""
    up = max(1, round(warmup * total))
    if step < up:
        return start + (peak - start) * step / up
    return peak + (end - peak) * min(1.0, (step - up) / max(1, total - up))


def flip_tta(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Test-time augmentation: the mean of the logits for x and for x mirrored."""
    return 0.5 * (model(x) + model(x.flip(-1)))
