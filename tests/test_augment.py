"""dlcore.augment: batched augmentations against torchvision.transforms.v2, on random
inputs and on degenerate ones (size-1 dims, padding 0, full-image crops, float64, bad
arguments)."""

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from dlcore import augment as A


def images(b=6, c=3, h=9, w=7, seed=0, dtype=torch.float64):
    return torch.randn(
        b, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype
    )


class FixedErasing(v2.RandomErasing):
    """torchvision's RandomErasing (p=1, value=0) with the box given, not drawn."""

    def __init__(self, i, j, h, w):
        super().__init__(p=1.0, value=0)
        self.box = dict(i=i, j=j, h=h, w=w)

    def make_params(self, flat_inputs):
        return dict(**self.box, v=torch.tensor([0.0])[:, None, None])


@pytest.mark.parametrize("padding", [1, 2, 4, 6])
@pytest.mark.parametrize(
    "mode,tv_mode", [("reflect", "reflect"), ("constant", "constant")]
)
def test_pad_equals_torchvision(padding, mode, tv_mode):
    x = images()
    torch.testing.assert_close(
        A.pad(x, padding, mode),
        TF.pad(x, [padding], padding_mode=tv_mode),
        rtol=0,
        atol=0,
    )
    torch.testing.assert_close(
        A.pad(x, padding, mode), F.pad(x, (padding,) * 4, mode=mode), rtol=0, atol=0
    )


def test_pad_rejects_too_much_reflection():
    with pytest.raises(ValueError):
        A.pad(images(h=4, w=4), 4)


def test_crop_per_image_offsets_equal_torchvision():
    x = images(b=8, h=12, w=10)
    g = torch.Generator().manual_seed(1)
    top, left = (
        torch.randint(0, 12 - 5 + 1, (8,), generator=g),
        torch.randint(0, 10 - 4 + 1, (8,), generator=g),
    )
    out = A.crop(x, top, left, 5, 4)
    assert out.shape == (8, 3, 5, 4)
    for b in range(8):
        torch.testing.assert_close(
            out[b], TF.crop(x[b], int(top[b]), int(left[b]), 5, 4), rtol=0, atol=0
        )


def test_random_crop_is_pad_then_crop_and_keeps_size():
    x = images(b=16, h=8, w=8)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    out = A.random_crop(x, 2, generator=g1)
    top, left = torch.randint(0, 5, (2, 16), generator=g2)
    padded = TF.pad(x, [2], padding_mode="reflect")
    for b in range(16):
        torch.testing.assert_close(
            out[b], TF.crop(padded[b], int(top[b]), int(left[b]), 8, 8), rtol=0, atol=0
        )


def test_random_crop_covers_all_translations():
    x = torch.arange(16.0).view(1, 1, 4, 4).expand(400, 1, 4, 4).contiguous()
    out = A.random_crop(
        x, 1, mode="constant", generator=torch.Generator().manual_seed(0)
    )
    # the translation is readable from where pixel 5 (row 1, col 1) went
    seen = {tuple((o[0] == 5).nonzero()[0].tolist()) for o in out}
    assert seen == {(r, c) for r in range(3) for c in range(3)}


def test_hflip_equals_torchvision():
    x = images(b=5)
    flags = torch.tensor([True, False, True, True, False])
    out = A.hflip(x, flags)
    for b in range(5):
        expected = TF.horizontal_flip(x[b]) if flags[b] else x[b]
        torch.testing.assert_close(out[b], expected, rtol=0, atol=0)
    torch.testing.assert_close(A.hflip(x), TF.horizontal_flip(x), rtol=0, atol=0)


def test_random_hflip_rate():
    x = torch.arange(2.0).view(1, 1, 1, 2).expand(4000, 1, 1, 2)
    out = A.random_hflip(x, 0.5, generator=torch.Generator().manual_seed(0))
    rate = (out[:, 0, 0, 0] == 1).float().mean().item()
    assert 0.46 < rate < 0.54


@pytest.mark.parametrize(
    "box", [(0, 0, 3, 3), (2, 1, 4, 4), (5, 3, 4, 4), (1, 2, 8, 2)]
)
def test_cutout_inside_equals_random_erasing(box):
    x = images(b=4, h=9, w=7)
    i, j, h, w = box
    out = A.cutout(x, torch.full((4,), i), torch.full((4,), j), h, w)
    eraser = FixedErasing(i, j, h, w)
    for b in range(4):
        torch.testing.assert_close(out[b], eraser(x[b]), rtol=0, atol=0)
        torch.testing.assert_close(
            out[b],
            TF.erase(x[b], i, j, h, w, torch.tensor(0.0, dtype=x.dtype)),
            rtol=0,
            atol=0,
        )


