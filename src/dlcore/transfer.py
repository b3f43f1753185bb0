"""Transfer learning: reuse a trained network on a new task.

The pieces of the chapter "Transfer Learning": freeze part of a network (parameters
*and* BatchNorm statistics), give layers their own learning rates (discriminative
fine-tuning), swap the classifier head, compute features once for a frozen backbone, fit
linear probes, and load a shipped checkpoint only after its sha256 matches. Everything
works on any `nn.Module`; the defaults (`head="fc"`) fit `dlcore.models.resnet.ResNet`
and torchvision's ResNets alike. Bad arguments raise an error that names them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from .augment import normalize
from .data import ChecksumError, TensorData, file_digest
from .train import History, load_checkpoint


def _check_int(value, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, not {value!r}")


def _check_rate(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {value!r}")
    if not 0 <= value < float("inf"):  # also refuses nan
        raise ValueError(f"{name} must be finite and >= 0, not {value!r}")


# ------------------------------------------------ tasks carved out of a dataset


def take(data: TensorData, index: torch.Tensor) -> TensorData:
    """The examples `data[index]` (index: (n,) integer positions) as a `TensorData`."""
    index = torch.as_tensor(index)
    if index.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"index must hold integer positions, not {index.dtype}")
    if index.dim() != 1:
        raise ValueError(f"index must be 1-D (n,), got shape {tuple(index.shape)}")
    if len(index) and (index.min() < 0 or index.max() >= len(data.y)):
        raise ValueError(
            f"index must be positions in 0..{len(data.y) - 1}, got "
            f"{index.min().item()}..{index.max().item()}"
        )
    return TensorData(
        data.x[index], data.y[index], data.classes, data.mean, data.std, data.source
    )


def select_classes(data: TensorData, classes: Sequence[str]) -> TensorData:
    """The examples of `classes` only, relabelled 0..len(classes)-1 in the given
    order."""
    if isinstance(classes, str) or not classes:
        raise ValueError(f"classes must be a non-empty list of names, not {classes!r}")
    unknown = [c for c in classes if c not in data.classes]
    if unknown or len(set(classes)) != len(classes):
        raise ValueError(
            f"classes must be distinct names from {data.classes}; got {list(classes)}"
        )
    wanted = torch.tensor([data.classes.index(c) for c in classes])
    keep = torch.isin(data.y, wanted).nonzero().flatten()
    remap = torch.full((len(data.classes),), -1, dtype=torch.long)
    remap[wanted] = torch.arange(len(classes))
    return TensorData(
        data.x[keep],
        remap[data.y[keep]],
        list(classes),
        data.mean,
        data.std,
        data.source,
    )


def balanced_subset(data: TensorData, per_class: int, seed: int = 0) -> TensorData:
    """`per_class` random examples of every class (in a shuffled order). For one seed, a
    smaller subset is contained in a larger one, so a sweep over sizes only adds
    data."""
    _check_int(per_class, "per_class", 1)
    g = torch.Generator().manual_seed(seed)
    picks = []
    for k in range(len(data.classes)):
        members = (data.y == k).nonzero().flatten()
        if len(members) < per_class:
            raise ValueError(
                f"class {data.classes[k]!r} has {len(members)} examples, fewer than "
                f"per_class={per_class}"
            )
        picks.append(members[torch.randperm(len(members), generator=g)[:per_class]])
    index = torch.stack(picks, 1).flatten()  # interleaved: class 0, 1, ..., 0, 1, ...
    return take(data, index[torch.randperm(len(index), generator=g)])


# ------------------------------------------------ checkpoints and weights


def sha256sum(path: str | Path) -> str:
    """The hex sha256 of a file's bytes."""
    return file_digest(path, "sha256")


def load_verified(
    path: str | Path,
    model: nn.Module,
    sha256: str,
    map_location: str | torch.device = "cpu",
) -> tuple[History, dict]:
    """`dlcore.load_checkpoint(path, model)` (weights_only=True), but only after the
    file's sha256 equals `sha256`; otherwise raise `dlcore.ChecksumError` and leave
    `model` untouched."""
    if not isinstance(sha256, str) or len(sha256) != 64:
        raise ValueError(f"sha256 must be 64 hex digits, not {sha256!r}")
    got = sha256sum(path)
    if got != sha256.lower():
        raise ChecksumError(
            f"{Path(path).name}: sha256 {got}, expected {sha256}. The checkpoint is "
            "corrupt or not the one this code was written for; do not use it."
        )
    return load_checkpoint(path, model, map_location=map_location)


def hub_weights_path(weights) -> Path | None:
    """Where `torch.hub` caches a torchvision weights enum (e.g.
    `ResNet18_Weights.DEFAULT`), if the file is already there; None otherwise. Never
    downloads."""
    path = (
        Path(torch.hub.get_dir())
        / "checkpoints"
        / Path(urlparse(weights.url).path).name
    )
    return path if path.is_file() else None


