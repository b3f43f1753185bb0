"""One training loop for the whole book: `fit`, `evaluate`, a `History`, checkpoints."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .runtime import amp_dtype
from .runtime import device as default_device

Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "step",
    disable: bool = False,
) -> tqdm:
    """The book's progress bar: plain text on stdout, redrawn at most once a second, so
    it reads well live and as a stored notebook output. Use for hand-written loops;
    `fit` uses it too."""
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        disable=disable,
        file=sys.stdout,
        mininterval=1.0,
        ncols=100,
    )


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction of correct top-1 predictions. logits: (B, K); y: (B,) class indices in
    0..K-1 (or logits (..., K) and y (...)). A y of another shape, e.g. (B, 1), or a
    label outside 0..K-1 (e.g. -1) is an error, not a silently wrong fraction."""
    if logits.dim() == 0 or tuple(y.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"accuracy needs logits (..., K) and class indices y of shape (...): got "
            f"logits {tuple(logits.shape)} and y {tuple(y.shape)}"
        )
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise TypeError(f"accuracy needs integer class indices y, got {y.dtype}")
    k = logits.shape[-1]
    if y.numel():
        in_range = ((y >= 0) & (y < k)).all()
        if y.device.type != "cuda":
            if not in_range:
                low, high = y.min().item(), y.max().item()
                raise ValueError(
                    f"accuracy: labels must lie in 0..{k - 1} for {k} logits, got "
                    f"labels from {low} to {high}"
                )
        else:  # checked on the device, without a host sync per training step
            torch._assert_async(in_range, f"accuracy: labels outside 0..{k - 1}")
    return (logits.argmax(dim=-1) == y).float().mean()


@dataclass
class History:
    """What `fit` measured: one dict per epoch (train_loss, val_accuracy, lr, seconds,
    ...) and the training loss of every step."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)

    def __getitem__(self, key: str) -> list[float]:
        return [e[key] for e in self.epochs if key in e]

    def keys(self) -> list[str]:
        return list(dict.fromkeys(k for e in self.epochs for k in e))

    def last(self, key: str) -> float:
        return self[key][-1]

    @property
    def seconds(self) -> float:
        """Total training wall time, in seconds."""
        return sum(self["seconds"])

    def state_dict(self) -> dict:
        return {"epochs": self.epochs, "steps": self.steps}

    @classmethod
    def from_state_dict(cls, state: dict) -> History:
        return cls(list(state["epochs"]), list(state["steps"]))


def _to_device(xb, dev: torch.device):
    """A batch's inputs on `dev`: one tensor, or a tuple/list of tensors (e.g. padded
    token ids and their lengths) that `_forward` unpacks into the model's arguments."""
    if isinstance(xb, (tuple, list)):
        return tuple(_to_device(part, dev) for part in xb)
    return xb.to(dev, non_blocking=True)


def _forward(model, xb):
    return model(*xb) if isinstance(xb, tuple) else model(xb)


def _autocast(dev: torch.device, enabled: bool):
    dtype = amp_dtype(dev)
    if not enabled or dtype is None:
        return nullcontext()
    return torch.autocast(device_type=dev.type, dtype=dtype)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    *,
    loss_fn: Callable = F.cross_entropy,
    metrics: dict[str, Metric] | None = None,
    device: torch.device | None = None,
    amp: bool = True,
) -> dict[str, float]:
    """Mean loss and metrics of `model` over `loader`, weighted by batch size."""
    _check_model(model)
    dev = device or _model_device(model)
    metrics = {"accuracy": accuracy} if metrics is None else metrics
    was_training = model.training
    model.eval()
    totals = {name: torch.zeros((), device=dev) for name in ["loss", *metrics]}
    count = 0
    for xb, yb in loader:
        xb, yb = _to_device(xb, dev), yb.to(dev, non_blocking=True)
        with _autocast(dev, amp):
            out = _forward(model, xb)
        out = out.float()
        totals["loss"] += loss_fn(out, yb) * len(yb)
        for name, metric in metrics.items():
            totals[name] += metric(out, yb) * len(yb)
        count += len(yb)
    model.train(was_training)
    return {name: (t / max(count, 1)).item() for name, t in totals.items()}


_progress_bar = progress  # `fit` has an argument named `progress`


