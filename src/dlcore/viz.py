"""Figures the chapters share: training curves and image grids."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch

from .augment import denormalize
from .train import History


def history_metrics(history: History) -> list[str]:
    """The metrics a `History` holds per epoch: "loss" for train_loss / val_loss,
    "accuracy" for train_accuracy / val_accuracy, and so on, in order of appearance."""
    names = [
        k.split("_", 1)[1] for k in history.keys() if k.startswith(("train_", "val_"))
    ]
    return list(dict.fromkeys(names))


def plot_history(
    history: History,
    metrics: Sequence[str] | str | None = None,
    title: str | None = None,
):
    """One panel per metric, train and validation per epoch. Returns the figure.

    metrics: names such as "loss" or "accuracy" (for train_loss / val_loss, ...); by
    default those of "loss" and "accuracy" the history holds. A name the history does
    not hold is an error that lists the ones it does.
    """
    if not isinstance(history, History):
        raise TypeError(
            f"history must be a dlcore.History, got {type(history).__name__}"
        )
    known = history_metrics(history)
    if not known:
        raise ValueError("the history holds no train_* or val_* values to plot")
    if metrics is None:
        metrics = [m for m in ("loss", "accuracy") if m in known] or known
    elif isinstance(metrics, str):
        metrics = [metrics]
    metrics = list(metrics)
    if not metrics:
        raise ValueError(f"no metric to plot; this history holds: {', '.join(known)}")
    for metric in metrics:
        if metric not in known:
            raise ValueError(
                f"unknown metric {metric!r}; this history holds: {', '.join(known)}"
            )
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(4.5 * len(metrics), 3.4), squeeze=False
    )
    for ax, metric in zip(axes[0], metrics):
        for split, style in (("train", "-o"), ("val", "-s")):
            key = f"{split}_{metric}"
            points = [
                (e.get("epoch", i + 1), e[key])
                for i, e in enumerate(history.epochs)
                if key in e
            ]
            if points:
                ax.plot(*zip(*points), style, ms=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_images(
    images: torch.Tensor,
    labels: Sequence[str] | None = None,
    *,
    ncols: int = 8,
    title: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    size: float = 1.3,
):
    """A grid of images (N, C, H, W) with C = 1 (grey) or 3 (RGB), uint8 or float;
    float images are un-normalised with `mean`/`std` (both or neither) if given.
    `labels` (one per image) are printed above each image. Returns the figure."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else None
        raise ValueError(
            f"images must be a tensor (N, C, H, W), got {type(images).__name__}"
            + (f" of shape {shape}" if shape is not None else "")
        )
    if images.shape[1] not in (1, 3) or len(images) == 0:
        raise ValueError(
            f"images must be (N, C, H, W) with N >= 1 and C 1 or 3, got shape "
            f"{tuple(images.shape)}"
        )
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols <= 0:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    if (mean is None) != (std is None):
        raise ValueError(f"mean and std go together: got mean={mean!r}, std={std!r}")
    images = images.detach().cpu()
    if images.dtype == torch.uint8:
        images = images.float() / 255
    elif mean is not None:
        images = denormalize(images, mean, std)
    images = images.clamp(0, 1)
    n = len(images)
    nrows = math.ceil(n / ncols)
    label_room = 0.3 if labels is not None else 0.0  # inches per row for the labels
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(size * ncols, (size + label_room) * nrows + 0.4),
        squeeze=False,
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i].permute(1, 2, 0)
        ax.imshow(
            img.squeeze(-1).numpy(),
            cmap="gray" if img.shape[-1] == 1 else None,
            vmin=0,
            vmax=1,
        )
        if labels is not None:
            ax.set_title(str(labels[i]), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
