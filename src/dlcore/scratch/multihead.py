"""Multi-head attention from plain tensors (Part IV ch2): project, split into heads,
attend with the chapter-1 core `attention.scaled_dot_product_attention`, combine,
project out. Equal (values and gradients) to `nn.MultiheadAttention` loaded with the
same weights; see tests/test_scratch_multihead.py.

Shapes: B batch, Tq queries, Tk keys, C = embed_dim, h heads, d = C / h per head.

    Q = query Wqᵀ + bq,  K = key Wkᵀ + bk,  V = value Wvᵀ + bv        (B, T, C)
    Q, K, V -> (B, h, T, d)                                          split_heads
    head_i = softmax(Q_i K_iᵀ / √d + mask) V_i                       (B, h, Tq, d)
    out = concat(head_1..head_h) Woᵀ + bo                            (B, Tq, C)

Masks: bool, True = "may attend" (the convention of chapter 1 and of
`F.scaled_dot_product_attention`). `nn.MultiheadAttention` uses the OPPOSITE
convention for its bool masks (True = "ignore"): pass `key_mask = ~key_padding_mask`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from . import attention, positions

Tensor = torch.Tensor


@dataclass
class MHAParams:
    """The weights of one multi-head attention layer, in `nn.Linear` layout
    (out_features, in_features): w_q, w_k, w_v, w_o (C, C); biases (C,) or None."""

    w_q: Tensor
    w_k: Tensor
    w_v: Tensor
    w_o: Tensor
    b_q: Tensor | None = None
    b_k: Tensor | None = None
    b_v: Tensor | None = None
    b_o: Tensor | None = None


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(B, T, C) -> (B, h, T, C/h): head i gets channels i*d .. (i+1)*d - 1."""
    b, t, c = x.shape
    if c % num_heads:
        raise ValueError(f"embed_dim {c} is not divisible by num_heads={num_heads}")
    return x.view(b, t, num_heads, c // num_heads).transpose(1, 2)


def combine_heads(x: Tensor) -> Tensor:
    """(B, h, T, d) -> (B, T, h*d): the inverse of split_heads."""
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


def params_from_torch(mha: nn.MultiheadAttention) -> MHAParams:
    """The weights of `mha` as MHAParams. The tensors are views of mha's parameters
    (no copies), so gradients computed through them land in mha's .grad."""
    if mha.bias_k is not None or mha.add_zero_attn:
        raise ValueError("add_bias_kv / add_zero_attn are not supported")
    if mha._qkv_same_embed_dim:
        w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
    else:
        w_q, w_k, w_v = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
    b = mha.in_proj_bias
    b_q, b_k, b_v = b.chunk(3) if b is not None else (None, None, None)
    out = mha.out_proj
    return MHAParams(w_q, w_k, w_v, out.weight, b_q, b_k, b_v, out.bias)


def _linear(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    y = x @ w.T
    return y if b is None else y + b


def _full_mask(key_mask, attn_mask, batch: int, tk: int) -> Tensor | None:
    """Combine key_mask (B, Tk) and attn_mask (Tq, Tk) into one (B, 1, Tq|1, Tk)."""
    mask = None
    if key_mask is not None:
        if key_mask.dtype != torch.bool or key_mask.shape != (batch, tk):
            raise ValueError(
                f"key_mask must be bool ({batch}, {tk}) (True = real token), got "
                f"{key_mask.dtype} {tuple(key_mask.shape)}"
            )
        mask = key_mask[:, None, None, :]
    if attn_mask is not None:
        if attn_mask.dtype != torch.bool or attn_mask.dim() != 2:
            raise ValueError("attn_mask must be bool (Tq, Tk) with True = attend")
        mask = attn_mask if mask is None else mask & attn_mask
    return mask


def multi_head_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    params: MHAParams,
    num_heads: int,
    *,
    key_mask: Tensor | None = None,
    attn_mask: Tensor | None = None,
    causal: bool = False,
    rope: bool = False,
    rope_base: float = 10_000.0,
    average_weights: bool = True,
) -> tuple[Tensor, Tensor]:
    """Multi-head attention. query (B, Tq, C), key and value (B, Tk, C); key_mask
    (B, Tk) bool, True = real token; attn_mask (Tq, Tk) bool, True = attend; causal
    hides later keys; rope rotates each head's queries and keys by their positions
    0..T-1 (positions.apply_rope, rotate-half convention) before the scores.
    Returns out (B, Tq, C) and the weights, (B, Tq, Tk) averaged over heads or
    (B, h, Tq, Tk) per head (average_weights=False)."""
    if query.dim() != 3 or key.shape != value.shape or key.dim() != 3:
        raise ValueError(
            f"query must be (B, Tq, C) and key, value (B, Tk, C); got "
            f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
        )
    q = split_heads(_linear(query, params.w_q, params.b_q), num_heads)
    k = split_heads(_linear(key, params.w_k, params.b_k), num_heads)
    v = split_heads(_linear(value, params.w_v, params.b_v), num_heads)
    if rope:
        q, k = (
            positions.apply_rope(q, base=rope_base),
            positions.apply_rope(k, base=rope_base),
        )
    mask = _full_mask(key_mask, attn_mask, key.shape[0], key.shape[1])
    heads, weights = attention.scaled_dot_product_attention(q, k, v, mask, causal)
    out = _linear(combine_heads(heads), params.w_o, params.b_o)
    return out, (weights.mean(dim=1) if average_weights else weights)


class MultiHeadAttention(nn.Module):
    """Self-attention layer with its own weights, laid out as `nn.MultiheadAttention`
    (in_proj_weight (3C, C), in_proj_bias (3C,), out_proj), so `load_from_torch`
    copies one into the other. forward(x (B, T, C), key_mask=None (B, T) True = real
    token) -> (B, T, C); the last attention weights are kept in self.weights
    (B, h, T, T) when keep_weights=True."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        bias: bool = True,
        causal: bool = False,
        rope: bool = False,
        keep_weights: bool = False,
    ):
        super().__init__()
        if num_heads < 1 or embed_dim % num_heads:
            raise ValueError(
                f"embed_dim={embed_dim} must be a multiple of num_heads={num_heads}"
            )
        self.num_heads, self.causal, self.rope = num_heads, causal, rope
        self.keep_weights, self.weights = keep_weights, None
        bound = math.sqrt(6 / (embed_dim + 3 * embed_dim))  # torch's xavier_uniform_
        self.in_proj_weight = nn.Parameter(
            torch.empty(3 * embed_dim, embed_dim).uniform_(-bound, bound)
        )
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim)) if bias else None
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def params(self) -> MHAParams:
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b = self.in_proj_bias
        b_q, b_k, b_v = b.chunk(3) if b is not None else (None, None, None)
        return MHAParams(
            w_q, w_k, w_v, self.out_proj.weight, b_q, b_k, b_v, self.out_proj.bias
        )

    @torch.no_grad()
    def load_from_torch(self, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy the weights of an nn.MultiheadAttention of the same size."""
        src = params_from_torch(mha)
        self.in_proj_weight.copy_(torch.cat([src.w_q, src.w_k, src.w_v]))
        self.out_proj.weight.copy_(src.w_o)
        if self.in_proj_bias is not None:
            self.in_proj_bias.copy_(torch.cat([src.b_q, src.b_k, src.b_v]))
            self.out_proj.bias.copy_(src.b_o)
        return self

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        out, weights = multi_head_attention(
            x,
            x,
            x,
            self.params(),
            self.num_heads,
            key_mask=key_mask,
            causal=self.causal,
            rope=self.rope,
            average_weights=False,
        )
        self.weights = weights.detach() if self.keep_weights else None
        return out
