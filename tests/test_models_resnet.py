"""dlcore.models.resnet (Part II ch. 3): blocks equal torchvision's, zero-init blocks
are the identity, parameter counts, the plain twin, the forward pass assembled by hand,
DenseNet channel growth, bad stage arguments."""

import pytest
import torch
import torch.nn.functional as F
import torchvision.models.resnet as tvr
from torch import nn

from dlcore.models import resnet as R


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def randomize_bn(model: nn.Module, gen: torch.Generator) -> nn.Module:
    """Random BatchNorm scales, shifts and running statistics (eval mode tested too)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.3)
                m.running_mean.copy_(
                    torch.randn(m.running_mean.shape, generator=gen) * 0.3
                )
                m.running_var.copy_(
                    torch.rand(m.running_var.shape, generator=gen) + 0.5
                )
    return model


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy src's state into dst, tensors matched by registration order and shape."""
    s, d = src.state_dict(), dst.state_dict()
    assert len(s) == len(d)
    for (ks, vs), (kd, vd) in zip(s.items(), d.items()):
        assert vs.shape == vd.shape, (ks, kd)
        assert ks.rsplit(".", 1)[-1] == kd.rsplit(".", 1)[-1], (ks, kd)
    dst.load_state_dict(dict(zip(d, s.values())))


def tv_downsample(c_in: int, c_out: int, stride: int) -> nn.Module | None:
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(tvr.conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out))


@pytest.mark.parametrize("kind", ["basic", "bottleneck"])
@pytest.mark.parametrize(
    "c_in,width,stride", [(16, 16, 1), (16, 32, 2), (64, 16, 1), (24, 8, 2)]
)
@pytest.mark.parametrize("train", [False, True])
def test_blocks_equal_torchvision(kind, c_in, width, stride, train):
    gen = torch.Generator().manual_seed(c_in * 100 + width + stride)
    ours_cls, tv_cls = (
        (R.BasicBlock, tvr.BasicBlock)
        if kind == "basic"
        else (R.Bottleneck, tvr.Bottleneck)
    )
    c_out = width * ours_cls.expansion
    ours = ours_cls(c_in, width, stride).double()
    theirs = tv_cls(c_in, width, stride, tv_downsample(c_in, c_out, stride)).double()
    randomize_bn(theirs, gen)
    copy_weights(theirs, ours)
    ours.train(train), theirs.train(train)
    x = torch.randn(3, c_in, 9, 9, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "blocks,block,expected",
    [((2, 2, 2, 2), "basic", 11_689_512), ((3, 4, 6, 3), "bottleneck", 25_557_032)],
)
def test_imagenet_resnets_equal_torchvision(blocks, block, expected):
    """ResNet-18/-50: with torchvision's 7×7 stem, the same parameters and outputs."""
    torch.manual_seed(0)
    theirs = (tvr.resnet18 if block == "basic" else tvr.resnet50)()
    ours = R.ResNet(
        blocks,
        (64, 128, 256, 512),
        block=block,
        num_classes=1000,
        zero_init_residual=False,
    )
    ours.stem = nn.Sequential(
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    )
    assert n_params(theirs) == expected == n_params(ours)
    randomize_bn(theirs, torch.Generator().manual_seed(1))
    copy_weights(theirs, ours)
    ours.eval(), theirs.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-4)


def test_cifar_parameter_counts():
    assert n_params(R.resnet(20)) == 272_474
    # plain twin: same layers minus the two 1×1 projection conv-BNs
    # (16→32: 512 + 64, 32→64: 2048 + 128)
    assert (
        n_params(R.resnet(20)) - n_params(R.plainnet(20))
        == 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64
    )
    assert n_params(R.resnet(56)) == 855_770
    with pytest.raises(ValueError):
        R.resnet(21)
    with pytest.raises(ValueError):
        R.ResNet(block="wide")


