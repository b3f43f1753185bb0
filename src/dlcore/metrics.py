"""Metrics the book reports, one home for them (accuracy lives with `train`)."""

from __future__ import annotations

import math


def perplexity(nats_per_token: float) -> float:
    """exp(mean cross-entropy in nats per token): the effective number of equally
    likely choices the model hesitates between at each step."""
    if not math.isfinite(nats_per_token) or nats_per_token < 0:
        raise ValueError(
            f"nats_per_token must be a finite mean cross-entropy >= 0, "
            f"got {nats_per_token!r}"
        )
    return math.exp(nats_per_token)
