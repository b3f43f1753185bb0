"""Batch normalisation and layer normalisation from scratch, with explicitly derived
backward passes.

The forward and backward functions work on plain tensors, so they can be checked line by
line against `torch.nn.functional.batch_norm` / `layer_norm`. `BatchNorm` and
`LayerNorm` wrap them as `nn.Module`s (through an `autograd.Function` whose backward is
the derived one, not autograd), so a network can train with them.

Notation (chapter 5): x̂ = (x − μ)/√(σ² + ε), y = γ x̂ + β, with μ, σ² taken per channel
over the batch (and spatial positions) for BatchNorm, and per example over the feature
dimensions for LayerNorm. For N values normalised together, with g = ∂L/∂x̂ = γ ∂L/∂y,

    ∂L/∂x = (1/√(σ² + ε)) · (g − mean(g) − x̂ · mean(g x̂)),

where the means run over the same N values.

The variance is the centred two-pass formula σ² = mean((x − μ)²), never E[x²] − E[x]²:
for values with a large mean and a small spread the latter subtracts two nearly equal
numbers and loses the variance to rounding (it can even come out negative).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "batch_norm_forward",
    "batch_norm_backward",
    "layer_norm_forward",
    "layer_norm_backward",
    "BatchNorm",
    "LayerNorm",
]


def _channel_view(x: torch.Tensor) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """For x: (B, C) or (B, C, *S): the dims BatchNorm reduces over and the shape (1, C,
    1, ...) that broadcasts a per-channel vector against x."""
    dims = (0,) + tuple(range(2, x.dim()))
    shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
    return dims, shape


@dataclass
class NormCache:
    """What the backward pass needs: the normalised input, 1/√(σ² + ε), γ, the reduced
    dims, and whether μ and σ² depended on x (training-mode BatchNorm, and LayerNorm
    always)."""

    x_hat: torch.Tensor
    inv_std: torch.Tensor  # broadcastable against x
    gamma: torch.Tensor  # broadcastable against x
    dims: tuple[int, ...]  # dims that were normalised together
    param_dims: tuple[int, ...]  # dims summed for dγ, dβ
    batch_stats: bool


def _centred_var(x: torch.Tensor, mean: torch.Tensor, dims, keepdim=False):
    """Biased variance, two-pass: mean((x − μ)²), with μ broadcastable against x."""
    centred = x - mean
    return (centred * centred).mean(dim=dims, keepdim=keepdim)


def batch_norm_forward(
    x: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    *,
    training: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[torch.Tensor, NormCache]:
    """BatchNorm forward.

    x: (B, C) or (B, C, *S); gamma, beta, running_mean, running_var: (C,).

    Training: normalise with the batch mean and *biased* variance, and update the
    running statistics in place, r ← (1 − momentum)·r + momentum·stat, where running_var
    receives the *unbiased* variance (× n/(n − 1)), exactly as PyTorch does. Eval: use
    the running statistics. Returns y (shape of x) and the cache for
    `batch_norm_backward`.
    """
    if x.dim() < 2:
        raise ValueError(f"x must be (B, C) or (B, C, *S), got shape {tuple(x.shape)}")
    channels = x.shape[1]
    for name, t in (("gamma", gamma), ("beta", beta)):
        if t.shape != (channels,):
            raise ValueError(
                f"{name} must have shape ({channels},) for x of shape "
                f"{tuple(x.shape)}, got {tuple(t.shape)}"
            )
    for name, t in (("running_mean", running_mean), ("running_var", running_var)):
        if t.shape != (channels,):
            raise ValueError(
                f"{name} must have shape ({channels},), got {tuple(t.shape)}"
            )
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    if not (eps > 0 if training else eps >= 0):  # PyTorch: eps > 0 to train
        raise ValueError(f"eps must be > 0 in training mode and ≥ 0 in eval, got {eps}")
    dims, shape = _channel_view(x)
    if training:
        n = x.numel() // channels  # values per channel
        if n < 2:
            raise ValueError(
                "BatchNorm in training mode needs more than one value per channel; "
                f"x has shape {tuple(x.shape)}"
            )
        mean = x.mean(dim=dims)
        var = _centred_var(x, mean.view(shape), dims)
        with torch.no_grad():  # the running statistics are state, not part of the graph
            running_mean.mul_(1 - momentum).add_(momentum * mean)
            running_var.mul_(1 - momentum).add_(momentum * var * n / (n - 1))
    else:
        mean, var = running_mean, running_var
    inv_std = (var + eps).rsqrt().view(shape)
    x_hat = (x - mean.view(shape)) * inv_std
    y = gamma.view(shape) * x_hat + beta.view(shape)
    return y, NormCache(x_hat, inv_std, gamma.view(shape), dims, dims, training)


def _norm_backward(
    dy: torch.Tensor, cache: NormCache
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The derived backward shared by both norms: (dx, dgamma, dbeta), y = γ x̂ + β."""
    x_hat = cache.x_hat
    dgamma = (dy * x_hat).sum(dim=cache.param_dims)
    dbeta = dy.sum(dim=cache.param_dims)
    g = dy * cache.gamma  # ∂L/∂x̂
    if not cache.batch_stats:  # μ, σ² are constants: x ↦ x̂ is a per-channel affine map
        return g * cache.inv_std, dgamma, dbeta
    # μ and σ² depend on every x in the group: subtract the two mean terms
    # (see the module docstring)
    g_mean = g.mean(dim=cache.dims, keepdim=True)
    gx_mean = (g * x_hat).mean(dim=cache.dims, keepdim=True)
    dx = cache.inv_std * (g - g_mean - x_hat * gx_mean)
    return dx, dgamma, dbeta


