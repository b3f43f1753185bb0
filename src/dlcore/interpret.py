"""Looking inside a trained network: hooks, saliency, Grad-CAM, diagnostics, LR finder.

Named `interpret` (not `inspect`) so that it never shadows the standard library's
`inspect`. The network the chapter inspects, `GapCNN`, lives in `dlcore.models.gapcnn`.

- `record_activations`     forward hooks that keep the outputs of named modules.
- `saliency`, `smoothgrad` vanilla gradient maps (Simonyan et al. 2014) and their noisy
                           average (Smilkov et al. 2017).
- `gradcam_map`, `GradCAM` Grad-CAM (Selvaraju et al. 2017) with a forward hook and a
                           tensor hook.
- `class_activation_map`   CAM (Zhou et al. 2016) from the last feature maps and the
                           linear weights (signed, as in the paper: no ReLU).
- `normalize_maps`         each map divided by its largest |value|; zero maps stay 0.
- `randomized_copy`, `rank_correlation` the model-randomisation sanity check (Adebayo et
                           al. 2018).
- `grad_norms`, `dead_fraction`, `ActivationStats` per-layer gradient flow, dead ReLUs,
                           activation statistics and histograms during training.
- `lr_find`, `LRFinderResult` the learning-rate range test (Smith 2017; fastai's
                           `lr_find`).

Shapes: images x: (B, C, H, W); feature maps A: (B, K, h, w); maps (B, h, w) or
(B, H, W).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "record_activations",
    "saliency",
    "smoothgrad",
    "gradcam_map",
    "GradCAM",
    "class_activation_map",
    "normalize_maps",
    "randomized_copy",
    "rank_correlation",
    "grad_norms",
    "dead_fraction",
    "ActivationStats",
    "lr_find",
    "LRFinderResult",
]


def _submodules(
    model: nn.Module, names: Iterable[str], arg: str
) -> dict[str, nn.Module]:
    """{name: sub-module} for each name; a ValueError names `arg` and a missing name."""
    if isinstance(names, str):
        raise TypeError(
            f"{arg} must be a list of module names, not the string {names!r}"
        )
    modules = dict(model.named_modules())
    found = {}
    for n in names:
        if n not in modules:
            some = ", ".join(repr(k) for k in list(modules)[1:6])
            raise ValueError(
                f"{arg}: the model has no sub-module {n!r} (it has {some}, …)"
            )
        found[n] = modules[n]
    return found


def _check_images(x: torch.Tensor, arg: str = "x") -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{arg} must be a (B, C, H, W) tensor, got {shape}")
    if len(x) == 0:
        raise ValueError(f"{arg} is an empty batch")


# ---------------------------------------------------------------- forward hooks


@contextmanager
def record_activations(
    model: nn.Module, names: Iterable[str]
) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, every forward pass stores the output of each named sub-module
    (`dict(model.named_modules())[name]`) in the yielded dict, detached and copied (so
    a later in-place op such as `ReLU(inplace=True)` cannot change it). Hooks are
    removed on exit."""
    modules = _submodules(model, names, "names")
    store: dict[str, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(
            lambda m, i, out, n=n: store.__setitem__(n, out.detach().clone())
        )
        for n, m in modules.items()
    ]
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


# ---------------------------------------------------------------- input gradients


def _targets(logits: torch.Tensor, target) -> torch.Tensor:
    """target: None (the predicted class), an int or (B,) classes -> (B,) int64."""
    n, k = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    if isinstance(target, bool) or (
        isinstance(target, torch.Tensor) and target.is_floating_point()
    ):
        raise TypeError(f"target must be None, an int or (B,) ints, not {target!r}")
    if isinstance(target, int):
        t = torch.full((n,), target, dtype=torch.long, device=logits.device)
    else:
        t = torch.as_tensor(target, device=logits.device).long().reshape(-1)
        if len(t) != n:
            raise ValueError(f"target has {len(t)} classes for a batch of {n}")
    if len(t) and (t.min() < 0 or t.max() >= k):
        raise ValueError(f"target must be classes in 0..{k - 1}, got {t.tolist()}")
    return t


def _input_gradient(
    model: nn.Module, x: torch.Tensor, target
) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        t = _targets(logits, target)
        (grad,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), x)
    return grad, t