def fit(
    model: nn.Module,
    train_loader: Iterable,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable = F.cross_entropy,
    val_loader: Iterable | None = None,
    metrics: dict[str, Metric] | None = None,
    scheduler=None,
    scheduler_per: str = "step",
    clip_grad_norm: float | None = None,
    amp: bool = True,
    compile: bool = False,
    device: torch.device | None = None,
    history: History | None = None,
    progress: bool = True,
) -> History:
    """Train `model` for `epochs` and return its `History`.

    train_loader yields (x: (B, ...), y: (B, ...)); loss_fn(model(x), y) -> scalar.
    x may be a tuple of tensors (e.g. token ids and lengths): the model gets model(*x).
    `scheduler` steps after every optimiser step (`scheduler_per="step"`) or every epoch
    ("epoch"). Mixed precision (bf16, or fp16 with loss scaling) is used on CUDA when
    `amp` is true. Pass a previous `history` to resume: epochs are appended to it.
    """
    _check_fit_arguments(model, optimizer, epochs, scheduler_per, clip_grad_norm)
    dev = device or default_device()
    model.to(dev)
    step_model = torch.compile(model) if compile else model
    metrics = {"accuracy": accuracy} if metrics is None else metrics
    history = history or History()
    scaler = torch.amp.GradScaler(
        dev.type, enabled=amp and amp_dtype(dev) == torch.float16
    )
    first = len(history.epochs)
    bar = _progress_bar(
        total=epochs * len(train_loader), desc="fit", disable=not progress
    )
    for epoch in range(first, first + epochs):
        model.train()
        start = time.perf_counter()
        totals = {name: torch.zeros((), device=dev) for name in ["loss", *metrics]}
        count, step_losses = 0, []
        for xb, yb in train_loader:
            xb, yb = _to_device(xb, dev), yb.to(dev, non_blocking=True)
            with _autocast(dev, amp):
                out = _forward(step_model, xb)
                loss = loss_fn(out, yb)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if clip_grad_norm is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None and scheduler_per == "step":
                scheduler.step()
            with torch.no_grad():
                detached = loss.detach().float()
                step_losses.append(detached)  # tensors: no device sync per step
                totals["loss"] += detached * len(yb)
                for name, metric in metrics.items():
                    totals[name] += metric(out.detach().float(), yb) * len(yb)
            count += len(yb)
            bar.update(1)
        if count == 0:
            bar.close()
            raise ValueError("fit: train_loader yielded no batches")
        if scheduler is not None and scheduler_per == "epoch":
            scheduler.step()
        record = {"epoch": epoch + 1}
        record.update({f"train_{k}": (v / count).item() for k, v in totals.items()})
        if val_loader is not None:
            scores = evaluate(
                model, val_loader, loss_fn=loss_fn, metrics=metrics, device=dev, amp=amp
            )
            record.update({f"val_{k}": v for k, v in scores.items()})
        record["lr"] = optimizer.param_groups[0]["lr"]
        record["seconds"] = time.perf_counter() - start
        history.epochs.append(record)
        history.steps.extend(torch.stack(step_losses).tolist())
        if progress:
            bar.write(
                f"epoch {epoch + 1:>3}  {_summary(record)}  ({record['seconds']:.1f} s)"
            )
    bar.close()
    return history


def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module, got {type(model).__name__}"
            + (" (pass the module, not its parameters)" if _is_params(model) else "")
        )


def _is_params(obj) -> bool:
    """A tensor, a generator (model.parameters()) or a list of tensors."""
    if isinstance(obj, (list, tuple)):
        return bool(obj) and all(isinstance(p, torch.Tensor) for p in obj)
    return isinstance(obj, torch.Tensor) or hasattr(obj, "__next__")


def _model_device(model: nn.Module) -> torch.device:
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _check_fit_arguments(model, optimizer, epochs, scheduler_per, clip_grad_norm):
    """fit's arguments, checked before anything trains, naming the one that is wrong."""
    _check_model(model)
    if not all(hasattr(optimizer, a) for a in ("step", "zero_grad", "param_groups")):
        hint = " (build one: torch.optim.SGD(model.parameters(), lr=...))"
        raise TypeError(
            "optimizer must be a torch.optim.Optimizer (or have step, zero_grad and "
            f"param_groups), got {type(optimizer).__name__}"
            + (hint if _is_params(optimizer) else "")
        )
    own = {id(p) for p in model.parameters()}
    if not any(id(p) in own for g in optimizer.param_groups for p in g["params"]):
        raise ValueError(
            "optimizer holds none of the model's parameters: training would change "
            "nothing (was it built for another model?)"
        )
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    if scheduler_per not in ("step", "epoch"):
        raise ValueError(
            f'scheduler_per must be "step" or "epoch", got {scheduler_per!r}'
        )
    if clip_grad_norm is not None and not clip_grad_norm > 0:
        raise ValueError(f"clip_grad_norm must be positive, got {clip_grad_norm!r}")


def _summary(record: dict[str, float]) -> str:
    keys = [k for k in record if k.startswith(("train_", "val_"))]
    return "  ".join(f"{k} {record[k]:.4f}" for k in keys)


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    history: History | None = None,
    **extra,
) -> Path:
    """Save model (and optimiser, scheduler, history, extra values) atomically to
    `path`."""
    _check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "extra": extra}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    if history is not None:
        state["history"] = history.state_dict()
    part = path.with_name(path.name + ".part")
    torch.save(state, part)
    os.replace(part, path)
    return path


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    map_location: str | torch.device = "cpu",
) -> tuple[History, dict]:
    """Restore what `save_checkpoint` saved (with `weights_only=True`: no pickled code
    runs). Returns the saved history (empty if none) and the extra values."""
    _check_model(model)
    state = torch.load(path, map_location=map_location, weights_only=True)
    model.load_state_dict(state["model"])
    if optimizer is not None and "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and "scheduler" in state:
        scheduler.load_state_dict(state["scheduler"])
    history = (
        History.from_state_dict(state["history"]) if "history" in state else History()
    )
    return history, state["extra"]
