"""Datasets as tensors: a checksummed cache under `DLCORE_DATA`, torchvision's formats.

Every file is verified by md5 after download *and* on every cache hit; downloads are
written to a temporary file and renamed into place only when complete, so the cache is
never half-written. A mirror that fails, or serves a corrupt file, is skipped for the
next one.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import shutil
import struct
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs
import torch
import torchvision

from .augment import normalize, to_float
from .runtime import device as default_device

DATASETS = ("mnist", "fashion-mnist", "cifar10")
CIFAR10_VARIANTS = ("auto", "original", "jpeg75", "subset")


class DataUnavailableError(RuntimeError):
    """A file is neither in the cache nor downloadable (e.g. offline)."""


class ChecksumError(RuntimeError):
    """A file's md5 differs from the published one."""


class CorruptDownloadError(DataUnavailableError, ChecksumError):
    """No mirror served the file: at least one served bytes with the wrong md5 (caught
    both as `DataUnavailableError`, so offline fallbacks still apply, and as
    `ChecksumError`)."""


class CorruptFileError(ValueError):
    """A cached file has the right name but not the right layout (e.g. a truncated IDX
    file); delete it and load again to re-download."""


# ------------------------------------------------------------ the cache and its files


def data_dir() -> Path:
    """The data cache: `$DLCORE_DATA`, else the user cache directory (e.g.
    ~/.cache/dlcore)."""
    env = os.environ.get("DLCORE_DATA")
    return (
        Path(env).expanduser()
        if env
        else Path(platformdirs.user_cache_dir("dlcore")) / "data"
    )


def derived_dir() -> Path:
    """A writable place for files the book derives (decoded arrays); never inside
    DLCORE_DATA, which may be a shared read-only mirror."""
    return Path(platformdirs.user_cache_dir("dlcore")) / "derived"


