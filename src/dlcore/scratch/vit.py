"""Part IV ch5 from scratch: images as sequences of patches; how far attention looks.

- `patchify` cuts (B, C, H, W) images into non-overlapping P x P patches, flattened in
  (channel, row, column) order: (B, N, C * P * P), patches in reading order. A linear
  layer on these rows is the ViT's patch embedding; a P x P convolution with stride P
  computes the same thing (checked in tests/test_scratch_vit.py against `nn.Conv2d` and
  `F.unfold`).
- `patch_centres` gives each patch's centre in pixels.
- `mean_attention_distance` is the attention-weighted mean distance, in pixels,
  between a query patch and the patches it attends to (Dosovitskiy et al., 2021,
  fig. 7): small = local, like a convolution; large = global.
"""

from __future__ import annotations

import torch

__all__ = ["patchify", "unpatchify", "patch_centres", "mean_attention_distance"]


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """x: (B, C, H, W) -> (B, N, C * patch * patch), N = (H / patch) * (W / patch)."""
    if x.ndim != 4:
        raise ValueError(f"x must be (B, C, H, W), got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    if patch < 1 or h % patch or w % patch:
        raise ValueError(f"patch={patch} must be >= 1 and divide H={h} and W={w}")
    rows, cols = h // patch, w // patch
    x = x.reshape(b, c, rows, patch, cols, patch)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, rows, cols, C, patch, patch)
    return x.reshape(b, rows * cols, c * patch * patch)


def unpatchify(rows: torch.Tensor, patch: int, height: int, width: int) -> torch.Tensor:
    """The inverse of `patchify`: (B, N, C * patch * patch) -> (B, C, height, width)."""
    b, n, d = rows.shape
    grid_h, grid_w = height // patch, width // patch
    if grid_h * grid_w != n or d % (patch * patch):
        raise ValueError(
            f"rows {tuple(rows.shape)} do not hold {grid_h} x {grid_w} patches of "
            f"{patch} x {patch} pixels"
        )
    c = d // (patch * patch)
    x = rows.reshape(b, grid_h, grid_w, c, patch, patch).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, height, width)


def patch_centres(grid: int, patch: int) -> torch.Tensor:
    """(grid * grid, 2) pixel coordinates (row, column) of the patch centres, in the
    reading order of `patchify`."""
    centre = patch * (torch.arange(grid, dtype=torch.float64) + 0.5)
    rows, cols = torch.meshgrid(centre, centre, indexing="ij")
    return torch.stack([rows.flatten(), cols.flatten()], dim=1)


def mean_attention_distance(
    attn: torch.Tensor, grid: int, patch: int, has_cls: bool
) -> torch.Tensor:
    """attn: (B, heads, S, S) attention weights (rows sum to 1), S = grid^2 (+ 1 if
    has_cls, the class token first) -> (heads,) mean distance in pixels.

    Only patch-to-patch attention is measured: the class token has no position, so
    its row and column are dropped and each patch query's weights renormalised over
    the patches. Averaged over queries and images."""
    if attn.ndim != 4 or attn.shape[-1] != attn.shape[-2]:
        raise ValueError(f"attn must be (B, heads, S, S), got {tuple(attn.shape)}")
    expected = grid * grid + int(has_cls)
    if attn.shape[-1] != expected:
        raise ValueError(
            f"attn has S={attn.shape[-1]} tokens, expected grid^2"
            f"{' + 1' if has_cls else ''} = {expected}"
        )
    if has_cls:
        attn = attn[..., 1:, 1:]
    weights = attn / attn.sum(dim=-1, keepdim=True)
    centres = patch_centres(grid, patch).to(attn.device, attn.dtype)
    distance = torch.cdist(centres, centres)  # (N, N) pixels
    per_query = (weights * distance).sum(dim=-1)  # (B, heads, N)
    return per_query.mean(dim=(0, 2))