def test_cutout_clips_boxes_at_the_border():
    x = images(b=4, h=9, w=7)
    top, left = torch.tensor([-2, 0, 6, 3]), torch.tensor([1, -3, 4, 5])
    out = A.cutout(x, top, left, 4, 4)
    for b in range(4):
        i0, j0 = max(int(top[b]), 0), max(int(left[b]), 0)
        h, w = min(int(top[b]) + 4, 9) - i0, min(int(left[b]) + 4, 7) - j0
        torch.testing.assert_close(
            out[b],
            TF.erase(x[b], i0, j0, h, w, torch.tensor(0.0, dtype=x.dtype)),
            rtol=0,
            atol=0,
        )


def test_random_cutout_zeroes_at_most_one_square():
    x = torch.ones(500, 3, 16, 16)
    out = A.random_cutout(x, 8, generator=torch.Generator().manual_seed(0))
    zeros = (out == 0).all(dim=1).sum(dim=(1, 2))
    assert (
        zeros.max().item() == 64 and zeros.min().item() >= 16
    )  # centre in image: ≥ a quarter stays
    assert torch.equal(
        (out == 0).all(dim=1), (out == 0).any(dim=1)
    )  # all channels together


def test_normalize_equals_torchvision_and_inverts():
    x = torch.randint(0, 256, (5, 3, 6, 6), dtype=torch.uint8)
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    ours = A.normalize(x, mean, std)
    ref = TF.normalize(TF.to_dtype(x, torch.float32, scale=True), mean, std)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(A.denormalize(ours, mean, std), x.float() / 255)


def test_channel_stats():
    x = torch.rand(20, 3, 5, 5, dtype=torch.float64)
    mean, std = A.channel_stats(x)
    flat = x.permute(1, 0, 2, 3).reshape(3, -1)
    torch.testing.assert_close(mean, flat.mean(1))
    torch.testing.assert_close(std, flat.std(1, unbiased=False))


def test_cifar_augment_shapes_and_determinism():
    x = images(b=32, h=32, w=32, dtype=torch.float32)
    aug1 = A.CifarAugment(generator=torch.Generator().manual_seed(5))
    aug2 = A.CifarAugment(generator=torch.Generator().manual_seed(5))
    out = aug1(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    torch.testing.assert_close(out, aug2(x), rtol=0, atol=0)
    assert not torch.equal(out, x)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.2, 0.5])
def test_label_smoothing_cross_entropy(eps):
    g = torch.Generator().manual_seed(0)
    logits, y = (
        torch.randn(16, 10, generator=g, dtype=torch.float64),
        torch.randint(0, 10, (16,), generator=g),
    )
    torch.testing.assert_close(
        A.label_smoothing_cross_entropy(logits, y, eps).double(),
        F.cross_entropy(logits, y, label_smoothing=eps),
        rtol=1e-5,
        atol=1e-6,
    )


def test_flip_tta_is_mean_of_two_views():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    x = torch.randn(3, 3, 4, 4)
    torch.testing.assert_close(
        A.flip_tta(model, x), (model(x) + model(TF.horizontal_flip(x))) / 2
    )


def test_reflect_index_matches_pad():
    x = images(h=9, w=7)
    rows, cols = A.reflect_index(9, 3), A.reflect_index(7, 3)
    torch.testing.assert_close(
        x.index_select(-2, rows).index_select(-1, cols), A.pad(x, 3), rtol=0, atol=0
    )
    assert A.reflect_index(5, 2).tolist() == [2, 1, 0, 1, 2, 3, 4, 3, 2]


# ---------------------------------------------------------------- edge cases, bad input


@pytest.mark.parametrize("mode", ["reflect", "constant"])
def test_padding_zero_is_the_identity_and_keeps_dtype(mode):
    x = images(dtype=torch.float64)
    out = A.pad(x, 0, mode)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, TF.pad(x, [0], padding_mode=mode), rtol=0, atol=0)
    torch.testing.assert_close(A.random_crop(x, 0, mode), x, rtol=0, atol=0)


@pytest.mark.parametrize("bad", [-1, -4, 1.5, True, "2"])
def test_bad_padding_is_rejected_by_name(bad):
    x = images()
    for call in (
        lambda: A.pad(x, bad),
        lambda: A.pad(x, bad, "constant"),
        lambda: A.random_crop(x, bad),
        lambda: A.CifarAugment(padding=bad),
    ):
        with pytest.raises(ValueError, match="padding"):
            call()
    with pytest.raises(ValueError, match="mode"):
        A.pad(x, 1, "edge")