def test_bottleneck_parameter_formula():
    # the 1×1 reduce, 3×3, 1×1 expand of a ResNet-50 block, with their BatchNorms
    c, w = 256, 64
    formula = c * w + 2 * w + 9 * w * w + 2 * w + w * c + 2 * c
    assert n_params(R.Bottleneck(c, w)) == formula == 70_400


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_zero_init_block_is_identity(block):
    torch.manual_seed(0)
    net = R.resnet(20 if block == "basic" else 29, width=8, block=block)
    identity_blocks = [b for b in net.stages if b.project is None]
    assert len(identity_blocks) >= 6
    for b in identity_blocks:
        x = torch.relu(
            torch.randn(4, b.last_bn().num_features, 10, 10)
        )  # block inputs are post-ReLU
        assert torch.equal(b.train()(x), x)
        assert torch.equal(b.eval()(x), x)
    b = R.BasicBlock(8, 8)  # without the zero-init the block is not the identity
    x = torch.relu(torch.randn(4, 8, 10, 10))
    assert (b(x) - x).abs().max() > 0.1


def test_zero_init_network_equals_network_without_identity_blocks():
    torch.manual_seed(0)
    net = R.resnet(32, width=8, in_channels=1).eval()
    randomize_bn(net, torch.Generator().manual_seed(2))
    # randomize_bn touched the zeroed scale and shift: zero them again
    for b in net.stages:
        nn.init.zeros_(b.last_bn().weight), nn.init.zeros_(b.last_bn().bias)
    x = torch.randn(5, 1, 28, 28)
    short = nn.Sequential(
        net.stem,
        *[b for b in net.stages if b.project is not None],
        net.pool,
        nn.Flatten(),
        net.fc,
    )
    assert len(short) == 1 + 2 + 3  # stem, two projection blocks, pool-flatten-fc
    with torch.no_grad():
        torch.testing.assert_close(net(x), short(x), rtol=0, atol=0)


def _block_outputs_after_backward(
    net: nn.Module, x: torch.Tensor
) -> list[torch.Tensor]:
    """Each block's output, .grad filled by one backward pass of a random-label loss."""
    acts = []

    def keep(module, inputs, output):
        output.retain_grad()
        acts.append(output)

    hooks = [b.register_forward_hook(keep) for b in net.stages]
    F.cross_entropy(net(x), torch.randint(0, 10, (len(x),))).backward()
    for h in hooks:
        h.remove()
    return acts


def test_zero_init_gradient_passes_identity_blocks_unchanged():
    torch.manual_seed(0)
    net = R.resnet(32, width=8, in_channels=1)
    acts = _block_outputs_after_backward(net, torch.randn(8, 1, 28, 28))
    checked = 0
    for prev, cur, b in zip(acts, acts[1:], list(net.stages)[1:]):
        if (
            b.project is None
        ):  # relu(x + 0) = x, but relu'(0) = 0 masks the gradient where x = 0
            torch.testing.assert_close(prev.grad, cur.grad * (prev > 0), rtol=0, atol=0)
            checked += 1
    assert checked >= 10


def test_plainnet_has_no_shortcut():
    torch.manual_seed(0)
    plain = R.plainnet(20, width=8)
    assert all(not b.use_shortcut and b.project is None for b in plain.stages)
    assert all(
        b.last_bn().weight.abs().min() > 0 for b in plain.stages
    )  # no zero-init without shortcuts
    b = plain.stages[0].eval()
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(b(x), torch.relu(b.residual(x)))


def test_preact_identity_path_passes_gradient_unchanged():
    torch.manual_seed(0)
    net = R.resnet(20, width=8, block="preact")
    for b in net.stages:
        nn.init.zeros_(b.conv2.weight)
    acts = _block_outputs_after_backward(net, torch.randn(4, 3, 16, 16))
    for prev, cur, b in zip(acts, acts[1:], list(net.stages)[1:]):
        if b.project is None:
            torch.testing.assert_close(prev.grad, cur.grad, rtol=0, atol=0)