def saliency(model: nn.Module, x: torch.Tensor, target=None) -> torch.Tensor:
    """Vanilla gradient map (Simonyan et al. 2014): max over channels of |∂ y_c / ∂ x|.
    x: (B, C, H, W); target: None (the predicted class), an int or (B,) classes
    -> (B, H, W), in x's dtype. Samples do not interact (call `model.eval()` first if it
    has BatchNorm/Dropout)."""
    _check_images(x)
    grad, _ = _input_gradient(model, x, target)
    return grad.abs().amax(dim=1)


def smoothgrad(
    model: nn.Module,
    x: torch.Tensor,
    target=None,
    *,
    samples: int = 16,
    noise: float = 0.15,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017): the gradient averaged over `samples` copies
    of x with Gaussian noise of std `noise` × (max − min of each image), then max over
    channels of |·|. The class is fixed from the clean input.
    x: (B, C, H, W) -> (B, H, W)."""
    _check_images(x)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an int >= 1, not {samples!r}")
    if not noise >= 0:  # also refuses nan
        raise ValueError(f"noise must be >= 0, not {noise!r}")
    with torch.no_grad():
        t = _targets(model(x), target)
    span = x.amax(dim=(1, 2, 3), keepdim=True) - x.amin(dim=(1, 2, 3), keepdim=True)
    total = torch.zeros_like(x)
    for _ in range(samples):
        # drawn on the CPU (where `generator` lives), then moved
        eps = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        total += _input_gradient(model, x + noise * span * eps, t)[0]
    return (total / samples).abs().amax(dim=1)


# ---------------------------------------------------------------- CAM and Grad-CAM


def gradcam_map(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM from feature maps A and ∂y_c/∂A, both (B, K, h, w):
    α_k = mean_ij ∂y_c/∂A_kij (one weight per channel), map = ReLU(Σ_k α_k A_k)
    -> (B, h, w)."""
    if activations.dim() != 4 or activations.shape != gradients.shape:
        raise ValueError(
            "activations and gradients must both be (B, K, h, w), got "
            f"{tuple(activations.shape)} and {tuple(gradients.shape)}"
        )
    alpha = gradients.mean(dim=(2, 3), keepdim=True)
    return F.relu((alpha * activations).sum(dim=1))