def batch_norm_backward(
    dy: torch.Tensor, cache: NormCache
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BatchNorm backward. dy: shape of x -> (dx: shape of x, dgamma, dbeta: (C,))."""
    return _norm_backward(dy, cache)


def layer_norm_forward(
    x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-5
) -> tuple[torch.Tensor, NormCache]:
    """LayerNorm forward over the trailing `gamma.dim()` dims.

    x: (*, *F); gamma, beta: F.

    Each example is normalised with its own mean and biased variance; there are no
    running statistics, so training and evaluation compute the same thing.
    """
    k = gamma.dim()
    if gamma.shape != beta.shape:
        raise ValueError(
            f"gamma and beta must have the same shape, got {tuple(gamma.shape)} "
            f"and {tuple(beta.shape)}"
        )
    if k == 0 or x.dim() < k or x.shape[x.dim() - k :] != gamma.shape:
        raise ValueError(
            f"x must end in the normalised shape {tuple(gamma.shape)}, "
            f"got shape {tuple(x.shape)}"
        )
    if not eps >= 0:
        raise ValueError(f"eps must be ≥ 0, got {eps}")
    dims = tuple(range(x.dim() - k, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    var = _centred_var(x, mean, dims, keepdim=True)
    inv_std = (var + eps).rsqrt()
    x_hat = (x - mean) * inv_std
    y = gamma * x_hat + beta
    return y, NormCache(x_hat, inv_std, gamma, dims, tuple(range(x.dim() - k)), True)


def layer_norm_backward(
    dy: torch.Tensor, cache: NormCache
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """LayerNorm backward. dy: shape of x -> (dx: shape of x, dgamma: F, dbeta: F)."""
    return _norm_backward(dy, cache)


class _BatchNormFn(torch.autograd.Function):
    """Autograd glue: forward = `batch_norm_forward`, backward = the derived
    `batch_norm_backward`."""

    @staticmethod
    def forward(
        ctx, x, gamma, beta, running_mean, running_var, training, momentum, eps
    ):
        y, ctx.cache = batch_norm_forward(
            x,
            gamma,
            beta,
            running_mean,
            running_var,
            training=training,
            momentum=momentum,
            eps=eps,
        )
        return y

    @staticmethod
    def backward(ctx, dy):
        dx, dgamma, dbeta = batch_norm_backward(dy, ctx.cache)
        return dx, dgamma, dbeta, None, None, None, None, None


class _LayerNormFn(torch.autograd.Function):
    """Autograd glue: forward = `layer_norm_forward`, backward = the derived
    `layer_norm_backward`."""

    @staticmethod
    def forward(ctx, x, gamma, beta, eps):
        y, ctx.cache = layer_norm_forward(x, gamma, beta, eps)
        return y

    @staticmethod
    def backward(ctx, dy):
        dx, dgamma, dbeta = layer_norm_backward(dy, ctx.cache)
        return dx, dgamma, dbeta, None


class BatchNorm(nn.Module):
    """Scratch BatchNorm for (B, C), (B, C, L) or (B, C, H, W) inputs; the same
    parameters, buffers and state_dict keys as `nn.BatchNorm1d/2d`, so weights load
    either way.

    `momentum=None` keeps the cumulative average of the batch statistics instead of an
    exponential one (factor 1/t at the t-th training batch), as PyTorch does.
    """

    def __init__(
        self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1
    ):
        super().__init__()
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(
                f"num_features must be a positive int, got {num_features!r}"
            )
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1] or None, got {momentum}")
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training:
            self.num_batches_tracked += 1
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        return _BatchNormFn.apply(
            x,
            self.weight,
            self.bias,
            self.running_mean,
            self.running_var,
            self.training,
            momentum,
            self.eps,
        )

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}, momentum={self.momentum}"


class LayerNorm(nn.Module):
    """Scratch LayerNorm over the trailing `normalized_shape` dims (like
    `nn.LayerNorm`)."""

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5):
        super().__init__()
        shape = (
            (normalized_shape,)
            if isinstance(normalized_shape, int)
            else tuple(normalized_shape)
        )
        if not shape or any(not isinstance(n, int) or n < 1 for n in shape):
            raise ValueError(
                f"normalized_shape must be positive ints, got {normalized_shape!r}"
            )
        if not eps >= 0:
            raise ValueError(f"eps must be ≥ 0, got {eps}")
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LayerNormFn.apply(x, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.eps}"