def test_size_one_images_and_batches_equal_torchvision():
    x1 = images(b=1, c=1, h=1, w=1)  # one pixel: constant padding works, reflect cannot
    torch.testing.assert_close(
        A.pad(x1, 2, "constant"), TF.pad(x1, [2], padding_mode="constant")
    )
    with pytest.raises(ValueError, match="reflect padding"):
        A.pad(x1, 1)
    x = images(b=1, c=1, h=5, w=2)  # a batch of one image, one channel, two columns
    torch.testing.assert_close(
        A.pad(x, 1), TF.pad(x, [1], padding_mode="reflect"), rtol=0, atol=0
    )
    out = A.crop(x, torch.tensor([2]), torch.tensor([1]), 3, 1)
    torch.testing.assert_close(out[0], TF.crop(x[0], 2, 1, 3, 1), rtol=0, atol=0)
    mask = A.cutout(x, torch.tensor([4]), torch.tensor([1]), 1, 1)
    ref = TF.erase(x[0], 4, 1, 1, 1, torch.tensor(0.0, dtype=x.dtype))
    torch.testing.assert_close(mask[0], ref, rtol=0, atol=0)


def test_flip_of_width_one_images_is_the_identity():
    x = images(b=3, w=1)
    torch.testing.assert_close(A.hflip(x), x, rtol=0, atol=0)
    torch.testing.assert_close(A.hflip(x), TF.horizontal_flip(x), rtol=0, atol=0)
    torch.testing.assert_close(
        A.random_hflip(x, 1.0), TF.horizontal_flip(x), rtol=0, atol=0
    )


def test_random_hflip_probability_zero_and_one_and_bad():
    x = images(b=8)
    torch.testing.assert_close(A.random_hflip(x, 0.0), x, rtol=0, atol=0)
    torch.testing.assert_close(
        A.random_hflip(x, 1.0), TF.horizontal_flip(x), rtol=0, atol=0
    )
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match="p must"):
            A.random_hflip(x, p)
    with pytest.raises(ValueError, match="flip"):
        A.hflip(x, torch.ones(7, dtype=torch.bool))  # one flag short
    with pytest.raises(ValueError, match="flip"):
        A.hflip(x, torch.ones(8))  # floats, not bool


def test_crop_of_the_full_image_is_the_identity():
    x = images(b=4, h=9, w=7)
    zero = torch.zeros(4, dtype=torch.long)
    out = A.crop(x, zero, zero, 9, 7)
    torch.testing.assert_close(out, x, rtol=0, atol=0)
    torch.testing.assert_close(out[1], TF.crop(x[1], 0, 0, 9, 7), rtol=0, atol=0)


@pytest.mark.parametrize(
    "top,left,name",
    [
        ([0, 0, 5, 0], [0, 0, 0, 0], "top"),  # 5 + 5 > 9: runs past the bottom
        ([0, -1, 0, 0], [0, 0, 0, 0], "top"),
        ([0, 0, 0, 0], [0, 4, 0, 0], "left"),  # 4 + 4 > 7
        ([0, 0, 0, 0], [-2, 0, 0, 0], "left"),
    ],
)
def test_crop_box_outside_the_image_is_an_error_naming_the_argument(top, left, name):
    x = images(b=4, h=9, w=7)
    with pytest.raises(ValueError, match=f"^{name} must lie in"):
        A.crop(x, torch.tensor(top), torch.tensor(left), 5, 4)


def test_crop_bad_sizes_and_offsets():
    x = images(b=2, h=9, w=7)
    zero = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="do not fit"):
        A.crop(x, zero, zero, 10, 7)
    with pytest.raises(ValueError, match="height"):
        A.crop(x, zero, zero, 0, 7)
    with pytest.raises(ValueError, match="top must hold integers"):
        A.crop(x, torch.zeros(2), zero, 3, 3)
    with pytest.raises(ValueError, match=r"left must have shape \(2,\)"):
        A.crop(x, zero, torch.zeros(3, dtype=torch.long), 3, 3)
    with pytest.raises(ValueError, match="x must be a"):
        A.crop(x[0], zero, zero, 3, 3)  # one image without its batch axis


def test_cutout_degenerate_boxes():
    x = images(b=3)
    zero = torch.zeros(3, dtype=torch.long)
    torch.testing.assert_close(A.cutout(x, zero, zero, 0, 0), x, rtol=0, atol=0)
    far = torch.full((3,), 100)  # entirely outside: nothing to clip to
    torch.testing.assert_close(A.cutout(x, far, -far, 4, 4), x, rtol=0, atol=0)
    full = A.cutout(x, zero, zero, 9, 7, value=2.5)  # the whole image
    torch.testing.assert_close(
        full[0], TF.erase(x[0], 0, 0, 9, 7, torch.tensor(2.5, dtype=x.dtype))
    )
    torch.testing.assert_close(A.random_cutout(x, 0), x, rtol=0, atol=0)
    with pytest.raises(ValueError, match="height"):
        A.cutout(x, zero, zero, -1, 2)
    with pytest.raises(ValueError, match="size"):
        A.random_cutout(x, -3)


