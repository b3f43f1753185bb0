"""Chapter "PyTorch in Practice": IDX reader, Dataset, collate, exact resume (the RNG
state, Gaussian caches included), worker seeding, and bad or degenerate inputs."""

import io
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
    """An IDX file by hand: magic (0, 0, code, ndim), big-endian sizes and values."""
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


def _draw_everything():
    """One draw from every generator rng_state covers, Gaussians included."""
    return (
        torch.rand(3).tolist(),
        np.random.rand(2).tolist(),
        np.random.normal(size=3).tolist(),  # odd count: leaves a cached Gaussian
        random.random(),
        random.gauss(0.0, 1.0),
    )


def test_rng_state_keeps_the_cached_gaussians():
    """NumPy's legacy generator and Python's `random` make normal draws in pairs and
    keep the second; a restore that drops the cache draws a fresh pair instead (the old
    `set_rng_state` did, for both)."""
    np.random.seed(3)
    random.seed(3)
    np.random.normal()  # now NumPy holds a cached Gaussian ...
    random.gauss(0.0, 1.0)  # ... and so does Python (gauss_next)
    assert np.random.get_state()[3] == 1 and random.getstate()[2] is not None
    state = practice.rng_state()
    first = _draw_everything()
    practice.set_rng_state(state)
    assert _draw_everything() == first
    # a checkpoint's round trip: tensors only, loadable with weights_only=True
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    practice.set_rng_state(torch.load(buffer, weights_only=True))
    assert _draw_everything() == first


def test_rng_state_without_a_cached_gaussian_and_old_checkpoints():
    np.random.seed(4)
    random.seed(4)
    state = practice.rng_state()  # no cache yet: has_gauss 0, gauss_next None
    first = _draw_everything()
    old = {k: v for k, v in state.items() if not k.endswith("_gauss")}
    practice.set_rng_state(old)  # a checkpoint from before the caches were saved
    assert _draw_everything() == first
    with pytest.raises(KeyError, match="missing"):
        practice.set_rng_state({"torch": state["torch"]})


def test_seed_worker_seeds_numpy_and_python_from_the_torch_seed():
    torch.manual_seed(2**40 + 17)  # the worker's torch seed; NumPy takes it mod 2**32
    practice.seed_worker(0)
    got = (np.random.rand(3).tolist(), random.random())
    seed = (2**40 + 17) % 2**32
    assert got == (
        np.random.RandomState(seed).rand(3).tolist(),
        random.Random(seed).random(),
    )


class _NumpyNoise(torch.utils.data.Dataset):
    """Each item is a NumPy draw: what augmentations with np.random do in a worker."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.tensor(np.random.rand())


def test_seed_worker_makes_worker_numpy_draws_repeat_and_differ_between_workers():
    def draws(seed, init):
        loader = DataLoader(
            _NumpyNoise(),
            batch_size=2,
            num_workers=2,
            worker_init_fn=init,
            generator=torch.Generator().manual_seed(seed),
        )
        return torch.cat(list(loader))

    a, b, c = (
        draws(5, practice.seed_worker),
        draws(5, practice.seed_worker),
        draws(6, practice.seed_worker),
    )
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0:2], a[2:4])  # workers 0 and 1 draw different numbers


def test_read_idx_degenerate_and_truncated_files(tmp_path):
    empty = np.zeros((0, 28, 28), dtype=np.uint8)  # a size-0 dimension
    write_idx(tmp_path / "empty", empty, 0x08)
    assert tuple(practice.read_idx(tmp_path / "empty").shape) == (0, 28, 28)
    one = np.array([[-1.5e300]], dtype=np.float64)  # 1×1, float64 extremes
    write_idx(tmp_path / "one", one, 0x0E)
    got = practice.read_idx(tmp_path / "one")
    assert got.dtype == torch.float64 and got.item() == -1.5e300
    write_idx(tmp_path / "ok", np.arange(12, dtype=np.int16).reshape(3, 4), 0x0B)
    raw = (tmp_path / "ok").read_bytes()
    cases = {
        b"": "no header",
        raw[:2]: "no header",
        raw[:9]: "truncated IDX header",  # 2 sizes need 12 bytes
        raw[:-1]: "header says",  # half an int16 missing
        raw + b"\x00\x00": "header says",  # trailing bytes
    }
    for i, (data, match) in enumerate(cases.items()):
        (tmp_path / f"bad{i}").write_bytes(data)
        with pytest.raises(ValueError, match=match):
            practice.read_idx(tmp_path / f"bad{i}")


def test_normalizing_collate_matches_torchvision_on_extreme_pixels_and_channels():
    from torchvision.transforms import v2

    mean, std = (0.5, 0.25, 0.0), (0.5, 1e-3, 1.0)
    images = [
        torch.tensor([0, 255], dtype=torch.uint8).repeat(3, 2, 1) for _ in range(2)
    ]
    x, y = practice.NormalizingCollate(mean, std)(list(zip(images, [3, 4])))
    reference = v2.Compose(
        [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    )
    torch.testing.assert_close(x, torch.stack([reference(im) for im in images]))
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and y.tolist() == [3, 4]


Collate = practice.NormalizingCollate


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: practice.ImageDataset(torch.zeros(5, 1, 2, 2), torch.zeros(4)),
         ValueError, "x and y must have the same length"),
        (lambda: Collate((0.5,), (0.2, 0.3)), ValueError, "mean and std"),
        (lambda: Collate((0.5,), (0.0,)), ValueError, "std must be > 0"),
        (lambda: Collate((), ()), ValueError, "mean and std"),
        (lambda: Collate((0.5,), (0.2,))([]), ValueError, "batch is empty"),
        (lambda: Collate((0.5,), (0.2,))([(torch.rand(1, 2, 2), 0)]), TypeError,
         "uint8"),
    ],
)  # fmt: skip
def test_practice_bad_inputs_get_named_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
