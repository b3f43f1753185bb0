"""Datasets through one door, `dlcore.load(name, ...)`: every file md5-verified in the
cache under `DLCORE_DATA` (`cache`), images as uint8 tensors (`images`), text corpora
(`text`), and batches from memory (`loaders`)."""

from __future__ import annotations

from .cache import (
    ChecksumError,
    CorruptDownloadError,
    CorruptFileError,
    DataUnavailableError,
    RemoteFile,
    data_dir,
    derived_dir,
    fetch,
    file_digest,
    md5sum,
    verify,
)
from .images import (
    CIFAR10_CLASSES,
    CIFAR10_VARIANTS,
    IDX_FILES,
    IMAGE_DATASETS,
    TensorData,
    idx_shape,
    load_images,
)
from .loaders import TensorLoader, loader
from .text import SST2_FILES, TEXT_DATASETS, TEXT_FILES, Corpus, TextData, load_text

DATASETS = (*IMAGE_DATASETS, *TEXT_DATASETS)


def load(
    name: str,
    train: bool | None = None,
    *,
    split: str | None = None,
    variant: str = "auto",
) -> TensorData | Corpus | TextData:
    """Load a whole dataset from the verified cache (downloading it if allowed).

    Images — "mnist" | "fashion-mnist" | "cifar10": one split as uint8 tensors
    (`TensorData`), the training split unless `train=False` (or `split="test"`). For
    CIFAR-10, `variant` picks the copy: "original" (torchvision's, downloaded if
    needed), "jpeg75" (all 60k images re-encoded as JPEG q75), "subset" (a lossless
    4k/1k subset), or "auto": the first of these available.

    Text — "tinyshakespeare" | "timemachine" → `Corpus` (one running text);
    "tang-poems" → `TextData` (one poem per item, traditional script); "cmn-eng" →
    `TextData` (English texts, Chinese targets); "sst2" with split="train" | "dev" |
    "test" → `TextData` with labels (1 = positive).
    """
    key = name.lower().replace("_", "-") if isinstance(name, str) else name
    key = {"tiny-shakespeare": "tinyshakespeare", "time-machine": "timemachine"}.get(
        key, key
    )
    if key in IMAGE_DATASETS:
        if split is not None and split not in ("train", "test"):
            raise ValueError(f"images have split='train' or 'test', got {split!r}")
        if split is not None and train is not None and train != (split == "train"):
            raise ValueError(f"train={train} contradicts split={split!r}")
        is_train = split != "test" if train is None else train
        return load_images(key, is_train, variant=variant)
    if key in TEXT_DATASETS:
        if train is not None:
            raise ValueError(
                f"{name!r} is text: use split= (only 'sst2' has splits), not train="
            )
        return load_text(key, split)
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_VARIANTS",
    "DATASETS",
    "IDX_FILES",
    "SST2_FILES",
    "TEXT_FILES",
    "ChecksumError",
    "Corpus",
    "CorruptDownloadError",
    "CorruptFileError",
    "DataUnavailableError",
    "RemoteFile",
    "TensorData",
    "TensorLoader",
    "TextData",
    "data_dir",
    "derived_dir",
    "fetch",
    "file_digest",
    "idx_shape",
    "load",
    "loader",
    "md5sum",
    "verify",
]
