"""The Transformer encoder–decoder (Vaswani et al., 2017), the tool version of Part IV
ch3: attention runs through `F.scaled_dot_product_attention`, decoding keeps a
key/value cache, and layers are pre-norm (`norm_first=True`) or post-norm (the 2017
paper). The lesson's scratch version is `dlcore.scratch.transformer`.

Layers carry the parameter names of `nn.TransformerEncoderLayer` /
`nn.TransformerDecoderLayer` (self_attn.in_proj_weight, multihead_attn, linear1,
linear2, norm1..norm3), so `layer.load_state_dict(torch_layer.state_dict())` copies
weights across and the outputs agree (tests/test_models_transformer.py).

    encoder layer (pre-norm):  x = x + Attn(LN(x));  x = x + FFN(LN(x))
    encoder layer (post-norm): x = LN(x + Attn(x));  x = LN(x + FFN(x))
    decoder layer: causal self-attention, then cross-attention to the encoder output
    (the "memory"), then the FFN, each with its own residual and LayerNorm.

Masks are bool with True = "may attend", as in `F.scaled_dot_product_attention`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..scratch.positions import sinusoidal_table
from .decoding import beam_search, greedy_search

__all__ = [
    "TransformerConfig",
    "Attention",
    "EncoderLayer",
    "DecoderLayer",
    "TransformerSeq2Seq",
    "smoothed_loss",
    "warmup_inverse_sqrt",
]


@dataclass
class TransformerConfig:
    src_vocab: int
    tgt_vocab: int
    d_model: int = 256
    num_heads: int = 4
    enc_layers: int = 3
    dec_layers: int = 3
    d_ff: int = 1024
    dropout: float = 0.1  # after embeddings, attention weights, sublayers, in FFN
    norm_first: bool = True  # pre-norm; False = post-norm (the 2017 paper)
    max_len: int = 256  # longest source or target the position table covers
    tie_output: bool = True  # output projection = target embedding matrix
    pad_id: int = 0
    bos_id: int = 2
    eos_id: int = 3

    def __post_init__(self):
        for name in ("src_vocab", "tgt_vocab", "d_model", "num_heads", "d_ff"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("enc_layers", "dec_layers"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.d_model % self.num_heads or (self.d_model // self.num_heads) % 2:
            raise ValueError(
                f"d_model={self.d_model} must be num_heads={self.num_heads} times an "
                "even head size"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")


class Attention(nn.Module):
    """Multi-head attention in nn.MultiheadAttention's layout (in_proj_weight (3C, C):
    rows for Q, K, V; out_proj). forward(x (B, Tq, C), memory (B, Tk, C) or None for
    self-attention, mask bool broadcastable to (B, h, Tq, Tk), causal, cache) ->
    (B, Tq, C). With a `cache` dict, self-attention appends this call's keys and values
    to cache["k"], cache["v"] (B, h, t, d); cross-attention computes them from memory
    once and reuses them."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d_model))
        self.out_proj = nn.Linear(d_model, d_model)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, h, T, d)
        b, t, c = x.shape
        return x.view(b, t, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, x, memory=None, mask=None, causal=False, cache=None):
        c = x.shape[-1]
        w, bias = self.in_proj_weight, self.in_proj_bias
        q = self._heads(F.linear(x, w[:c], bias[:c]))
        if memory is not None and cache is not None and "k" in cache:
            k, v = cache["k"], cache["v"]  # cross-attention: memory does not change
        else:
            source = x if memory is None else memory
            k, v = F.linear(source, w[c:], bias[c:]).chunk(2, dim=-1)
            k, v = self._heads(k), self._heads(v)
            if cache is not None and memory is None and "k" in cache:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            if cache is not None:
                cache["k"], cache["v"] = k, v
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal and mask is None,
        )
        b, h, t, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, t, h * d))


class _FeedForward(nn.Module):
    def _ff(self, x):  # linear2(dropout(relu(linear1(x)))), as torch's layers
        return self.linear2(self.dropout(F.relu(self.linear1(x))))

    def _ffn_init(self, c: TransformerConfig):
        self.linear1 = nn.Linear(c.d_model, c.d_ff)
        self.linear2 = nn.Linear(c.d_ff, c.d_model)
        self.dropout = nn.Dropout(c.dropout)


