"""Count parameters and multiply–adds (MACs) of a model from its layer shapes.

A forward hook on every `nn.Conv2d` and `nn.Linear` reads the shapes of one forward pass
and adds the layer's multiply–adds; nothing else is counted (activations, pooling,
normalisation and bias additions are O(outputs), negligible next to the products).
One FLOP convention: a multiply–add is 2 FLOPs, as
`torch.utils.flop_counter.FlopCounterMode` counts them. Sizes and shapes are checked at
the boundary: a non-positive size is a ValueError naming it.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
from torch import nn


def _positive(**sizes) -> None:
    """Raise ValueError naming the first size that is not a positive integer."""
    for name, value in sizes.items():
        try:
            ok = not isinstance(value, bool) and operator.index(value) > 0
        except TypeError:
            ok = False
        if not ok:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def conv2d_macs(
    c_in: int,
    c_out: int,
    k: int | tuple[int, int],
    h_out: int,
    w_out: int,
    groups: int = 1,
) -> int:
    """Multiply–adds of one image through a convolution: every one of the
    c_out·h_out·w_out outputs is a dot product of length (c_in/groups)·k_h·k_w.
    All sizes must be positive ints; groups must divide c_in and c_out."""
    if isinstance(k, (tuple, list)) and len(k) != 2:
        raise ValueError(f"k must be an int or a pair (k_h, k_w), got {k!r}")
    kh, kw = tuple(k) if isinstance(k, (tuple, list)) else (k, k)
    _positive(c_in=c_in, c_out=c_out, k_h=kh, k_w=kw, h_out=h_out, w_out=w_out)
    _positive(groups=groups)
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups={groups} must divide c_in={c_in} and c_out={c_out}")
    return c_out * h_out * w_out * (c_in // groups) * kh * kw


def linear_macs(in_features: int, out_features: int) -> int:
    """Multiply–adds of one example through a fully connected layer: in · out."""
    _positive(in_features=in_features, out_features=out_features)
    return in_features * out_features


@dataclass
class LayerCount:
    """One counted layer: its qualified name, kind, output shape of one example, MACs
    per example."""

    name: str
    kind: str
    out_shape: tuple[int, ...]
    macs: int


@dataclass
class FlopReport:
    """What `count_macs` found: per-layer rows and totals, all per example (one
    image)."""

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


def _probe(model, input_shape) -> torch.Tensor:
    """One all-zero example for `model` (its device and floating dtype), after checking
    the arguments."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(input_shape, int) or not isinstance(input_shape, (tuple, list)):
        raise ValueError(
            f"input_shape must be the shape of one example, e.g. (C, H, W), without "
            f"the batch axis; got {input_shape!r}"
        )
    _positive(**{f"input_shape[{i}]": n for i, n in enumerate(input_shape)})
    shape = [operator.index(n) for n in input_shape]
    p = next((p for p in model.parameters() if p.is_floating_point()), None)
    if p is None:
        return torch.zeros(1, *shape)
    return torch.zeros(1, *shape, device=p.device, dtype=p.dtype)


@torch.no_grad()
def count_macs(
    model: nn.Module, input_shape: tuple[int, ...] = (1, 28, 28)
) -> FlopReport:
    """Run one example of `input_shape` (C, H, W) through `model` with forward hooks on
    every Conv2d and Linear, and return the per-layer multiply–adds and the parameter
    count. A layer called twice is counted twice, as it costs twice."""
    probe = _probe(model, input_shape)
    report = FlopReport(params=sum(p.numel() for p in model.parameters()))
    handles = [
        m.register_forward_hook(_hook(report, name))
        for name, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    model.eval()  # BatchNorm must not update its running statistics on the probe
    try:
        model(probe)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return report


@torch.no_grad()
def torch_flops(model: nn.Module, input_shape: tuple[int, ...] = (1, 28, 28)) -> int:
    """PyTorch's own count (`FlopCounterMode`, 2 FLOPs per multiply–add) for one
    example, to check `count_macs` against an independent implementation."""
    probe = _probe(model, input_shape)
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            model(probe)
    finally:
        model.train(was_training)
    return counter.get_total_flops()
