"""The pieces a modern GPT (Llama-style) changes in the 2017 Transformer block, from
plain tensors: RMSNorm, SiLU, the SwiGLU feed-forward and grouped-query attention.
Each one equals its PyTorch counterpart in values and gradients; see
tests/test_scratch_gpt.py.

Shapes: B batch, T queries, S keys (S > T once earlier keys are cached), C model
width, H hidden width of the feed-forward, Hq query heads, Hkv key/value heads, D per
head. Weights are in `nn.Linear` layout (out_features, in_features).

    rms_norm(x)  = x / √(mean(x², -1) + ε) · w           no centring, no bias
    silu(x)      = x · σ(x)                               smooth ReLU, "swish"
    swiglu(x)    = (silu(x W_gateᵀ) ⊙ x W_upᵀ) W_downᵀ     a gated two-layer MLP
    gqa(q, k, v) = softmax(q kᵀ / √D + causal mask) v     Hkv < Hq heads for k, v

RMSNorm drops LayerNorm's mean: rescaling the features by their root mean square is
what stabilises training; re-centring them adds cost and little else.

SwiGLU replaces the MLP's ReLU(x W₁ᵀ) by a product of two projections, one passed
through SiLU as a soft gate. With three matrices instead of two, H is usually taken
as about 8C/3 (instead of 4C) to keep the parameter count of the block.

Grouped-query attention gives each group of Hq/Hkv query heads ONE shared key/value
head, so a KV cache stores Hkv instead of Hq heads: Hkv = Hq is ordinary multi-head
attention, Hkv = 1 is multi-query attention. Query head h reads kv head h // (Hq/Hkv)
(consecutive query heads share), the convention of
`F.scaled_dot_product_attention(..., enable_gqa=True)` and of Llama's `repeat_kv`.

Causal alignment: the T queries are the LAST T positions of the S keys, query i
sitting at position S − T + i, so it sees keys j <= S − T + i. One new token (T = 1)
attending to S cached keys sees them all. `F.scaled_dot_product_attention(
is_causal=True)` aligns at the top left instead (query i sees j <= i); the two agree
only when T = S.
"""

from __future__ import annotations

import math

import torch

__all__ = ["rms_norm", "silu", "swiglu", "repeat_kv", "grouped_query_attention"]

Tensor = torch.Tensor


def rms_norm(x: Tensor, weight: Tensor, eps: float = 1e-5) -> Tensor:
    """RMSNorm over the last dim: x / √(mean(x², -1) + ε) · weight.

    x: (..., C), weight: (C,) -> (..., C). A row of zeros gives zeros (ε keeps the
    root finite); as in `F.rms_norm`, x² overflows float32 only for |x| above ~1e19.
    """
    if x.dim() < 1 or weight.shape != x.shape[-1:]:
        raise ValueError(
            f"weight must have shape ({x.shape[-1] if x.dim() else '?'},) to match "
            f"the last dim of x {tuple(x.shape)}, got {tuple(weight.shape)}"
        )
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    mean_sq = (x * x).mean(dim=-1, keepdim=True)  # (..., 1)
    return x * torch.rsqrt(mean_sq + eps) * weight


def silu(x: Tensor) -> Tensor:
    """SiLU (swish): x · σ(x). x: any shape -> same shape.

    Safe for any finite x: σ(x) lies in [0, 1], so |x · σ(x)| <= |x| and nothing is
    ever larger than the input. torch.sigmoid never forms e^{-x} for x << 0, so
    σ(-1e4) is a clean 0 and the product is 0, with gradient σ + x·σ(1 − σ) = 0.
    The textbook x / (1 + e^{-x}) gets the value right (x / inf = 0) but its
    backward goes through e^{-x} = inf and returns NaN.
    """
    return x * torch.sigmoid(x)


