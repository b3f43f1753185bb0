"""Training recipes: how the book trains its models, kept apart from the models.

- `holdout` carves a validation split out of training data: choices (a learning rate, an
  ablation, a "best" network) are made on it, and the test set is used once, for the
  reported number.
- `train_fast_mnist` is the fast MNIST recipe of Part II ch. 2 and of
  `benchmarks/bench_mnist.py`: `FastMNISTNet`, AdamW with a one-cycle schedule peaking
  at a high learning rate, label smoothing, channels-last memory, in-memory batches.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from .data import TensorData, loader
from .models.classic import FastMNISTNet
from .models.flops import count_macs
from .train import History, evaluate, fit

__all__ = ["holdout", "train_fast_mnist"]


def holdout(
    data: TensorData, n_val: int, *, seed: int = 0
) -> tuple[TensorData, TensorData]:
    """Split training data into (train, validation), disjoint: a random `n_val` examples
    (reproducible with `seed`) become the validation split, the rest stay for training.
    Both keep the training set's normalisation constants."""
    if not isinstance(n_val, int) or not 0 < n_val < len(data):
        raise ValueError(
            f"n_val must be an int with 0 < n_val < len(data) = {len(data)}, "
            f"got {n_val!r}"
        )
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    val, rest = order[:n_val], order[n_val:]

    def part(index: torch.Tensor) -> TensorData:
        return TensorData(
            data.x[index], data.y[index], data.classes, data.mean, data.std, data.source
        )

    return part(rest), part(val)


def train_fast_mnist(
    train: TensorData,
    held_out: TensorData,
    *,
    epochs: int = 2,
    batch_size: int = 256,
    max_lr: float = 2e-2,
    label_smoothing: float = 0.1,
    weight_decay: float = 5e-4,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
    model: nn.Module | None = None,
) -> dict:
    """The fast MNIST recipe: `FastMNISTNet`, AdamW with a one-cycle schedule peaking at
    a high `max_lr`, label smoothing, channels-last memory, in-memory batches
    (`dlcore.loader`) and `dlcore.fit`. Only training is timed (the data is already
    loaded; building the loaders and the final evaluation are outside the clock).

    `held_out` is evaluated once, after training: pass a validation split (`holdout`)
    when the result decides something, the test set only for the number you report.
    `model` replaces `FastMNISTNet()`, for ablations; it must take (B, 1, 28, 28) and
    keeps the initialisation it was built with (`seed` then only fixes the shuffling).

    Returns {"accuracy": accuracy on held_out, "seconds": training wall time,
    "cpu_seconds": CPU time of the process during training (all threads; on an idle
    machine about threads × seconds), "history": History, "model": the trained model,
    "macs": multiply–adds per image}.
    """
    for name, value, ok in [
        ("epochs", epochs, isinstance(epochs, int) and epochs >= 1),
        ("batch_size", batch_size, isinstance(batch_size, int) and batch_size >= 1),
        ("max_lr", max_lr, max_lr > 0),
        ("label_smoothing", label_smoothing, 0 <= label_smoothing < 1),
        ("weight_decay", weight_decay, weight_decay >= 0),
    ]:
        if not ok:
            raise ValueError(f"train_fast_mnist: bad {name} = {value!r}")
    device = torch.device(device)
    torch.manual_seed(seed)
    model = FastMNISTNet() if model is None else model
    model = model.to(device).to(memory_format=torch.channels_last)  # faster CPU convs
    train_loader = loader(
        train, batch_size, shuffle=True, device=device, drop_last=True
    )
    if len(train_loader) == 0:
        raise ValueError(
            f"train_fast_mnist: batch_size = {batch_size} exceeds the {len(train)} "
            "training examples (the last partial batch is dropped)"
        )
    held_out_loader = loader(held_out, 2000, device=device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=max_lr, weight_decay=weight_decay
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=epochs * len(train_loader), pct_start=0.25
    )

    def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing)

    start, cpu_start = time.perf_counter(), time.process_time()
    history: History = fit(
        model,
        train_loader,
        epochs=epochs,
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=loss_fn,
        device=device,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start  # all threads of this process
    accuracy = evaluate(model, held_out_loader, device=device)["accuracy"]
    return {
        "accuracy": accuracy,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "history": history,
        "model": model,
        "macs": count_macs(model).macs,
    }