class EncoderLayer(_FeedForward):
    """forward(x (B, S, C), key_mask (B, S) bool, True = real token) -> (B, S, C)."""

    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.norm_first = c.norm_first
        self.self_attn = Attention(c.d_model, c.num_heads, c.dropout)
        self._ffn_init(c)
        self.norm1, self.norm2 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.dropout1, self.dropout2 = nn.Dropout(c.dropout), nn.Dropout(c.dropout)

    def forward(self, x, key_mask=None):
        mask = None if key_mask is None else key_mask[:, None, None, :]
        if self.norm_first:
            x = x + self.dropout1(self.self_attn(self.norm1(x), mask=mask))
            return x + self.dropout2(self._ff(self.norm2(x)))
        x = self.norm1(x + self.dropout1(self.self_attn(x, mask=mask)))
        return self.norm2(x + self.dropout2(self._ff(x)))


class DecoderLayer(_FeedForward):
    """forward(y (B, T, C), memory (B, S, C), memory_mask (B, S) bool, cache=None) ->
    (B, T, C). Self-attention is causal; with a cache (a dict per layer) y holds only
    the newest position(s) and earlier keys/values come from the cache."""

    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.norm_first = c.norm_first
        self.self_attn = Attention(c.d_model, c.num_heads, c.dropout)
        self.multihead_attn = Attention(c.d_model, c.num_heads, c.dropout)
        self._ffn_init(c)
        self.norm1, self.norm2 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.norm3 = nn.LayerNorm(c.d_model)
        self.dropout1, self.dropout2 = nn.Dropout(c.dropout), nn.Dropout(c.dropout)
        self.dropout3 = nn.Dropout(c.dropout)

    def forward(self, y, memory, memory_mask=None, cache=None):
        mask = None if memory_mask is None else memory_mask[:, None, None, :]
        self_cache = cross_cache = None
        if cache is not None:
            self_cache = cache.setdefault("self", {})
            cross_cache = cache.setdefault("cross", {})
        # with a cache, the one new query may see every cached key: no causal mask
        causal = cache is None or "k" not in self_cache
        sa = lambda z: self.self_attn(z, causal=causal, cache=self_cache)
        ca = lambda z: self.multihead_attn(z, memory, mask, cache=cross_cache)
        if self.norm_first:
            y = y + self.dropout1(sa(self.norm1(y)))
            y = y + self.dropout2(ca(self.norm2(y)))
            return y + self.dropout3(self._ff(self.norm3(y)))
        y = self.norm1(y + self.dropout1(sa(y)))
        y = self.norm2(y + self.dropout2(ca(y)))
        return self.norm3(y + self.dropout3(self._ff(y)))


