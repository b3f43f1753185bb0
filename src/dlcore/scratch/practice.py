"""PyTorch in practice: an IDX reader, a Dataset, a collate function, RNG state for exact resumes.

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

# IDX type codes (LeCun's format): code -> (numpy dtype, big-endian), see yann.lecun.com/exdb/mnist
IDX_DTYPES = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_idx(path: str | Path) -> torch.Tensor:
    """Parse an uncompressed IDX file into a tensor of its stored shape, e.g. (N, 28, 28) uint8.

    Layout: two zero bytes, a type code, the number of dimensions d, then d big-endian uint32
    sizes, then the values in C order, big-endian.
    """
    raw = Path(path).read_bytes()
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in IDX_DTYPES:
        raise ValueError(f"{Path(path).name}: not an IDX file (magic {raw[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    values = np.frombuffer(raw, dtype=IDX_DTYPES[code], offset=4 + 4 * ndim)
    if values.size != int(np.prod(shape)):
        raise ValueError(
            f"{Path(path).name}: header says {shape}, file holds {values.size} values"
        )
    # astype makes a native-endian, writable copy that torch can share memory with
    return torch.from_numpy(values.astype(values.dtype.newbyteorder("="))).reshape(
        shape
    )


class ImageDataset(Dataset):
    """Images kept in memory, one example at a time: the map-style `Dataset` protocol.

    x: (N, C, H, W) uint8; y: (N,) int64. `transform` maps one image (C, H, W) uint8 to whatever
    the model eats (e.g. a normalised float tensor); without it the uint8 image is returned.
    `dataset[i]` -> (image, label as int).
    """

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, transform: Callable | None = None
    ):
        if len(x) != len(y):
            raise ValueError(f"{len(x)} images but {len(y)} labels")
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

    batch: list of (image (C, H, W) uint8, label int) -> (x: (B, C, H, W) float32, y: (B,) int64),
    x = (image / 255 - mean) / std per channel. A class, not a closure, so that DataLoader
    workers started with "spawn" can pickle it.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(
        self, batch: list[tuple[torch.Tensor, int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = zip(*batch)
        x = torch.stack(images).float().div_(255)
        return (x - self.mean) / self.std, torch.tensor(labels, dtype=torch.int64)


def rng_state() -> dict[str, torch.Tensor]:
    """Every random-number state a training run draws from, as tensors (so a checkpoint that
    stores it still loads with `torch.load(weights_only=True)`): torch CPU and each CUDA device,
    NumPy's global generator and Python's `random`."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
        "numpy_pos": torch.tensor(np.random.get_state()[2]),
        "python": torch.tensor(random.getstate()[1], dtype=torch.int64),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    """Restore what `rng_state` captured, so the next random draws repeat exactly."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(
        ("MT19937", state["numpy"].numpy().astype(np.uint32), int(state["numpy_pos"]))
    )
    random.setstate((3, tuple(int(v) for v in state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def seed_worker(worker_id: int) -> None:
    """`worker_init_fn` for DataLoader workers: seed NumPy and `random` from the worker's torch
    seed (which the loader derives from its generator), so augmentations that use them repeat."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
