"""Shuffled mini-batches from tensors kept in memory, on the device."""

from __future__ import annotations

import torch

from ..augment import normalize, to_float
from ..runtime import device as default_device
from .images import TensorData


class TensorLoader:
    """Shuffled mini-batches from tensors kept in memory, on the device.

    x: (N, C, ...) uint8 or float; y: (N, ...). uint8 images are scaled to [0, 1] and,
    when `mean` and `std` are given (both or neither; one value per channel C, or one
    for all), normalised per batch on the device with `dlcore.augment.normalize`;
    `augment` (a function of a float batch) runs after. Yields (x_batch: (B, ...),
    y_batch: (B, ...)). batch_size must be a positive int.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        device: torch.device | str | None = None,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        augment=None,
        drop_last: bool = False,
    ):
        _check_inputs(x, y, batch_size, mean, std)
        self.device = torch.device(device) if device is not None else default_device()
        self.x, self.y = x.to(self.device), y.to(self.device)
        self.batch_size, self.shuffle, self.drop_last, self.augment = (
            batch_size,
            shuffle,
            drop_last,
            augment,
        )
        # kept on the CPU: `normalize` checks std > 0 there, not with a device sync
        self.mean = None if mean is None else torch.as_tensor(mean).flatten().cpu()
        self.std = None if std is None else torch.as_tensor(std).flatten().cpu()

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.y)
        order = torch.randperm(n).to(self.device) if self.shuffle else None
        for batch in range(len(self)):
            if order is None:
                xb = self.x[batch * self.batch_size : (batch + 1) * self.batch_size]
                yb = self.y[batch * self.batch_size : (batch + 1) * self.batch_size]
            else:
                idx = order[batch * self.batch_size : (batch + 1) * self.batch_size]
                xb, yb = self.x[idx], self.y[idx]
            yield self._prepare(xb), yb

    def _prepare(self, xb: torch.Tensor) -> torch.Tensor:
        if xb.dtype == torch.uint8:
            xb = to_float(xb)
        if self.mean is not None:
            if xb.dim() == 4:
                xb = normalize(xb, self.mean, self.std)
            else:  # (B, C, ...) or (B,): the helper wants (B, C, H, W)
                channels = xb.shape[1] if xb.dim() > 1 else 1
                flat = xb.reshape(len(xb), channels, -1, 1)
                xb = normalize(flat, self.mean, self.std).view(xb.shape)
        return self.augment(xb) if self.augment is not None else xb


def _check_inputs(x, y, batch_size, mean, std) -> None:
    """TensorLoader's arguments, checked where a mistake can still be named."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(
            f"x and y must be tensors, got {type(x).__name__} and {type(y).__name__}"
        )
    if x.dim() == 0 or y.dim() == 0 or len(x) != len(y):
        raise ValueError(
            "x and y must hold the same number of examples (their first axis): "
            f"x has shape {tuple(x.shape)}, y {tuple(y.shape)}"
        )
    if (mean is None) != (std is None):
        raise ValueError(
            f"mean and std go together (both or neither): got mean={mean!r}, "
            f"std={std!r}"
        )
    if mean is None:
        return
    if not (x.dtype == torch.uint8 or x.is_floating_point()):
        raise ValueError(f"mean/std need uint8 or floating-point x, got {x.dtype}")
    channels = x.shape[1] if x.dim() > 1 else 1
    for name, values in (("mean", mean), ("std", std)):
        n = torch.as_tensor(values).numel()
        if n not in (1, channels):
            raise ValueError(
                f"{name} has {n} values but x has {channels} channels (x.shape[1]); "
                "give one value per channel, or one for all"
            )
    if not bool((torch.as_tensor(std, dtype=torch.float64) > 0).all()):
        raise ValueError(f"std must be positive, got std={std!r}")


def loader(
    data: TensorData,
    batch_size: int,
    *,
    shuffle: bool = False,
    device=None,
    normalize: bool = True,
    augment=None,
    drop_last: bool = False,
) -> TensorLoader:
    """A `TensorLoader` over a `TensorData`, normalised with the dataset's mean and
    std."""
    mean, std = (data.mean, data.std) if normalize else (None, None)
    return TensorLoader(
        data.x,
        data.y,
        batch_size,
        shuffle=shuffle,
        device=device,
        mean=mean,
        std=std,
        augment=augment,
        drop_last=drop_last,
    )
