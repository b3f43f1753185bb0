"""Regularisers and training stabilisers from scratch (Part I, chapter 5): inverted
dropout, L1/L2 penalties and decoupled weight decay, early stopping, Xavier/He
initialisation scales, and gradient clipping by global norm or by value.

Each piece has a PyTorch counterpart that the tests (`tests/test_scratch_regularize.py`)
compare it with: `F.dropout` / `nn.Dropout`, `torch.optim.AdamW`'s decay step,
`nn.init.xavier_normal_` / `kaiming_normal_`, `nn.utils.clip_grad_norm_` /
`clip_grad_value_`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

__all__ = [
    "dropout",
    "Dropout",
    "l1_penalty",
    "l2_penalty",
    "decay_weights_",
    "EarlyStopping",
    "xavier_std",
    "he_std",
    "clip_grad_norm_",
    "clip_grad_value_",
]


# ---------------------------------------------------------------- dropout


def _check_p(p: float) -> None:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise ValueError(f"dropout probability p must be in [0, 1], got {p!r}")


def dropout(
    x: torch.Tensor,
    p: float,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Inverted dropout. x: any shape -> same shape.

    Training: keep each value with probability 1 − p and scale the survivors by
    1/(1 − p), so E[output] = x and evaluation needs no rescaling. Eval (or p = 0): the
    identity. p = 1 drops everything: the output and its gradient are zeros. The mask
    is drawn with `bernoulli_(1 − p)`, the same call PyTorch's CPU kernel makes, so
    with the same seed the masks agree (checked in the tests on CPU).
    """
    _check_p(p)
    if not training or p == 0:
        return x
    if p == 1:  # everything dropped; avoid 0/0, keep the graph (gradient 0, as PyTorch)
        return x * 0.0
    mask = torch.empty_like(x).bernoulli_(1 - p, generator=generator)
    # multiply by the reciprocal, as PyTorch does (the same rounding)
    return x * mask * (1.0 / (1 - p))


class Dropout(nn.Module):
    """`dropout` as a layer: active in `model.train()`, the identity in `model.eval()`
    (like `nn.Dropout`)."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        _check_p(p)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


# ---------------------------------------------------------- penalties and weight decay


def _param_list(params: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """`params` as a list; a single tensor is refused (iterating it would give its
    rows), as `torch.optim` refuses it."""
    if isinstance(params, torch.Tensor):
        raise TypeError(
            "params must be an iterable of tensors (e.g. model.parameters() or [w]), "
            f"not a single tensor of shape {tuple(params.shape)}"
        )
    return list(params)


def _check_nonnegative(**values: float) -> None:
    for name, value in values.items():
        if not value >= 0:  # also catches NaN
            raise ValueError(f"{name} must be ≥ 0, got {value}")


def _weights(params: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors a penalty acts on: matrices and kernels (dim ≥ 2), not biases or norm
    gains."""
    return [p for p in _param_list(params) if p.dim() >= 2]


def _penalty(terms: list[torch.Tensor], lam: float) -> torch.Tensor:
    if not terms:  # nothing to penalise: a zero tensor, not the Python int 0
        return torch.zeros(())
    return lam * torch.stack(terms).sum()


def l2_penalty(params: Iterable[torch.Tensor], lam: float) -> torch.Tensor:
    """(λ/2) Σ‖W‖² over the weight tensors (dim ≥ 2). Its gradient is λW, so adding it
    to the loss is exactly `weight_decay=λ` in `torch.optim.SGD` / `Adam` (coupled L2).
    Returns a 0-dim tensor in the weights' dtype; λ must be ≥ 0."""
    _check_nonnegative(lam=lam)
    return _penalty([0.5 * (w * w).sum() for w in _weights(params)], lam)


def l1_penalty(params: Iterable[torch.Tensor], lam: float) -> torch.Tensor:
    """λ Σ|W| over the weight tensors (dim ≥ 2); its (sub)gradient is λ·sign(W), 0 at
    W = 0 (as autograd's |·|). Returns a 0-dim tensor; λ must be ≥ 0."""
    _check_nonnegative(lam=lam)
    return _penalty([w.abs().sum() for w in _weights(params)], lam)


