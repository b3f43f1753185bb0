"""Figures the chapters share: training curves and image grids."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch

from .train import History


def plot_history(
    history: History,
    metrics: Sequence[str] = ("loss", "accuracy"),
    title: str | None = None,
):
    """One panel per metric, train and validation per epoch. Returns the figure."""
    metrics = [m for m in metrics if history[f"train_{m}"] or history[f"val_{m}"]]
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(4.5 * len(metrics), 3.4), squeeze=False
    )
    epochs = history["epoch"]
    for ax, metric in zip(axes[0], metrics):
        for split, style in (("train", "-o"), ("val", "-s")):
            values = history[f"{split}_{metric}"]
            if values:
                ax.plot(epochs[: len(values)], values, style, ms=3, label=split)
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
    """A grid of images (N, C, H, W), uint8 or float; float images are un-normalised with
    `mean`/`std` if given. `labels` are printed above each image. Returns the figure."""
    images = images.detach().cpu()
    if images.dtype == torch.uint8:
        images = images.float() / 255
    elif mean is not None and std is not None:
        shape = (1, -1, 1, 1)
        images = images * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)
    images = images.clamp(0, 1)
    n = len(images)
    nrows = math.ceil(n / ncols)
    label_room = (
        0.3 if labels is not None else 0.0
    )  # inches per row for the titles above images
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
            img.squeeze(-1), cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=1
        )
        if labels is not None:
            ax.set_title(str(labels[i]), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
