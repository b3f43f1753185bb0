"""A decoder-only language model (GPT), the tool version of Part IV ch4.

One `GPTConfig` spans the road from the 2017 block to a modern one, a switch per idea:

    norm       "layer" (LayerNorm, 2017 / GPT-2)      | "rms" (RMSNorm, LLaMA)
    position   "learned" (a table added to the input) | "rope" (rotary, in attention)
    mlp        "gelu" (C -> 4C -> C)                  | "swiglu" (gated, ~same weights)
    n_kv_head  n_head (multi-head)                    | fewer (grouped-query attention)
    tie_weights False (own output matrix)             | True (output = embedding table)

Every block is pre-norm (ch3 showed why): x = x + Attn(Norm(x)); x = x + MLP(Norm(x)).
Attention runs through `F.scaled_dot_product_attention`. Generation keeps a key/value
cache (`KVCache`, written out here: PyTorch has none), so each new token costs one
position's work instead of a forward pass over the whole prefix. No linear layer has a
bias (nanoGPT's bias=False option), in every variant, so the switches above are the only
differences. The lesson's from-scratch pieces are in `dlcore.scratch.gpt`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..sampling import sample_next
from ..scratch.positions import rope_angles, rotate_half

__all__ = ["GPTConfig", "KVCache", "GPT", "generate", "flops_per_token"]


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    block_size: int = 64  # longest context T the model sees (and caches)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128  # C
    n_kv_head: int | None = None  # None = n_head; 1 = multi-query attention
    norm: str = "layer"
    position: str = "learned"
    mlp: str = "gelu"
    tie_weights: bool = False
    dropout: float = 0.0
    rope_base: float = 10_000.0

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        choices = {
            "norm": ("layer", "rms"),
            "position": ("learned", "rope"),
            "mlp": ("gelu", "swiglu"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name} must be one of {allowed}, got {getattr(self, name)!r}"
                )
        if self.n_embd % self.n_head or (self.n_embd // self.n_head) % 2:
            raise ValueError(
                f"n_embd={self.n_embd} must be n_head={self.n_head} times an even "
                "head size"
            )
        if self.n_head % self.kv_heads:
            raise ValueError(
                f"n_kv_head={self.n_kv_head} must divide n_head={self.n_head}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def mlp_hidden(self) -> int:
        """4C for GELU; for SwiGLU (three matrices) 2/3 of that, rounded up to a
        multiple of 8, so both MLPs hold about 8C^2 weights."""
        if self.mlp == "gelu":
            return 4 * self.n_embd
        return 8 * math.ceil(8 * self.n_embd / 3 / 8)

    def modern(self, n_kv_head: int | None = None) -> GPTConfig:
        """This size with every modern switch on (n_kv_head default: n_head / 2)."""
        kv = n_kv_head if n_kv_head is not None else max(1, self.n_head // 2)
        return replace(
            self,
            norm="rms",
            position="rope",
            mlp="swiglu",
            n_kv_head=kv,
            tie_weights=True,
        )


def _norm(cfg: GPTConfig) -> nn.Module:
    if cfg.norm == "rms":
        return nn.RMSNorm(cfg.n_embd, eps=1e-5)
    return nn.LayerNorm(cfg.n_embd, bias=False)


@dataclass
class KVCache:
    """One layer's keys and values so far: k, v (B, kv_heads, block_size, head_dim),
    filled up to `length` positions."""

    k: torch.Tensor
    v: torch.Tensor
    length: int = 0

    def append(
        self, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, kv_heads, T, head_dim) after the stored ones; return all keys
        and values so far, (B, kv_heads, length, head_dim)."""
        end = self.length + k.shape[2]
        if end > self.k.shape[2]:
            raise ValueError(
                f"cache holds {self.k.shape[2]} positions, asked for {end}"
            )
        self.k[:, :, self.length : end] = k
        self.v[:, :, self.length : end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


class CausalSelfAttention(nn.Module):
    """Causal attention with n_head query heads sharing kv_heads key/value heads.
    forward(x (B, T, C), rope (cos, sin) each (T, head_dim) or None, cache)
    -> (B, T, C)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.kv_heads, self.head_dim = (
            cfg.n_head,
            cfg.kv_heads,
            cfg.head_dim,
        )
        self.query = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.key_value = nn.Linear(
            cfg.n_embd, 2 * cfg.kv_heads * cfg.head_dim, bias=False
        )
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x, rope=None, cache: KVCache | None = None) -> torch.Tensor:
        b, t, c = x.shape
        q = self.query(x).view(b, t, self.n_head, self.head_dim).transpose(1, 2)
        kv = self.key_value(x).view(b, t, 2, self.kv_heads, self.head_dim)
        k, v = kv.permute(2, 0, 3, 1, 4)  # each (B, kv_heads, T, head_dim)
        if rope is not None:
            cos, sin = rope
            q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        if cache is not None:
            if t > 1 and cache.length > 0:
                raise ValueError("with a cache, feed the prompt once, then one token")
            k, v = cache.append(k, v)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            is_causal=t > 1,  # one new token may see every cached position
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.kv_heads != self.n_head,
        )
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class MLP(nn.Module):
    """GELU: W2 gelu(W1 x). SwiGLU: W2 (silu(W1 x) * W3 x). x: (B, T, C) -> same."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        hidden, self.gated = cfg.mlp_hidden, cfg.mlp == "swiglu"
        self.fc = nn.Linear(cfg.n_embd, hidden, bias=False)
        self.up = nn.Linear(cfg.n_embd, hidden, bias=False) if self.gated else None
        self.proj = nn.Linear(hidden, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            return self.proj(F.silu(self.fc(x)) * self.up(x))
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    """Pre-norm block: x + Attn(Norm(x)), then + MLP(Norm(x)); x: (B, T, C)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.norm1, self.attn = _norm(cfg), CausalSelfAttention(cfg)
        self.norm2, self.mlp = _norm(cfg), MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, rope=None, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), rope, cache))
        return x + self.drop(self.mlp(self.norm2(x)))


class GPT(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, vocab_size). With `caches` (one
    KVCache per layer, from `new_caches`), positions continue after the cached ones."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.positions = (
            nn.Embedding(cfg.block_size, cfg.n_embd)
            if cfg.position == "learned"
            else None
        )
        if cfg.position == "rope":
            cos, sin = rope_angles(
                torch.arange(cfg.block_size), cfg.head_dim, cfg.rope_base
            )
            self.register_buffer("rope_cos", torch.cat([cos, cos], -1).float(), False)
            self.register_buffer("rope_sin", torch.cat([sin, sin], -1).float(), False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = _norm(cfg)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: shrink residual writes
            if name.endswith("proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))
        if cfg.tie_weights:
            self.head.weight = self.embed.weight

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def new_caches(self, batch: int) -> list[KVCache]:
        cfg, p = self.config, self.embed.weight
        shape = (batch, cfg.kv_heads, cfg.block_size, cfg.head_dim)
        return [
            KVCache(p.new_zeros(shape), p.new_zeros(shape)) for _ in range(cfg.n_layer)
        ]

    def forward(self, idx: torch.Tensor, caches: list[KVCache] | None = None):
        t = idx.shape[1]
        start = caches[0].length if caches else 0
        if start + t > self.config.block_size:
            raise ValueError(
                f"{start + t} positions exceed block_size={self.config.block_size}"
            )
        x = self.embed(idx)
        if self.positions is not None:
            x = x + self.positions.weight[start : start + t]
        rope = None
        if self.config.position == "rope":
            rope = self._rope(start, t, x.dtype)
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, rope, caches[i] if caches else None)
        return self.head(self.norm(x))

    def _rope(self, start: int, t: int, dtype: torch.dtype):
        """(cos, sin) each (t, head_dim) for positions start..start+t-1. The tables are
        float32 (MPS has no float64); a float64 model gets angles computed afresh."""
        if dtype == torch.float64:
            positions = torch.arange(start, start + t, device=self.rope_cos.device)
            cos, sin = rope_angles(
                positions, self.config.head_dim, self.config.rope_base
            )
            return torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)
        end = start + t
        return self.rope_cos[start:end].to(dtype), self.rope_sin[start:end].to(dtype)

    def num_params(self, *, non_embedding: bool = True) -> int:
        """Parameters (tied ones once); non_embedding drops the token and position
        tables (the count scaling laws use), but keeps a tied output matrix."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            if not self.config.tie_weights:
                n -= self.embed.weight.numel()
            if self.positions is not None:
                n -= self.positions.weight.numel()
        return n


@torch.no_grad()
def generate(
    model: GPT,
    prompt: torch.Tensor,
    new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Continue prompt (B, T0) by new_tokens ids -> (B, T0 + new_tokens). Cached: the
    prompt runs once, then each step feeds only the newest token (T0 + new_tokens must
    fit in block_size). Uncached: each step re-runs the last block_size tokens."""
    if new_tokens < 0:
        raise ValueError(f"new_tokens must be >= 0, got {new_tokens!r}")
    model.eval()
    idx = prompt
    caches = model.new_caches(prompt.shape[0]) if use_cache else None
    if caches and prompt.shape[1] + new_tokens > model.config.block_size:
        raise ValueError(
            f"prompt {prompt.shape[1]} + new_tokens {new_tokens} exceed block_size="
            f"{model.config.block_size} (use_cache=False slides the context instead)"
        )
    feed = prompt
    for _ in range(new_tokens):
        if caches is None:
            feed = idx[:, -model.config.block_size :]
        logits = model(feed, caches)[:, -1].float()
        nxt = sample_next(
            logits,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            generator=generator,
        )
        idx = torch.cat([idx, nxt[:, None]], dim=1)
        feed = nxt[:, None]
    return idx


def flops_per_token(cfg: GPTConfig, n_params: int, context: int | None = None) -> int:
    """Training FLOPs per token (forward + backward), as in the PaLM paper's appendix
    and nanoGPT's estimate_mfu: 6 N for the weight matmuls (N = non-embedding
    parameters) plus 12 L C T for attention's two T x T matmuls (T = context)."""
    t = cfg.block_size if context is None else context
    return 6 * n_params + 12 * cfg.n_layer * cfg.n_embd * t
