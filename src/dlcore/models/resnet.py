"""Residual networks for small images (28×28 to 32×32): blocks, ResNet, its PlainNet
twin, a DenseNet block.

The CIFAR-style layout of He et al. (2016): a 3×3 stem, three stages whose widths double
while the resolution halves, global average pooling and one linear layer.
`shortcut=False` removes every skip connection and leaves all else equal — the "plain"
network of the degradation experiment.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv (no bias: BatchNorm supplies it) followed by BatchNorm."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
    )


class BasicBlock(nn.Module):
    """relu(x' + F(x)) with F = conv3×3-BN-ReLU-conv3×3-BN.
    x: (B, c_in, H, W) -> (B, c_out, H/s, W/s).

    x' is x itself, or a 1×1 conv-BN projection when the shape changes ("option B").
    With `shortcut=False` the block is plain: relu(F(x)).
    """

    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1, shortcut: bool = True):
        super().__init__()
        c_out = width * self.expansion
        self.residual = nn.Sequential(
            conv_bn(c_in, width, 3, stride),
            nn.ReLU(inplace=True),
            conv_bn(width, c_out, 3),
        )
        self.use_shortcut = shortcut
        reshape = stride != 1 or c_in != c_out
        self.project = conv_bn(c_in, c_out, 1, stride) if shortcut and reshape else None

    def last_bn(self) -> nn.BatchNorm2d:
        return self.residual[-1][-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual(x)
        if self.use_shortcut:
            out = out + (x if self.project is None else self.project(x))
        return torch.relu(out)


class Bottleneck(BasicBlock):
    """relu(x' + F(x)) with F = 1×1 reduce, 3×3, 1×1 expand (×4): deep networks at
    lower cost."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1, shortcut: bool = True):
        super().__init__(c_in, width, stride, shortcut)
        c_out = width * self.expansion
        self.residual = nn.Sequential(
            conv_bn(c_in, width, 1),
            nn.ReLU(inplace=True),
            conv_bn(width, width, 3, stride),
            nn.ReLU(inplace=True),
            conv_bn(width, c_out, 1),
        )


class PreActBlock(nn.Module):
    """x' + F(x) with F = BN-ReLU-conv3×3-BN-ReLU-conv3×3 (He et al., 2016b): the
    identity path carries the signal untouched from block to block."""

    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1, shortcut: bool = True):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.use_shortcut = shortcut
        reshape = stride != 1 or c_in != width
        self.project = (
            nn.Conv2d(c_in, width, 1, stride, bias=False)
            if shortcut and reshape
            else None
        )

    def last_bn(self) -> nn.BatchNorm2d:
        # zero-initialising it would not zero F (a conv follows): ResNet skips pre-act
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        out = self.conv2(torch.relu(self.bn2(self.conv1(pre))))
        if not self.use_shortcut:
            return out
        return out + (x if self.project is None else self.project(pre))


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck, "preact": PreActBlock}


class ResNet(nn.Module):
    """Stem, stages of residual blocks, global average pooling, linear classifier.

    x: (B, in_channels, H, W) -> logits (B, num_classes). Stage i has `blocks[i]` blocks
    of width `widths[i]` (the two sequences have one entry per stage, the same length);
    every stage after the first starts with stride 2. `zero_init_residual` sets the last
    BatchNorm's scale of every residual branch to 0, so each block starts as the
    identity (Goyal et al., 2017).
    """

    def __init__(
        self,
        blocks: Sequence[int] = (2, 2, 2),
        widths: Sequence[int] = (16, 32, 64),
        *,
        block: str = "basic",
        in_channels: int = 3,
        num_classes: int = 10,
        shortcut: bool = True,
        zero_init_residual: bool = True,
    ):
        super().__init__()
        blocks, widths = _check_stages(blocks, widths)
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; known: {', '.join(BLOCKS)}")
        Block = BLOCKS[block]
        self.stem = nn.Sequential(
            conv_bn(in_channels, widths[0], 3), nn.ReLU(inplace=True)
        )
        stages, c_in = [], widths[0]
        for i, (n, width) in enumerate(zip(blocks, widths)):
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                stages.append(Block(c_in, width, stride, shortcut))
                c_in = width * Block.expansion
        self.stages = nn.Sequential(*stages)
        # pre-activation nets end un-normalised: one more BatchNorm before the ReLU
        self.head_bn = nn.BatchNorm2d(c_in) if block == "preact" else None
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        self.features_dim = c_in
        if zero_init_residual and shortcut and block != "preact":
            for b in self.stages:
                nn.init.zeros_(b.last_bn().weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The feature map before pooling: (B, C, H, W) -> (B, features_dim, H', W')."""
        out = self.stages(self.stem(x))
        return torch.relu(self.head_bn(out)) if self.head_bn is not None else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def _check_stages(
    blocks: Sequence[int], widths: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """`ResNet`'s blocks and widths as tuples, or a ValueError that names them."""
    blocks, widths = tuple(blocks), tuple(widths)
    if len(blocks) != len(widths) or not blocks:
        raise ValueError(
            "blocks and widths need one entry per stage (the same length, ≥ 1): got "
            f"blocks={blocks} ({len(blocks)}) and widths={widths} ({len(widths)})"
        )
    for name, values in (("blocks", blocks), ("widths", widths)):
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise ValueError(f"{name} must be integers ≥ 1, got {values}")
    return blocks, widths


def resnet(
    depth: int = 20, *, width: int = 16, block: str = "basic", **kwargs
) -> ResNet:
    """The CIFAR ResNet of depth 6n+2 (basic/pre-act) or 9n+2 (bottleneck): 20, 32, 56,
    110, ...

    Widths are (width, 2·width, 4·width); e.g. `resnet(20)` has 0.27 M parameters."""
    per_block = 3 if block == "bottleneck" else 2
    n, rest = divmod(depth - 2, 3 * per_block)
    if rest or n < 1:
        raise ValueError(
            f"depth {depth} is not {3 * per_block}n+2 for a {block} ResNet"
        )
    return ResNet((n, n, n), (width, 2 * width, 4 * width), block=block, **kwargs)


def plainnet(depth: int = 20, *, width: int = 16, **kwargs) -> ResNet:
    """The same network as `resnet(depth)` without any shortcut (He et al.'s "plain"
    baseline)."""
    return resnet(
        depth, width=width, shortcut=False, zero_init_residual=False, **kwargs
    )


class DenseBlock(nn.Module):
    """DenseNet block (Huang et al., 2017): layer i sees the concatenation of the input
    and all earlier layers' outputs. x: (B, C, H, W) -> (B, C + layers·growth, H, W)."""

    def __init__(self, c_in: int, layers: int = 4, growth: int = 12):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.BatchNorm2d(c_in + i * growth),
                nn.ReLU(inplace=True),
                nn.Conv2d(c_in + i * growth, growth, 3, padding=1, bias=False),
            )
            for i in range(layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)


def transition(c_in: int, c_out: int) -> nn.Sequential:
    """DenseNet transition: BN-ReLU-1×1 conv to compress channels, then 2×2 average
    pooling."""
    return nn.Sequential(
        nn.BatchNorm2d(c_in),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.AvgPool2d(2),
    )
