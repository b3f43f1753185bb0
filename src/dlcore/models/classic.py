"""The classic convolutional networks, scaled to small grey images (28×28 or 32×32).

Each network keeps the idea its paper added and shrinks the widths to train on a CPU:

- `LeNet5` (LeCun et al. 1998): convolution + subsampling + fully connected, end to end.
- `AlexNetSmall` (Krizhevsky et al. 2012): deeper, ReLU, max-pooling, dropout in the
  classifier.
- `VGGSmall` (Simonyan & Zisserman 2015): uniform blocks of 3×3 convolutions and a 2×2
  pool.
- `NiNSmall` (Lin et al. 2014): 1×1 convolutions as per-pixel MLPs; global average
  pooling instead of fully connected layers.
- `GoogLeNetSmall` (Szegedy et al. 2015): Inception blocks, parallel 1×1, 3×3, 5×5 and
  pooling branches, concatenated; 1×1 "bottlenecks" keep them cheap.
- `FastMNISTNet`: the book's fast MNIST CNN, LeNet's shape with BatchNorm (Ioffe &
  Szegedy 2015), pooling before normalisation. Its training recipe is
  `dlcore.recipes.train_fast_mnist` (models here, training there).

All take x: (B, in_channels, H, W) with H = W = 28 or 32 and return logits
(B, num_classes).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "LeNet5",
    "AlexNetSmall",
    "VGGSmall",
    "vgg_block",
    "NiNSmall",
    "nin_block",
    "Inception",
    "GoogLeNetSmall",
    "FastMNISTNet",
    "MODELS",
]


class LeNet5(nn.Module):
    """LeNet-5 for 28×28 inputs (padded by 2 to the original 32×32).

    C1 6@5×5 → S2 avg-pool → C3 16@5×5 → S4 avg-pool → C5 120 → F6 84 → 10. Differences
    from 1998: C3 connects to all six maps (the paper used a sparse table), subsampling
    is a plain average pool, the output is a linear layer instead of RBF units.
    Parameters: 61 706. x: (B, in_channels, 28, 28) -> (B, num_classes).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        activation: type[nn.Module] = nn.Tanh,
    ):
        super().__init__()
        act = activation
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2),
            act(),
            nn.AvgPool2d(2),  # (6, 14, 14)
            nn.Conv2d(6, 16, 5),
            act(),
            nn.AvgPool2d(2),  # (16, 5, 5)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            act(),
            nn.Linear(120, 84),
            act(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class AlexNetSmall(nn.Module):
    """AlexNet's shape, narrowed: five convolutions at 1/4 of its widths
    (96-256-384-384-256 → 24-64-96-96-64; a large, strided first kernel), ReLU,
    overlapping 3×3/2 max-pooling, and a three-layer classifier with dropout at 1/8 of
    its width (4096 → 512). x: (B, in_channels, 28|32, 28|32) -> (B, num_classes)."""

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, dropout: float = 0.5
    ):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 24, 5, stride=2, padding=2),
            nn.ReLU(),  # (24, 14, 14) at 28
            nn.MaxPool2d(3, stride=2, padding=1),  # (24, 7, 7)
            nn.Conv2d(24, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),  # (64, 4, 4)
            nn.Conv2d(64, 96, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(96, 96, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(96, 64, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveMaxPool2d(2),  # (64, 2, 2)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(64 * 2 * 2, 512),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def vgg_block(num_convs: int, c_in: int, c_out: int) -> nn.Sequential:
    """VGG's unit: `num_convs` 3×3 convolutions (padding 1, so the size is kept) with
    ReLU, then a 2×2 max-pool that halves height and width.
    (B, c_in, H, W) -> (B, c_out, H//2, W//2)."""
    layers: list[nn.Module] = []
    for i in range(num_convs):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.MaxPool2d(2))


class VGGSmall(nn.Module):
    """A VGG built from `vgg_block`s: `arch` lists (convs, channels) per block; the
    default ((1, 16), (1, 32), (2, 64)) takes 28×28 to 3×3 (32×32 to 4×4), then a
    dropout classifier. x: (B, in_channels, 28|32, 28|32) -> (B, num_classes)."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        arch: tuple[tuple[int, int], ...] = ((1, 16), (1, 32), (2, 64)),
        dropout: float = 0.5,
    ):
        super().__init__()
        blocks, c = [], in_channels
        for num_convs, c_out in arch:
            blocks.append(vgg_block(num_convs, c, c_out))
            c = c_out
        self.features = nn.Sequential(*blocks, nn.AdaptiveMaxPool2d(3))  # (c, 3, 3)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * 9, 256),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(256, 256),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def nin_block(
    c_in: int, c_out: int, kernel_size: int, stride: int = 1, padding: int = 0
) -> nn.Sequential:
    """NiN's unit: one k×k convolution followed by two 1×1 convolutions — a small MLP
    applied at every pixel across channels. (B, c_in, H, W) -> (B, c_out, H', W')."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size, stride, padding),
        nn.ReLU(),
        nn.Conv2d(c_out, c_out, 1),
        nn.ReLU(),
        nn.Conv2d(c_out, c_out, 1),
        nn.ReLU(),
    )


class NiNSmall(nn.Module):
    """Network in Network: three `nin_block`s, the last with one channel per class, and
    global average pooling in place of fully connected layers (so: no Linear layer at
    all). x: (B, in_channels, 28|32, 28|32) -> (B, num_classes)."""

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, dropout: float = 0.5
    ):
        super().__init__()
        self.net = nn.Sequential(
            nin_block(in_channels, 32, 5, stride=2, padding=2),
            nn.MaxPool2d(2),  # (32, 7, 7) at 28
            nin_block(32, 64, 3, padding=1),
            nn.MaxPool2d(2),  # (64, 3, 3)
            nn.Dropout(dropout),
            nin_block(64, num_classes, 3, padding=1),  # (classes, 3, 3)
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),  # (classes,)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Inception(nn.Module):
    """GoogLeNet's block: four parallel branches on one input, concatenated on channels.

    b1: 1×1 → c1;  b2: 1×1 → c2[0], 3×3 → c2[1];  b3: 1×1 → c3[0], 5×5 → c3[1];
    b4: 3×3 max-pool, 1×1 → c4. The 1×1 reductions before the 3×3 and 5×5 cut their
    cost. (B, c_in, H, W) -> (B, c1 + c2[1] + c3[1] + c4, H, W).
    """

    def __init__(
        self, c_in: int, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int
    ):
        super().__init__()
        self.b1 = nn.Sequential(nn.Conv2d(c_in, c1, 1), nn.ReLU())
        self.b2 = nn.Sequential(
            nn.Conv2d(c_in, c2[0], 1),
            nn.ReLU(),
            nn.Conv2d(c2[0], c2[1], 3, padding=1),
            nn.ReLU(),
        )
        self.b3 = nn.Sequential(
            nn.Conv2d(c_in, c3[0], 1),
            nn.ReLU(),
            nn.Conv2d(c3[0], c3[1], 5, padding=2),
            nn.ReLU(),
        )
        self.b4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(c_in, c4, 1), nn.ReLU()
        )
        self.out_channels = c1 + c2[1] + c3[1] + c4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1)


