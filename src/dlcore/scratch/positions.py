"""Position encodings from scratch: the sinusoidal table of Vaswani et al. (2017),
learned absolute positions, and rotary position embedding (RoPE, Su et al., 2021).

Shapes: T positions, C model channels (even), d channels of one attention head (even).

RoPE conventions. RoPE rotates pairs of channels of a query or key by an angle that
grows with the position. Which channels form a pair is a convention:
- "rotate-half" (the default here; GPT-NeoX, LLaMA in Hugging Face): channel i is paired
  with channel i + d/2, for i < d/2;
- "interleaved" (the RoFormer paper, GPT-J, Meta's LLaMA code): channel 2i with 2i + 1.
Both rotate pair i by the angle p * theta_i with theta_i = base^(-2i/d); they give the
same attention scores once the channels are permuted, but weights trained with one
convention are wrong under the other.
"""

from __future__ import annotations

import torch
from torch import nn


def _check_even(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ValueError(f"{name} must be an int >= 2, got {value!r}")
    if value % 2:
        raise ValueError(f"{name} must be even (channels come in pairs), got {value}")


def frequencies(dim: int, base: float = 10_000.0, *, dtype=torch.float64):
    """The dim/2 angular frequencies theta_i = base^(-2i/dim), i = 0..dim/2-1."""
    _check_even("dim", dim)
    if not base > 1:
        raise ValueError(f"base must be > 1, got {base!r}")
    i = torch.arange(dim // 2, dtype=torch.float64)
    return (base ** (-2 * i / dim)).to(dtype)


def sinusoidal_table(
    num_positions: int, dim: int, base: float = 10_000.0, *, dtype=torch.float32
) -> torch.Tensor:
    """PE: (num_positions, dim) with PE[p, 2i] = sin(p theta_i), PE[p, 2i+1] =
    cos(p theta_i) (sin and cos interleaved, as in the paper)."""
    if isinstance(num_positions, bool) or not isinstance(num_positions, int):
        raise ValueError(f"num_positions must be an int, got {num_positions!r}")
    if num_positions < 1:
        raise ValueError(f"num_positions must be >= 1, got {num_positions}")
    p = torch.arange(num_positions, dtype=torch.float64)[:, None]
    angles = p * frequencies(dim, base)  # (T, dim/2), computed in float64
    table = torch.stack([angles.sin(), angles.cos()], dim=-1)  # (T, dim/2, 2)
    return table.reshape(num_positions, dim).to(dtype)


def sinusoidal_shift(
    offset: int, dim: int, base: float = 10_000.0, *, dtype=torch.float64
) -> torch.Tensor:
    """M: (dim, dim) with PE[p + offset] = M @ PE[p] for every p: block diagonal, one
    2x2 rotation by -offset*theta_i per (sin, cos) pair. It depends on the offset only,
    not on p: the linear map the paper says makes relative positions easy to learn."""
    phi = offset * frequencies(dim, base)  # (dim/2,)
    c, s = phi.cos(), phi.sin()
    # [sin(a+b); cos(a+b)] = [[cos b, sin b], [-sin b, cos b]] [sin a; cos a]
    blocks = torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)
    return torch.block_diag(*blocks).to(dtype)


class SinusoidalPositions(nn.Module):
    """x: (B, T, C) -> x + PE[:T]; fixed (no parameters), defined for any T."""

    def __init__(self, dim: int, base: float = 10_000.0):
        super().__init__()
        _check_even("dim", dim)
        self.dim, self.base = dim, base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be (B, T, {self.dim}), got {tuple(x.shape)}")
        pe = sinusoidal_table(x.shape[1], self.dim, self.base, dtype=x.dtype)
        return x + pe.to(x.device)


class LearnedPositions(nn.Module):
    """x: (B, T, C) -> x + P[:T], P: (max_len, C) a trained table (as in GPT-2), set
    to N(0, std^2) at the start. Only rows 0..T-1 of the sequences it is trained on ever
    receive a gradient; T > max_len is an error."""

    def __init__(self, max_len: int, dim: int, std: float = 0.02):
        super().__init__()
        if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"max_len must be a positive int, got {max_len!r}")
        self.table = nn.Parameter(torch.randn(max_len, dim) * std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        max_len, dim = self.table.shape
        if x.dim() != 3 or x.shape[-1] != dim:
            raise ValueError(f"x must be (B, T, {dim}), got {tuple(x.shape)}")
        if x.shape[1] > max_len:
            raise ValueError(
                f"sequence length {x.shape[1]} exceeds max_len={max_len} of the "
                "learned table: positions beyond it have no embedding"
            )
        return x + self.table[: x.shape[1]]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """x: (..., d) -> (-x[d/2:], x[:d/2]): multiplies each pair (i, i + d/2), seen as
    a complex number x_i + j x_{i+d/2}, by j (a quarter turn)."""
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def rope_angles(
    positions: torch.Tensor, dim: int, base: float = 10_000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin: (T, dim/2) of the angles positions[t] * theta_i (float64)."""
    theta = frequencies(dim, base).to(positions.device)
    angles = positions.to(torch.float64)[:, None] * theta
    return angles.cos(), angles.sin()


def apply_rope(
    x: torch.Tensor,
    positions: torch.Tensor | None = None,
    base: float = 10_000.0,
    *,
    interleaved: bool = False,
) -> torch.Tensor:
    """Rotate queries or keys x: (..., T, d) by their positions (default 0..T-1;
    positions: (T,) integers or floats). Pair i turns by positions[t] * theta_i; pairs
    are (i, i + d/2) ("rotate-half", default) or (2i, 2i+1) (interleaved=True).
    Returns a tensor of x's shape and dtype; norms of every pair are unchanged."""
    if x.dim() < 2:
        raise ValueError(f"x must be (..., T, d), got {tuple(x.shape)}")
    t, d = x.shape[-2], x.shape[-1]
    _check_even("x.shape[-1] (head dim)", d)
    if positions is None:
        positions = torch.arange(t, device=x.device)
    if positions.shape != (t,):
        raise ValueError(f"positions must be ({t},), got {tuple(positions.shape)}")
    cos, sin = (a.to(x.dtype) for a in rope_angles(positions, d, base))
    if interleaved:
        x1, x2 = x[..., 0::2], x[..., 1::2]
        out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
        return out.flatten(-2)
    cos, sin = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)  # (T, d)
    return x * cos + rotate_half(x) * sin
