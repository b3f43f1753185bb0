"""Data: mirrors that serve corrupt files, no mirrors, truncated IDX files, and the
arguments of the in-memory loader. Nothing here touches the network: mirrors are local
file:// URLs."""

import gzip
import hashlib
import struct

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

import dlcore
from dlcore import augment, data


def md5(raw: bytes) -> str:
    return hashlib.md5(raw).hexdigest()


def mirror(root, name: str, files: dict[str, bytes]) -> str:
    """A folder of files reachable as a file:// mirror; returns its URL prefix."""
    folder = root / name
    folder.mkdir()
    for file, content in files.items():
        (folder / file).write_bytes(content)
    return folder.as_uri() + "/"


def no_files_left(folder) -> bool:
    return not any(p.is_file() for p in folder.rglob("*"))


# ---------------------------------------------------------------- mirrors


def test_a_corrupt_mirror_is_skipped_for_the_next(tmp_path):
    payload = b"published bytes " * 500
    good = gzip.compress(payload)
    bad = mirror(tmp_path, "bad", {"f.gz": good[:-7] + b"garbage"})
    ok = mirror(tmp_path, "ok", {"f.gz": good})
    file = data.RemoteFile(
        "sub/f", md5(payload), (bad + "f.gz", ok + "f.gz"), md5(good)
    )
    cache = tmp_path / "cache"
    path = data.fetch(file, cache)
    assert path == cache / "sub" / "f" and path.read_bytes() == payload
    assert [p.name for p in (cache / "sub").iterdir()] == ["f"]  # no .part- folders


def test_a_mirror_whose_file_decompresses_to_the_wrong_bytes_is_skipped(tmp_path):
    payload = b"published bytes " * 500
    wrong = gzip.compress(b"other bytes")
    bad = mirror(tmp_path, "bad", {"f": b"not the file"})
    ok = mirror(tmp_path, "ok", {"f": payload})
    file = data.RemoteFile("f", md5(payload), (bad + "f", ok + "f"))
    assert data.fetch(file, tmp_path / "cache").read_bytes() == payload
    # gz md5 right, payload md5 wrong: skipped too; with no mirror left, an error
    only_bad = mirror(tmp_path, "gz", {"f.gz": wrong})
    file = data.RemoteFile("g", md5(payload), (only_bad + "f.gz",), md5(wrong))
    with pytest.raises(data.ChecksumError, match="g is not in the data cache"):
        data.fetch(file, tmp_path / "cache2")
    assert no_files_left(tmp_path / "cache2")


def test_every_mirror_corrupt_is_one_error_naming_all_of_them(tmp_path):
    bad1 = mirror(tmp_path, "bad1", {"f": b"tampered"})
    bad2 = mirror(tmp_path, "bad2", {"f": b"tampered too"})
    missing = (tmp_path / "nowhere").as_uri() + "/f"
    file = data.RemoteFile("f", md5(b"original"), (bad1 + "f", missing, bad2 + "f"))
    cache = tmp_path / "cache"
    with pytest.raises(data.CorruptDownloadError) as err:
        data.fetch(file, cache)
    # both kinds: offline fallbacks catch DataUnavailableError, integrity checks
    # catch ChecksumError
    assert isinstance(err.value, data.DataUnavailableError)
    assert isinstance(err.value, data.ChecksumError)
    message = str(err.value)
    for url in (bad1 + "f", missing, bad2 + "f"):
        assert url in message
    assert f"expected {md5(b'original')}" in message
    assert no_files_left(cache)


def test_an_unreachable_mirror_alone_is_data_unavailable_not_checksum(tmp_path):
    missing = (tmp_path / "nowhere").as_uri() + "/f"
    with pytest.raises(data.DataUnavailableError) as err:
        data.fetch(data.RemoteFile("f", "0" * 32, (missing,)), tmp_path / "cache")
    assert not isinstance(err.value, data.ChecksumError)


def test_an_empty_mirror_list_is_data_unavailable(tmp_path):
    file = data.RemoteFile("cifar10/copy.zip", "0" * 32, ())
    with pytest.raises(data.DataUnavailableError, match="empty mirror list") as err:
        data.fetch(file, tmp_path)
    assert str(tmp_path / "cifar10" / "copy.zip") in str(err.value)
    assert no_files_left(tmp_path)


def test_a_cached_file_is_still_verified_before_any_mirror(tmp_path):
    (tmp_path / "f").write_bytes(b"cached but wrong")
    ok = mirror(tmp_path, "ok", {"f": b"right"})
    with pytest.raises(data.ChecksumError, match="delete it"):
        data.fetch(data.RemoteFile("f", md5(b"right"), (ok + "f",)), tmp_path)


# ---------------------------------------------------------------- IDX files


