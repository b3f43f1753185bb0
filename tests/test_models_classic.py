"""The classic CNNs of Part II ch. 2: shapes, LeNet-5's parameters, the MAC counter."""

import pytest
import torch
from torch import nn

from dlcore.models import classic
from dlcore.models.flops import conv2d_macs, count_macs, linear_macs, torch_flops

# built for 28×28 only (a flatten of a fixed size)
FIXED_28 = {"LeNet-5", "FastMNISTNet"}


@pytest.mark.parametrize("name", list(classic.MODELS))
def test_output_shapes(name):
    torch.manual_seed(0)
    model = classic.MODELS[name]()
    for size in (28,) if name in FIXED_28 else (28, 32):
        out = model(torch.randn(3, 1, size, size))
        assert out.shape == (3, 10)
        assert torch.isfinite(out).all()
    assert classic.MODELS[name](in_channels=3, num_classes=7)(
        torch.randn(2, 3, 28, 28)
    ).shape == (2, 7)


def test_lenet5_parameter_count_matches_formula():
    def conv(c_in, c_out, k):
        # k·k weights per input channel and output map, one bias per map
        return (c_in * k * k + 1) * c_out

    def dense(n_in, n_out):
        return (n_in + 1) * n_out

    formula = (
        conv(1, 6, 5)
        + conv(6, 16, 5)
        + dense(16 * 5 * 5, 120)
        + dense(120, 84)
        + dense(84, 10)
    )
    assert formula == 61_706
    assert sum(p.numel() for p in classic.LeNet5().parameters()) == formula


def test_lenet5_macs_match_hand_computation():
    report = count_macs(classic.LeNet5(), (1, 28, 28))
    hand = [
        28 * 28 * 6 * 1 * 5 * 5,  # C1: 28×28 outputs × 6 maps, each a 1·5·5 dot product
        10 * 10 * 16 * 6 * 5 * 5,  # C3: 10×10 × 16 maps, each 6·5·5
        400 * 120,
        120 * 84,
        84 * 10,
    ]
    assert [layer.macs for layer in report.layers] == hand
    assert report.macs == 416_520
    assert [layer.out_shape for layer in report.layers][:2] == [
        (6, 28, 28),
        (16, 10, 10),
    ]


@pytest.mark.parametrize("name", list(classic.MODELS))
def test_counter_agrees_with_torch_flop_counter(name):
    model = classic.MODELS[name]()
    assert 2 * count_macs(model).macs == torch_flops(model)


@pytest.mark.parametrize(
    "c_in,c_out,k,stride,padding,groups,size",
    [(3, 8, 3, 1, 1, 1, 17), (4, 6, 5, 2, 2, 2, 28), (8, 8, 1, 1, 0, 8, 9)],
)
def test_conv2d_macs_formula_matches_hook(
    c_in, c_out, k, stride, padding, groups, size
):
    conv = nn.Conv2d(c_in, c_out, k, stride, padding, groups=groups)
    h_out = (size + 2 * padding - k) // stride + 1
    expected = conv2d_macs(c_in, c_out, k, h_out, h_out, groups=groups)
    assert count_macs(conv, (c_in, size, size)).macs == expected
    assert count_macs(nn.Linear(20, 7), (20,)).macs == linear_macs(20, 7) == 140


def test_counter_leaves_model_untouched():
    model = classic.FastMNISTNet().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model)
    assert model.training
    for key, value in model.state_dict().items():  # BatchNorm statistics unchanged
        assert torch.equal(value, before[key]), key
    assert not model._forward_hooks and not model.net[0]._forward_hooks


def test_building_blocks_shapes():
    x = torch.randn(2, 8, 14, 14)
    assert classic.vgg_block(2, 8, 16)(x).shape == (2, 16, 7, 7)
    assert classic.nin_block(8, 12, 3, padding=1)(x).shape == (2, 12, 14, 14)
    block = classic.Inception(8, 4, (4, 6), (2, 3), 5)
    assert block.out_channels == 18 and block(x).shape == (2, 18, 14, 14)


def test_fast_mnist_net_without_batchnorm_and_widths():
    plain = classic.FastMNISTNet(batchnorm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert all(m.bias is not None for m in plain.modules() if isinstance(m, nn.Conv2d))
    assert plain(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    # same MACs with or without BatchNorm (normalisation is not counted);
    # widths change the conv cost
    assert (
        count_macs(plain).macs == count_macs(classic.FastMNISTNet()).macs == 1_054_720
    )
    wide = classic.FastMNISTNet(widths=(8, 16))
    assert (
        count_macs(wide).macs == 8 * 24 * 24 * 25 + 16 * 8 * 8 * 8 * 25 + 16 * 16 * 10
    )


def test_counter_on_full_size_originals_on_meta_device():
    """torchvision's AlexNet / VGG-16 at 224×224, shapes only: the counter agrees with
    torch and reproduces the published sizes (61.1 M / 138.4 M parameters)."""
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        alexnet, vgg16 = torchvision.models.alexnet(), torchvision.models.vgg16()
    for model, params in ((alexnet, 61_100_840), (vgg16, 138_357_544)):
        report = count_macs(model, (3, 224, 224))
        assert report.params == params
        assert 2 * report.macs == torch_flops(model, (3, 224, 224))


def _swap_pool_and_activation(net: nn.Sequential) -> nn.Sequential:
    """The same modules with every MaxPool moved after the ReLU that follows it (and
    after the norm between them): conv, norm, ReLU, pool — the textbook order."""
    layers, out, i = list(net), [], 0
    while i < len(layers):
        if isinstance(layers[i], nn.MaxPool2d):
            out += [layers[i + 1], layers[i + 2], layers[i]]  # norm, ReLU, then pool
            i += 3
        else:
            out.append(layers[i])
            i += 1
    return nn.Sequential(*out)


def test_fast_mnist_net_pools_first_and_the_order_only_matters_with_batchnorm():
    """The FastMNISTNet docstring: conv → max-pool → BatchNorm → ReLU; without
    BatchNorm pooling commutes with ReLU (same outputs), with it the network differs."""
    kinds = [type(m).__name__ for m in classic.FastMNISTNet().net]
    assert kinds[:4] == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]
    assert kinds[4:8] == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]
    x = torch.randn(8, 1, 28, 28, dtype=torch.float64)
    torch.manual_seed(0)
    plain = classic.FastMNISTNet(batchnorm=False).double().eval()
    torch.testing.assert_close(plain(x), _swap_pool_and_activation(plain.net)(x))
    torch.manual_seed(0)
    normed = classic.FastMNISTNet().double().train()  # batch statistics
    assert not torch.allclose(normed(x), _swap_pool_and_activation(normed.net)(x))