def file_digest(path: str | Path, algorithm: str = "md5", chunk: int = 1 << 22) -> str:
    """The hex digest (`hashlib` algorithm name) of a file's bytes, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def md5sum(path: Path) -> str:
    return file_digest(path, "md5")


def verify(path: Path, md5: str) -> Path:
    """Raise `ChecksumError` unless `path` has the given md5."""
    got = md5sum(path)
    if got != md5:
        raise ChecksumError(
            f"{path}: md5 {got}, expected {md5}. The file is corrupt or not the "
            "published one; delete it and load again to re-download."
        )
    return path


@dataclass(frozen=True)
class RemoteFile:
    """A cached file: `name` relative to the data dir, its md5, and where it can be
    downloaded. When `gz_md5` is set the URLs serve a gzip file (with that md5) to
    decompress."""

    name: str
    md5: str
    urls: tuple[str, ...]
    gz_md5: str | None = None


def _download(url: str, dest: Path, timeout: float = 30.0) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        status = getattr(response, "status", None)  # None for file:// URLs
        if status is not None and status != 200:
            raise urllib.error.HTTPError(
                url, status, f"HTTP {status}", response.headers, None
            )
        with open(dest, "wb") as f:
            shutil.copyfileobj(response, f, 1 << 20)


def _md5_problem(path: Path, md5: str, what: str) -> str | None:
    """None if `path` has the md5, else a one-line description of the mismatch."""
    got = md5sum(path)
    return None if got == md5 else f"{what} md5 {got}, expected {md5}"


def _download_verified(url: str, file: RemoteFile, tmp: Path) -> tuple[Path, str]:
    """Download `url` into the folder `tmp`, decompress if needed, and check the md5s.
    Returns (path, "") on success, or (path, what was wrong) for a corrupt download;
    network errors propagate."""
    raw = tmp / "download"
    _download(url, raw)
    if file.gz_md5 is not None:
        if problem := _md5_problem(raw, file.gz_md5, "gzip file"):
            return raw, problem
        unpacked = tmp / "unpacked"
        try:
            with gzip.open(raw, "rb") as src, open(unpacked, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (OSError, EOFError) as err:  # BadGzipFile is an OSError
            return raw, f"gzip file does not decompress ({err})"
        raw = unpacked
    return raw, _md5_problem(raw, file.md5, "file") or ""


def fetch(file: RemoteFile, root: Path | None = None) -> Path:
    """The verified local path of `file`, downloaded (atomically) if it is not cached.

    The mirrors in `file.urls` are tried in order; one that cannot be reached, or that
    serves a file whose md5 is not the published one, is skipped for the next. Raises
    `DataUnavailableError` when no mirror delivers (`CorruptDownloadError`, also a
    `ChecksumError`, when some mirror served corrupt bytes) and when there are no
    mirrors; nothing is left in the cache then.
    """
    root = root or data_dir()
    target = root / file.name
    if target.exists():
        return verify(target, file.md5)
    gz = " and decompress it (gunzip)" if file.gz_md5 else ""
    where = (
        f"(the cache is $DLCORE_DATA, now {root}; "
        "the book's offline mirror is ../shared/data)."
    )
    if not file.urls:
        raise DataUnavailableError(
            f"{file.name} is not in the data cache and has no download URL "
            f"(an empty mirror list).\nPut the file at {target}\n{where}"
        )
    errors, corrupt = [], []
    target.parent.mkdir(parents=True, exist_ok=True)
    for url in file.urls:
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".part-") as tmp:
            try:
                path, problem = _download_verified(url, file, Path(tmp))
            except (urllib.error.URLError, OSError, TimeoutError, ValueError) as err:
                errors.append(f"{url}: {err}")
                continue
            if problem:
                corrupt.append(f"{url}: {problem}")
                continue
            os.replace(path, target)  # atomic: the cache never holds half a file
        return target
    error = CorruptDownloadError if corrupt else DataUnavailableError
    raise error(
        f"{file.name} is not in the data cache and could not be downloaded "
        f"({'; '.join(errors + corrupt)}).\n"
        f"Download {file.urls[0]}{gz}, and put it at {target}\n{where}"
    )


# ---------------------------------------------------------------- IDX files

_IDX_ITEMSIZE = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


def idx_shape(path: Path) -> tuple[int, ...]:
    """The array shape an IDX file's header declares, after checking that the file holds
    exactly that much data; `CorruptFileError` (naming the file) if not."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        magic = f.read(4)
        if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in _IDX_ITEMSIZE:
            raise CorruptFileError(
                f"{path}: not an IDX file (first bytes {magic.hex() or 'none'}); "
                "delete it and load again to re-download."
            )
        ndim = magic[3]
        header = f.read(4 * ndim)
    if len(header) < 4 * ndim:
        raise CorruptFileError(
            f"{path}: truncated IDX file ({size} bytes, shorter than its header); "
            "delete it and load again to re-download."
        )
    shape = struct.unpack(f">{ndim}I", header)
    expected = 4 + 4 * ndim + _IDX_ITEMSIZE[magic[2]] * math.prod(shape)
    if size != expected:
        kind = "truncated" if size < expected else "oversized"
        raise CorruptFileError(
            f"{path}: {kind} IDX file: its header declares shape "
            f"{' x '.join(map(str, shape))} ({expected} bytes), the file has {size} "
            "bytes; delete it and load again to re-download."
        )
    return shape


# ---------------------------------------------------------------- datasets as tensors


@dataclass
class TensorData:
    """A whole split in memory. x: (N, C, H, W) uint8; y: (N,) int64."""

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str  # which data this is, for the result card

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, n: int, *, seed: int | None = None) -> TensorData:
        """`n` examples (for smoke runs and small-data experiments): the first `n`, or
        with `seed` a random sample of `n` (without replacement, reproducible). Use a
        seed when the data may be sorted by class, as the offline CIFAR-10 JPEG copy
        is."""
        if seed is None:
            index = slice(0, n)
        else:
            index = torch.randperm(
                len(self), generator=torch.Generator().manual_seed(seed)
            )[:n]
        return TensorData(
            self.x[index], self.y[index], self.classes, self.mean, self.std, self.source
        )