class TransformerSeq2Seq(nn.Module):
    """Encoder–decoder. forward(src (B, S), src_lengths (B,), tgt_in (B, T)) -> logits
    (B, T, V) with teacher forcing: the same call signature as Part III's Seq2Seq, so
    `PairLoader` batches feed it unchanged. Token embeddings are scaled by sqrt(C) and
    added to sinusoidal positions; a pre-norm stack ends with one more LayerNorm."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        c = self.config = config
        self.src_embed = nn.Embedding(c.src_vocab, c.d_model, padding_idx=c.pad_id)
        self.tgt_embed = nn.Embedding(c.tgt_vocab, c.d_model, padding_idx=c.pad_id)
        for table in (self.src_embed, self.tgt_embed):  # unit variance after sqrt(C)
            nn.init.normal_(table.weight, std=c.d_model**-0.5)
            table.weight.data[c.pad_id] = 0.0
        self.encoder = nn.ModuleList(EncoderLayer(c) for _ in range(c.enc_layers))
        self.decoder = nn.ModuleList(DecoderLayer(c) for _ in range(c.dec_layers))
        final = (lambda: nn.LayerNorm(c.d_model)) if c.norm_first else nn.Identity
        self.encoder_norm, self.decoder_norm = final(), final()
        self.head = nn.Linear(c.d_model, c.tgt_vocab, bias=False)
        if c.tie_output:
            self.head.weight = self.tgt_embed.weight
        self.drop = nn.Dropout(c.dropout)
        pe = sinusoidal_table(c.max_len, c.d_model)
        self.register_buffer("positions", pe, persistent=False)

    def _embed(self, table: nn.Embedding, ids: torch.Tensor, offset: int = 0):
        t = ids.shape[1]
        if offset + t > self.config.max_len:
            raise ValueError(f"length {offset + t} > max_len={self.config.max_len}")
        pe = self.positions[offset : offset + t]
        return self.drop(table(ids) * math.sqrt(self.config.d_model) + pe)

    def encode(self, src: torch.Tensor):
        """src (B, S) -> memory (B, S, C), memory_mask (B, S) (True = real token)."""
        mask = src != self.config.pad_id
        x = self._embed(self.src_embed, src)
        for layer in self.encoder:
            x = layer(x, mask)
        return self.encoder_norm(x), mask

    def decode(self, tgt_in, memory, memory_mask, caches=None, offset: int = 0):
        """tgt_in (B, T) -> logits (B, T, V). With caches (one dict per layer), tgt_in
        holds the tokens at positions offset.. only."""
        y = self._embed(self.tgt_embed, tgt_in, offset)
        for i, layer in enumerate(self.decoder):
            y = layer(y, memory, memory_mask, None if caches is None else caches[i])
        return self.head(self.decoder_norm(y))

    def forward(self, src, src_lengths, tgt_in):
        memory, mask = self.encode(src)
        return self.decode(tgt_in, memory, mask)

    def next_logprobs(self, logits: torch.Tensor) -> torch.Tensor:
        """(..., V) -> float32 log-probabilities with <pad> and <bos> impossible."""
        c = self.config
        banned = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
        banned[[c.pad_id, c.bos_id]] = True
        return F.log_softmax(logits.float().masked_fill(banned, float("-inf")), -1)

    def _stepper(self, src: torch.Tensor, copies: int):
        """A `decoding` step function over `copies` rows per source, with a cache."""
        memory, mask = self.encode(src)
        memory = memory.repeat_interleave(copies, 0)
        mask = mask.repeat_interleave(copies, 0)
        caches = [{} for _ in self.decoder]
        position = [0]

        def step(token, rows):
            if rows is not None:  # follow each prefix's parent row
                for cache in caches:
                    for key in ("k", "v"):
                        cache["self"][key] = cache["self"][key][rows]
            logits = self.decode(token, memory, mask, caches, position[0])
            position[0] += 1
            return self.next_logprobs(logits[:, -1])

        return step

    @torch.no_grad()
    def greedy(self, src, src_lengths=None, max_len: int = 60) -> list[list[int]]:
        """Greedy decoding; ids without <bos>/<eos>, one list per source."""
        c = self.config
        step = self._stepper(src, 1)
        return greedy_search(
            step,
            src.shape[0],
            max_len,
            bos_id=c.bos_id,
            eos_id=c.eos_id,
            device=src.device,
        )

    @torch.no_grad()
    def beam_search(
        self, src, src_lengths=None, beam_size=4, max_len=60, length_penalty=1.0
    ) -> list[list[int]]:
        """Beam search (`decoding.beam_search`), with the key/value cache."""
        c = self.config
        step = self._stepper(src, beam_size)
        return beam_search(
            step,
            src.shape[0],
            beam_size,
            max_len,
            length_penalty,
            bos_id=c.bos_id,
            eos_id=c.eos_id,
            pad_id=c.pad_id,
            device=src.device,
        )


def smoothed_loss(
    logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.1, pad_id: int = 0
) -> torch.Tensor:
    """Label-smoothed cross-entropy per real target token: the target distribution is
    (1 - eps) on the true token plus eps spread uniformly over all V classes.
    logits (B, T, V), y (B, T); padding ignored. Half-precision logits are promoted to
    float32; float64 stays float64."""
    if logits.dtype != torch.float64:
        logits = logits.float()
    return F.cross_entropy(
        logits.flatten(0, 1),
        y.flatten(),
        ignore_index=pad_id,
        label_smoothing=smoothing,
    )


def warmup_inverse_sqrt(warmup_steps: int):
    """The 2017 schedule as a LambdaLR factor of the peak rate: linear warm-up to 1 at
    step `warmup_steps`, then decay as sqrt(warmup_steps / step)."""
    if warmup_steps < 1:
        raise ValueError(f"warmup_steps must be >= 1, got {warmup_steps!r}")

    def factor(step: int) -> float:
        step = max(step, 1)
        return min(step / warmup_steps, math.sqrt(warmup_steps / step))

    return factor
