"""Choosing the next token from a language model's logits: temperature, top-k and top-p
(nucleus) sampling. Used by the text generators of Part III (character models, Tang
poems) and Part IV (GPT).

All functions take logits of shape (..., V) — one row per sequence being generated —
and treat the last axis as the vocabulary. Entries equal to -inf are tokens a caller
has ruled out (e.g. a constrained decoder's mask); at least one entry of every row must
be finite. The pipeline is, in this order (as in Hugging Face `generate`):

    z / T  ->  keep the k largest  ->  keep the smallest set of mass >= p  ->  sample

Ties are broken towards the lower token id, everywhere (as `torch.argmax` does), so the
kept sets are deterministic functions of the logits.
"""

from __future__ import annotations

import math

import torch

NEG_INF = float("-inf")


def _check_logits(logits: torch.Tensor) -> None:
    if logits.dim() == 0 or logits.shape[-1] == 0:
        raise ValueError(f"logits must have shape (..., V), V >= 1, got {logits.shape}")
    if not logits.dtype.is_floating_point:
        raise TypeError(f"logits must be floating point, got {logits.dtype}")
    if torch.isnan(logits).any() or torch.isposinf(logits).any():
        raise ValueError("logits contain NaN or +inf")
    if not torch.isfinite(logits).any(dim=-1).all():
        raise ValueError("every row of logits needs at least one finite entry")


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """z / T, shifted so that each row's maximum is 0 (the same distribution after a
    softmax, and no overflow for tiny T). T = 0 is the greedy limit: 0 at each row's
    argmax (lowest id among ties) and -inf elsewhere."""
    _check_logits(logits)
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a finite number, got {temperature!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature!r}")
    shifted = logits - logits.amax(dim=-1, keepdim=True)
    if temperature == 0:
        best = logits.argmax(dim=-1, keepdim=True)
        return torch.full_like(logits, NEG_INF).scatter(-1, best, 0.0)
    return shifted / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep exactly the k largest logits of each row (ties at the k-th value go to the
    lower ids), set the rest to -inf. k >= V keeps everything."""
    _check_logits(logits)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"top_k must be a positive int, got {k!r}")
    if k >= logits.shape[-1]:
        return logits.clone()
    order = torch.sort(logits, dim=-1, descending=True, stable=True).indices
    keep = torch.zeros_like(logits, dtype=torch.bool)
    keep.scatter_(-1, order[..., :k], True)
    return logits.masked_fill(~keep, NEG_INF)


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most probable tokens whose probability
    mass (under softmax(logits)) is >= p, set the rest to -inf. Token i, in order of
    decreasing probability, is kept when the mass *before* it is < p, so the most
    probable token is always kept (p -> 0 is greedy) and p = 1 keeps every token."""
    _check_logits(logits)
    if not (isinstance(p, (int, float)) and 0 < p <= 1):
        raise ValueError(f"top_p must be in (0, 1], got {p!r}")
    if p >= 1:
        return logits.clone()
    probs = torch.softmax(logits.double(), dim=-1)  # float64: exact enough to rank
    sorted_p, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    before = sorted_p.cumsum(dim=-1) - sorted_p  # mass of the tokens ranked above
    keep_sorted = before < p
    keep_sorted[..., 0] = True
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, NEG_INF)


def min_p_filter(logits: torch.Tensor, p_min: float) -> torch.Tensor:
    """Min-p filter (Nguyen et al., 2024): keep the tokens whose probability is at
    least `p_min` times that of the most probable token, i.e. z_i >= max z + log p_min
    (computed on logits: no overflow for large |z|); the rest become -inf."""
    _check_logits(logits)
    if not (isinstance(p_min, (int, float)) and 0 < p_min <= 1):
        raise ValueError(f"p_min must be in (0, 1], got {p_min!r}")
    gap = logits - logits.amax(dim=-1, keepdim=True)
    return logits.masked_fill(gap < math.log(p_min), NEG_INF)


def filter_logits(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """Temperature, then top-k, then top-p: logits whose softmax is the distribution
    `sample_next` draws from (-inf marks the tokens it can never draw)."""
    z = apply_temperature(logits, temperature)
    if top_k is not None:
        z = top_k_filter(z, top_k)
    if top_p is not None:
        z = top_p_filter(z, top_p)
    return z


def next_token_probs(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """The exact next-token distribution (..., V), float64, that `sample_next` samples
    with these settings."""
    z = filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p)
    return torch.softmax(z.double(), dim=-1)


def sample_next(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token id per row: logits (..., V) -> ids (...) int64, drawn from
    `next_token_probs(logits, ...)`; temperature 0 is the argmax (no randomness)."""
    if temperature == 0:
        _check_logits(logits)
        return logits.argmax(dim=-1)
    probs = next_token_probs(logits, temperature=temperature, top_k=top_k, top_p=top_p)
    flat = probs.reshape(-1, probs.shape[-1])
    ids = torch.multinomial(flat, 1, generator=generator)
    return ids.view(probs.shape[:-1])
