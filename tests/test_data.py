"""Data: parsing (IDX and npz), checksums, atomic downloads, offline errors, the tensor
loader."""

import gzip
import hashlib
import http.server
import struct
import threading
from functools import partial

import numpy as np
import pytest
import torch

import dlcore
from dlcore import data


def md5(raw: bytes) -> str:
    return hashlib.md5(raw).hexdigest()


def idx_images(images: np.ndarray) -> bytes:
    n, rows, cols = images.shape
    return (
        struct.pack(">IIII", 0x00000803, n, rows, cols)
        + images.astype(np.uint8).tobytes()
    )


def idx_labels(labels: np.ndarray) -> bytes:
    return (
        struct.pack(">II", 0x00000801, len(labels)) + labels.astype(np.uint8).tobytes()
    )


@pytest.fixture
def tiny_mnist(tmp_path, monkeypatch):
    """A 5-train / 3-test MNIST in IDX format, with the checksum table pointing at
    it."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": idx_images(rng.integers(0, 256, (5, 28, 28))),
        "train-labels-idx1-ubyte": idx_labels(np.array([5, 0, 4, 1, 9])),
        "t10k-images-idx3-ubyte": idx_images(rng.integers(0, 256, (3, 28, 28))),
        "t10k-labels-idx1-ubyte": idx_labels(np.array([7, 2, 1])),
    }
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, content in arrays.items():
        (raw / name).write_bytes(content)
    folder, urls, mean, std, _ = data.IDX_FILES["mnist"]
    table = [(name, md5(content), "0" * 32) for name, content in arrays.items()]
    monkeypatch.setitem(data.IDX_FILES, "mnist", (folder, urls, mean, std, table))
    monkeypatch.setenv("DLCORE_DATA", str(tmp_path))
    return tmp_path, arrays


def test_idx_files_parse_into_tensors(tiny_mnist):
    _, arrays = tiny_mnist
    train = dlcore.load("mnist")
    assert train.x.shape == (5, 1, 28, 28) and train.x.dtype == torch.uint8
    assert train.y.tolist() == [5, 0, 4, 1, 9] and train.y.dtype == torch.int64
    expected = np.frombuffer(
        arrays["train-images-idx3-ubyte"][16:], dtype=np.uint8
    ).reshape(5, 28, 28)
    assert np.array_equal(train.x[:, 0].numpy(), expected)
    assert dlcore.load("mnist", train=False).y.tolist() == [7, 2, 1]
    assert "MNIST" in train.source


def test_corrupt_cached_file_fails_its_checksum(tiny_mnist):
    root, _ = tiny_mnist
    path = root / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-1] + b"\x03")
    with pytest.raises(data.ChecksumError, match="train-labels-idx1-ubyte.*expected"):
        dlcore.load("mnist")


def test_npz_subset_of_cifar10_parses(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    x_train = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    (tmp_path / "cifar10").mkdir()
    path = tmp_path / "cifar10" / "cifar10.npz"
    np.savez(
        path,
        x_train=x_train,
        y_train=np.arange(6, dtype=np.uint8),
        x_test=x_train[:2],
        y_test=np.array([3, 8], dtype=np.uint8),
    )
    monkeypatch.setattr(
        data.images,
        "CIFAR10_SUBSET",
        data.RemoteFile("cifar10/cifar10.npz", md5(path.read_bytes()), ()),
    )
    monkeypatch.setenv("DLCORE_DATA", str(tmp_path))
    train = dlcore.load("cifar10", variant="subset")
    assert train.x.shape == (6, 3, 32, 32)
    assert torch.equal(
        train.x[2], torch.from_numpy(x_train[2]).permute(2, 0, 1)
    )  # HWC -> CHW
    assert dlcore.load("cifar10", train=False, variant="subset").y.tolist() == [3, 8]
    assert "subset" in train.source


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match="mnist, fashion-mnist, cifar10"):
        dlcore.load("imagenet")
    with pytest.raises(ValueError, match="auto, original, jpeg75, subset"):
        dlcore.load("cifar10", variant="png")


def test_offline_and_uncached_gives_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DLCORE_DATA", str(tmp_path))
    file = data.RemoteFile(
        "MNIST/raw/t10k-labels-idx1-ubyte",
        "0" * 32,
        ("http://127.0.0.1:9/t10k-labels-idx1-ubyte.gz",),
        gz_md5="1" * 32,
    )
    with pytest.raises(data.DataUnavailableError) as err:
        data.fetch(file)
    message = str(err.value)
    assert "t10k-labels-idx1-ubyte" in message
    assert "http://127.0.0.1:9/t10k-labels-idx1-ubyte.gz" in message
    assert str(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte") in message
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # nothing half-written


def test_cifar10_offline_without_copies_names_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("DLCORE_DATA", str(tmp_path))
    monkeypatch.setattr(
        data.images,
        "CIFAR10_TAR",
        data.RemoteFile(
            "cifar-10-python.tar.gz",
            "0" * 32,
            ("http://127.0.0.1:9/cifar-10-python.tar.gz",),
        ),
    )
    with pytest.raises(data.DataUnavailableError, match="cifar-10-python.tar.gz"):
        dlcore.load("cifar10")


@pytest.fixture
def http_root(tmp_path):
    """A static HTTP server on loopback serving tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_is_verified_decompressed_and_atomic(http_root, tmp_path):
    www, url = http_root
    payload = b"real bytes " * 1000
    (www / "f.gz").write_bytes(gzip.compress(payload))
    cache = tmp_path / "cache"
    file = data.RemoteFile(
        "sub/f",
        md5(payload),
        (url + "missing.gz", url + "f.gz"),
        gz_md5=md5((www / "f.gz").read_bytes()),
    )
    path = data.fetch(file, cache)  # the first URL answers 404, the second works
    assert path.read_bytes() == payload
    assert [p.name for p in (cache / "sub").iterdir()] == [
        "f"
    ]  # no temporary files left


