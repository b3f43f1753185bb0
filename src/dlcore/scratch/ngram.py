"""An n-gram language model with smoothing, from scratch in NumPy: the perplexity
baseline every later sequence model of the book must beat.

Token ids are integers in `[0, V)`. An n-gram model predicts token `x_t` from the
`n - 1` tokens before it, `h = x_{t-n+1:t}`, with probabilities estimated from counts
on a training stream. Two smoothings keep every probability above zero:

* ``"add-k"`` (Lidstone): ``P(w | h) = (c(h, w) + k) / (c(h) + k V)``, where
  ``c(h, w)`` counts the n-gram ``h w`` in the training stream and
  ``c(h) = sum_w c(h, w)``.
* ``"interpolated-kneser-ney"`` (the default; Chen & Goodman 1999, one absolute
  discount ``D`` for all orders), recursively over the order ``m = n, n-1, ..., 1``::

      P_m(w | h) = (max(c_m(h, w) - D, 0) + D * N1+(h .) * P_{m-1}(w | h')) / c_m(h)

  where ``h'`` drops the oldest token of ``h``, ``N1+(h .)`` is the number of
  distinct tokens seen after ``h``, and ``P_0(w) = 1 / V`` (uniform). When
  ``c_m(h) = 0`` (an unseen context), ``P_m(w | h) = P_{m-1}(w | h')``. At the top
  order ``c_m`` is the raw count; at every lower order it is the *continuation*
  count ``N1+(. h w)``, the number of distinct tokens seen just before ``h w`` — a
  token that follows many different contexts is a likelier guess after a new one.
  The sum over ``w`` is exactly 1 because every count is an integer >= 1 >= D.

Which positions are scored: ``nll(ids)`` predicts ``ids[t]`` from
``ids[max(0, t - n + 1):t]`` for every ``t`` in ``range(start, len(ids))`` with
``start = n - 1`` by default (every token that has a full context *inside the
held-out stream*; nothing from the training stream is used as context). Pass the
same ``start`` to compare models of different orders on exactly the same tokens. A
position with a shorter context (``t < n - 1``, only when ``start < n - 1``) uses
the ``(t + 1)``-gram model fitted on the same counts.

`split_stream` cuts a token stream into train / validation / test the way the
book's baseline tables do: the last 10 % is the test stream, the 10 % before it is
validation, the rest is training (contiguous, in order).

Chapter: Part III, 1 — Text as Data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["NGramLM", "split_stream"]

_SMOOTHINGS = ("add-k", "interpolated-kneser-ney")


def split_stream(
    ids: Sequence[int], frac: float = 0.1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contiguous split of a token stream: with ``cut = int(len(ids) * frac)``,
    test = ``ids[len - cut:]``, validation = ``ids[len - 2 cut : len - cut]``,
    train = ``ids[: len - 2 cut]``. Returns three int64 arrays."""
    a = np.asarray(ids, dtype=np.int64)
    if a.ndim != 1:
        raise ValueError(f"ids must be one stream (1-D), got shape {a.shape}")
    if not 0 < frac < 0.5:
        raise ValueError(f"frac must be in (0, 0.5), got {frac!r}")
    cut = int(len(a) * frac)
    end = len(a) - cut
    return a[: end - cut], a[end - cut : end], a[end:]


