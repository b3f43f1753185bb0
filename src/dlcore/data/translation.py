"""English–Chinese translation pairs: one fixed train / validation / test split of the
Tatoeba `cmn-eng` pairs, shared by Part III ch. 8 (GRU seq2seq) and Part IV
(attention, Transformers), and padded batches of (source, target) pairs.

The split is decided by a hash of the *normalised English sentence*, not by a random
permutation: every pair whose English is the same (Tatoeba often has several Chinese
translations of one English sentence) lands in the same part, so no test sentence was
seen in training, and the split does not depend on the order of the file, a seed or
the library version. `cmn_eng_split()` recomputes the split and compares its sizes and
the SHA-256 of its content with the values recorded here; a changed file or a changed
rule fails loudly instead of silently moving the test set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from ..runtime import device as default_device
from ..tokenize import word_tokens
from .sequences import batch_order, check_batch_size, pad_batch
from .text import load_text

Pair = tuple[str, str]  # (English, Chinese)
SPLITS = ("train", "val", "test")
BUCKETS = 1000  # the hash of a source sentence picks one of 1000 buckets
TEST_BUCKETS = range(0, 40)  # 4 % of the English sentences
VAL_BUCKETS = range(40, 75)  # 3.5 %
# What `cmn_eng_split()` must reproduce (recorded once, on the md5-checked cmn.txt).
CMN_ENG_SIZES = {"train": 26_989, "val": 1_034, "test": 1_132}
CMN_ENG_SHA256 = {
    "train": "51f820874000d5d98f9f26c0cc213b1eeaa5c06b761abb73df67a06dbf8ab7d9",
    "val": "6f812a830a1c3a391c8eb87daca4d61c564cebd06f92f2cb5044fad4022bcdde",
    "test": "8b068b7cb31d6c1d25af368f3a6c894f4d096dbc069f144d8cd6d69690f9baf4",
}


class SplitChangedError(RuntimeError):
    """The recomputed split differs from the one recorded in this module."""


def normalise_source(english: str) -> str:
    """The key a pair is split by: lower-cased word tokens joined by single spaces, so
    'Hi.' and 'hi .' are one sentence."""
    return " ".join(word_tokens(english))


def split_of(english: str) -> str:
    """'train', 'val' or 'test' for one English sentence: bucket = the first 8 bytes of
    sha256('cmn-eng:' + normalised sentence), as an integer, modulo 1000."""
    key = f"cmn-eng:{normalise_source(english)}".encode()
    bucket = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % BUCKETS
    if bucket in TEST_BUCKETS:
        return "test"
    return "val" if bucket in VAL_BUCKETS else "train"


def pairs_digest(pairs: Sequence[Pair]) -> str:
    """SHA-256 (hex) of the pairs in order, as UTF-8 lines 'english<TAB>chinese'."""
    h = hashlib.sha256()
    for english, chinese in pairs:
        h.update(f"{english}\t{chinese}\n".encode())
    return h.hexdigest()


def split_pairs(english: Sequence[str], chinese: Sequence[str]) -> dict[str, list]:
    """Split aligned sentence lists by `split_of` (file order kept within a part)."""
    if len(english) != len(chinese):
        raise ValueError(f"{len(english)} English but {len(chinese)} Chinese texts")
    parts: dict[str, list[Pair]] = {name: [] for name in SPLITS}
    for en, zh in zip(english, chinese):
        parts[split_of(en)].append((en, zh))
    return parts


def cmn_eng_split(*, verify: bool = True) -> dict[str, list[Pair]]:
    """The book's split of `dlcore.load("cmn-eng")`: {"train", "val", "test"} -> lists
    of (English, Chinese) pairs. With `verify`, sizes and SHA-256 digests must equal
    the recorded `CMN_ENG_SIZES` / `CMN_ENG_SHA256`, else `SplitChangedError`."""
    data = load_text("cmn-eng")
    parts = split_pairs(data.texts, data.targets)
    if verify:
        sizes = {name: len(p) for name, p in parts.items()}
        digests = {name: pairs_digest(p) for name, p in parts.items()}
        if sizes != CMN_ENG_SIZES or digests != CMN_ENG_SHA256:
            raise SplitChangedError(
                f"the cmn-eng split changed: sizes {sizes} (recorded "
                f"{CMN_ENG_SIZES}), digests {digests} (recorded {CMN_ENG_SHA256}); "
                "Part III ch. 8 and Part IV report BLEU on the recorded test pairs"
            )
    return parts


class PairLoader:
    """Mini-batches of (source, target) id sequences for an encoder–decoder with
    teacher forcing. Each target sequence must already hold <bos> ... <eos>; a batch is
    ((src (B, S), src_lengths (B,), tgt_in (B, T)), tgt_out (B, T)) with tgt_in =
    target[:-1] and tgt_out = target[1:], padded with `pad_id` (src_lengths on the
    CPU). With `bucket`, batches hold pairs of similar source length."""

    def __init__(
        self,
        src: Sequence[torch.Tensor],
        tgt: Sequence[torch.Tensor],
        batch_size: int,
        *,
        pad_id: int,
        shuffle: bool = False,
        bucket: bool = False,
        device: torch.device | str | None = None,
        seed: int | None = None,
    ):
        if len(src) != len(tgt):
            raise ValueError(f"{len(src)} sources but {len(tgt)} targets")
        if any(len(t) < 2 for t in tgt):
            raise ValueError("every target needs at least <bos> and <eos>")
        check_batch_size(batch_size)
        self.src, self.tgt = list(src), list(tgt)
        self.batch_size, self.pad_id = batch_size, pad_id
        self.shuffle, self.bucket = shuffle, bucket
        self.device = torch.device(device) if device is not None else default_device()
        self.generator = torch.Generator().manual_seed(seed if seed is not None else 0)

    def __len__(self) -> int:
        return -(-len(self.src) // self.batch_size)

    def __iter__(self):
        lengths = [len(s) for s in self.src]
        for index in batch_order(  # bucketing sorts all pairs by source length
            lengths,
            self.batch_size,
            shuffle=self.shuffle,
            bucket=self.bucket,
            generator=self.generator,
            chunk_batches=None,
        ):
            src, src_len = pad_batch([self.src[i] for i in index], self.pad_id)
            tgt, _ = pad_batch([self.tgt[i] for i in index], self.pad_id)
            dev = self.device
            x = (src.to(dev), src_len, tgt[:, :-1].to(dev))
            yield x, tgt[:, 1:].to(dev)
