"""Image datasets as uint8 tensors: MNIST, Fashion-MNIST (IDX files), CIFAR-10."""

from __future__ import annotations

import io
import math
import os
import struct
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision

from .cache import (
    CorruptFileError,
    DataUnavailableError,
    RemoteFile,
    data_dir,
    derived_dir,
    fetch,
    verify,
)

IMAGE_DATASETS = ("mnist", "fashion-mnist", "cifar10")
CIFAR10_VARIANTS = ("auto", "original", "jpeg75", "subset")


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


def load_images(name: str, train: bool = True, *, variant: str = "auto") -> TensorData:
    """Load a whole image split as uint8 tensors (see `dlcore.load`)."""
    if name in IDX_FILES:
        return _load_idx(name, train)
    if name == "cifar10":
        return _load_cifar10(train, variant)
    raise ValueError(
        f"unknown image dataset {name!r}; known: {', '.join(IMAGE_DATASETS)}"
    )


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
