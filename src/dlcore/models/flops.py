"""Count parameters and multiply–adds (MACs) of a model from its layer shapes.

A forward hook on every `nn.Conv2d` and `nn.Linear` reads the shapes of one forward pass and
adds the layer's multiply–adds; nothing else is counted (activations, pooling, normalisation and
bias additions are O(outputs), negligible next to the products). One FLOP convention: a
multiply–add is 2 FLOPs, as `torch.utils.flop_counter.FlopCounterMode` counts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


def conv2d_macs(
    c_in: int,
    c_out: int,
    k: int | tuple[int, int],
    h_out: int,
    w_out: int,
    groups: int = 1,
) -> int:
    """Multiply–adds of one image through a convolution: every one of the c_out·h_out·w_out
    outputs is a dot product of length (c_in/groups)·k_h·k_w."""
    kh, kw = (k, k) if isinstance(k, int) else k
    return c_out * h_out * w_out * (c_in // groups) * kh * kw


def linear_macs(in_features: int, out_features: int) -> int:
    """Multiply–adds of one example through a fully connected layer: in · out."""
    return in_features * out_features


@dataclass
class LayerCount:
    """One counted layer: its qualified name, kind, output shape of one example, MACs per example."""

    name: str
    kind: str
    out_shape: tuple[int, ...]
    macs: int


@dataclass
class FlopReport:
    """What `count_macs` found: per-layer rows and totals, all per example (one image)."""

    layers: list[LayerCount] = field(default_factory=list)
    params: int = 0

    @property
    def macs(self) -> int:
        """Multiply–adds of one forward pass of one example."""
        return sum(layer.macs for layer in self.layers)

    @property
    def flops(self) -> int:
        """FLOPs of one forward pass of one example (2 per multiply–add)."""
        return 2 * self.macs


def _hook(report: FlopReport, name: str):
    def hook(
        module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor
    ) -> None:
        batch = out.shape[0]
        per_example = out.numel() // batch  # outputs of one example
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = per_example * (module.in_channels // module.groups) * kh * kw
        else:  # nn.Linear: every output is a dot product of length in_features
            macs = per_example * module.in_features
        report.layers.append(
            LayerCount(name, type(module).__name__, tuple(out.shape[1:]), macs)
        )

    return hook


@torch.no_grad()
def count_macs(
    model: nn.Module, input_shape: tuple[int, ...] = (1, 28, 28)
) -> FlopReport:
    """Run one example of `input_shape` (C, H, W) through `model` with forward hooks on every
    Conv2d and Linear, and return the per-layer multiply–adds and the parameter count.
    A layer called twice is counted twice, as it costs twice."""
    report = FlopReport(params=sum(p.numel() for p in model.parameters()))
    handles = [
        m.register_forward_hook(_hook(report, name))
        for name, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    model.eval()  # BatchNorm must not update its running statistics on the probe
    try:
        device = next(model.parameters()).device
        model(torch.zeros(1, *input_shape, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return report


@torch.no_grad()
def torch_flops(model: nn.Module, input_shape: tuple[int, ...] = (1, 28, 28)) -> int:
    """PyTorch's own count (`FlopCounterMode`, 2 FLOPs per multiply–add) for one example,
    to check `count_macs` against an independent implementation."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        device = next(model.parameters()).device
        with counter:
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops()
