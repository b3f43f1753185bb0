"""Training an image classifier against a budget of steps or of wall-clock seconds.

Comparing two architectures "at equal wall time" (Part IV ch5: a ViT against a ResNet)
needs a schedule that ends when the time does. `train_classifier` sets the learning
rate from the *fraction of the budget used*: with `seconds`, that fraction is the
elapsed training time over the budget, so the warm-up and the cosine decay to zero fit
the time whichever network is faster per step; with `epochs`, it is the step count, as
usual. Evaluation pauses the clock.

    lr(f) = peak * f / warmup                              for f < warmup
    lr(f) = peak * (1 + cos(pi * (f - warmup) / (1 - warmup))) / 2     afterwards
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .data import TensorData, loader
from .runtime import amp_dtype
from .train import evaluate, progress

__all__ = ["Run", "warmup_cosine", "train_classifier", "adamw", "sgd_nesterov"]


@dataclass
class Run:
    """What `train_classifier` measured. evals: (step, training seconds so far,
    validation accuracy) at each evaluation; losses: the training loss of every step."""

    steps: int = 0
    images: int = 0
    seconds: float = 0.0
    evals: list[tuple[int, float, float]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)

    @property
    def val_accuracy(self) -> float:
        return self.evals[-1][2] if self.evals else float("nan")


def _decay_groups(
    model: nn.Module, weight_decay: float, no_decay: tuple[str, ...]
) -> list[dict]:
    """Weight decay on weight matrices and conv kernels (ndim >= 2) only: not on
    biases and norm scales, nor on parameters whose name contains one of `no_decay`."""
    decay, rest = [], []
    for name, p in model.named_parameters():
        skip = p.ndim < 2 or any(part in name for part in no_decay)
        (rest if skip else decay).append(p)
    return [
        dict(params=decay, weight_decay=weight_decay),
        dict(params=rest, weight_decay=0.0),
    ]


def adamw(
    model: nn.Module,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    no_decay: tuple[str, ...] = ("pos_embedding", "class_token"),
) -> torch.optim.AdamW:
    """The usual Transformer optimiser: AdamW, decay on matrices only (a ViT's
    position table and class token are embeddings, not weights to shrink)."""
    return torch.optim.AdamW(_decay_groups(model, weight_decay, no_decay), lr=lr)


def sgd_nesterov(
    model: nn.Module, lr: float = 0.2, weight_decay: float = 5e-4
) -> torch.optim.SGD:
    """The usual ResNet optimiser: SGD, Nesterov momentum 0.9, decay on conv and
    linear weights only (not on BatchNorm scales and shifts)."""
    groups = _decay_groups(model, weight_decay, ())
    return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)


def warmup_cosine(fraction: float, warmup: float) -> float:
    """The learning-rate multiplier at `fraction` in [0, 1] of the budget."""
    if fraction < warmup:
        return fraction / warmup
    progress_ = min(1.0, (fraction - warmup) / (1.0 - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress_))


def train_classifier(
    model: nn.Module,
    train: TensorData,
    val: TensorData | None,
    *,
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    epochs: int | None = None,
    seconds: float | None = None,
    batch_size: int = 256,
    warmup: float = 0.05,
    label_smoothing: float = 0.1,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    evals: int = 10,
    device: torch.device | str = "cpu",
    show_progress: bool = True,
) -> Run:
    """Train `model` on `train` for `epochs` or for `seconds` of training time (exactly
    one of the two), with the warm-up + cosine schedule above on every parameter
    group's initial lr, label-smoothed cross-entropy, mixed precision on CUDA.
    Validation accuracy on `val` is measured `evals` times, evenly spaced in the
    budget (and not counted in it)."""
    if (epochs is None) == (seconds is None):
        raise ValueError("give exactly one of epochs= and seconds=")
    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    if seconds is not None and not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    if not 0 < warmup < 1:
        raise ValueError(f"warmup must be in (0, 1), got {warmup!r}")
    device = torch.device(device)
    model.to(device)
    batches = loader(
        train, batch_size, shuffle=True, device=device, augment=augment, drop_last=True
    )
    if len(batches) == 0:
        raise ValueError(f"batch_size={batch_size} exceeds the {len(train)} images")
    optimizer = make_optimizer(model)
    base = [group["lr"] for group in optimizer.param_groups]
    total = None if epochs is None else epochs * len(batches)
    dtype = amp_dtype(device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    run, next_eval = Run(), 1
    bar = progress(
        total=total or evals,
        desc="train",
        disable=not show_progress,
        unit="step" if total else "eval",
    )
    while True:
        for xb, yb in batches:
            start = time.perf_counter()
            done = run.steps / total if total else run.seconds / seconds
            for group, lr in zip(optimizer.param_groups, base):
                group["lr"] = lr * warmup_cosine(done, warmup)
            model.train()
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = F.cross_entropy(model(xb), yb, label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            run.losses.append(loss.item())
            run.steps, run.images = run.steps + 1, run.images + len(yb)
            run.seconds += time.perf_counter() - start
            done = run.steps / total if total else run.seconds / seconds
            if total:
                bar.update(1)
            if done >= next_eval / evals or done >= 1:
                acc = float("nan")
                if val is not None:
                    acc = evaluate(
                        model, loader(val, 1000, device=device), device=device
                    )["accuracy"]
                run.evals.append((run.steps, run.seconds, acc))
                next_eval += 1
                if not total:
                    bar.update(1)
                bar.set_postfix(val_acc=f"{acc:.3f}", loss=f"{run.losses[-1]:.3f}")
            if done >= 1:
                bar.close()
                return run