def test_float64_is_preserved_everywhere():
    x = images(b=4, h=8, w=8, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    zero = torch.zeros(4, dtype=torch.long)
    outs = [
        A.pad(x, 2),
        A.pad(x, 2, "constant"),
        A.crop(x, zero, zero, 4, 4),
        A.random_crop(x, 2, generator=g),
        A.hflip(x),
        A.random_hflip(x, generator=g),
        A.cutout(x, zero, zero, 3, 3),
        A.random_cutout(x, 3, generator=g),
        A.CifarAugment(2, cutout=3, generator=g)(x),
        A.normalize(x, (0.5,) * 3, (0.25,) * 3),
        A.denormalize(x, (0.5,) * 3, (0.25,) * 3),
    ]
    assert all(o.dtype == torch.float64 for o in outs)
    logits = torch.randn(4, 5, dtype=torch.float64)
    y = torch.tensor([0, 4, 2, 1])
    loss = A.label_smoothing_cross_entropy(logits, y, 0.1)
    assert loss.dtype == torch.float64
    ref = F.cross_entropy(logits, y, label_smoothing=0.1)
    torch.testing.assert_close(loss, ref, rtol=1e-13, atol=1e-13)


def test_normalize_float64_and_bad_statistics():
    x = images(b=2, c=3, dtype=torch.float64)
    mean, std = (0.1, -0.2, 0.3), (0.5, 2.0, 1e-3)
    torch.testing.assert_close(A.normalize(x, mean, std), TF.normalize(x, mean, std))
    torch.testing.assert_close(A.denormalize(A.normalize(x, mean, std), mean, std), x)
    with pytest.raises(ValueError, match="std must be > 0"):
        A.normalize(x, mean, (0.5, 0.0, 1.0))
    with pytest.raises(ValueError, match="mean must have 1 or 3"):
        A.normalize(x, (0.1, 0.2), std)
    with pytest.raises(ValueError, match="std must have 1 or 3"):
        A.normalize(x, mean, (1.0,) * 4)
    with pytest.raises(ValueError, match="uint8 or floating"):
        A.normalize(x.long(), mean, std)


def test_channel_stats_large_offset_and_uint8():
    # |mean| = 1e4 ≫ std = 1e-2: sum(x²)/n − mean² in float64 would keep no digit
    g = torch.Generator().manual_seed(0)
    x = 1e4 + 1e-2 * torch.randn(50, 2, 6, 6, generator=g, dtype=torch.float64)
    mean, std = A.channel_stats(x, chunk=7)
    flat = x.permute(1, 0, 2, 3).reshape(2, -1)
    torch.testing.assert_close(mean, flat.mean(1), rtol=1e-14, atol=0)
    torch.testing.assert_close(std, flat.std(1, unbiased=False), rtol=1e-6, atol=0)
    u = torch.randint(0, 256, (9, 3, 4, 5), generator=g, dtype=torch.uint8)
    mean, std = A.channel_stats(u, chunk=2)
    ref = u.double().div(255).permute(1, 0, 2, 3).reshape(3, -1)
    torch.testing.assert_close(mean, ref.mean(1))
    torch.testing.assert_close(std, ref.std(1, unbiased=False))
    one = torch.full((1, 1, 1, 1), 0.25, dtype=torch.float64)  # one pixel: std 0
    assert A.channel_stats(one)[1].item() == 0.0
    with pytest.raises(ValueError, match="chunk"):
        A.channel_stats(x, chunk=0)


def test_label_smoothing_extremes_and_bad_labels():
    logits = torch.tensor([[1e4, -1e4, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 2])
    for eps in (0.0, 1.0, 0.3):  # large |z| and exact zeros; ε at both ends
        torch.testing.assert_close(
            A.label_smoothing_cross_entropy(logits, y, eps),
            F.cross_entropy(logits, y, label_smoothing=eps),
        )
    with pytest.raises(ValueError, match="y must lie in"):
        A.label_smoothing_cross_entropy(logits, torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="y must lie in"):
        A.label_smoothing_cross_entropy(logits, torch.tensor([3, 0]))
    with pytest.raises(ValueError, match="y must be 2 integer labels"):
        A.label_smoothing_cross_entropy(logits, torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match="smoothing"):
        A.label_smoothing_cross_entropy(logits, y, 1.5)
