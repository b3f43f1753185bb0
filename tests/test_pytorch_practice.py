"""Chapter "PyTorch in Practice": IDX reader, Dataset, collate, exact resume, reproducibility."""

import random
import struct

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data._utils.collate import default_collate

import dlcore
from dlcore.scratch import practice


def write_idx(path, array: np.ndarray, code: int) -> None:
    """An IDX file by hand: magic (0, 0, code, ndim), big-endian sizes, big-endian values."""
    dtype = practice.IDX_DTYPES[code]
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    path.write_bytes(header + array.astype(dtype).tobytes())


@pytest.mark.parametrize(
    "code, dtype", [(0x08, np.uint8), (0x0C, np.int32), (0x0D, np.float32)]
)
def test_read_idx_round_trips_shapes_types_and_byte_order(tmp_path, code, dtype):
    rng = np.random.default_rng(0)
    array = (
        rng.integers(0, 250, size=(5, 3, 4)) * (1 if code == 0x08 else -1000)
    ).astype(dtype)
    write_idx(tmp_path / "a.idx", array, code)
    got = practice.read_idx(tmp_path / "a.idx")
    assert tuple(got.shape) == array.shape
    np.testing.assert_array_equal(
        got.numpy(), array
    )  # big-endian on disk, native in memory


def test_read_idx_rejects_bad_magic_and_truncated_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x00\x08\x01" + struct.pack(">I", 3) + b"abc")
    with pytest.raises(ValueError, match="not an IDX file"):
        practice.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(
        b"\x00\x00\x08\x01" + struct.pack(">I", 4) + b"abc"
    )
    with pytest.raises(ValueError, match="header says"):
        practice.read_idx(tmp_path / "short")


def test_read_idx_equals_torchvision_on_fashion_mnist():
    path = dlcore.data_dir() / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte"
    if not path.exists():
        pytest.skip("Fashion-MNIST is not cached")
    test = dlcore.load("fashion-mnist", train=False)
    assert torch.equal(practice.read_idx(path), test.x[:, 0])
    labels = practice.read_idx(path.with_name("t10k-labels-idx1-ubyte"))
    assert torch.equal(labels.long(), test.y)


def test_image_dataset_and_normalizing_collate_match_tensors_and_default_collate():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (50, 1, 6, 6), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (50,), generator=g)
    mean, std = (0.3,), (0.2,)

    def transform(image):
        return (image.float() / 255 - mean[0]) / std[0]

    ds = practice.ImageDataset(x, y, transform)
    assert len(ds) == 50
    image, label = ds[7]
    torch.testing.assert_close(image, transform(x[7]))
    assert label == int(y[7]) and isinstance(label, int)
    per_item = DataLoader(ds, batch_size=16)
    per_batch = DataLoader(
        practice.ImageDataset(x, y),
        batch_size=16,
        collate_fn=practice.NormalizingCollate(mean, std),
    )
    batches = list(zip(per_item, per_batch))
    assert len(batches) == 4  # ceil(50 / 16)
    for (xa, ya), (xb, yb) in batches:
        torch.testing.assert_close(xa, xb)
        assert torch.equal(ya, yb) and yb.dtype == torch.int64
    raw = [practice.ImageDataset(x, y)[i] for i in range(3)]
    assert torch.equal(default_collate(raw)[0], x[:3])
    with pytest.raises(ValueError):
        practice.ImageDataset(x, y[:10])


def test_rng_state_restores_torch_numpy_and_python():
    state = practice.rng_state()
    first = (torch.rand(4), np.random.rand(4), random.random())
    practice.set_rng_state(state)
    again = (torch.rand(4), np.random.rand(4), random.random())
    assert torch.equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert first[2] == again[2]


def _run(seed=0):
    """A tiny problem with everything random in it: shuffling, dropout, a schedule."""
    dlcore.seed_everything(seed)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(96, 4, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    model = nn.Sequential(
        nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2)
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
    loader = dlcore.TensorLoader(x, y, batch_size=16, shuffle=True, device="cpu")
    return model, opt, sched, loader


def _fit(model, opt, sched, loader, epochs, history=None):
    return dlcore.fit(
        model,
        loader,
        epochs=epochs,
        optimizer=opt,
        scheduler=sched,
        history=history,
        device=torch.device("cpu"),
        progress=False,
    )


def test_resume_with_rng_state_equals_uninterrupted_and_without_it_differs(tmp_path):
    model, opt, sched, loader = _run()
    straight = _fit(model, opt, sched, loader, 4)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    model, opt, sched, loader = _run()
    first = _fit(model, opt, sched, loader, 2)
    path = dlcore.save_checkpoint(
        tmp_path / "c.pt", model, opt, sched, history=first, rng=practice.rng_state()
    )
    torch.rand(1000)  # disturb the global generator, as a new process would
    model, opt, sched, loader = _run(seed=5)
    history, extra = dlcore.load_checkpoint(path, model, opt, sched)
    practice.set_rng_state(extra["rng"])
    resumed = _fit(model, opt, sched, loader, 2, history)
    assert resumed.steps == straight.steps
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key

    model, opt, sched, loader = _run(seed=5)
    history, _ = dlcore.load_checkpoint(path, model, opt, sched)
    torch.manual_seed(99)  # no RNG restore: other shuffles and dropout masks
    other = _fit(model, opt, sched, loader, 2, history)
    assert other.steps[: len(first.steps)] == straight.steps[: len(first.steps)]
    assert other.steps != straight.steps


def test_same_seed_same_losses_other_seed_differs():
    torch.use_deterministic_algorithms(True)
    try:
        a, b, c = (_fit(*_run(seed), epochs=2).steps for seed in (0, 0, 1))
    finally:
        torch.use_deterministic_algorithms(False)
    assert a == b
    assert a != c


def test_loader_generator_makes_order_independent_of_global_rng():
    ds = practice.ImageDataset(
        torch.zeros(40, 1, 2, 2, dtype=torch.uint8), torch.arange(40)
    )

    def order(seed):
        loader = DataLoader(
            ds,
            batch_size=40,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
            worker_init_fn=practice.seed_worker,
        )
        return next(iter(loader))[1]

    a = order(3)
    torch.rand(50)
    assert torch.equal(a, order(3))
    assert not torch.equal(a, order(4))
    assert sorted(a.tolist()) == list(range(40))


@pytest.mark.parametrize(
    "dtype, fraction_bits", [(torch.float16, 10), (torch.bfloat16, 7)]
)
def test_rounding_error_is_bounded_by_unit_roundoff(dtype, fraction_bits):
    x = torch.empty(100_000, dtype=torch.float64).uniform_(-50, 50)
    u = 2.0 ** -(fraction_bits + 1)
    worst = ((x.to(dtype).double() - x).abs() / x.abs()).max().item()
    assert 0.9 * u < worst <= u
