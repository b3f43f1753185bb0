"""The MAC counters: formulas against PyTorch's FlopCounterMode on extreme shapes, and
arguments checked at the boundary with errors that name them."""

import numpy as np
import pytest
import torch
from torch import nn

from dlcore.models.flops import conv2d_macs, count_macs, linear_macs, torch_flops


@pytest.mark.parametrize(
    "c_in, c_out, k, size, groups, stride",
    [
        (1, 1, 1, 1, 1, 1),  # size-1 everything
        (3, 8, 3, 7, 1, 2),
        (4, 6, (1, 5), 9, 2, 1),  # rectangular kernel, groups
        (8, 8, 3, 5, 8, 1),  # depthwise
    ],
)
def test_conv2d_macs_matches_torch_and_the_hook(c_in, c_out, k, size, groups, stride):
    conv = nn.Conv2d(c_in, c_out, k, stride=stride, groups=groups, bias=False)
    out = conv(torch.zeros(1, c_in, size, size))
    h_out, w_out = out.shape[-2:]
    macs = conv2d_macs(c_in, c_out, k, h_out, w_out, groups)
    assert 2 * macs == torch_flops(conv, (c_in, size, size))
    assert count_macs(conv, (c_in, size, size)).macs == macs


def test_linear_macs_and_float64_models():
    assert linear_macs(1, 1) == 1 and linear_macs(784, 10) == 7840
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5)).double()
    report = count_macs(model, (3, 2, 2))
    assert report.macs == linear_macs(12, 5) == torch_flops(model, (3, 2, 2)) // 2
    assert report.params == 12 * 5 + 5 and report.layers[0].out_shape == (5,)


def test_sizes_from_numpy_or_torch_integers_are_accepted():
    assert conv2d_macs(np.int64(3), 4, np.int32(3), 5, torch.tensor(5)) == 4 * 25 * 27
    assert count_macs(nn.Linear(4, 2), (np.int64(4),)).macs == 8


@pytest.mark.parametrize(
    "args, name",
    [
        ((0, 8, 3, 5, 5), "c_in"),
        ((3, -1, 3, 5, 5), "c_out"),
        ((3, 8, 0, 5, 5), "k_h"),
        ((3, 8, (3, -2), 5, 5), "k_w"),
        ((3, 8, 3, 0, 5), "h_out"),
        ((3, 8, 3, 5, -5), "w_out"),
        ((3, 8, 3, 5, 5, 0), "groups"),
        ((3, 8, 3.0, 5, 5), "k_h"),
        ((True, 8, 3, 5, 5), "c_in"),
    ],
)
def test_conv2d_macs_names_a_bad_size(args, name):
    with pytest.raises(ValueError, match=rf"^{name} must be a positive integer"):
        conv2d_macs(*args)


def test_a_kernel_size_that_is_not_a_pair():
    with pytest.raises(ValueError, match=r"k must be an int or a pair .*\(3, 3, 3\)"):
        conv2d_macs(3, 8, (3, 3, 3), 5, 5)


def test_groups_must_divide_the_channels():
    with pytest.raises(ValueError, match="groups=2 must divide c_in=3 and c_out=8"):
        conv2d_macs(3, 8, 3, 5, 5, groups=2)
    with pytest.raises(ValueError, match="groups=4 must divide c_in=8 and c_out=6"):
        conv2d_macs(8, 6, 3, 5, 5, groups=4)


@pytest.mark.parametrize("args, name", [((0, 10), "in_features"), ((5, -3), "out")])
def test_linear_macs_names_a_bad_size(args, name):
    with pytest.raises(ValueError, match=name):
        linear_macs(*args)


@pytest.mark.parametrize("count", [count_macs, torch_flops])
def test_the_counters_check_model_and_input_shape(count):
    model = nn.Conv2d(1, 2, 3)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got Tensor"):
        count(torch.zeros(1, 1, 5, 5), (1, 5, 5))
    with pytest.raises(
        ValueError, match="input_shape must be the shape of one example"
    ):
        count(model, 28)
    with pytest.raises(ValueError, match=r"input_shape\[1\] must be a positive"):
        count(model, (1, 0, 5))
    with pytest.raises(ValueError, match=r"input_shape\[0\] must be a positive"):
        count(model, (-1, 5, 5))


def test_a_model_without_parameters_is_counted_on_the_cpu():
    report = count_macs(nn.Sequential(nn.ReLU(), nn.Flatten()), (1, 4, 4))
    assert report.macs == 0 and report.params == 0 and report.layers == []
    assert torch_flops(nn.Identity(), (3,)) == 0
