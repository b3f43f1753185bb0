"""dlcore.scratch.vit: patches against nn.Conv2d / F.unfold, attention distance
against a loop written out."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlcore.scratch.vit import (
    mean_attention_distance,
    patch_centres,
    patchify,
    unpatchify,
)


@pytest.mark.parametrize(
    "shape,patch",
    [((2, 3, 8, 12), 4), ((1, 1, 5, 5), 5), ((3, 2, 6, 6), 1), ((1, 3, 32, 32), 4)],
)
def test_patchify_then_linear_equals_strided_conv(shape, patch):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64)
    conv = nn.Conv2d(shape[1], 7, kernel_size=patch, stride=patch).double()
    expected = conv(x).flatten(2).transpose(1, 2)  # (B, N, 7)
    rows = patchify(x, patch)
    ours = rows @ conv.weight.flatten(1).T + conv.bias
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)


def test_patchify_equals_unfold_exactly():
    x = torch.randn(2, 3, 8, 8)
    expected = F.unfold(x, kernel_size=4, stride=4).transpose(1, 2)
    torch.testing.assert_close(patchify(x, 4), expected, rtol=0, atol=0)


def test_patch_order_is_reading_order():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    rows = patchify(x, 2)
    assert rows[0, 1].tolist() == [2.0, 3.0, 6.0, 7.0]  # top-right patch second
    assert patch_centres(2, 2).tolist() == [[1, 1], [1, 3], [3, 1], [3, 3]]


def test_patchify_errors():
    with pytest.raises(ValueError, match="patch=3"):
        patchify(torch.zeros(1, 3, 8, 8), 3)
    with pytest.raises(ValueError, match="B, C, H, W"):
        patchify(torch.zeros(3, 8, 8), 4)


def _distance_loop(attn, grid, patch, has_cls):
    b, heads, s, _ = attn.shape
    off = int(has_cls)
    out = torch.zeros(heads, dtype=torch.float64)
    for h in range(heads):
        total = 0.0
        for n in range(b):
            for i in range(grid * grid):
                w = attn[n, h, off + i, off:]
                w = w / w.sum()
                yi, xi = divmod(i, grid)
                for j in range(grid * grid):
                    yj, xj = divmod(j, grid)
                    total += w[j].item() * patch * math.hypot(yi - yj, xi - xj)
        out[h] = total / (b * grid * grid)
    return out


@pytest.mark.parametrize("has_cls", [True, False])
def test_mean_attention_distance_equals_a_loop(has_cls):
    torch.manual_seed(1)
    grid, patch = 3, 4
    s = grid * grid + has_cls
    attn = torch.randn(2, 3, s, s, dtype=torch.float64).mul(3).softmax(-1)
    torch.testing.assert_close(
        mean_attention_distance(attn, grid, patch, has_cls),
        _distance_loop(attn, grid, patch, has_cls),
    )


def test_mean_attention_distance_extremes():
    grid, patch = 4, 2
    n = grid * grid
    own = torch.eye(n, dtype=torch.float64).expand(1, 2, n, n)  # each looks at itself
    assert mean_attention_distance(own, grid, patch, False).tolist() == [0.0, 0.0]
    # a class token that takes all but a sliver of the weight: renormalised away
    s = n + 1
    attn = torch.full((1, 1, s, s), 1e-9, dtype=torch.float64)
    attn[..., 0] = 1.0
    uniform = mean_attention_distance(
        attn / attn.sum(-1, keepdim=True), grid, patch, True
    )
    centres = patch_centres(grid, patch)
    expected = torch.cdist(centres, centres).mean()
    torch.testing.assert_close(uniform, expected.expand(1))
    with pytest.raises(ValueError, match="expected grid"):
        mean_attention_distance(own, grid, patch, True)


def test_unpatchify_inverts_patchify():
    x = torch.randn(2, 3, 8, 12, dtype=torch.float64)
    rows = patchify(x, 4)
    assert torch.equal(unpatchify(rows, 4, 8, 12), x)
    with pytest.raises(ValueError, match="do not hold"):
        unpatchify(rows, 4, 8, 8)
