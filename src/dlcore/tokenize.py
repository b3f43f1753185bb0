"""Tokens and vocabularies: characters, words, Chinese by character, and a `Vocab` that
maps them to integer ids with the special tokens every sequence model needs.

The byte-pair-encoding lesson of Part III ch. 1 lives in `dlcore.scratch.bpe`; this
module holds the small tools every later chapter reuses.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)
_WORD = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?|[^\sA-Za-z0-9]")


def char_tokens(text: str) -> list[str]:
    """One token per character (Unicode code point): 'ab c' -> ['a', 'b', ' ', 'c']."""
    return list(text)


def word_tokens(text: str, *, lower: bool = True) -> list[str]:
    """Words, numbers and single punctuation marks, whitespace dropped:
    "Don't stop." -> ["don't", 'stop', '.']. A CJK character is one token."""
    return _WORD.findall(text.lower() if lower else text)


def to_simplified(texts: str | Sequence[str]) -> str | list[str]:
    """Traditional -> simplified Chinese with OpenCC's `t2s` table (one text, or
    many)."""
    import opencc  # imported here: only the Chinese chapters need it

    converter = opencc.OpenCC("t2s")
    if isinstance(texts, str):
        return converter.convert(texts)
    return [converter.convert(t) for t in texts]


class Vocab:
    """Token <-> id. Ids 0..len(specials)-1 are the special tokens (by default `<pad>`
    = 0, `<unk>` = 1, `<bos>` = 2, `<eos>` = 3); the rest are tokens seen at least
    `min_freq` times, most frequent first (ties broken by first appearance), at most
    `max_size` of them. Unknown tokens map to `<unk>` (when it is a special)."""

    def __init__(
        self,
        tokens: Iterable[str],
        *,
        min_freq: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = SPECIALS,
    ):
        if isinstance(tokens, str):
            raise TypeError("tokens must be a sequence of tokens, not one string")
        if isinstance(min_freq, bool) or not isinstance(min_freq, int) or min_freq < 1:
            raise ValueError(f"min_freq must be an int >= 1, got {min_freq!r}")
        if max_size is not None and (not isinstance(max_size, int) or max_size < 0):
            raise ValueError(f"max_size must be None or an int >= 0, got {max_size!r}")
        if len(set(specials)) != len(specials):
            raise ValueError(f"specials must be distinct, got {list(specials)}")
        self.counts = Counter(tokens)  # dicts keep first-appearance order
        kept = [
            t for t, c in self.counts.items() if c >= min_freq and t not in specials
        ]
        kept.sort(key=lambda t: -self.counts[t])  # stable: ties keep first appearance
        self.itos: list[str] = list(specials) + kept[:max_size]
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        self.specials = tuple(specials)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __getitem__(self, token: str) -> int:
        if token in self.stoi:
            return self.stoi[token]
        if UNK not in self.stoi:
            raise KeyError(f"{token!r} is not in the vocabulary, which has no {UNK}")
        return self.stoi[UNK]

    def _special(self, token: str) -> int:
        if token not in self.stoi:
            raise AttributeError(f"this vocabulary has no {token} token")
        return self.stoi[token]

    pad_id = property(lambda self: self._special(PAD))
    unk_id = property(lambda self: self._special(UNK))
    bos_id = property(lambda self: self._special(BOS))
    eos_id = property(lambda self: self._special(EOS))

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self[t] for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[int(i)] for i in ids]

    def __repr__(self) -> str:
        preview = ", ".join(repr(t) for t in self.itos[len(self.specials) :][:8])
        return f"Vocab({len(self)} tokens: {', '.join(self.specials)}, {preview}, …)"