_MNIST_URLS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
# (file, md5 of the uncompressed file, md5 of the .gz torchvision downloads)
IDX_FILES = {
    "mnist": (
        "MNIST",
        _MNIST_URLS,
        (0.1307,),
        (0.3081,),
        [
            (
                "train-images-idx3-ubyte",
                "6bbc9ace898e44ae57da46a324031adb",
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            ),
            (
                "train-labels-idx1-ubyte",
                "a25bea736e30d166cdddb491f175f624",
                "d53e105ee54ea40749a09fcbcd1e9432",
            ),
            (
                "t10k-images-idx3-ubyte",
                "2646ac647ad5339dbf082846283269ea",
                "9fb629c4189551a2d022fa330f9573f3",
            ),
            (
                "t10k-labels-idx1-ubyte",
                "27ae3e4e09519cfbb04c329615203637",
                "ec29112dd5afa0611ce80d1b7f02629c",
            ),
        ],
    ),
    "fashion-mnist": (
        "FashionMNIST",
        _FASHION_URLS,
        (0.2860,),
        (0.3530,),
        [
            (
                "train-images-idx3-ubyte",
                "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            ),
            (
                "train-labels-idx1-ubyte",
                "9018921c3c673c538a1fc5bad174d6f9",
                "25c81989df183df01b3e8a0aad5dffbe",
            ),
            (
                "t10k-images-idx3-ubyte",
                "8181f5470baa50b63fa0f6fddb340f0a",
                "bef4ecab320f06d8554ea6380940ec79",
            ),
            (
                "t10k-labels-idx1-ubyte",
                "15d484375f8d13e6eb1aabb0c3f46965",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ),
        ],
    ),
}
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR10_TAR = RemoteFile(
    "cifar-10-python.tar.gz",
    "c58f30108f718f92721af3b95e74349a",
    ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
)
CIFAR10_JPEG = RemoteFile(
    "cifar10/cifar10-jpeg75.zip", "776f52f9e1e133769fe6ac6e76b30631", ()
)
CIFAR10_SUBSET = RemoteFile(
    "cifar10/cifar10.npz", "11eaf3fd3d4ae78c0b96545e497b80f0", ()
)


def load(name: str, train: bool = True, *, variant: str = "auto") -> TensorData:
    """Load a whole split as uint8 tensors.

    name: "mnist" | "fashion-mnist" | "cifar10". For CIFAR-10, `variant` picks the
    copy: "original" (torchvision's, downloaded if needed), "jpeg75" (all 60k images
    re-encoded as JPEG q75), "subset" (a lossless 4k/1k subset), or "auto": the first of
    these available.
    """
    key = name.lower().replace("_", "-")
    if key in IDX_FILES:
        return _load_idx(key, train)
    if key == "cifar10":
        return _load_cifar10(train, variant)
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


def _load_idx(key: str, train: bool) -> TensorData:
    folder, mirrors, mean, std, files = IDX_FILES[key]
    root = data_dir()
    paths, counts = {}, {}
    for file, md5, gz_md5 in files:
        urls = tuple(m + file + ".gz" for m in mirrors)
        paths[file] = fetch(RemoteFile(f"{folder}/raw/{file}", md5, urls, gz_md5), root)
        counts[file] = idx_shape(paths[file])[0]  # a clear error, not the parser's
    for images in [f for f in files if "-images-" in f[0]]:
        labels = images[0].replace("-images-idx3-", "-labels-idx1-")
        if labels in counts and counts[images[0]] != counts[labels]:
            raise CorruptFileError(
                f"{paths[images[0]]} holds {counts[images[0]]} images but "
                f"{paths[labels]} holds {counts[labels]} labels; delete both and "
                "load again."
            )
    cls = (
        torchvision.datasets.MNIST
        if key == "mnist"
        else torchvision.datasets.FashionMNIST
    )
    ds = cls(
        root=str(root), train=train, download=False
    )  # torchvision parses the IDX files
    split = "train" if train else "test"
    source = f"{cls.__name__} ({split}, original IDX files, md5-verified)"
    return TensorData(
        ds.data.unsqueeze(1).contiguous(),
        ds.targets.long(),
        list(ds.classes),
        mean,
        std,
        source,
    )


def _load_cifar10(train: bool, variant: str) -> TensorData:
    if variant not in CIFAR10_VARIANTS:
        raise ValueError(
            f"unknown CIFAR-10 variant {variant!r}; "
            f"known: {', '.join(CIFAR10_VARIANTS)}"
        )
    root = data_dir()
    split = "train" if train else "test"
    problems = []
    if variant in ("auto", "original"):
        try:
            return _cifar10_original(root, train)
        except DataUnavailableError as err:
            if variant == "original":
                raise
            problems.append(str(err).splitlines()[0])
    if variant in ("auto", "jpeg75") and (root / CIFAR10_JPEG.name).exists():
        x, y = _cifar10_jpeg(verify(root / CIFAR10_JPEG.name, CIFAR10_JPEG.md5), train)
        source = (
            f"CIFAR-10 {split}, all {len(y)} images as JPEG q75 (offline copy; lossy, "
            "median PSNR 30.5 dB vs the originals)"
        )
        return TensorData(x, y, CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, source)
    if variant in ("auto", "subset") and (root / CIFAR10_SUBSET.name).exists():
        arrays = np.load(verify(root / CIFAR10_SUBSET.name, CIFAR10_SUBSET.md5))
        x = torch.from_numpy(arrays[f"x_{split}"]).permute(0, 3, 1, 2).contiguous()
        y = torch.from_numpy(arrays[f"y_{split}"].astype(np.int64))
        source = f"CIFAR-10 {split}, lossless subset of {len(y)} images (offline copy)"
        return TensorData(x, y, CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, source)
    raise DataUnavailableError(
        f"CIFAR-10 ({variant}) is not available: {' '.join(problems)}\n"
        f"Download {CIFAR10_TAR.urls[0]} and extract it into {root} "
        f"(giving {root}/cifar-10-batches-py), or put the offline copies at "
        f"{root / CIFAR10_JPEG.name} / {root / CIFAR10_SUBSET.name}."
    )


def _cifar10_original(root: Path, train: bool) -> TensorData:
    if not (root / "cifar-10-batches-py").is_dir():
        archive = fetch(CIFAR10_TAR, root)
        with tempfile.TemporaryDirectory(dir=root, prefix=".part-") as tmp:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
            os.replace(Path(tmp) / "cifar-10-batches-py", root / "cifar-10-batches-py")
    ds = torchvision.datasets.CIFAR10(
        root=str(root), train=train, download=False
    )  # checks md5s
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    source = f"CIFAR-10 {'train' if train else 'test'} (original, torchvision)"
    return TensorData(
        x, torch.tensor(ds.targets), list(ds.classes), CIFAR10_MEAN, CIFAR10_STD, source
    )


def _cifar10_jpeg(zip_path: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode the ImageFolder-style ZIP once (torchvision's JPEG decoder) and cache the
    arrays."""
    split = "train" if train else "test"
    cache = derived_dir() / f"cifar10-jpeg75-{CIFAR10_JPEG.md5[:8]}-{split}.npz"
    if not cache.exists():
        images, labels = [], []
        with zipfile.ZipFile(zip_path) as archive:
            names = sorted(
                n
                for n in archive.namelist()
                if n.startswith(f"{split}/") and n.endswith(".jpg")
            )
            for n in names:
                data = torch.frombuffer(bytearray(archive.read(n)), dtype=torch.uint8)
                images.append(
                    torchvision.io.decode_jpeg(
                        data, mode=torchvision.io.ImageReadMode.RGB
                    )
                )
                labels.append(CIFAR10_CLASSES.index(n.split("/")[1]))
        cache.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(
            buffer, x=torch.stack(images).numpy(), y=np.array(labels, dtype=np.int64)
        )
        part = cache.with_suffix(".part")
        part.write_bytes(buffer.getvalue())
        os.replace(part, cache)
    arrays = np.load(cache)
    return torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"])


# ---------------------------------------------------------------- batches from memory


class TensorLoader:
    """Shuffled mini-batches from tensors kept in memory, on the device.

    x: (N, C, ...) uint8 or float; y: (N, ...). uint8 images are scaled to [0, 1] and,
    when `mean` and `std` are given (both or neither; one value per channel C, or one
    for all), normalised per batch on the device with `dlcore.augment.normalize`;
    `augment` (a function of a float batch) runs after. Yields (x_batch: (B, ...),
    y_batch: (B, ...)). batch_size must be a positive int.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        device: torch.device | str | None = None,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        augment=None,
        drop_last: bool = False,
    ):
        _check_inputs(x, y, batch_size, mean, std)
        self.device = torch.device(device) if device is not None else default_device()
        self.x, self.y = x.to(self.device), y.to(self.device)
        self.batch_size, self.shuffle, self.drop_last, self.augment = (
            batch_size,
            shuffle,
            drop_last,
            augment,
        )
        # kept on the CPU: `normalize` checks std > 0 there, not with a device sync
        self.mean = None if mean is None else torch.as_tensor(mean).flatten().cpu()
        self.std = None if std is None else torch.as_tensor(std).flatten().cpu()

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.y)
        order = torch.randperm(n).to(self.device) if self.shuffle else None
        for batch in range(len(self)):
            if order is None:
                xb = self.x[batch * self.batch_size : (batch + 1) * self.batch_size]
                yb = self.y[batch * self.batch_size : (batch + 1) * self.batch_size]
            else:
                idx = order[batch * self.batch_size : (batch + 1) * self.batch_size]
                xb, yb = self.x[idx], self.y[idx]
            yield self._prepare(xb), yb

    def _prepare(self, xb: torch.Tensor) -> torch.Tensor:
        if xb.dtype == torch.uint8:
            xb = to_float(xb)
        if self.mean is not None:
            if xb.dim() == 4:
                xb = normalize(xb, self.mean, self.std)
            else:  # (B, C, ...) or (B,): the helper wants (B, C, H, W)
                channels = xb.shape[1] if xb.dim() > 1 else 1
                flat = xb.reshape(len(xb), channels, -1, 1)
                xb = normalize(flat, self.mean, self.std).view(xb.shape)
        return self.augment(xb) if self.augment is not None else xb


def _check_inputs(x, y, batch_size, mean, std) -> None:
    """TensorLoader's arguments, checked where a mistake can still be named."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(
            f"x and y must be tensors, got {type(x).__name__} and {type(y).__name__}"
        )
    if x.dim() == 0 or y.dim() == 0 or len(x) != len(y):
        raise ValueError(
            "x and y must hold the same number of examples (their first axis): "
            f"x has shape {tuple(x.shape)}, y {tuple(y.shape)}"
        )
    if (mean is None) != (std is None):
        raise ValueError(
            f"mean and std go together (both or neither): got mean={mean!r}, "
            f"std={std!r}"
        )
    if mean is None:
        return
    if not (x.dtype == torch.uint8 or x.is_floating_point()):
        raise ValueError(f"mean/std need uint8 or floating-point x, got {x.dtype}")
    channels = x.shape[1] if x.dim() > 1 else 1
    for name, values in (("mean", mean), ("std", std)):
        n = torch.as_tensor(values).numel()
        if n not in (1, channels):
            raise ValueError(
                f"{name} has {n} values but x has {channels} channels (x.shape[1]); "
                "give one value per channel, or one for all"
            )
    if not bool((torch.as_tensor(std, dtype=torch.float64) > 0).all()):
        raise ValueError(f"std must be positive, got std={std!r}")


def loader(
    data: TensorData,
    batch_size: int,
    *,
    shuffle: bool = False,
    device=None,
    normalize: bool = True,
    augment=None,
    drop_last: bool = False,
) -> TensorLoader:
    """A `TensorLoader` over a `TensorData`, normalised with the dataset's mean and
    std."""
    mean, std = (data.mean, data.std) if normalize else (None, None)
    return TensorLoader(
        data.x,
        data.y,
        batch_size,
        shuffle=shuffle,
        device=device,
        mean=mean,
        std=std,
        augment=augment,
        drop_last=drop_last,
    )
