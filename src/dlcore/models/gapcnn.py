"""GapCNN: a small CNN whose head is global average pooling → linear.

For this head, Grad-CAM at the last ReLU equals ReLU(CAM) divided by the number of
positions (Zhou et al. 2016; Selvaraju et al. 2017): the chapter "Seeing Inside a CNN"
uses it as a case whose right answer is known exactly.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GapCNN"]


class GapCNN(nn.Module):
    """conv(5×5)-ReLU-pool → conv-ReLU-pool → conv-ReLU → … → global average pool →
    linear (with `batchnorm`, every conv is followed by BatchNorm before its ReLU).

    `features` ends in a ReLU, so `features(x)` are the maps
    A: (B, widths[-1], H/4, W/4) that the global average pool reduces to
    (B, widths[-1]) and `classifier` maps to logits.
    x: (B, in_channels, H, W) -> (B, num_classes).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        widths: tuple[int, ...] = (32, 64, 128),
        first_kernel: int = 5,
        batchnorm: bool = False,
    ):
        super().__init__()
        if in_channels < 1 or num_classes < 1:
            raise ValueError(
                f"in_channels and num_classes must be >= 1, not {in_channels}, "
                f"{num_classes}"
            )
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty tuple of ints >= 1: {widths}")
        if first_kernel < 1 or first_kernel % 2 == 0:
            raise ValueError(f"first_kernel must be odd and >= 1, not {first_kernel}")
        layers, c = [], in_channels
        for i, w in enumerate(widths):
            k = first_kernel if i == 0 else 3
            layers.append(nn.Conv2d(c, w, k, padding=k // 2, bias=not batchnorm))
            layers += [nn.BatchNorm2d(w), nn.ReLU()] if batchnorm else [nn.ReLU()]
            if i < min(2, len(widths) - 1):  # two 2×2 pools at most: 32×32 -> 8×8 maps
                layers.append(nn.MaxPool2d(2))
            c = w
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))