@torch.no_grad()
def decay_weights_(
    params: Iterable[torch.Tensor], lr: float, weight_decay: float
) -> None:
    """Decoupled weight decay, θ ← (1 − ηλ)·θ, applied to the parameters directly (not
    through the gradient). Followed by an Adam step without decay this is AdamW's
    update. lr and weight_decay must be ≥ 0; weight_decay = 0 leaves the parameters
    unchanged."""
    params = _param_list(params)
    _check_nonnegative(lr=lr, weight_decay=weight_decay)
    for p in params:
        p.mul_(1 - lr * weight_decay)


# ---------------------------------------------------------------- early stopping


class EarlyStopping:
    """Stop when the validation loss has not improved by more than `min_delta` for
    `patience` consecutive epochs (Prechelt 1998). Call `step(val_loss)` once per epoch;
    it returns True when training should stop. `best_epoch` (1-based) is where the
    weights worth keeping were, and `improved` says whether the last call set a new best
    (the moment to save them)."""

    def __init__(self, patience: int = 5, min_delta: float = 0.0):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be an int ≥ 1, got {patience!r}")
        _check_nonnegative(min_delta=min_delta)
        self.patience, self.min_delta = patience, min_delta
        self.best = math.inf
        self.best_epoch = 0
        self.epoch = 0
        self.bad_epochs = 0
        self.improved = False

    def step(self, val_loss: float) -> bool:
        self.epoch += 1
        self.improved = val_loss < self.best - self.min_delta  # NaN never improves
        if self.improved:
            self.best, self.best_epoch, self.bad_epochs = val_loss, self.epoch, 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience


# ---------------------------------------------------------------- initialisation scales


def _check_fans(**fans: int) -> None:
    for name, n in fans.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{name} must be a positive int, got {n!r}")


def xavier_std(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    """Glorot/Xavier normal std: gain·√(2/(fan_in + fan_out)), keeping the variance of
    activations (forward) and gradients (backward) about constant through linear/tanh
    layers."""
    _check_fans(fan_in=fan_in, fan_out=fan_out)
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def he_std(fan_in: int, gain: float = math.sqrt(2.0)) -> float:
    """He/Kaiming normal std (fan-in mode): gain/√fan_in, gain √2 for ReLU, which zeroes
    half of its input and so halves the second moment at every layer."""
    _check_fans(fan_in=fan_in)
    return gain / math.sqrt(fan_in)


# ---------------------------------------------------------------- gradient clipping


def _grads(parameters: Iterable[torch.Tensor] | torch.Tensor) -> list[torch.Tensor]:
    if isinstance(parameters, torch.Tensor):  # one tensor, as torch accepts
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


@torch.no_grad()
def clip_grad_norm_(
    parameters: Iterable[torch.Tensor] | torch.Tensor,
    max_norm: float,
    norm_type: float = 2.0,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Rescale all gradients together so that their global `norm_type`-norm is at most
    `max_norm`.

    The global norm is the norm of all gradients concatenated into one vector, computed
    as the norm of the per-tensor norms. The direction of the full gradient is kept;
    only its length is capped: every gradient is multiplied by
    min(1, max_norm/(norm + eps)), as in `torch.nn.utils.clip_grad_norm_`. Returns the
    total norm *before* clipping (a 0-dim tensor). max_norm ≥ 0, norm_type > 0.
    """
    _check_nonnegative(max_norm=max_norm, eps=eps)
    norm_type = float(norm_type)
    if not norm_type > 0:
        raise ValueError(f"norm_type must be > 0 (or inf), got {norm_type}")
    grads = _grads(parameters)
    if not grads:
        return torch.tensor(0.0)
    per_tensor = torch.stack([torch.linalg.vector_norm(g, norm_type) for g in grads])
    total = torch.linalg.vector_norm(per_tensor, norm_type)
    scale = torch.clamp(max_norm / (total + eps), max=1.0)
    for g in grads:
        g.mul_(scale.to(g.dtype))
    return total


@torch.no_grad()
def clip_grad_value_(
    parameters: Iterable[torch.Tensor] | torch.Tensor, clip_value: float
) -> None:
    """Clamp every gradient entry to [−clip_value, clip_value] (changes the direction,
    unlike clipping by norm), like `torch.nn.utils.clip_grad_value_`."""
    _check_nonnegative(clip_value=clip_value)
    for g in _grads(parameters):
        g.clamp_(-clip_value, clip_value)
