"""Linear and softmax regression, and the common losses, from scratch in plain tensors.

Every loss comes as a pair: `<name>(pred, target)` returns the loss and
`<name>_grad(pred, target)` returns its derivative with respect to the prediction,
written out by hand from the formula in the chapter (no autograd). Both take
`reduction`: "mean" (the default, as in `torch.nn.functional`), "sum", or "none"
(per-element losses; the gradient is then the per-element derivative).

Shapes: regression predictions and targets of the *same* shape, `(N,)` or any other
(a `(B, 1)` prediction against `(B,)` targets is an error, not a broadcast to
`(B, B)`); classification logits `(B, K)` with integer class indices `(B,)` in
`[0, K)`; binary logits and 0/1 (or soft) targets of the same shape. The code is
dtype-agnostic: float64 in, float64 out for checking against PyTorch, float32 for
training. Bad arguments raise an error that names the argument.

Chapter: Part I, 2 — Linear and Softmax Regression.
"""

from __future__ import annotations

import math

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

_REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------- argument checks


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}"
        )


def _check_same_shape(pred: Tensor, target: Tensor, names: str) -> None:
    """No silent broadcasting: (B, 1) against (B,) would give a (B, B) loss."""
    if pred.shape != target.shape:
        first, second = names.split(", ")
        raise ValueError(
            f"{first} and {second} must have the same shape, got "
            f"{tuple(pred.shape)} and {tuple(target.shape)} (squeeze or reshape "
            "first: broadcasting them would compare every pair)"
        )


def _check_labels(logits: Tensor, y: Tensor, logits_name: str = "logits") -> None:
    """logits (B, K) floating; y (B,) integer class indices in [0, K)."""
    if logits.ndim != 2:
        raise ValueError(
            f"{logits_name} must have shape (B, K), got {tuple(logits.shape)}"
        )
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise TypeError(f"y must hold integer class indices, got dtype {y.dtype}")
    if y.shape != (logits.shape[0],):
        raise ValueError(
            f"y must have shape ({logits.shape[0]},) to match {logits_name} "
            f"{tuple(logits.shape)}, got {tuple(y.shape)}"
        )
    k = logits.shape[1]
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
        raise ValueError(
            f"y (class indices) must lie in [0, {k}), got values from "
            f"{int(y.min())} to {int(y.max())}"
        )


def _check_positive(value: float, name: str, allow_zero: bool = False) -> None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = number and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


def _reduce(values: Tensor, reduction: str) -> Tensor:
    _check_reduction(reduction)
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def _scale(grad: Tensor, reduction: str) -> Tensor:
    """The derivative of the reduced loss: a mean over N elements divides each by N."""
    _check_reduction(reduction)
    return grad / grad.numel() if reduction == "mean" else grad


# ---------------------------------------------------------------- regression losses


