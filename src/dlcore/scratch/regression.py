"""Linear and softmax regression, and the common losses, from scratch in plain tensors.

Every loss comes as a pair: `<name>(pred, target)` returns the loss and `<name>_grad(pred, target)`
returns its derivative with respect to the prediction, written out by hand from the formula in the
chapter (no autograd). Both take `reduction`: "mean" (the default, as in `torch.nn.functional`),
"sum", or "none" (per-element losses; the gradient is then the per-element derivative).
Shapes: regression predictions and targets `(N,)` or any matching shape; classification logits
`(B, K)` with class indices `(B,)`; binary logits and 0/1 (or soft) targets of any matching shape.
The code is dtype-agnostic: float64 for checking against PyTorch, float32 for training.

Chapter: Part I, 2 — Linear and Softmax Regression.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor

__all__ = [
    "mse",
    "mse_grad",
    "mae",
    "mae_grad",
    "huber",
    "huber_grad",
    "smooth_l1",
    "smooth_l1_grad",
    "logsumexp",
    "softmax",
    "log_softmax",
    "cross_entropy",
    "cross_entropy_grad",
    "sigmoid",
    "bce_with_logits",
    "bce_with_logits_grad",
    "add_bias_column",
    "normal_equations",
    "linear_regression_grads",
    "softmax_regression_grads",
]


def _reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _scale(grad: Tensor, reduction: str) -> Tensor:
    """The derivative of the reduced loss: a mean over N elements divides each one by N."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(
            f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}"
        )
    return grad / grad.numel() if reduction == "mean" else grad


# ---------------------------------------------------------------- regression losses


