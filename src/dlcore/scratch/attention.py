"""Attention from scratch (Part IV ch1): Nadaraya–Watson kernel regression, the masked
softmax, additive (Bahdanau) and scaled dot-product scores. Plain tensor code, any
float dtype; compared with `F.scaled_dot_product_attention` in the tests.

Shapes: queries q (..., Tq, d), keys k (..., Tk, d), values v (..., Tk, dv); scores
and weights (..., Tq, Tk), one row per query; a boolean mask broadcastable to
(..., Tq, Tk) with True = "this query may look at this key".

    weights = masked_softmax(scores, mask)        each row sums to 1 over allowed keys
    out     = weights @ v                         (..., Tq, dv)

Dot-product scores are q·k / √d: for q, k with independent unit-variance entries,
Var(q·k) = d, so dividing by √d keeps the scores' spread at 1 whatever d is.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "masked_softmax",
    "length_mask",
    "causal_mask",
    "dot_product_scores",
    "scaled_dot_product_attention",
    "additive_scores",
    "additive_attention",
    "gaussian_kernel_scores",
    "nadaraya_watson",
]

Tensor = torch.Tensor


def _check_mask(mask: Tensor | None, scores: Tensor) -> None:
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise ValueError("mask must be a bool tensor (True = attend)")
    try:
        torch.broadcast_shapes(mask.shape, scores.shape)
    except RuntimeError:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to scores "
            f"of shape {tuple(scores.shape)}"
        ) from None


def masked_softmax(scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """Softmax over the last axis (keys) of scores (..., Tq, Tk), keeping only the
    positions where mask (bool, broadcastable, True = attend) is True.

    Stable for huge |scores|: the row maximum over the allowed keys is subtracted
    before exp, so the largest term is exp(0) = 1. A row with no allowed key gets
    all-zero weights (not NaN: the naive exp(-inf) / sum(exp(-inf)) is 0 / 0)."""
    if not torch.is_floating_point(scores):
        raise ValueError(f"scores must be a float tensor, got {scores.dtype}")
    _check_mask(mask, scores)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    top = scores.amax(dim=-1, keepdim=True).detach()
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    e = torch.exp(scores - top)  # masked entries: exp(-inf) = 0
    total = e.sum(dim=-1, keepdim=True)
    return e / torch.where(total > 0, total, torch.ones_like(total))


def length_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B,) valid lengths -> bool (B, max_len), True at the real (non-padding)
    positions. Use as mask[:, None, :] for keys of padded sequences."""
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D (B,), got shape {tuple(lengths.shape)}")
    if int(lengths.max()) > max_len or int(lengths.min()) < 0:
        raise ValueError(f"lengths must lie in [0, max_len={max_len}]")
    return torch.arange(max_len, device=lengths.device) < lengths[:, None]


def causal_mask(tq: int, tk: int, device=None) -> Tensor:
    """bool (tq, tk), True where key j <= query i: query i sees keys 0..i (aligned
    top-left, as `F.scaled_dot_product_attention(is_causal=True)`)."""
    return torch.ones(tq, tk, dtype=torch.bool, device=device).tril()


def dot_product_scores(q: Tensor, k: Tensor, scale: float | None = None) -> Tensor:
    """q (..., Tq, d), k (..., Tk, d) -> q kᵀ · scale (..., Tq, Tk); scale defaults
    to 1/√d."""
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k need the same last size d, got {q.shape[-1]} and {k.shape[-1]}"
        )
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    return (q @ k.transpose(-2, -1)) * scale


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    causal: bool = False,
) -> tuple[Tensor, Tensor]:
    """softmax(q kᵀ / √d, masked) v. q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv),
    mask bool broadcastable to (..., Tq, Tk) (True = attend); causal=True also hides
    the keys after each query. Returns out (..., Tq, dv) and weights (..., Tq, Tk)."""
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v need the same number of keys Tk, got {k.shape[-2]} "
            f"and {v.shape[-2]}"
        )
    scores = dot_product_scores(q, k)
    if causal:
        tri = causal_mask(q.shape[-2], k.shape[-2], device=q.device)
        mask = tri if mask is None else mask & tri
    weights = masked_softmax(scores, mask)
    return weights @ v, weights


def additive_scores(
    q: Tensor, k: Tensor, w_q: Tensor, w_k: Tensor, v: Tensor
) -> Tensor:
    """Bahdanau's scores a(q, k) = vᵀ tanh(W_q q + W_k k) for every query–key pair.
    q (..., Tq, dq), k (..., Tk, dk), w_q (h, dq), w_k (h, dk) (the layout of
    `nn.Linear.weight`), v (h,) -> (..., Tq, Tk). Memory O(Tq · Tk · h)."""
    if w_q.shape[-1] != q.shape[-1] or w_k.shape[-1] != k.shape[-1]:
        raise ValueError("w_q must be (h, dq) and w_k (h, dk)")
    if v.dim() != 1 or v.shape[0] != w_q.shape[0] or w_k.shape[0] != v.shape[0]:
        raise ValueError(f"v must be (h,) with h = {w_q.shape[0]}")
    qh = q @ w_q.T  # (..., Tq, h)
    kh = k @ w_k.T  # (..., Tk, h)
    return torch.tanh(qh.unsqueeze(-2) + kh.unsqueeze(-3)) @ v


def additive_attention(
    q: Tensor,
    k: Tensor,
    values: Tensor,
    w_q: Tensor,
    w_k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Additive attention: masked_softmax(additive_scores) @ values. values
    (..., Tk, dv) -> out (..., Tq, dv), weights (..., Tq, Tk)."""
    weights = masked_softmax(additive_scores(q, k, w_q, w_k, v), mask)
    return weights @ values, weights


def gaussian_kernel_scores(x_query: Tensor, x_train: Tensor, bandwidth: float):
    """-‖x_q − x_i‖² / (2 h²), the log of a Gaussian kernel: (Q,) or (Q, D) queries
    and (N,) or (N, D) training inputs -> (Q, N)."""
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth!r}")
    xq = x_query[:, None] if x_query.dim() == 1 else x_query
    xt = x_train[:, None] if x_train.dim() == 1 else x_train
    if xq.shape[-1] != xt.shape[-1]:
        raise ValueError("x_query and x_train need the same number of features")
    sq = (xq[:, None, :] - xt[None, :, :]).pow(2).sum(-1)  # (Q, N)
    return -sq / (2.0 * bandwidth**2)


def nadaraya_watson(
    x_query: Tensor, x_train: Tensor, y_train: Tensor, bandwidth: float
) -> tuple[Tensor, Tensor]:
    """Nadaraya–Watson kernel regression with a Gaussian kernel of width bandwidth:
    f(x) = Σ_i α(x, x_i) y_i, α = softmax_i(-(x − x_i)² / 2h²) — attention whose
    queries are x, keys x_i and values y_i. x_query (Q,) or (Q, D), x_train (N,)
    or (N, D), y_train (N,) or (N, C) -> predictions (Q,) or (Q, C), weights (Q, N)."""
    if y_train.shape[0] != x_train.shape[0]:
        raise ValueError(
            f"x_train and y_train need the same N, got {x_train.shape[0]} "
            f"and {y_train.shape[0]}"
        )
    weights = masked_softmax(gaussian_kernel_scores(x_query, x_train, bandwidth))
    return weights @ y_train.to(weights.dtype), weights