def idx(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def mnist_files(tmp_path, monkeypatch):
    """Write a tiny MNIST (given the four file contents) with a matching md5 table."""

    def write(**overrides: bytes):
        rng = np.random.default_rng(0)
        files = {
            "train-images-idx3-ubyte": idx(rng.integers(0, 256, (4, 28, 28))),
            "train-labels-idx1-ubyte": idx(np.array([1, 2, 3, 4])),
            "t10k-images-idx3-ubyte": idx(rng.integers(0, 256, (2, 28, 28))),
            "t10k-labels-idx1-ubyte": idx(np.array([5, 6])),
        }
        files.update({k.replace("_", "-"): v for k, v in overrides.items()})
        raw = tmp_path / "MNIST" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (raw / name).write_bytes(content)
        folder, urls, mean, std, _ = data.IDX_FILES["mnist"]
        table = [(n, md5(c), "0" * 32) for n, c in files.items()]
        monkeypatch.setitem(data.IDX_FILES, "mnist", (folder, urls, mean, std, table))
        monkeypatch.setenv("DLCORE_DATA", str(tmp_path))
        return raw

    return write


def test_the_idx_fixture_loads(mnist_files):
    mnist_files()
    assert dlcore.load("mnist").y.tolist() == [1, 2, 3, 4]
    assert dlcore.load("mnist", train=False).x.shape == (2, 1, 28, 28)


def test_a_truncated_idx_file_is_an_error_naming_it(mnist_files):
    full = idx(np.zeros((4, 28, 28)))
    raw = mnist_files(train_images_idx3_ubyte=full[:-100])
    with pytest.raises(data.CorruptFileError) as err:
        dlcore.load("mnist")
    message = str(err.value)
    assert str(raw / "train-images-idx3-ubyte") in message
    assert "truncated" in message and "4 x 28 x 28" in message
    assert f"{len(full) - 100} bytes" in message


@pytest.mark.parametrize(
    "content, words",
    [
        (b"", "not an IDX file"),
        (b"\x00\x00", "not an IDX file"),
        (b"\x1f\x8b\x08\x00", "not an IDX file"),  # still gzip-compressed
        (struct.pack(">BBBBI", 0, 0, 8, 3, 4), "shorter than its header"),
        (idx(np.zeros((4, 28, 28))) + b"\x00", "oversized"),
    ],
)
def test_idx_files_that_are_not_what_the_header_says(mnist_files, content, words):
    raw = mnist_files(train_images_idx3_ubyte=content)
    with pytest.raises(data.CorruptFileError, match=words) as err:
        dlcore.load("mnist")
    assert "train-images-idx3-ubyte" in str(err.value)
    # a ValueError, so it is never mistaken for the numpy reshape error it replaces
    assert isinstance(err.value, ValueError)
    with pytest.raises(data.CorruptFileError):
        data.idx_shape(raw / "train-images-idx3-ubyte")


def test_images_and_labels_of_different_lengths(mnist_files):
    mnist_files(t10k_labels_idx1_ubyte=idx(np.array([5, 6, 7])))
    with pytest.raises(data.CorruptFileError, match="2 images.*3 labels"):
        dlcore.load("mnist", train=False)


def test_idx_shape_reads_every_element_type(tmp_path):
    for code, dtype in ((0x08, ">u1"), (0x0B, ">i2"), (0x0D, ">f4"), (0x0E, ">f8")):
        array = np.ones((3, 1, 2), dtype=dtype)  # size-1 dimension included
        path = tmp_path / f"a{code}"
        header = struct.pack(">BBBB3I", 0, 0, code, 3, 3, 1, 2)
        path.write_bytes(header + array.tobytes())
        assert data.idx_shape(path) == (3, 1, 2)


# ------------------------------------------------------------ TensorLoader arguments


@pytest.mark.parametrize("batch_size", [0, -1, -64])
def test_non_positive_batch_size(batch_size):
    with pytest.raises(
        ValueError, match=f"batch_size must be positive, got {batch_size}"
    ):
        dlcore.TensorLoader(torch.zeros(4, 1), torch.zeros(4), batch_size, device="cpu")


@pytest.mark.parametrize("batch_size", [2.0, True, "8", None])
def test_batch_size_of_the_wrong_type(batch_size):
    with pytest.raises(TypeError, match="batch_size must be an int"):
        dlcore.TensorLoader(torch.zeros(4, 1), torch.zeros(4), batch_size, device="cpu")


def test_loader_over_tensor_data_checks_batch_size_too():
    d = data.TensorData(
        torch.zeros(3, 1, 2, 2), torch.zeros(3), ["a"], (0.5,), (1,), "t"
    )
    with pytest.raises(ValueError, match="batch_size"):
        dlcore.loader(d, 0)


def test_mean_without_std_and_std_without_mean():
    x, y = torch.zeros(4, 1, 2, 2), torch.zeros(4)
    with pytest.raises(ValueError, match="mean and std go together.*std=None"):
        dlcore.TensorLoader(x, y, 2, device="cpu", mean=(0.5,))
    with pytest.raises(ValueError, match="mean and std go together.*mean=None"):
        dlcore.TensorLoader(x, y, 2, device="cpu", std=(0.5,))


def test_x_and_y_of_different_lengths_name_both():
    with pytest.raises(ValueError, match=r"\(10, 3\).*\(9,\)"):
        dlcore.TensorLoader(torch.zeros(10, 3), torch.zeros(9), 4, device="cpu")
    with pytest.raises(ValueError, match="same number of examples"):
        dlcore.TensorLoader(torch.zeros(10, 3), torch.tensor(1), 4, device="cpu")
    with pytest.raises(TypeError, match="tensors"):
        dlcore.TensorLoader(np.zeros((4, 1)), torch.zeros(4), 2, device="cpu")


def test_mean_and_std_of_the_wrong_length_or_a_zero_std():
    x, y = torch.zeros(4, 3, 2, 2), torch.zeros(4)
    with pytest.raises(ValueError, match="mean has 2 values but x has 3 channels"):
        dlcore.TensorLoader(x, y, 2, device="cpu", mean=(0.1, 0.2), std=(1, 1, 1))
    with pytest.raises(ValueError, match="std must be positive"):
        dlcore.TensorLoader(x, y, 2, device="cpu", mean=(0, 0, 0), std=(1, 0.0, 1))
    with pytest.raises(ValueError, match="std must be positive"):
        dlcore.TensorLoader(x, y, 2, device="cpu", mean=(0,), std=(-1,))


# ---------------------------------------------------------------- normalisation


def test_the_loader_normalises_with_augment_normalize(monkeypatch):
    calls = []

    def spy(x, mean, std):
        calls.append(tuple(x.shape))
        return augment.normalize(x, mean, std)

    monkeypatch.setattr(data.loaders, "normalize", spy)
    x = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    loader = dlcore.TensorLoader(
        x, torch.zeros(5), 2, device="cpu", mean=(0.1, 0.2, 0.3), std=(0.5, 1, 2)
    )
    batches = [xb for xb, _ in loader]
    assert calls == [(2, 3, 4, 4), (2, 3, 4, 4), (1, 3, 4, 4)]
    # independent reference: torchvision's normalize
    expected = TF.normalize(x.float() / 255, [0.1, 0.2, 0.3], [0.5, 1, 2])
    torch.testing.assert_close(torch.cat(batches), expected, rtol=0, atol=1e-6)
    calls.clear()
    unnormalised = dlcore.TensorLoader(x, torch.zeros(5), 5, device="cpu")
    assert torch.equal(next(iter(unnormalised))[0], x.float() / 255) and calls == []


def test_normalisation_of_features_sequences_and_float64():
    # (N, F) features: one mean/std per feature; (N, C, L) sequences: per channel
    x = torch.tensor([[1e6, -1e6, 0.0], [3.0, 0.0, -0.0]], dtype=torch.float64)
    mean, std = (1.0, 2.0, 0.0), (2.0, 4.0, 1e-3)
    loader = dlcore.TensorLoader(x, torch.zeros(2), 2, device="cpu", mean=mean, std=std)
    xb = next(iter(loader))[0]
    expected = (x - torch.tensor(mean, dtype=torch.float64)) / torch.tensor(
        std, dtype=torch.float64
    )
    assert xb.dtype == torch.float64  # float64 stays float64
    torch.testing.assert_close(xb, expected, rtol=1e-6, atol=0)
    seq = torch.arange(12.0).view(2, 2, 3)
    loader = dlcore.TensorLoader(
        seq, torch.zeros(2), 1, device="cpu", mean=(1, 2), std=(2, 4)
    )
    out = torch.cat([xb for xb, _ in loader])
    torch.testing.assert_close(out[:, 0], (seq[:, 0] - 1) / 2)
    torch.testing.assert_close(out[:, 1], (seq[:, 1] - 2) / 4)
    # one value for all channels; 1-D x (N,) with a scalar mean: shape (B,) kept
    flat = dlcore.TensorLoader(
        torch.arange(4.0), torch.zeros(4), 4, device="cpu", mean=(1.0,), std=(2.0,)
    )
    torch.testing.assert_close(next(iter(flat))[0], (torch.arange(4.0) - 1) / 2)


def test_integer_x_passes_through_and_cannot_be_normalised():
    tokens = torch.arange(12).view(4, 3)  # e.g. token ids: returned as they are
    xb, _ = next(iter(dlcore.TensorLoader(tokens, torch.zeros(4), 4, device="cpu")))
    assert xb.dtype == torch.int64 and torch.equal(xb, tokens)
    with pytest.raises(ValueError, match="uint8 or floating-point x, got torch.int64"):
        dlcore.TensorLoader(
            tokens, torch.zeros(4), 4, device="cpu", mean=(0,), std=(1,)
        )