def mse(pred: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Squared error ℓ(r) = r², r = pred − target (as `F.mse_loss`: no factor ½)."""
    return _reduce((pred - target) ** 2, reduction)


def mse_grad(pred: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """∂ℓ/∂pred = 2r: proportional to the residual, so one far-off point pulls hardest."""
    return _scale(2 * (pred - target), reduction)


def mae(pred: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Absolute error ℓ(r) = |r| (as `F.l1_loss`)."""
    return _reduce((pred - target).abs(), reduction)


def mae_grad(pred: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """∂ℓ/∂pred = sign(r): every point pulls with the same force. At r = 0 (a kink) we take 0,
    the subgradient PyTorch uses too."""
    return _scale(torch.sign(pred - target), reduction)


def huber(
    pred: Tensor, target: Tensor, delta: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """Huber loss (as `F.huber_loss`): ½r² for |r| ≤ δ, δ(|r| − ½δ) beyond — quadratic near 0,
    linear in the tails, continuous with a continuous derivative at |r| = δ."""
    r = pred - target
    a = r.abs()
    return _reduce(
        torch.where(a <= delta, 0.5 * r**2, delta * (a - 0.5 * delta)), reduction
    )


def huber_grad(
    pred: Tensor, target: Tensor, delta: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """∂ℓ/∂pred = r clipped to [−δ, δ]: the pull of a point is capped at δ."""
    return _scale((pred - target).clamp(-delta, delta), reduction)


def smooth_l1(
    pred: Tensor, target: Tensor, beta: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """Smooth-L1 (as `F.smooth_l1_loss`) = Huber with δ = β, divided by β: slope 1 in the tails."""
    return huber(pred, target, beta, reduction) / beta


def smooth_l1_grad(
    pred: Tensor, target: Tensor, beta: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """∂ℓ/∂pred = clip(r/β, −1, 1)."""
    return huber_grad(pred, target, beta, reduction) / beta


# ---------------------------------------------------------------- classification losses


def _row_max(z: Tensor) -> Tensor:
    """maxⱼ zⱼ over the last dim, keepdim; 0 where it is ±inf (so z − m is ±inf, not nan)."""
    m = z.max(dim=-1, keepdim=True).values
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m))


def logsumexp(z: Tensor) -> Tensor:
    """log Σⱼ e^{zⱼ} over the last dim, (..., K) -> (...), as `torch.logsumexp(z, -1)`.

    With m = maxⱼ zⱼ: log Σⱼ e^{zⱼ} = m + log Σⱼ e^{zⱼ − m}. The shift changes nothing
    mathematically, but every e^{zⱼ − m} ≤ 1 (no overflow) and the largest term is exactly 1
    (so the sum is ≥ 1 and its log is never log 0 = −inf)."""
    m = _row_max(z)
    return m.squeeze(-1) + (z - m).exp().sum(dim=-1).log()


def log_softmax(z: Tensor) -> Tensor:
    """log pₖ = zₖ − log Σⱼ e^{zⱼ} over the last dim, computed as (zₖ − m) − log Σⱼ e^{zⱼ − m}.

    Not as zₖ − logsumexp(z): for large m that adds m and subtracts it again, and in float32
    (spacing 6e-5 at 1000) the small log-sum is rounded away."""
    shifted = z - _row_max(z)
    return shifted - shifted.exp().sum(dim=-1, keepdim=True).log()


def softmax(z: Tensor) -> Tensor:
    """pₖ = e^{zₖ} / Σⱼ e^{zⱼ} over the last dim, overflow-free. z: (B, K) -> (B, K)."""
    return log_softmax(z).exp()


def cross_entropy(logits: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
    """ℓ = −log p_y = log Σⱼ e^{zⱼ} − z_y (as `F.cross_entropy`). logits: (B, K), y: (B,) int."""
    return _reduce(-log_softmax(logits).gather(-1, y[:, None]).squeeze(-1), reduction)


def cross_entropy_grad(logits: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
    """∂ℓ/∂z = p − onehot(y), shape (B, K); with "mean" each row is divided by B (not B·K)."""
    g = softmax(logits)
    g[torch.arange(len(y), device=y.device), y] -= 1
    return g / len(y) if reduction == "mean" else _scale(g, reduction)


def sigmoid(z: Tensor) -> Tensor:
    """σ(z) = 1 / (1 + e^{−z}), computed so that no exp ever sees a large positive argument."""
    e = torch.exp(-z.abs())  # in (0, 1]: never overflows
    return torch.where(z >= 0, 1 / (1 + e), e / (1 + e))


def bce_with_logits(z: Tensor, t: Tensor, reduction: str = "mean") -> Tensor:
    """Binary cross-entropy from logits (as `F.binary_cross_entropy_with_logits`).

    ℓ = −t log σ(z) − (1 − t) log(1 − σ(z)) = log(1 + e^{z}) − t z. The softplus log(1 + e^{z})
    is a two-term log-sum-exp, log(e^0 + e^z); pulling out max(z, 0) gives
    max(z, 0) + log(1 + e^{−|z|}), which neither overflows nor loses the tiny losses of confident
    right answers (log σ(z) computed from σ(z) would give log(0) = −inf for z ≈ −800).
    """
    return _reduce(z.clamp(min=0) - t * z + torch.log1p(torch.exp(-z.abs())), reduction)


def bce_with_logits_grad(z: Tensor, t: Tensor, reduction: str = "mean") -> Tensor:
    """∂ℓ/∂z = σ(z) − t: the binary case of p − onehot."""
    return _scale(sigmoid(z) - t, reduction)


# ---------------------------------------------------------------- the two models


def add_bias_column(X: Tensor) -> Tensor:
    """[1 | X]: X (N, D) -> (N, D + 1), so that the bias is the weight of a constant feature."""
    return torch.cat([torch.ones(len(X), 1, dtype=X.dtype, device=X.device), X], dim=1)


def normal_equations(X: Tensor, y: Tensor, l2: float = 0.0) -> tuple[Tensor, Tensor]:
    """Least squares in closed form. X: (N, D), y: (N,) -> (w: (D,), b: scalar).

    Solves (AᵀA + λI′) θ = Aᵀy with A = [1 | X] and θ = (b, w); I′ leaves the bias unpenalised.
    `torch.linalg.solve` (an LU factorisation) is used rather than forming the inverse, which is
    slower and less accurate.
    """
    A = add_bias_column(X)
    penalty = l2 * torch.eye(A.shape[1], dtype=X.dtype, device=X.device)
    penalty[0, 0] = 0
    theta = torch.linalg.solve(A.T @ A + penalty, A.T @ y)
    return theta[1:], theta[0]


def linear_regression_grads(
    X: Tensor, y: Tensor, w: Tensor, b: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Mean squared error of ŷ = Xw + b and its gradients, by hand.

    X: (B, D), y: (B,), w: (D,), b: () -> (loss, ∂L/∂w: (D,), ∂L/∂b: ()), with r = ŷ − y:
    L = (1/B) Σ rᵢ², ∂L/∂w = (2/B) Xᵀr, ∂L/∂b = (2/B) Σ rᵢ.
    """
    r = X @ w + b - y
    return (r**2).mean(), 2 * X.T @ r / len(y), 2 * r.mean()


def softmax_regression_grads(
    X: Tensor, y: Tensor, W: Tensor, b: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Mean cross-entropy of logits Z = XW + b and its gradients, by hand.

    X: (B, D), y: (B,) int, W: (D, K), b: (K,) -> (loss, ∂L/∂W: (D, K), ∂L/∂b: (K,)).
    With G = ∂L/∂Z = (P − Y)/B: ∂L/∂W = XᵀG, ∂L/∂b = Σ_batch G.
    """
    Z = X @ W + b
    G = cross_entropy_grad(Z, y)
    return cross_entropy(Z, y), X.T @ G, G.sum(dim=0)