def mse(pred: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Squared error ℓ(r) = r², r = pred − target (as `F.mse_loss`: no factor ½)."""
    _check_same_shape(pred, target, "pred, target")
    return _reduce((pred - target) ** 2, reduction)


def mse_grad(pred: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """∂ℓ/∂pred = 2r: proportional to the residual, so a far-off point pulls hardest."""
    _check_same_shape(pred, target, "pred, target")
    return _scale(2 * (pred - target), reduction)


def mae(pred: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Absolute error ℓ(r) = |r| (as `F.l1_loss`)."""
    _check_same_shape(pred, target, "pred, target")
    return _reduce((pred - target).abs(), reduction)


def mae_grad(pred: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """∂ℓ/∂pred = sign(r): every point pulls with the same force. At r = 0 (a kink)
    we take 0, the subgradient PyTorch uses too."""
    _check_same_shape(pred, target, "pred, target")
    return _scale(torch.sign(pred - target), reduction)


def huber(
    pred: Tensor, target: Tensor, delta: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """Huber loss (as `F.huber_loss`, δ > 0): ½r² for |r| ≤ δ, δ(|r| − ½δ) beyond —
    quadratic near 0, linear in the tails, with a continuous derivative at |r| = δ."""
    _check_positive(delta, "delta")
    _check_same_shape(pred, target, "pred, target")
    r = pred - target
    a = r.abs()
    quadratic, linear = 0.5 * r**2, delta * (a - 0.5 * delta)
    return _reduce(torch.where(a <= delta, quadratic, linear), reduction)


def huber_grad(
    pred: Tensor, target: Tensor, delta: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """∂ℓ/∂pred = r clipped to [−δ, δ]: the pull of a point is capped at δ."""
    _check_positive(delta, "delta")
    _check_same_shape(pred, target, "pred, target")
    return _scale((pred - target).clamp(-delta, delta), reduction)


def smooth_l1(
    pred: Tensor, target: Tensor, beta: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """Smooth-L1 (as `F.smooth_l1_loss`) = Huber with δ = β, divided by β: slope 1 in
    the tails. β = 0 is the limit, the absolute error (PyTorch's convention too)."""
    _check_positive(beta, "beta", allow_zero=True)
    if beta == 0:
        return mae(pred, target, reduction)
    return huber(pred, target, beta, reduction) / beta


def smooth_l1_grad(
    pred: Tensor, target: Tensor, beta: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """∂ℓ/∂pred = clip(r/β, −1, 1); for β = 0, sign(r)."""
    _check_positive(beta, "beta", allow_zero=True)
    if beta == 0:
        return mae_grad(pred, target, reduction)
    return huber_grad(pred, target, beta, reduction) / beta


# ---------------------------------------------------------------- classification losses


def _row_max(z: Tensor) -> Tensor:
    """maxⱼ zⱼ over the last dim, keepdim; 0 where it is ±inf (so z − m is ±inf, not
    nan)."""
    m = z.max(dim=-1, keepdim=True).values
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m))


def logsumexp(z: Tensor) -> Tensor:
    """log Σⱼ e^{zⱼ} over the last dim, (..., K) -> (...), as `torch.logsumexp(z, -1)`.

    With m = maxⱼ zⱼ: log Σⱼ e^{zⱼ} = m + log Σⱼ e^{zⱼ − m}. The shift changes nothing
    mathematically, but every e^{zⱼ − m} ≤ 1 (no overflow) and the largest term is
    exactly 1 (so the sum is ≥ 1 and its log is never log 0 = −inf)."""
    m = _row_max(z)
    return m.squeeze(-1) + (z - m).exp().sum(dim=-1).log()


def log_softmax(z: Tensor) -> Tensor:
    """log pₖ = zₖ − log Σⱼ e^{zⱼ} over the last dim, as (zₖ − m) − log Σⱼ e^{zⱼ − m}.

    Not as zₖ − logsumexp(z): for large m that adds m and subtracts it again, and in
    float32 (spacing 6e-5 at 1000) the small log-sum is rounded away."""
    shifted = z - _row_max(z)
    return shifted - shifted.exp().sum(dim=-1, keepdim=True).log()


def softmax(z: Tensor) -> Tensor:
    """pₖ = e^{zₖ} / Σⱼ e^{zⱼ} over the last dim, overflow-free; (..., K) -> same."""
    return log_softmax(z).exp()


def cross_entropy(logits: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
    """ℓ = −log p_y = log Σⱼ e^{zⱼ} − z_y (as `F.cross_entropy`).

    logits: (B, K), y: (B,) integer class indices in [0, K) (−1 is an error, not the
    last class)."""
    _check_labels(logits, y)
    nll = -log_softmax(logits).gather(-1, y[:, None].long()).squeeze(-1)
    return _reduce(nll, reduction)


def cross_entropy_grad(logits: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
    """∂ℓ/∂z = p − onehot(y), shape (B, K); with "mean" each row is divided by B (the
    mean is over the B examples, not the B·K logits)."""
    _check_labels(logits, y)
    _check_reduction(reduction)
    g = softmax(logits)
    g[torch.arange(len(y), device=y.device), y] -= 1
    return g / len(y) if reduction == "mean" else g


def _neg_abs(z: Tensor) -> Tensor:
    """−|z| as a where, not `abs`: autograd then differentiates it as −z at z = 0
    (slope −1, the branch that `z >= 0` picks), while `abs` has slope 0 there. Inside
    `sigmoid` and `bce_with_logits` that slope 0 would make the gradient at z = 0 (every
    logit of a zero-initialised head) wrong."""
    return torch.where(z >= 0, -z, z)


def sigmoid(z: Tensor) -> Tensor:
    """σ(z) = 1 / (1 + e^{−z}), computed so that no exp sees a large positive argument.

    With e = e^{−|z|} ∈ (0, 1]: σ = 1/(1 + e) for z ≥ 0 and e/(1 + e) for z < 0, so
    far left σ(z) ≈ e^{z} keeps its digits down to the smallest float, where the
    textbook 1/(1 + e^{−z}) overflows e^{−z} (z < −88.7 in float32) and returns 0.
    Differentiable through autograd, including at z = 0 (σ′(0) = ¼)."""
    e = torch.exp(_neg_abs(z))  # in (0, 1]: never overflows
    return torch.where(z >= 0, 1 / (1 + e), e / (1 + e))


def bce_with_logits(z: Tensor, t: Tensor, reduction: str = "mean") -> Tensor:
    """Binary cross-entropy from logits (as `F.binary_cross_entropy_with_logits`).

    ℓ = −t log σ(z) − (1 − t) log(1 − σ(z)) = log(1 + e^{z}) − t z. The softplus
    log(1 + e^{z}) is a two-term log-sum-exp, log(e^0 + e^z); pulling out max(z, 0)
    gives max(z, 0) + log(1 + e^{−|z|}), which neither overflows nor loses the tiny
    losses of confident right answers (log σ(z) computed from σ(z) would give
    log(0) = −inf for z ≈ −800). z and t: the same shape.
    """
    _check_same_shape(z, t, "z, t")
    relu = torch.where(z >= 0, z, torch.zeros_like(z))  # max(z, 0), slope 1 at 0
    return _reduce(relu - t * z + torch.log1p(torch.exp(_neg_abs(z))), reduction)


def bce_with_logits_grad(z: Tensor, t: Tensor, reduction: str = "mean") -> Tensor:
    """∂ℓ/∂z = σ(z) − t: the binary case of p − onehot."""
    _check_same_shape(z, t, "z, t")
    return _scale(sigmoid(z) - t, reduction)


# ---------------------------------------------------------------- the two models


def _check_design(X: Tensor, y: Tensor) -> None:
    if X.ndim != 2:
        raise ValueError(f"X must have shape (N, D), got {tuple(X.shape)}")
    if y.shape != (X.shape[0],):
        raise ValueError(
            f"y must have shape ({X.shape[0]},) to match X {tuple(X.shape)}, got "
            f"{tuple(y.shape)}"
        )


def add_bias_column(X: Tensor) -> Tensor:
    """[1 | X]: X (N, D) -> (N, D + 1), so that the bias is the weight of a constant
    feature."""
    if X.ndim != 2:
        raise ValueError(f"X must have shape (N, D), got {tuple(X.shape)}")
    ones = torch.ones(len(X), 1, dtype=X.dtype, device=X.device)
    return torch.cat([ones, X], dim=1)


def normal_equations(X: Tensor, y: Tensor, l2: float = 0.0) -> tuple[Tensor, Tensor]:
    """Least squares in closed form. X: (N, D), y: (N,) -> (w: (D,), b: scalar).

    Solves (AᵀA + αI′) θ = Aᵀy with A = [1 | X] and θ = (b, w); I′ leaves the bias
    unpenalised, α = `l2` ≥ 0. `torch.linalg.solve` (an LU factorisation) is used
    rather than forming the inverse, which is slower and less accurate.
    """
    _check_design(X, y)
    _check_positive(l2, "l2", allow_zero=True)
    A = add_bias_column(X)
    penalty = l2 * torch.eye(A.shape[1], dtype=X.dtype, device=X.device)
    penalty[0, 0] = 0
    theta = torch.linalg.solve(A.T @ A + penalty, A.T @ y)
    return theta[1:], theta[0]


def linear_regression_grads(
    X: Tensor, y: Tensor, w: Tensor, b: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Mean squared error of ŷ = Xw + b and its gradients, by hand.

    X: (B, D), y: (B,), w: (D,), b: () -> (loss, ∂L/∂w: (D,), ∂L/∂b: ()), with
    r = ŷ − y: L = (1/B) Σ rᵢ², ∂L/∂w = (2/B) Xᵀr, ∂L/∂b = (2/B) Σ rᵢ.
    """
    _check_design(X, y)
    if w.shape != (X.shape[1],):
        raise ValueError(
            f"w must have shape ({X.shape[1]},) to match X {tuple(X.shape)}, got "
            f"{tuple(w.shape)}"
        )
    if b.shape != ():
        raise ValueError(f"b must be a scalar tensor (shape ()), got {tuple(b.shape)}")
    r = X @ w + b - y
    return (r**2).mean(), 2 * X.T @ r / len(y), 2 * r.mean()


def softmax_regression_grads(
    X: Tensor, y: Tensor, W: Tensor, b: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Mean cross-entropy of logits Z = XW + b and its gradients, by hand.

    X: (B, D), y: (B,) int in [0, K), W: (D, K), b: (K,) -> (loss, ∂L/∂W: (D, K),
    ∂L/∂b: (K,)). With G = ∂L/∂Z = (P − Y)/B: ∂L/∂W = XᵀG, ∂L/∂b = Σ_batch G.
    """
    if X.ndim != 2:
        raise ValueError(f"X must have shape (B, D), got {tuple(X.shape)}")
    if W.ndim != 2 or W.shape[0] != X.shape[1]:
        raise ValueError(
            f"W must have shape ({X.shape[1]}, K) to match X {tuple(X.shape)}, got "
            f"{tuple(W.shape)}"
        )
    if b.shape != (W.shape[1],):
        raise ValueError(
            f"b must have shape ({W.shape[1]},) to match W, got {tuple(b.shape)}"
        )
    Z = X @ W + b
    G = cross_entropy_grad(Z, y)
    return cross_entropy(Z, y), X.T @ G, G.sum(dim=0)
