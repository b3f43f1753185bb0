"""Byte-pair encoding (Sennrich et al., 2016) from scratch: learn merges from a
corpus, then encode and decode text losslessly.

Pre-tokenisation: text is first cut into *words* with `PATTERN` (a word keeps the
one space before it, GPT-2 style), so merges never cross a word boundary and
``"".join(words) == text`` (nothing is dropped). Training then runs on the table of
distinct words and their counts — Tiny Shakespeare has about 1.1 M characters but
only ~ 13 k distinct words — with the pair counts updated incrementally after each
merge (only the words that contain the merged pair are touched).

Which pair is merged: the most frequent adjacent pair; a tie goes to the pair whose
token ids ``(id(a), id(b))`` are smallest, where ids number the alphabet by Unicode
code point and then the merged tokens in the order they were made. This is the rule
of Hugging Face `tokenizers`' `BpeTrainer`, so the two produce the same merges in
the same order (the chapter checks it). One difference remains: when a token string
already made is formed again from a different pair (``"the"`` from ``"t" + "he"``
after ``"th" + "e"``), the library's lazy priority queue can split the new pair's
occurrences over two queue entries and merge them as two separate steps; here a
pair is always merged everywhere at once.

Chapter: Part III, 1 — Text as Data.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter
from collections.abc import Iterable, Sequence

__all__ = ["PATTERN", "pretokenize", "merge_word", "BPE", "train_bpe"]

# a word with its leading space; a run of punctuation with its leading space;
# whitespace (all but the last space before a word, which goes with the word)
PATTERN = r" ?\w+| ?[^\w\s]+|\s+(?!\S)|\s+"
_SPLIT = re.compile(PATTERN)


def pretokenize(text: str) -> list[str]:
    """Cut text into the words BPE works inside: ``"".join(result) == text``."""
    return _SPLIT.findall(text)


def merge_word(symbols: Sequence[str], a: str, b: str) -> list[str]:
    """Replace every non-overlapping occurrence of the pair (a, b), scanning left to
    right: merge_word(list("aaa"), "a", "a") == ["aa", "a"]."""
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and symbols[i] == a and symbols[i + 1] == b:
            out.append(a + b)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def _pairs(symbols: Sequence[int]) -> Counter:
    return Counter(zip(symbols, symbols[1:]))


class BPE:
    """A trained byte-pair encoder.

    Attributes:
        merges: the learned merges ``(a, b)`` in order; ``a + b`` is the new token.
        counts: how often each merged pair occurred when it was chosen.
        vocab: special tokens, then the alphabet (by code point), then each merged
            token in the order it was made (a token made twice appears once).
    """

    def __init__(
        self,
        merges: list[tuple[str, str]],
        counts: list[int],
        alphabet: Sequence[str],
        special_tokens: Sequence[str] = (),
    ):
        self.merges, self.counts = merges, counts
        self.rank = {pair: r for r, pair in enumerate(merges)}
        self.vocab = list(dict.fromkeys([*special_tokens, *alphabet]))
        self.vocab += [t for t in dict.fromkeys(a + b for a, b in merges)
                       if t not in set(self.vocab)]  # fmt: skip
        self._cache: dict[str, list[str]] = {}

    def encode_word(self, word: str) -> list[str]:
        """Apply the merges to one word: repeatedly merge the adjacent pair with the
        lowest rank (the earliest learned), until no learned pair is left."""
        if word in self._cache:
            return self._cache[word]
        symbols = list(word)
        while len(symbols) > 1:
            ranks = [
                self.rank.get(p, len(self.rank)) for p in zip(symbols, symbols[1:])
            ]
            best = min(range(len(ranks)), key=ranks.__getitem__)
            if ranks[best] == len(self.rank):
                break
            symbols = merge_word(symbols, symbols[best], symbols[best + 1])
        self._cache[word] = symbols
        return symbols

    def encode(self, text: str) -> list[str]:
        """Text -> subword tokens (strings); `Vocab` turns them into ids."""
        return [t for w in pretokenize(text) for t in self.encode_word(w)]

    @staticmethod
    def decode(tokens: Iterable[str]) -> str:
        return "".join(tokens)


def train_bpe(
    text: str | Iterable[str],
    vocab_size: int,
    *,
    special_tokens: Sequence[str] = (),
    min_frequency: int = 1,
) -> BPE:
    """Learn merges until the vocabulary (special tokens + alphabet + merged tokens)
    has `vocab_size` entries, or no pair occurs `min_frequency` times.

    `text` is one string or an iterable of strings (each pre-tokenised on its own).
    """
    texts = [text] if isinstance(text, str) else list(text)
    word_counts = Counter(w for t in texts for w in pretokenize(t))
    alphabet = sorted({c for w in word_counts for c in w})  # by code point
    itos = list(dict.fromkeys([*special_tokens, *alphabet]))
    stoi = {t: i for i, t in enumerate(itos)}
    words = [[stoi[c] for c in w] for w in word_counts]
    freq = list(word_counts.values())

    pair_count: Counter = Counter()
    where: dict[tuple[int, int], set[int]] = {}  # pair -> words that may hold it
    for i, w in enumerate(words):
        for pair in zip(w, w[1:]):
            pair_count[pair] += freq[i]
            where.setdefault(pair, set()).add(i)
    # max-heap on (count, then smallest ids) via (-count, a, b); stale entries are
    # corrected when popped (lazy deletion)
    heap = [(-c, a, b) for (a, b), c in pair_count.items()]
    heapq.heapify(heap)

    merges, counts = [], []
    while len(itos) < vocab_size and heap:
        neg, a, b = heapq.heappop(heap)
        if -neg != pair_count[(a, b)]:  # stale: push the true count back
            if pair_count[(a, b)] > 0:
                heapq.heappush(heap, (-pair_count[(a, b)], a, b))
            continue
        if -neg < min_frequency:
            break
        new = itos[a] + itos[b]
        if new not in stoi:
            stoi[new] = len(itos)
            itos.append(new)
        merges.append((itos[a], itos[b]))
        counts.append(-neg)
        grown: set[tuple[int, int]] = set()
        for i in where.pop((a, b)):
            old = words[i]
            if (a, b) not in zip(old, old[1:]):
                continue
            new_w, j = [], 0
            while j < len(old):
                if j + 1 < len(old) and old[j] == a and old[j + 1] == b:
                    new_w.append(stoi[new])
                    j += 2
                else:
                    new_w.append(old[j])
                    j += 1
            words[i] = new_w
            delta = _pairs(new_w)
            delta.subtract(_pairs(old))
            for pair, d in delta.items():
                if d:
                    pair_count[pair] += d * freq[i]
                if d > 0:
                    where.setdefault(pair, set()).add(i)
                    grown.add(pair)
        for pair in grown:  # a pair whose count rose gets a fresh entry
            heapq.heappush(heap, (-pair_count[pair], *pair))
    return BPE(merges, counts, alphabet, special_tokens)
