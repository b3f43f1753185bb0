"""Metrics the book reports, one home for them (accuracy lives with `train`)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def perplexity(nats_per_token: float) -> float:
    """exp(mean cross-entropy in nats per token): the effective number of equally
    likely choices the model hesitates between at each step."""
    if not math.isfinite(nats_per_token) or nats_per_token < 0:
        raise ValueError(
            f"nats_per_token must be a finite mean cross-entropy >= 0, "
            f"got {nats_per_token!r}"
        )
    return math.exp(nats_per_token)


def bleu(
    hypotheses: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    *,
    tokenize: str = "zh",
) -> float:
    """Corpus BLEU (0..100) with sacrebleu's `corpus_bleu` (default "exp" smoothing,
    4-grams). references[i] is the reference of hypotheses[i], or a list of several
    (they may differ in number). tokenize: sacrebleu's tokenizer name — "zh" (one
    token per Chinese character) for Chinese targets, "13a" for English."""
    import sacrebleu  # only the translation chapters need it

    if isinstance(hypotheses, str) or isinstance(references, str):
        raise TypeError("hypotheses and references must be lists of sentences")
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses but {len(references)} references"
        )
    per_hyp = [[r] if isinstance(r, str) else list(r) for r in references]
    if any(len(r) == 0 for r in per_hyp):
        raise ValueError("every hypothesis needs at least one reference")
    width = max((len(r) for r in per_hyp), default=1)
    streams = [[r[k] if k < len(r) else None for r in per_hyp] for k in range(width)]
    return sacrebleu.corpus_bleu(list(hypotheses), streams, tokenize=tokenize).score