# ------------------------------------------------ heads


def _head(model: nn.Module, head: str) -> nn.Module:
    old = getattr(model, head, None) if isinstance(head, str) else None
    if not isinstance(old, nn.Module):
        raise ValueError(f"head: the model has no sub-module attribute {head!r}")
    return old


def replace_head(model: nn.Module, num_classes: int, head: str = "fc") -> nn.Linear:
    """Replace the linear layer `model.<head>` by a freshly initialised one with
    `num_classes` outputs (same input size, dtype and device). Returns the new layer."""
    _check_int(num_classes, "num_classes", 1)
    old = _head(model, head)
    if not isinstance(old, nn.Linear):
        raise TypeError(f"model.{head} is a {type(old).__name__}, not nn.Linear")
    new = nn.Linear(
        old.in_features,
        num_classes,
        bias=old.bias is not None,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    setattr(model, head, new)
    return new


# ------------------------------------------------ frozen BatchNorm


class FrozenBatchNorm(nn.Module):
    """BatchNorm with fixed statistics and affine parameters, in train and eval mode:

        y = (x − μ) / √(σ² + ε) · γ + β = x · s + (β − μ s),  s = γ / √(σ² + ε),

    a per-channel affine map (channels on axis 1). μ, σ², γ, β are buffers: nothing here
    is trained and no forward pass changes them. Equals `nn.BatchNorm{1,2,3}d` in eval
    mode. The result has x's dtype (float64 in, float64 out)."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        _check_int(num_features, "num_features", 1)
        _check_rate(eps, "eps")
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    @classmethod
    def from_batchnorm(cls, bn: nn.modules.batchnorm._BatchNorm) -> FrozenBatchNorm:
        if not bn.track_running_stats or bn.running_mean is None:
            raise ValueError("a BatchNorm without running statistics cannot be frozen")
        # same device and dtype as the BatchNorm's statistics
        frozen = cls(bn.num_features, bn.eps).to(bn.running_mean)
        with torch.no_grad():
            if bn.affine:
                frozen.weight.copy_(bn.weight)
                frozen.bias.copy_(bn.bias)
            frozen.running_mean.copy_(bn.running_mean)
            frozen.running_var.copy_(bn.running_var)
        return frozen

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a BatchNorm's state dict loads as is
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[1] != self.weight.numel():
            raise ValueError(
                f"x must be (N, {self.weight.numel()}, ...), got {tuple(x.shape)}"
            )
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * scale.view(shape).to(x.dtype) + shift.view(shape).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}"


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm inside `module` (in place) by a `FrozenBatchNorm` with
    its current statistics. Returns the module (a new one if `module` itself is a
    BatchNorm)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return FrozenBatchNorm.from_batchnorm(module)
    for name, child in module.named_children():
        setattr(module, name, freeze_batchnorm(child))
    return module


# ------------------------------------------------ freezing


def _under(name: str, prefix: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def freeze(
    model: nn.Module, except_: str | Sequence[str] = (), *, batchnorm: str = "freeze"
) -> nn.Module:
    """Stop training every part of `model` except the submodules named in `except_`
    (qualified names such as "fc" or "stages.2"; every name must exist). In place;
    returns `model`.

    Frozen parameters get `requires_grad=False`: no gradient is computed for them and
    optimisers skip them. BatchNorm layers in the frozen part are turned into
    `FrozenBatchNorm` (`batchnorm="freeze"`, the default), so `model.train()` can no
    longer switch them to batch statistics or update their running averages;
    `batchnorm="train"` leaves them as they are (the mistake the chapter demonstrates).
    """
    keep = (except_,) if isinstance(except_, str) else tuple(except_)
    if batchnorm not in ("freeze", "train"):
        raise ValueError(f"batchnorm must be 'freeze' or 'train', not {batchnorm!r}")
    names = [n for n, _ in model.named_modules()]
    for prefix in keep:
        if not any(_under(n, prefix) for n in names):
            raise ValueError(
                f"except_: no submodule named {prefix!r}; e.g. "
                f"{', '.join(n for n in names[1:6])}"
            )
    for name, p in model.named_parameters():
        p.requires_grad_(any(_under(name, k) for k in keep))
    if batchnorm == "freeze":
        for name, module in list(model.named_modules()):
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
                _under(name, k) for k in keep
            ):
                parent, _, attr = name.rpartition(".")
                setattr(
                    model.get_submodule(parent),
                    attr,
                    FrozenBatchNorm.from_batchnorm(module),
                )
    return model


def unfreeze(model: nn.Module) -> nn.Module:
    """Make every parameter trainable again (frozen BatchNorm layers stay frozen)."""
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (or of those with `requires_grad`)."""
    return sum(
        p.numel() for p in model.parameters() if p.requires_grad or not trainable_only
    )


# ------------------------------------------------ learning rates per layer


def param_groups(
    model: nn.Module, lrs: Mapping[str, float], **group_options
) -> list[dict]:
    """Optimizer parameter groups with one learning rate per part of the model.

    lrs: submodule prefix -> learning rate (finite, >= 0), e.g.
    {"fc": 1e-2, "stages.2": 3e-3, "": 1e-3}; each parameter goes to its longest
    matching prefix ("" matches everything). Frozen parameters (`requires_grad=False`)
    are left out; a trainable parameter that matches nothing is an error.
    `group_options` (e.g. weight_decay=5e-4) are added to every group. Empty groups are
    dropped.
    """
    if not isinstance(lrs, Mapping) or not lrs:
        raise ValueError(f"lrs must be a non-empty {{prefix: lr}} mapping, not {lrs!r}")
    for k, lr in lrs.items():
        _check_rate(lr, f"lrs[{k!r}]")
    order = sorted(lrs, key=len, reverse=True)
    groups: dict[str, list[nn.Parameter]] = {k: [] for k in lrs}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        match = next((k for k in order if _under(name, k)), None)
        if match is None:
            raise ValueError(
                f"lrs: parameter {name!r} matches no prefix in {list(lrs)}; add one, "
                "or '' for the rest"
            )
        groups[match].append(p)
    return [
        {"params": ps, "lr": lrs[k], "name": k or "(rest)", **group_options}
        for k, ps in groups.items()
        if ps
    ]


def layerwise_lrs(
    prefixes: Sequence[str], top_lr: float, decay: float
) -> dict[str, float]:
    """Learning rates that shrink by `decay` per step down the network: the last prefix
    (the head) gets `top_lr`, the one before `top_lr / decay`, and so on (Howard and
    Ruder, 2018)."""
    if isinstance(prefixes, str) or not prefixes:
        raise ValueError(
            f"prefixes must be a non-empty list of names, not {prefixes!r}"
        )
    _check_rate(top_lr, "top_lr")
    _check_rate(decay, "decay")
    if decay == 0:
        raise ValueError("decay must be > 0")
    n = len(prefixes)
    return {p: top_lr / decay ** (n - 1 - i) for i, p in enumerate(prefixes)}


# ------------------------------------------------ features and linear probes


@torch.no_grad()
def extract_features(
    model: nn.Module,
    loader: Iterable,
    *,
    head: str = "fc",
    device: torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `model` without its head (`model.<head>` replaced by the identity, in eval
    mode) over `loader`; return the stacked features (N, D) and labels (N,), on the CPU.
    Restores the model."""
    old, was_training = _head(model, head), model.training
    dev = device or next(model.parameters()).device
    setattr(model, head, nn.Identity())
    model.eval()
    try:
        feats, labels = [], []
        for xb, yb in loader:
            feats.append(model(xb.to(dev)).float().flatten(1).cpu())
            labels.append(yb.cpu())
    finally:
        setattr(model, head, old)
        model.train(was_training)
    if not feats:
        raise ValueError("loader yielded no batches")
    return torch.cat(feats), torch.cat(labels)


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    weight_decay: float = 1e-3,
    steps: int = 100,
) -> float:
    """Test accuracy of a multinomial logistic regression on fixed features.

    Features are standardised with the training mean and std
    (`dlcore.augment.normalize`, each feature a channel); the L2-penalised
    cross-entropy (penalty `weight_decay`·‖W‖²/2) is minimised full-batch in float64
    with L-BFGS for `steps` iterations.
    train_x: (N, D), train_y: (N,) int; test_x: (M, D), test_y: (M,)."""
    if train_x.dim() != 2 or test_x.dim() != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            "train_x and test_x must be (N, D) and (M, D), got "
            f"{tuple(train_x.shape)} and {tuple(test_x.shape)}"
        )
    for x, y, name in ((train_x, train_y, "train_y"), (test_x, test_y, "test_y")):
        if y.shape != (len(x),) or y.is_floating_point() or (len(y) and y.min() < 0):
            raise ValueError(f"{name} must be ({len(x)},) class indices >= 0")
    if len(train_x) < 2:
        raise ValueError("train_x needs at least 2 examples to standardise")
    _check_rate(weight_decay, "weight_decay")
    _check_int(steps, "steps", 1)
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    a, b = (
        normalize(x.double()[:, :, None, None], mean, std)[:, :, 0, 0]
        for x in (train_x, test_x)
    )
    k = int(max(train_y.max(), test_y.max())) + 1
    w = torch.zeros(a.shape[1], k, dtype=torch.float64, requires_grad=True)
    c = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, c], lr=1, max_iter=steps, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(a @ w + c, train_y) + 0.5 * weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return ((b @ w + c).argmax(1) == test_y).double().mean().item()