class GoogLeNetSmall(nn.Module):
    """A stem convolution, one Inception block at 14×14 and one at 7×7, global average
    pooling and one linear layer.
    x: (B, in_channels, 28|32, 28|32) -> (B, num_classes)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        i3 = Inception(32, 16, (16, 32), (8, 16), 16)  # 80 channels
        i4 = Inception(i3.out_channels, 48, (32, 64), (8, 16), 32)  # 160 channels
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (32, 14, 14)
            i3,
            nn.MaxPool2d(2),  # (80, 7, 7)
            i4,
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),  # (160,)
            nn.Linear(i4.out_channels, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FastMNISTNet(nn.Module):
    """The book's fast MNIST CNN: LeNet's two 5×5 "valid" convolutions (no padding, so
    the maps shrink 28 → 24 and 12 → 8), wider (16 and 32 maps), each followed by a 2×2
    max-pool and only then by BatchNorm and ReLU. Pooling first means normalisation and
    activation touch 4× fewer values (for ReLU alone the order does not matter:
    max-pooling commutes with any increasing function; with BatchNorm in between it is a
    slightly different network, normalised on the pooled maps). About 1.05 M
    multiply–adds and 18 k parameters. `batchnorm=False` drops BatchNorm (biases come
    back), for ablations. x: (B, in_channels, 28, 28) -> (B, num_classes)."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: tuple[int, int] = (16, 32),
        batchnorm: bool = True,
    ):
        super().__init__()
        c1, c2 = widths

        def norm(c: int) -> nn.Module:
            return nn.BatchNorm2d(c) if batchnorm else nn.Identity()

        self.net = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, bias=not batchnorm),
            nn.MaxPool2d(2),
            norm(c1),
            nn.ReLU(),  # (c1, 12, 12)
            nn.Conv2d(c1, c2, 5, bias=not batchnorm),
            nn.MaxPool2d(2),
            norm(c2),
            nn.ReLU(),  # (c2, 4, 4)
            nn.Flatten(),
            nn.Linear(c2 * 4 * 4, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


MODELS = {
    "LeNet-5": LeNet5,
    "AlexNet-small": AlexNetSmall,
    "VGG-small": VGGSmall,
    "NiN-small": NiNSmall,
    "GoogLeNet-small": GoogLeNetSmall,
    "FastMNISTNet": FastMNISTNet,
}
"""The chapter's models by display name, each a class whose defaults fit 1×28×28."""
