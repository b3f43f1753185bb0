"""PyTorch in practice: an IDX reader, a Dataset, a collate function, RNG state for
exact resumes.

The pieces of chapter "PyTorch in Practice" that other chapters (and the tests) reuse.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

# IDX type codes (LeCun's format): code -> (numpy dtype, big-endian), see
# yann.lecun.com/exdb/mnist
IDX_DTYPES = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_idx(path: str | Path) -> torch.Tensor:
    """Parse an uncompressed IDX file into a tensor of its stored shape, e.g. uint8
    (N, 28, 28).

    Layout: two zero bytes, a type code, the number of dimensions d, then d big-endian
    uint32 sizes, then the values in C order, big-endian.
    """
    name = Path(path).name
    raw = Path(path).read_bytes()
    if len(raw) < 4:
        raise ValueError(f"{name}: not an IDX file ({len(raw)} bytes, no header)")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in IDX_DTYPES:
        raise ValueError(f"{name}: not an IDX file (magic {raw[:4].hex()})")
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise ValueError(
            f"{name}: truncated IDX header (needs {offset} bytes for {ndim} sizes, "
            f"file holds {len(raw)})"
        )
    shape = struct.unpack(f">{ndim}I", raw[4:offset])
    itemsize = np.dtype(IDX_DTYPES[code]).itemsize
    expected = int(np.prod(shape, dtype=np.int64)) * itemsize
    if len(raw) - offset != expected:
        raise ValueError(
            f"{name}: header says shape {shape} ({expected} bytes of values), "
            f"file holds {len(raw) - offset} bytes after the header"
        )
    values = np.frombuffer(raw, dtype=IDX_DTYPES[code], offset=offset)
    # astype makes a native-endian, writable copy that torch can share memory with
    return torch.from_numpy(values.astype(values.dtype.newbyteorder("="))).reshape(
        shape
    )


class ImageDataset(Dataset):
    """Images kept in memory, one example at a time: the map-style `Dataset` protocol.

    x: (N, C, H, W) uint8; y: (N,) int64. `transform` maps one image (C, H, W) uint8 to
    whatever the model eats (e.g. a normalised float tensor); without it the uint8 image
    is returned. `dataset[i]` -> (image, label as int).
    """

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, transform: Callable | None = None
    ):
        if len(x) != len(y):
            raise ValueError(
                f"x and y must have the same length, got {len(x)} images (x) "
                f"and {len(y)} labels (y)"
            )
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.x[i]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.y[i])


class NormalizingCollate:
    """A `collate_fn` that stacks uint8 images and normalises the whole batch at once.

    batch: list of (image (C, H, W) uint8, label int)
    -> (x: (B, C, H, W) float32, y: (B,) int64), x = (image / 255 - mean) / std per
    channel. A class, not a closure, so that DataLoader workers started with "spawn" can
    pickle it.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        if len(mean) != len(std) or len(mean) == 0:
            raise ValueError(
                "mean and std must have one value per channel, got "
                f"{len(mean)} and {len(std)}"
            )
        if not all(s > 0 for s in std):
            raise ValueError(f"std must be > 0 for every channel, got {list(std)}")
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(
        self, batch: list[tuple[torch.Tensor, int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not batch:
            raise ValueError("batch is empty")
        images, labels = zip(*batch)
        if any(im.dtype != torch.uint8 for im in images):
            raise TypeError("batch images must be uint8 (C, H, W) tensors")
        x = torch.stack(images).float().div_(255)
        return (x - self.mean) / self.std, torch.tensor(labels, dtype=torch.int64)


def _gauss_cache(has: bool, value: float | None) -> torch.Tensor:
    """A cached Gaussian as a float64 tensor [has, value] (has: 0 or 1)."""
    return torch.tensor([float(has), float(value) if has else 0.0], dtype=torch.float64)


def rng_state() -> dict[str, torch.Tensor]:
    """Every random-number state a training run draws from, as tensors (so a checkpoint
    that stores it still loads with `torch.load(weights_only=True)`): torch CPU and each
    CUDA device, NumPy's global generator and Python's `random`.

    Both of the last two keep a *cached Gaussian*: they make normal draws in pairs and
    keep the second for the next call (NumPy's `has_gauss` / `cached_gaussian`, Python's
    `gauss_next`). The cache is part of the state, so that
    the next `np.random.normal()` and `random.gauss()` repeat too."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(keys.astype(np.int64)),
        "numpy_pos": torch.tensor(pos),
        "numpy_gauss": _gauss_cache(bool(has_gauss), cached),
        "python": torch.tensor(internal, dtype=torch.int64),
        "python_gauss": _gauss_cache(gauss_next is not None, gauss_next),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    """Restore what `rng_state` captured, so the next random draws repeat exactly
    (uniform and Gaussian). A state saved before the Gaussian caches were recorded
    restores with empty caches."""
    missing = {"torch", "numpy", "numpy_pos", "python"} - set(state)
    if missing:
        raise KeyError(f"state is not from rng_state(): missing {sorted(missing)}")
    torch.set_rng_state(state["torch"])
    has_np, np_value = state.get("numpy_gauss", torch.zeros(2)).tolist()
    keys = state["numpy"].numpy().astype(np.uint32)
    np.random.set_state(
        ("MT19937", keys, int(state["numpy_pos"]), int(has_np), float(np_value))
    )
    has_py, py_value = state.get("python_gauss", torch.zeros(2)).tolist()
    internal = tuple(int(v) for v in state["python"])
    random.setstate((3, internal, float(py_value) if has_py else None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def seed_worker(worker_id: int) -> None:
    """`worker_init_fn` for DataLoader workers: seed NumPy and `random` from the
    worker's torch seed (which the loader derives from its generator), so augmentations
    that use them repeat."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