def class_activation_map(
    activations: torch.Tensor, weight: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """CAM (Zhou et al. 2016) for a network `linear(GAP(A))`: M_c = Σ_k w_{c,k} A_k,
    signed as in the paper (no ReLU; Grad-CAM adds one). activations A: (B, K, h, w);
    weight: (classes, K) of the linear layer; target: (B,) classes -> (B, h, w)."""
    if activations.dim() != 4:
        raise ValueError(
            f"activations must be (B, K, h, w), got {tuple(activations.shape)}"
        )
    if weight.dim() != 2 or weight.shape[1] != activations.shape[1]:
        raise ValueError(
            f"weight must be (classes, {activations.shape[1]}), "
            f"got {tuple(weight.shape)}"
        )
    t = torch.as_tensor(target, device=weight.device).long().reshape(-1)
    if len(t) != len(activations):
        raise ValueError(
            f"target has {len(t)} classes for a batch of {len(activations)}"
        )
    if len(t) and (t.min() < 0 or t.max() >= len(weight)):
        raise ValueError(f"target must be classes in 0..{len(weight) - 1}")
    return torch.einsum("bk,bkhw->bhw", weight[t], activations)


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Each map (B, ...) divided by its largest |value|, so that maps of different
    images share one colour scale ([0, 1] for maps ≥ 0). A map that is 0 everywhere
    (e.g. Grad-CAM with zero gradients) stays 0 instead of becoming nan."""
    if maps.dim() < 2:
        raise ValueError(f"maps must be (B, ...) with B maps, got {tuple(maps.shape)}")
    peak = maps.abs().flatten(1).amax(dim=1).view(-1, *([1] * (maps.dim() - 1)))
    return torch.where(peak > 0, maps / torch.where(peak > 0, peak, 1), 0.0)


class GradCAM:
    """Grad-CAM at one layer, written with hooks.

    A forward hook on `layer` keeps its output A and registers a tensor hook on it; the
    backward pass of y_c (run with `inputs=[A]`, so no parameter `.grad` is touched)
    calls that hook with ∂y_c/∂A. The hook hands the rest of the network a copy of A, so
    an in-place op after the layer (`ReLU(inplace=True)`) cannot overwrite A. Use as a
    context manager (or call `remove()`) to take the hooks off.
    `cam(x, target)` -> (maps (B, h, w), logits (B, classes)); `upsample=True` gives
    (B, H, W).
    """

    def __init__(self, model: nn.Module, layer: nn.Module):
        if not isinstance(layer, nn.Module) or not any(
            m is layer for m in model.modules()
        ):
            raise ValueError("layer must be a sub-module of model")
        self.model, self.activations, self.gradients = model, None, None
        self._handle = layer.register_forward_hook(self._forward_hook)

    def _forward_hook(self, module: nn.Module, inputs, output: torch.Tensor):
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise ValueError("GradCAM needs a layer whose output is (B, K, h, w)")
        self.activations = output
        if output.requires_grad:
            output.register_hook(self._save_gradient)
        return output.clone()  # downstream in-place ops modify the copy, not A

    def _save_gradient(self, grad: torch.Tensor) -> None:
        self.gradients = grad

    def __call__(
        self, x: torch.Tensor, target=None, *, upsample: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _check_images(x)
        self.activations = self.gradients = None
        # x requires grad so that A does even in a frozen model
        with torch.enable_grad():
            logits = self.model(x.detach().requires_grad_(True))
            if self.activations is None:
                raise RuntimeError("the hooked layer was not used in the forward pass")
            t = _targets(logits, target)
            logits.gather(1, t[:, None]).sum().backward(inputs=[self.activations])
        grads = self.gradients
        if grads is None:  # y_c does not depend on A
            grads = torch.zeros_like(self.activations)
        maps = gradcam_map(self.activations.detach(), grads)
        if upsample:
            maps = F.interpolate(
                maps[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False
            )[:, 0]
        self.activations = self.gradients = None
        return maps, logits.detach()

    def remove(self) -> None:
        self._handle.remove()

    def __enter__(self) -> GradCAM:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


# ---------------------------------------------------------------- sanity checks


def randomized_copy(model: nn.Module, names: Iterable[str], seed: int = 0) -> nn.Module:
    """A deep copy of `model` whose named sub-modules have freshly initialised
    parameters (`reset_parameters()`), as in the model-randomisation test of Adebayo et
    al. (2018)."""
    names = list(_submodules(model, names, "names"))
    clone = copy.deepcopy(model)
    modules = dict(clone.named_modules())
    for n in names:
        if not hasattr(modules[n], "reset_parameters"):
            raise ValueError(f"names: {n!r} has no reset_parameters()")
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for n in names:
            modules[n].reset_parameters()
    finally:
        torch.random.set_rng_state(state)
    return clone


def _average_ranks(flat: torch.Tensor) -> torch.Tensor:
    """Ranks 0 … N−1 of each row of (B, N); ties share the mean of their ranks."""
    ranks = torch.empty(flat.shape, dtype=torch.float64, device=flat.device)
    values, order = flat.sort(dim=1)
    for i in range(len(flat)):
        _, inverse, counts = torch.unique_consecutive(
            values[i], return_inverse=True, return_counts=True
        )
        first = torch.cumsum(counts, 0) - counts  # rank of the first of each tie group
        ranks[i, order[i]] = (first + (counts - 1) / 2).to(torch.float64)[inverse]
    return ranks


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation between maps, one per sample: a, b: (B, ...) -> (B,),
    float64. Ties get their average rank (as in `scipy.stats.spearmanr`); a constant map
    has no ranking, and its correlation is reported as 0 (scipy gives nan)."""
    if a.shape != b.shape or a.dim() < 2 or a[0].numel() < 2:
        raise ValueError(
            "a and b must have the same shape (B, ...) with at least 2 values per map, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.isnan().any() or b.isnan().any():
        raise ValueError("a and b must not contain nan (a nan has no rank)")
    ra, rb = (
        _average_ranks(a.reshape(len(a), -1)),
        _average_ranks(b.reshape(len(b), -1)),
    )
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    denominator = ra.norm(dim=1) * rb.norm(dim=1)
    return torch.where(
        denominator > 0, (ra * rb).sum(1) / denominator.clamp_min(1e-300), 0.0
    )


# ---------------------------------------------------------------- training diagnostics


def grad_norms(model: nn.Module, *, weights_only: bool = True) -> dict[str, float]:
    """‖∂L/∂θ‖₂ of each parameter after a backward pass (biases skipped when
    `weights_only`)."""
    return {
        n: p.grad.norm().item()
        for n, p in model.named_parameters()
        if p.grad is not None and (not weights_only or p.dim() > 1)
    }


def dead_fraction(activations: torch.Tensor) -> float:
    """Fraction of units never active (output ≤ 0 for every sample of the batch).
    A unit is a channel: activations (B, C, ...) -> a float in [0, 1]."""
    if activations.dim() < 2 or activations.shape[1] == 0 or len(activations) == 0:
        raise ValueError(
            "activations must be (B, C, ...) with B, C >= 1, "
            f"got {tuple(activations.shape)}"
        )
    per_unit = activations.transpose(0, 1).reshape(activations.shape[1], -1)
    return (per_unit.amax(dim=1) <= 0).float().mean().item()


@dataclass
class ActivationStats:
    """Forward hooks on named modules that record, at every forward pass in training
    mode (or every pass if `train_only=False`; every `every`-th pass): mean, std, dead
    fraction and a histogram over `bins`.

    After training: `stats[name]["mean" | "std" | "dead"]` are lists (one value per
    pass) and `stats[name]["hist"]` a (passes, len(bins) − 1) array of counts."""

    model: nn.Module
    names: list[str]
    bins: np.ndarray = field(default_factory=lambda: np.linspace(0.0, 4.0, 41))
    train_only: bool = True
    every: int = 1
    stats: dict = field(init=False)

    def __post_init__(self) -> None:
        if (
            isinstance(self.every, bool)
            or not isinstance(self.every, int)
            or self.every < 1
        ):
            raise ValueError(f"every must be an int >= 1, not {self.every!r}")
        bins = np.asarray(self.bins, dtype=float)
        if bins.ndim != 1 or len(bins) < 2 or not np.all(np.diff(bins) > 0):
            raise ValueError("bins must be at least 2 increasing edges")
        self.names = list(self.names)
        modules = _submodules(self.model, self.names, "names")
        self.stats = {
            n: {"mean": [], "std": [], "dead": [], "hist": []} for n in self.names
        }
        self._edges = torch.as_tensor(self.bins, dtype=torch.float32)
        self._calls = {n: 0 for n in self.names}
        self._handles = [
            modules[n].register_forward_hook(self._hook(n)) for n in self.names
        ]

    def _hook(self, name: str) -> Callable:
        def hook(module, inputs, out):
            if (self.train_only and not module.training) or self._calls[
                name
            ] % self.every:
                self._calls[name] += 1
                return
            self._calls[name] += 1
            a = out.detach().float()
            s = self.stats[name]
            s["mean"].append(a.mean().item())
            s["std"].append(a.std().item())
            s["dead"].append(dead_fraction(a))
            s["hist"].append(
                torch.histogram(
                    a.cpu().clamp(self.bins[0], self.bins[-1]), self._edges
                )[0].numpy()
            )

        return hook

    def histograms(self, name: str) -> np.ndarray:
        return np.stack(self.stats[name]["hist"])

    def remove(self) -> None:
        for h in self._handles:
            h.remove()

    def __enter__(self) -> ActivationStats:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


# ---------------------------------------------------------------- the LR range test


@dataclass
class LRFinderResult:
    """lrs and losses of every step; `smoothed`: the bias-corrected moving average of
    the loss; `suggestion`: (lr at the minimum of `smoothed`) / 10; `steepest`: lr where
    `smoothed` falls fastest (per decade of lr) before its minimum; `diverged`: stopped
    because the loss exploded."""

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestion: float
    steepest: float
    min_lr: float
    diverged: bool

    def plot(self, ax=None, title: str = "Learning-rate range test"):
        import matplotlib.pyplot as plt

        ax = ax or plt.subplots(figsize=(6, 3.6))[1]
        ax.semilogx(self.lrs, self.losses, color="0.75", lw=0.8, label="loss per step")
        ax.semilogx(self.lrs, self.smoothed, lw=2, label="smoothed loss")
        for lr, style, label in (
            (self.suggestion, "--", "suggestion = min / 10"),
            (self.steepest, ":", "steepest descent"),
        ):
            ax.axvline(lr, ls=style, color="k", lw=1, label=f"{label}: {lr:.1e}")
        top = (
            np.nanmax(self.smoothed[: max(1, int(np.argmin(self.smoothed)))])
            if len(self.smoothed) > 1
            else None
        )
        if top is not None and np.isfinite(top):
            ax.set_ylim(top=top * 1.2, bottom=max(0.0, np.nanmin(self.losses) * 0.9))
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel("training loss")
        ax.set_title(title)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, which="both")
        return ax


def lr_find(
    model: nn.Module,
    loader: Iterable,
    *,
    loss_fn: Callable = F.cross_entropy,
    optimizer_fn: Callable | None = None,
    start_lr: float = 1e-6,
    end_lr: float = 10.0,
    steps: int = 200,
    beta: float = 0.95,
    diverge: float = 4.0,
    device: torch.device | None = None,
    progress: bool = False,
) -> LRFinderResult:
    """The learning-rate range test (Smith 2017; fastai's `lr_find`).

    Trains on `loader` for up to `steps` mini-batches while the learning rate grows
    exponentially, lr_t = start_lr · (end_lr / start_lr)^(t / (steps − 1)), recording
    the loss of each step. Stops early when the smoothed loss exceeds `diverge` × its
    minimum. `optimizer_fn(params, lr)` builds the optimiser (default: SGD with momentum
    0.9). The model's weights, buffers and train/eval mode are restored afterwards, so
    the test leaves no trace. `progress`: a tqdm bar.
    """
    from .train import progress as progress_bar

    if not 0 < start_lr < end_lr < math.inf:
        raise ValueError(
            f"need 0 < start_lr < end_lr, got start_lr={start_lr}, end_lr={end_lr}"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int >= 2, not {steps!r}")
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), not {beta}")
    if not diverge > 1:
        raise ValueError(f"diverge must be > 1, not {diverge}")
    optimizer_fn = optimizer_fn or (
        lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9)
    )
    dev = device or next(model.parameters()).device
    saved_state = copy.deepcopy(model.state_dict())
    was_training = model.training
    opt = optimizer_fn(model.parameters(), start_lr)
    factor = (end_lr / start_lr) ** (1 / max(steps - 1, 1))
    lrs, losses, smoothed = [], [], []
    avg, best, diverged = 0.0, math.inf, False

    def batches():
        while True:  # cycle through the loader as often as needed
            empty = True
            for batch in loader:
                empty = False
                yield batch
            if empty:
                raise ValueError("loader yielded no batches")

    bar = progress_bar(total=steps, desc="lr_find", disable=not progress)
    try:
        model.train()
        for step, (xb, yb) in zip(range(steps), batches()):
            lr = start_lr * factor**step
            for group in opt.param_groups:
                group["lr"] = lr
            loss = loss_fn(model(xb.to(dev)), yb.to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = loss.item()
            avg = beta * avg + (1 - beta) * value
            smooth = avg / (1 - beta ** (step + 1))
            lrs.append(lr)
            losses.append(value)
            smoothed.append(smooth)
            best = min(best, smooth)
            bar.update(1)
            if not math.isfinite(smooth) or smooth > diverge * best:
                diverged = True
                break
    finally:
        bar.close()
        model.load_state_dict(saved_state)
        model.train(was_training)
    lrs_a, losses_a, sm = np.array(lrs), np.array(losses), np.array(smoothed)
    finite = np.where(np.isfinite(sm), sm, np.inf)
    i_min = int(np.argmin(finite))
    slopes = (
        np.gradient(sm[: i_min + 1], np.log10(lrs_a[: i_min + 1]))
        if i_min >= 2
        else np.zeros(1)
    )
    i_steep = int(np.argmin(slopes))
    return LRFinderResult(
        lrs_a,
        losses_a,
        sm,
        suggestion=float(lrs_a[i_min] / 10),
        steepest=float(lrs_a[i_steep]),
        min_lr=float(lrs_a[i_min]),
        diverged=diverged,
    )
