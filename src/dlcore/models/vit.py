"""The Vision Transformer (Dosovitskiy et al., 2021), the tool version of Part IV ch5.

An image becomes a sequence: cut it into P x P patches, flatten each and project it to
width D (one strided convolution does both), add a learned position per patch, and
run a stack of pre-norm Transformer encoder blocks over the N = (H/P)(W/P) tokens:

    x = x + Attn(LN(x));  x = x + MLP(LN(x))        MLP: D -> mlp_dim -> D, GELU

The image's summary is either an extra learned "class token" prepended to the patches
(pool="cls", the paper) or the mean of the patch tokens (pool="mean"); a LayerNorm and
one linear layer turn it into logits.

Parameter names follow `torchvision.models.VisionTransformer` (conv_proj, class_token,
encoder.pos_embedding, encoder.layers.encoder_layer_i.{ln_1, self_attention, ln_2,
mlp.0, mlp.3}, encoder.ln, heads.head), so with pool="cls" a state dict loads into
torchvision's model and the logits agree (tests/test_models_vit.py). Attention runs
through `F.scaled_dot_product_attention`; `attention_maps` recomputes the weights
explicitly for plots. The lesson's from-scratch patching is `dlcore.scratch.vit`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .transformer import Attention

__all__ = ["ViTConfig", "ViT", "attention_maps"]


@dataclass(frozen=True)
class ViTConfig:
    image_size: int = 32
    patch_size: int = 4
    channels: int = 3
    num_classes: int = 10
    hidden_dim: int = 128  # D, the width of every token
    depth: int = 6
    num_heads: int = 4
    mlp_dim: int = 256
    pool: str = "cls"  # "cls" (class token) | "mean" (average of patch tokens)
    dropout: float = 0.0  # after the position embedding, in the MLP, after attention

    def __post_init__(self):
        for name in ("image_size", "patch_size", "channels", "num_classes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("hidden_dim", "depth", "num_heads", "mlp_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"patch_size={self.patch_size} must divide image_size={self.image_size}"
            )
        if self.hidden_dim % self.num_heads:
            raise ValueError(
                f"num_heads={self.num_heads} must divide hidden_dim={self.hidden_dim}"
            )
        if self.pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', got {self.pool!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def seq_len(self) -> int:
        """Tokens the encoder sees: the patches, plus the class token if any."""
        return self.num_patches + (self.pool == "cls")


class EncoderBlock(nn.Module):
    """Pre-norm block: forward(x (B, S, D)) -> (B, S, D)."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        c = cfg.hidden_dim
        self.ln_1 = nn.LayerNorm(c, eps=1e-6)
        self.self_attention = Attention(c, cfg.num_heads)
        self.dropout = nn.Dropout(cfg.dropout)
        self.ln_2 = nn.LayerNorm(c, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(c, cfg.mlp_dim),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.mlp_dim, c),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.self_attention(self.ln_1(x)))
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.pos_embedding = nn.Parameter(
            torch.empty(1, cfg.seq_len, cfg.hidden_dim).normal_(std=0.02)
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.Sequential(
            OrderedDict(
                (f"encoder_layer_{i}", EncoderBlock(cfg)) for i in range(cfg.depth)
            )
        )
        self.ln = nn.LayerNorm(cfg.hidden_dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class ViT(nn.Module):
    """forward(x (B, channels, H, W)) -> logits (B, num_classes)."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        p, c = cfg.patch_size, cfg.hidden_dim
        self.conv_proj = nn.Conv2d(cfg.channels, c, kernel_size=p, stride=p)
        if cfg.pool == "cls":
            self.class_token = nn.Parameter(torch.zeros(1, 1, c))
        self.encoder = Encoder(cfg)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(c, cfg.num_classes)))
        self._init_weights()

    def _init_weights(self) -> None:
        """As torchvision: the patch projection like a linear layer of fan-in
        channels * P * P (truncated normal), the head zero."""
        fan_in = self.conv_proj.in_channels * self.cfg.patch_size**2
        nn.init.trunc_normal_(self.conv_proj.weight, std=(1 / fan_in) ** 0.5)
        nn.init.zeros_(self.conv_proj.bias)
        nn.init.zeros_(self.heads.head.weight)
        nn.init.zeros_(self.heads.head.bias)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, channels, H, W) -> encoder input before positions (B, S, D):
        S = N patch tokens, after the class token if pool="cls"."""
        if x.ndim != 4 or x.shape[1:] != (
            self.cfg.channels,
            self.cfg.image_size,
            self.cfg.image_size,
        ):
            raise ValueError(
                f"x must be (B, {self.cfg.channels}, {self.cfg.image_size}, "
                f"{self.cfg.image_size}), got {tuple(x.shape)}"
            )
        patches = self.conv_proj(x).flatten(2).transpose(1, 2)  # (B, N, D)
        if self.cfg.pool == "cls":
            cls = self.class_token.expand(len(x), -1, -1)
            patches = torch.cat([cls, patches], dim=1)
        return patches

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled image summary (B, D), after the final LayerNorm."""
        h = self.encoder(self.tokens(x))
        return h[:, 0] if self.cfg.pool == "cls" else h.mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(self.features(x))


@torch.no_grad()
def attention_maps(model: ViT, x: torch.Tensor) -> list[torch.Tensor]:
    """Attention weights of every block for images x: a list of `depth` tensors
    (B, heads, S, S), rows = queries, summing to 1. Runs the model's blocks in eval
    mode and recomputes softmax(Q K^T / sqrt(d)) from each block's projections."""
    was_training = model.training
    model.eval()
    h = model.encoder.pos_embedding + model.tokens(x)
    maps = []
    for block in model.encoder.layers:
        attn = block.self_attention
        z = block.ln_1(h)
        c = z.shape[-1]
        q, k = F.linear(
            z, attn.in_proj_weight[: 2 * c], attn.in_proj_bias[: 2 * c]
        ).chunk(2, dim=-1)
        q, k = attn._heads(q), attn._heads(k)
        scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
        maps.append(scores.softmax(dim=-1))
        h = block(h)
    model.train(was_training)
    return maps
