"""Text corpora, read from md5-verified files in the data cache (Part III onwards).

Corpora come whole: chapters carve their own train / validation / test splits (with
`dlcore.recipes.holdout` or by content hash), except SST-2, whose published splits are
kept. Files the book derived itself (the regular Tang poems, the BOM-free cmn-eng file)
have no download URL: offline and uncached, `fetch` says where to put them.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import torch

from .cache import RemoteFile, fetch

_GITHUB = "https://raw.githubusercontent.com"
TEXT_FILES = {
    "tinyshakespeare": RemoteFile(
        "text/tinyshakespeare/input.txt",
        "6fb458f1232090904fb40fe944165e91",
        (
            f"{_GITHUB}/karpathy/char-rnn/6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/"
            "data/tinyshakespeare/input.txt",
        ),
    ),
    "timemachine": RemoteFile(
        "text/timemachine.txt",
        "7353d136ab308ecd0d4f1c5bf0e23122",
        ("http://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt",),
    ),
    "tang-poems": RemoteFile(
        "text/tang_poems/tang_poems.txt", "0a3bb73063a796320d5cfd3eb43ff836", ()
    ),
    "cmn-eng": RemoteFile(
        "text/cmn-eng/cmn.txt", "d1e62b825d741b80ed1487aecb3c768b", ()
    ),
}
_SST2 = f"{_GITHUB}/awake020/pytorch_Bert_sst2/ce2ab1719d32182e6233b24b2de246bd32814fde"
SST2_FILES = {
    "train": RemoteFile(
        "text/sst2/train.tsv",
        "0f7c7389da97a0e006a89ffb5efbcaa5",
        (f"{_SST2}/SST-2/train.tsv",),
    ),
    "dev": RemoteFile(
        "text/sst2/dev.tsv",
        "2b070f88622773268a9bb41c6e941e60",
        (f"{_SST2}/SST-2/dev.tsv",),
    ),
    "test": RemoteFile(
        "text/sst2/test.tsv",
        "01b2ebba955356bb04b1111887fdb5ae",
        (f"{_SST2}/SST-2/test.tsv",),
    ),
}
TEXT_DATASETS = (*TEXT_FILES, "sst2")
_SOURCES = {
    "tinyshakespeare": "Tiny Shakespeare (karpathy/char-rnn, 1,115,394 characters)",
    "timemachine": "H. G. Wells, The Time Machine (the d2l file, 178,979 bytes)",
    "tang-poems": "36,922 regular Tang poems (chinese-poetry, traditional script)",
    "cmn-eng": "Tatoeba English–Chinese pairs (CC-BY 2.0 FR, tatoeba.org contributors)",
}


@dataclass(frozen=True)
class Corpus:
    """One running text (a book, a play), e.g. for a character language model."""

    text: str
    source: str  # which data this is, for the result card

    def __len__(self) -> int:
        return len(self.text)


@dataclass(frozen=True)
class TextData:
    """A list of texts. texts[i]: one poem, sentence or review. For classification
    `labels` (N,) int64 indexes `classes`; for translation `targets[i]` is the
    translation of texts[i]."""

    texts: list[str]
    source: str
    labels: torch.Tensor | None = None
    classes: list[str] | None = None
    targets: list[str] | None = None

    def __len__(self) -> int:
        return len(self.texts)


def load_text(name: str, split: str | None = None) -> Corpus | TextData:
    """A text dataset (see `dlcore.load`). `split` is only for SST-2."""
    if name == "sst2":
        return _load_sst2(split)
    if split is not None:
        raise ValueError(
            f"{name!r} comes whole (split={split!r} given): carve splits in the "
            "chapter (e.g. dlcore.recipes.holdout); only 'sst2' has published splits"
        )
    if name not in TEXT_FILES:
        raise ValueError(
            f"unknown text dataset {name!r}; known: {', '.join(TEXT_DATASETS)}"
        )
    raw = _read(TEXT_FILES[name])
    if name in ("tinyshakespeare", "timemachine"):
        return Corpus(raw, _SOURCES[name])
    lines = [line for line in raw.split("\n") if line]  # not splitlines: U+2028
    if name == "tang-poems":
        return TextData(lines, _SOURCES[name])
    english, chinese = zip(*(line.split("\t")[:2] for line in lines))
    return TextData(list(english), _SOURCES[name], targets=list(chinese))


def _read(file: RemoteFile) -> str:
    with open(fetch(file), encoding="utf-8", newline="") as f:
        return f.read()


def _load_sst2(split: str | None) -> TextData:
    if split not in SST2_FILES:
        raise ValueError(
            f"sst2 needs split='train', 'dev' or 'test' (the labelled test split), "
            f"got split={split!r}"
        )
    reader = csv.reader(
        io.StringIO(_read(SST2_FILES[split])), delimiter="\t", quoting=csv.QUOTE_NONE
    )
    rows = list(reader)[1:]  # header: label, sentence|content
    texts = [sentence for _, sentence in rows]
    labels = torch.tensor([int(label) for label, _ in rows], dtype=torch.int64)
    source = f"SST-2 {split} ({len(rows):,} sentences, Socher et al. 2013)"
    return TextData(texts, source, labels=labels, classes=["negative", "positive"])