def test_download_with_wrong_checksum_leaves_nothing(http_root, tmp_path):
    www, url = http_root
    (www / "f").write_bytes(b"tampered")
    cache = tmp_path / "cache"
    with pytest.raises(data.ChecksumError):
        data.fetch(data.RemoteFile("sub/f", md5(b"original"), (url + "f",)), cache)
    assert not any(p.is_file() for p in cache.rglob("*"))


def test_http_error_status_is_an_error_not_a_file(http_root, tmp_path):
    _, url = http_root
    with pytest.raises(data.DataUnavailableError, match="404"):
        data.fetch(
            data.RemoteFile("g", "0" * 32, (url + "nothing-here",)), tmp_path / "cache"
        )


def test_real_mnist_from_the_cache(real_data_dir):
    train = dlcore.load("mnist")
    assert train.x.shape == (60000, 1, 28, 28)
    assert torch.bincount(train.y).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert abs(train.x.float().div(255).mean().item() - 0.1307) < 1e-3


# ---------------------------------------------------------------- the in-memory loader


def test_shuffled_loader_visits_every_example_once_per_epoch():
    x = torch.arange(10, dtype=torch.float32).view(10, 1)
    loader = dlcore.TensorLoader(
        x, torch.arange(10), batch_size=4, shuffle=True, device="cpu"
    )
    assert len(loader) == 3
    epochs = [torch.cat([yb for _, yb in loader]) for _ in range(2)]
    for seen in epochs:
        assert sorted(seen.tolist()) == list(range(10))
    assert not torch.equal(epochs[0], epochs[1]) or not torch.equal(
        epochs[0], torch.arange(10)
    )
    for xb, yb in loader:
        torch.testing.assert_close(xb.squeeze(1), yb.float())  # x and y stay paired


def test_loader_scales_and_normalises_uint8_images():
    x = torch.full((6, 1, 2, 2), 255, dtype=torch.uint8)
    loader = dlcore.TensorLoader(
        x, torch.zeros(6), batch_size=4, device="cpu", mean=(0.5,), std=(0.25,)
    )
    xb, _ = next(iter(loader))
    assert xb.dtype == torch.float32 and xb.shape == (4, 1, 2, 2)
    torch.testing.assert_close(xb, torch.full_like(xb, 2.0))  # (1 - 0.5) / 0.25
    assert [len(yb) for _, yb in loader] == [4, 2]
    assert (
        len(
            dlcore.TensorLoader(
                x, torch.zeros(6), batch_size=4, device="cpu", drop_last=True
            )
        )
        == 1
    )


def test_loader_over_tensor_data_uses_its_statistics(tiny_mnist):
    train = dlcore.load("mnist")
    xb, yb = next(iter(dlcore.loader(train, 5, device="cpu")))
    expected = (train.x.float() / 255 - 0.1307) / 0.3081
    torch.testing.assert_close(xb, expected)
    assert yb.tolist() == [5, 0, 4, 1, 9]


def test_subset_first_n_or_seeded_random_sample():
    from dlcore.data import TensorData

    y = torch.arange(10).repeat_interleave(
        10
    )  # sorted by class, like the offline CIFAR-10 copy
    data = TensorData(
        torch.arange(100).float().reshape(100, 1),
        y,
        [str(i) for i in range(10)],
        (0.0,),
        (1.0,),
        "t",
    )
    assert data.subset(20).y.unique().tolist() == [0, 1]
    sample = data.subset(20, seed=3)
    assert len(sample) == 20 and len(sample.y.unique()) > 2
    assert torch.equal(
        sample.x[:, 0].long(), data.subset(20, seed=3).x[:, 0].long()
    )  # reproducible
    assert len(sample.x[:, 0].unique()) == 20  # without replacement
    assert torch.equal(
        data.y[sample.x[:, 0].long()], sample.y
    )  # images keep their labels
