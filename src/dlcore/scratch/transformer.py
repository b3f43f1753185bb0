"""Transformer encoder and decoder layers from plain tensors (Part IV ch3), built from
chapter 2's `multihead.multi_head_attention`. Equal (values and gradients) to
`nn.TransformerEncoderLayer` / `nn.TransformerDecoderLayer` (ReLU, batch_first) whose
weights they read with `*_params_from_torch`; see tests/test_scratch_transformer.py.

Shapes: B batch, S source positions, T target positions, C model width, F the width
of the feed-forward layer. Masks are bool, True = real token.

    sublayer, pre-norm:   x + f(LN(x))        (the residual path skips the norm)
    sublayer, post-norm:  LN(x + f(x))        (Vaswani et al., 2017)
    encoder:  f = self-attention, then f = FFN(x) = W2 relu(W1 x + b1) + b2
    decoder:  f = causal self-attention, then cross-attention to the encoder output,
              then the FFN
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .multihead import MHAParams, multi_head_attention, params_from_torch

Tensor = torch.Tensor


@dataclass
class NormParams:
    """LayerNorm over the last axis: weight, bias (C,) and eps."""

    weight: Tensor
    bias: Tensor
    eps: float = 1e-5


@dataclass
class FFNParams:
    """Position-wise feed-forward layer, nn.Linear layout: w1 (F, C), b1 (F,),
    w2 (C, F), b2 (C,)."""

    w1: Tensor
    b1: Tensor
    w2: Tensor
    b2: Tensor


@dataclass
class EncoderParams:
    attn: MHAParams
    ffn: FFNParams
    norm1: NormParams
    norm2: NormParams


@dataclass
class DecoderParams:
    self_attn: MHAParams
    cross_attn: MHAParams
    ffn: FFNParams
    norm1: NormParams
    norm2: NormParams
    norm3: NormParams


def layer_norm(x: Tensor, p: NormParams) -> Tensor:
    """(..., C): subtract the mean over C, divide by sqrt(biased variance + eps),
    then scale and shift."""
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + p.eps) * p.weight + p.bias


def feed_forward(x: Tensor, p: FFNParams) -> Tensor:
    """(B, T, C) -> (B, T, C), the same two-layer MLP at every position."""
    return torch.relu(x @ p.w1.T + p.b1) @ p.w2.T + p.b2


def sublayer(
    x: Tensor, f: Callable[[Tensor], Tensor], norm: NormParams, norm_first: bool
) -> Tensor:
    """One residual sublayer: pre-norm x + f(LN(x)) or post-norm LN(x + f(x))."""
    if norm_first:
        return x + f(layer_norm(x, norm))
    return layer_norm(x + f(x), norm)


def encoder_layer(
    x: Tensor,
    p: EncoderParams,
    num_heads: int,
    key_mask: Tensor | None = None,
    norm_first: bool = True,
) -> Tensor:
    """x (B, S, C), key_mask (B, S) -> (B, S, C): self-attention, then the FFN."""

    def attend(z: Tensor) -> Tensor:
        return multi_head_attention(z, z, z, p.attn, num_heads, key_mask=key_mask)[0]

    x = sublayer(x, attend, p.norm1, norm_first)
    return sublayer(x, lambda z: feed_forward(z, p.ffn), p.norm2, norm_first)


def decoder_layer(
    y: Tensor,
    memory: Tensor,
    p: DecoderParams,
    num_heads: int,
    memory_mask: Tensor | None = None,
    norm_first: bool = True,
) -> Tensor:
    """y (B, T, C), memory (B, S, C) = the encoder's output, memory_mask (B, S) ->
    (B, T, C): causal self-attention, cross-attention to memory, the FFN."""

    def attend_past(z: Tensor) -> Tensor:
        return multi_head_attention(z, z, z, p.self_attn, num_heads, causal=True)[0]

    def attend_source(z: Tensor) -> Tensor:
        out = multi_head_attention(
            z, memory, memory, p.cross_attn, num_heads, key_mask=memory_mask
        )
        return out[0]

    y = sublayer(y, attend_past, p.norm1, norm_first)
    y = sublayer(y, attend_source, p.norm2, norm_first)
    return sublayer(y, lambda z: feed_forward(z, p.ffn), p.norm3, norm_first)


def _norm(ln: nn.LayerNorm) -> NormParams:
    return NormParams(ln.weight, ln.bias, ln.eps)


def _ffn(layer) -> FFNParams:
    l1, l2 = layer.linear1, layer.linear2
    return FFNParams(l1.weight, l1.bias, l2.weight, l2.bias)


def _check_relu(layer) -> None:
    act = layer.activation
    if not (act is torch.nn.functional.relu or isinstance(act, nn.ReLU)):
        raise ValueError(f"only activation='relu' layers are supported, not {act!r}")


def encoder_params_from_torch(layer: nn.TransformerEncoderLayer) -> EncoderParams:
    """Views of `layer`'s parameters (no copies: gradients land in layer's .grad)."""
    _check_relu(layer)
    return EncoderParams(
        params_from_torch(layer.self_attn),
        _ffn(layer),
        _norm(layer.norm1),
        _norm(layer.norm2),
    )


def decoder_params_from_torch(layer: nn.TransformerDecoderLayer) -> DecoderParams:
    """Views of `layer`'s parameters, as encoder_params_from_torch."""
    _check_relu(layer)
    return DecoderParams(
        params_from_torch(layer.self_attn),
        params_from_torch(layer.multihead_attn),
        _ffn(layer),
        _norm(layer.norm1),
        _norm(layer.norm2),
        _norm(layer.norm3),
    )