def swiglu(x: Tensor, w_gate: Tensor, w_up: Tensor, w_down: Tensor) -> Tensor:
    """SwiGLU feed-forward: (silu(x W_gateᵀ) ⊙ x W_upᵀ) W_downᵀ, no biases.

    x: (..., C), w_gate and w_up: (H, C), w_down: (C, H) -> (..., C).
    """
    c = x.shape[-1]
    for name, w in (("w_gate", w_gate), ("w_up", w_up)):
        if w.dim() != 2 or w.shape[1] != c:
            raise ValueError(
                f"{name} must be (H, C) with C = {c} (the last dim of x), "
                f"got {tuple(w.shape)}"
            )
    if w_up.shape != w_gate.shape:
        raise ValueError(
            f"w_up must have the shape of w_gate {tuple(w_gate.shape)}, "
            f"got {tuple(w_up.shape)}"
        )
    if w_down.shape != (c, w_gate.shape[0]):
        raise ValueError(
            f"w_down must be (C, H) = ({c}, {w_gate.shape[0]}), "
            f"got {tuple(w_down.shape)}"
        )
    hidden = silu(x @ w_gate.T) * (x @ w_up.T)  # (..., H)
    return hidden @ w_down.T


def repeat_kv(x: Tensor, groups: int) -> Tensor:
    """Repeat each kv head `groups` times, consecutively: (B, Hkv, S, D) ->
    (B, Hkv·groups, S, D), head h of the result = head h // groups of x (the same as
    x.repeat_interleave(groups, dim=1)). A copy; a kernel would index instead."""
    b, h_kv, s, d = x.shape
    return x[:, :, None].expand(b, h_kv, groups, s, d).reshape(b, h_kv * groups, s, d)


def _check_gqa_shapes(q: Tensor, k: Tensor, v: Tensor) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            "q must be (B, Hq, T, D) and k, v (B, Hkv, S, D); got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if k.shape[:3] != v.shape[:3]:
        raise ValueError(
            f"k and v must agree in (B, Hkv, S), got {tuple(k.shape)} and "
            f"{tuple(v.shape)}"
        )
    if q.shape[0] != k.shape[0] or q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must agree in B and D, got {tuple(q.shape)} and {tuple(k.shape)}"
        )
    h_q, h_kv = q.shape[1], k.shape[1]
    if h_kv < 1 or h_q % h_kv:
        raise ValueError(
            f"the number of query heads Hq={h_q} must be a multiple of the number "
            f"of kv heads Hkv={h_kv}"
        )


def _end_aligned_causal_mask(t: int, s: int, device=None) -> Tensor:
    """bool (T, S), True where key j <= S − T + i: query i is position S − T + i."""
    i = torch.arange(t, device=device)[:, None]
    j = torch.arange(s, device=device)[None, :]
    return j <= (s - t) + i


def grouped_query_attention(
    q: Tensor, k: Tensor, v: Tensor, causal: bool = True
) -> Tensor:
    """softmax(q kᵀ / √D + mask) v with Hkv <= Hq shared key/value heads.

    q: (B, Hq, T, D), k: (B, Hkv, S, D), v: (B, Hkv, S, Dv), Hq a multiple of Hkv
    -> (B, Hq, T, Dv). Query head h uses kv head h // (Hq/Hkv). causal=True: query i
    sits at position S − T + i (the end of the keys) and sees keys j <= S − T + i,
    which needs T <= S. Softmax by hand, minus each row's max so exp never overflows.
    """
    _check_gqa_shapes(q, k, v)
    b, h_q, t, d = q.shape
    s = k.shape[2]
    if causal and t > s:
        raise ValueError(
            f"causal attention needs T <= S (queries are the last T of the S keys), "
            f"got T={t} queries and S={s} keys"
        )
    groups = h_q // k.shape[1]
    k, v = repeat_kv(k, groups), repeat_kv(v, groups)  # (B, Hq, S, D), (B, Hq, S, Dv)
    scores = torch.einsum("bhtd,bhsd->bhts", q, k) / math.sqrt(d)  # (B, Hq, T, S)
    if causal:
        allowed = _end_aligned_causal_mask(t, s, device=q.device)
        scores = scores.masked_fill(~allowed, float("-inf"))  # every row keeps j = 0
    top = scores.amax(dim=-1, keepdim=True).detach()  # a constant shift: softmax
    e = torch.exp(scores - top)  # is unchanged, and its gradient through top is 0
    weights = e / e.sum(dim=-1, keepdim=True)  # (B, Hq, T, S)
    return torch.einsum("bhts,bhsd->bhtd", weights, v)