class _Table:
    """Counts of m-grams as sorted int64 codes, plus per-context totals.

    An m-gram ``(t_1, ..., t_m)`` has code ``sum_i t_i V^(m-i)``; its context (the
    first m-1 tokens) has code ``code // V``."""

    def __init__(self, codes: np.ndarray, counts: np.ndarray, vocab_size: int):
        self.codes, self.counts = codes, counts.astype(np.float64)
        ctx = codes // vocab_size
        self.ctx_codes, first, types = np.unique(
            ctx, return_index=True, return_counts=True
        )
        self.ctx_total = np.add.reduceat(self.counts, first) if len(first) else first
        self.ctx_types = types.astype(np.float64)

    @staticmethod
    def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
        if len(keys) == 0:
            return np.zeros(query.shape)
        i = np.clip(np.searchsorted(keys, query), 0, len(keys) - 1)
        return np.where(keys[i] == query, values[i], 0.0)

    def count(self, codes: np.ndarray) -> np.ndarray:
        return self._lookup(self.codes, self.counts, codes)

    def context(self, ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(total count after the context, number of distinct next tokens)."""
        return (
            self._lookup(self.ctx_codes, self.ctx_total, ctx),
            self._lookup(self.ctx_codes, self.ctx_types, ctx),
        )


class NGramLM:
    """n-gram language model over ids in ``[0, vocab_size)``.

    Args:
        n: order (1 = unigram, 2 = bigram, ...); the context is ``n - 1`` tokens.
        vocab_size: V, the number of token ids (specials included).
        smoothing: ``"interpolated-kneser-ney"`` (default) or ``"add-k"``.
        discount: D in (0, 1] for Kneser-Ney.
        k: the pseudo-count (> 0) for add-k.

    ``fit(ids)`` counts the training stream; ``log_probs(context)`` gives the
    (V,) log-distribution of the next token; ``nll(ids)`` the mean negative log
    likelihood in nats per scored token (see the module docstring for the
    positions)."""

    def __init__(
        self,
        n: int,
        vocab_size: int,
        *,
        smoothing: str = "interpolated-kneser-ney",
        discount: float = 0.75,
        k: float = 1.0,
    ):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise ValueError(f"vocab_size must be an int >= 1, got {vocab_size!r}")
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be an int >= 1, got {vocab_size!r}")
        if float(vocab_size) ** n >= 2.0**62:
            raise ValueError(f"vocab_size**n = {vocab_size}**{n} overflows int64 codes")
        if smoothing not in _SMOOTHINGS:
            raise ValueError(
                f"smoothing must be one of {_SMOOTHINGS}, got {smoothing!r}"
            )
        if not 0 < discount <= 1:
            raise ValueError(f"discount must be in (0, 1], got {discount!r}")
        if not k > 0:
            raise ValueError(f"k must be > 0, got {k!r}")
        self.n, self.V = n, vocab_size
        self.smoothing, self.discount, self.k = smoothing, float(discount), float(k)
        self.raw: list[_Table] = []  # raw[m - 1]: counts of m-grams
        self.cont: list[_Table] = []  # cont[m - 1]: continuation counts (m < n)

    # ------------------------------------------------------------------ fitting
    def _codes(self, a: np.ndarray, m: int) -> np.ndarray:
        """Codes of all m-grams of the stream a, shape (len(a) - m + 1,)."""
        codes = np.zeros(max(len(a) - m + 1, 0), dtype=np.int64)
        for i in range(m):
            codes = codes * self.V + a[i : len(a) - m + 1 + i]
        return codes

    def _check_ids(self, ids: Sequence[int], name: str) -> np.ndarray:
        a = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(a) and (a.min() < 0 or a.max() >= self.V):
            raise ValueError(
                f"{name} must be ids in [0, {self.V}), got {a.min()}..{a.max()}"
            )
        return a

    def fit(self, ids: Sequence[int]) -> NGramLM:
        """Count every m-gram (m = 1..n) of the training stream. Returns self."""
        a = self._check_ids(ids, "ids")
        if len(a) < self.n:
            raise ValueError(
                f"need at least n = {self.n} training tokens, got {len(a)}"
            )
        self.raw, self.cont = [], []
        for m in range(1, self.n + 1):
            codes, counts = np.unique(self._codes(a, m), return_counts=True)
            self.raw.append(_Table(codes, counts, self.V))
        for m in range(1, self.n):
            # N1+(. g): distinct left extensions of g = distinct (m+1)-grams ending in g
            suffix = self.raw[m].codes % self.V**m
            codes, counts = np.unique(suffix, return_counts=True)
            self.cont.append(_Table(codes, counts, self.V))
        return self

    # --------------------------------------------------------------- prediction
    def _probs(self, ctx: np.ndarray, w: np.ndarray) -> np.ndarray:
        """P(w_i | ctx_i) for a batch: ctx (N, L) with L <= n - 1, w (N,)."""
        if not self.raw:
            raise RuntimeError("call fit(ids) before predicting")
        N, L = ctx.shape
        top = L + 1  # the order of the model that sees L tokens of context
        if self.smoothing == "add-k":
            code = np.zeros(N, dtype=np.int64)
            for i in range(L):
                code = code * self.V + ctx[:, i]
            table = self.raw[top - 1]
            total, _ = table.context(code)
            c = table.count(code * self.V + w)
            return (c + self.k) / (total + self.k * self.V)
        p = np.full(N, 1.0 / self.V)
        D = self.discount
        for m in range(1, top + 1):  # lowest order first
            h = ctx[:, L - (m - 1) :]  # the last m-1 tokens
            code = np.zeros(N, dtype=np.int64)
            for i in range(m - 1):
                code = code * self.V + h[:, i]
            table = self.raw[m - 1] if m == top else self.cont[m - 1]
            total, types = table.context(code)
            c = table.count(code * self.V + w)
            seen = total > 0
            safe = np.where(seen, total, 1.0)
            mixed = (np.maximum(c - D, 0.0) + D * types * p) / safe
            p = np.where(seen, mixed, p)
        return p

    def log_probs(self, context: Sequence[int]) -> np.ndarray:
        """(V,) log-probabilities of the next token given the context (only its
        last n - 1 tokens are used; a shorter context uses a lower-order model)."""
        ctx = self._check_ids(context, "context")
        ctx = ctx[max(len(ctx) - (self.n - 1), 0) :] if self.n > 1 else ctx[:0]
        rows = np.repeat(ctx[None, :], self.V, axis=0)
        return np.log(self._probs(rows, np.arange(self.V, dtype=np.int64)))

    def nll(self, ids: Sequence[int], *, start: int | None = None) -> float:
        """Mean negative log-likelihood (nats per token) of ``ids[t]`` given
        ``ids[max(0, t-n+1):t]`` over ``t = start, ..., len(ids) - 1``
        (``start = n - 1`` by default). Perplexity is ``exp`` of it."""
        a = self._check_ids(ids, "ids")
        start = self.n - 1 if start is None else start
        if not 0 <= start < len(a):
            raise ValueError(f"start must be in [0, {len(a)}), got {start}")
        total, L = 0.0, self.n - 1
        for t in range(start, min(L, len(a))):  # short contexts, one at a time
            total -= np.log(self._probs(a[None, :t], a[t : t + 1]))[0]
        first = max(start, L)
        if first < len(a):
            idx = np.arange(first, len(a))
            ctx = a[idx[:, None] - L + np.arange(L)[None, :]]
            total -= np.log(self._probs(ctx.reshape(len(idx), L), a[idx])).sum()
        return float(total / (len(a) - start))