def test_preact_block():
    torch.manual_seed(0)
    for c_in, width, stride in [(8, 8, 1), (8, 16, 2)]:
        b = R.PreActBlock(c_in, width, stride).double().eval()
        randomize_bn(b, torch.Generator().manual_seed(3))
        x = torch.randn(2, c_in, 8, 8, dtype=torch.float64)

        # reference from torch.nn.functional and the block's tensors, not its modules
        def bn(m, z):
            return F.batch_norm(z, m.running_mean, m.running_var, m.weight, m.bias)

        pre = torch.relu(bn(b.bn1, x))
        mid = torch.relu(bn(b.bn2, F.conv2d(pre, b.conv1.weight, None, stride, 1)))
        branch = F.conv2d(mid, b.conv2.weight, None, 1, 1)
        skip = x if b.project is None else F.conv2d(pre, b.project.weight, None, stride)
        torch.testing.assert_close(b(x), branch + skip, rtol=1e-12, atol=1e-12)
    b = R.PreActBlock(8, 8)
    nn.init.zeros_(b.conv2.weight)
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(
        b(x), x, rtol=0, atol=0
    )  # no ReLU after the addition: x may be negative
    net = R.resnet(20, width=8, block="preact")
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_forward_is_stem_stages_mean_pool_linear_at_any_size():
    """The network's own forward against a reference assembled by hand: stem, every
    block in turn, the mean over H and W (not AdaptiveAvgPool2d), then x Wᵀ + b."""
    torch.manual_seed(0)
    net = R.resnet(8, width=8, in_channels=1).double().eval()
    randomize_bn(net, torch.Generator().manual_seed(4))
    for size in (1, 12, 28, 33):  # 1×1 inputs too: every stage then works on 1×1 maps
        x = torch.randn(2, 1, size, size, dtype=torch.float64)
        h = net.stem(x)
        for b in net.stages:
            h = b(h)
        expected = h.mean(dim=(2, 3)) @ net.fc.weight.T + net.fc.bias
        torch.testing.assert_close(net(x), expected, rtol=1e-12, atol=1e-12)
        assert net.features(x).shape[1] == net.features_dim == 32


@pytest.mark.parametrize(
    "blocks,widths",
    [((2, 2, 2), (16, 32)), ((2, 2), (16, 32, 64)), ((), ()), ([3], [8, 16])],
)
def test_blocks_and_widths_of_different_lengths_are_an_error(blocks, widths):
    with pytest.raises(ValueError, match="blocks and widths"):
        R.ResNet(blocks, widths)


def test_bad_stage_entries_are_an_error_naming_them():
    with pytest.raises(ValueError, match="blocks must be integers"):
        R.ResNet((2, 0, 2), (8, 16, 32))
    with pytest.raises(ValueError, match="widths must be integers"):
        R.ResNet((1, 1), (8, 2.5))
    net = R.ResNet([1], [4], num_classes=3)  # one stage, one block: the smallest net
    assert net(torch.randn(1, 3, 5, 5)).shape == (1, 3)


@pytest.mark.parametrize("c_in,layers,growth", [(16, 4, 12), (24, 6, 32), (3, 1, 5)])
def test_dense_block_channels_and_parameters(c_in, layers, growth):
    block = R.DenseBlock(c_in, layers, growth)
    out = block(torch.randn(2, c_in, 8, 8))
    assert out.shape == (2, c_in + layers * growth, 8, 8)
    formula = sum(
        2 * (c_in + i * growth) + 9 * (c_in + i * growth) * growth
        for i in range(layers)
    )
    assert n_params(block) == formula
    x = torch.randn(2, c_in, 8, 8)
    torch.testing.assert_close(
        block(x)[:, :c_in], x
    )  # the input is passed on unchanged
    t = R.transition(out.shape[1], out.shape[1] // 2)
    assert t(out).shape == (2, out.shape[1] // 2, 4, 4)
