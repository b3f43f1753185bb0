"""BLEU from scratch (Papineni et al., 2002), with sacrebleu's conventions so the two
agree to rounding: corpus-level clipped n-gram precisions (n = 1..4), the closest
reference length for the brevity penalty, and "exp" smoothing (each n whose matches
are zero gets precision 1 / (2^k · total_n), k counting such n).

Tokenisation is not the lesson: `zh_tokens` splits a sentence with sacrebleu's own
`zh` tokenizer (each Chinese character one token, the rest as mteval-13a), and
`corpus_bleu` takes token lists, so any tokenisation can be plugged in.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

Tokens = Sequence[str]


def ngrams(tokens: Tokens, n: int) -> Counter:
    """Counts of the n-grams (tuples of n consecutive tokens) of one sentence; a
    sentence shorter than n has none."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def closest_ref_length(hyp_len: int, ref_lens: Sequence[int]) -> int:
    """The reference length nearest to the hypothesis length (ties: the shorter)."""
    return min(ref_lens, key=lambda r: (abs(r - hyp_len), r))


def sentence_stats(
    hyp: Tokens, refs: Sequence[Tokens], max_n: int = 4
) -> tuple[int, int, list[int], list[int]]:
    """Sufficient statistics of one sentence: (hypothesis length c, reference length
    r, matches[n-1], totals[n-1] for n = 1..max_n). A hypothesis n-gram counts as
    matched at most as often as it occurs in the one reference that has it most often
    (clipping)."""
    if len(refs) == 0:
        raise ValueError("each hypothesis needs at least one reference")
    matches, totals = [0] * max_n, [0] * max_n
    for n in range(1, max_n + 1):
        hyp_counts = ngrams(hyp, n)
        most = Counter()
        for ref in refs:
            most |= ngrams(ref, n)  # | keeps the larger count of each n-gram
        totals[n - 1] = sum(hyp_counts.values())
        matches[n - 1] = sum(min(c, most[g]) for g, c in hyp_counts.items())
    ref_len = closest_ref_length(len(hyp), [len(r) for r in refs])
    return len(hyp), ref_len, matches, totals


@dataclass(frozen=True)
class BLEUResult:
    score: float  # 0..100
    precisions: list[float]  # p_n in percent, after smoothing
    brevity_penalty: float
    hyp_len: int  # c, summed over the corpus
    ref_len: int  # r, summed over the corpus
    matches: list[int]
    totals: list[int]


def bleu_from_stats(
    hyp_len: int, ref_len: int, matches: Sequence[int], totals: Sequence[int]
) -> BLEUResult:
    """BLEU = BP · exp(mean_n log p_n) · 100 with BP = 1 if c ≥ r else exp(1 − r/c)
    (0 when c = 0). Zero matches of every order give 0; an order with no hypothesis
    n-grams at all (every sentence shorter than n) has p_n = 0 and gives 0."""
    max_n = len(matches)
    if hyp_len >= ref_len:
        bp = 1.0
    else:
        bp = math.exp(1 - ref_len / hyp_len) if hyp_len > 0 else 0.0
    precisions = [0.0] * max_n
    if not any(matches):
        return BLEUResult(0.0, precisions, bp, hyp_len, ref_len, [*matches], [*totals])
    halvings = 1.0
    for n in range(max_n):
        if totals[n] == 0:
            break  # this and higher orders keep p_n = 0
        if matches[n] == 0:
            halvings *= 2  # "exp" smoothing: 1/2, 1/4, ... of one match
            precisions[n] = 100.0 / (halvings * totals[n])
        else:
            precisions[n] = 100.0 * matches[n] / totals[n]
    if min(precisions) == 0.0:
        score = 0.0
    else:
        score = bp * math.exp(sum(math.log(p) for p in precisions) / max_n)
    return BLEUResult(score, precisions, bp, hyp_len, ref_len, [*matches], [*totals])


def corpus_bleu(
    hyps: Sequence[Tokens], refs: Sequence[Sequence[Tokens]], max_n: int = 4
) -> BLEUResult:
    """Corpus BLEU of tokenised hypotheses hyps[i] against their references refs[i]
    (a list of one or more token lists): the statistics of all sentences are summed
    first, then turned into one score (not a mean of sentence scores)."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference lists")
    c = r = 0
    matches, totals = [0] * max_n, [0] * max_n
    for hyp, hyp_refs in zip(hyps, refs):
        hc, hr, m, t = sentence_stats(hyp, hyp_refs, max_n)
        c, r = c + hc, r + hr
        matches = [a + b for a, b in zip(matches, m)]
        totals = [a + b for a, b in zip(totals, t)]
    return bleu_from_stats(c, r, matches, totals)


@lru_cache(maxsize=1)
def _zh_tokenizer():
    from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh  # only BLEU needs it

    return TokenizerZh()


def zh_tokens(sentence: str) -> list[str]:
    """sacrebleu's `zh` tokenisation: every Chinese character (and full-width
    punctuation) is a token, other text is split as mteval-13a does."""
    return _zh_tokenizer()(sentence.rstrip()).split()
