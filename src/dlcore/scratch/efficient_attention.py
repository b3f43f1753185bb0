"""Efficient attention from scratch (Part IV ch6): the online softmax, tiled exact
attention (the FlashAttention recurrence, in plain tensor code), sliding-window and
block-sparse attention, and linear attention with a kernel feature map (elu + 1, or
positive random features as in Performer). Tested against
`F.scaled_dot_product_attention` in tests/test_scratch_efficient_attention.py.

Shapes: q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv) -> out (..., Tq, dv); the
leading dims are batch and heads, e.g. (B, H). Position i of the queries and j of the
keys are aligned at the top left, as `is_causal=True` in PyTorch: a causal query i
sees keys j <= i; a sliding window of width W keeps keys i - W < j <= i.

    exact:   out = softmax(q k^T / sqrt(d) + mask) v          O(Tq Tk) memory
    tiled:   the same numbers, one (block_q, block_k) tile at a time   O(Tq) memory
    linear:  out_i = phi(q_i)^T U_i / phi(q_i)^T z_i,  U, z sums over keys   O(T)
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "online_softmax_stats",
    "online_logsumexp",
    "online_softmax",
    "merge_stats",
    "naive_attention",
    "tiled_attention",
    "sliding_window_attention",
    "block_sparse_attention",
    "local_global_layout",
    "elu_feature_map",
    "random_features",
    "linear_attention",
    "linear_attention_quadratic",
    "peak_bytes",
    "median_seconds",
]

Tensor = torch.Tensor
NEG_INF = float("-inf")


def _check_block(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def online_softmax_stats(x: Tensor, block: int) -> tuple[Tensor, Tensor]:
    """Running max m and running sum l of exp(x - m) over the last dim of x (..., N),
    read `block` entries at a time: m' = max(m, max x_b), l' = l e^(m - m') +
    sum e^(x_b - m'). Returns (m, l), each (...); logsumexp(x) = m + log l. A row that
    is all -inf (fully masked) gives m = -inf, l = 0."""
    _check_block("block", block)
    m = torch.full(x.shape[:-1], NEG_INF, dtype=x.dtype, device=x.device)
    l = torch.zeros_like(m)
    for start in range(0, x.shape[-1], block):
        xb = x[..., start : start + block]
        m_new = torch.maximum(m, xb.amax(dim=-1))
        ref = torch.where(torch.isneginf(m_new), torch.zeros_like(m_new), m_new)
        l = l * torch.exp(m - ref) + torch.exp(xb - ref[..., None]).sum(dim=-1)
        m = m_new
    return m, l


def online_logsumexp(x: Tensor, block: int) -> Tensor:
    """log sum_j exp(x_j) over the last dim, one blockwise pass: x (..., N) -> (...)."""
    m, l = online_softmax_stats(x, block)
    return m + torch.log(l)


def online_softmax(x: Tensor, block: int) -> Tensor:
    """softmax over the last dim from the blockwise statistics: exp(x - logsumexp)."""
    return torch.exp(x - online_logsumexp(x, block)[..., None])


def merge_stats(
    m1: Tensor, l1: Tensor, m2: Tensor, l2: Tensor
) -> tuple[Tensor, Tensor]:
    """Online-softmax statistics (m, l) of a row whose two parts have running max and
    sum (m1, l1) and (m2, l2), each (...). An empty (fully masked) part has m = -inf,
    l = 0; two empty parts give (-inf, 0). Via log-sum-exp: log l = lse - m."""
    m = torch.maximum(m1, m2)
    lse = torch.logaddexp(m1 + torch.log(l1), m2 + torch.log(l2))
    empty = torch.isneginf(m)
    return m, torch.where(empty, torch.zeros_like(lse), torch.exp(lse - m))


def _allowed(qpos: Tensor, kpos: Tensor, causal: bool, window: int | None) -> Tensor:
    """(len(qpos), len(kpos)) bool: may query position i look at key position j?"""
    d = qpos[:, None] - kpos[None, :]  # how far back the key is
    ok = torch.ones_like(d, dtype=torch.bool)
    if causal:
        ok &= d >= 0
    if window is not None:
        ok &= (d < window) & (d > -window)
    return ok


def naive_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    window: int | None = None,
    scale: float | None = None,
) -> Tensor:
    """Exact attention with the (..., Tq, Tk) score matrix materialised (max-subtracted
    softmax). `window` keeps keys with |i - j| < window (and j <= i when causal)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    s = (q @ k.transpose(-2, -1)) * scale
    if causal or window is not None:
        pos_q = torch.arange(q.shape[-2], device=q.device)
        pos_k = torch.arange(k.shape[-2], device=q.device)
        s = s.masked_fill(~_allowed(pos_q, pos_k, causal, window), NEG_INF)
    return torch.softmax(s, dim=-1) @ v


def _key_range(
    q0: int, q1: int, tk: int, causal: bool, window: int | None
) -> tuple[int, int]:
    """Keys [lo, hi) that queries q0..q1-1 may see: the tiles outside are skipped."""
    lo, hi = 0, tk
    if window is not None:
        lo, hi = max(0, q0 - window + 1), min(tk, q1 + window - 1)
    if causal:
        hi = min(hi, q1)
    return lo, hi


def _online_update(m, l, acc, s, vb):
    """Fold one tile of scores s (..., bq, bk) and values vb (..., bk, dv) into the
    running max m (..., bq), sum l (..., bq) and unnormalised output acc (..., bq, dv).
    Rows that have seen no allowed key yet (m = -inf) stay at l = 0, acc = 0."""
    m_new = torch.maximum(m, s.amax(dim=-1))
    m_safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
    alpha = torch.exp(m - m_safe)  # rescales what was summed under the old max
    p = torch.exp(s - m_safe[..., None])
    l = alpha * l + p.sum(dim=-1)
    acc = alpha[..., None] * acc + p @ vb
    return m_new, l, acc


def tiled_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    block_q: int = 64,
    block_k: int = 64,
    causal: bool = False,
    window: int | None = None,
    layout: Tensor | None = None,
    scale: float | None = None,
) -> Tensor:
    """Exact attention one (block_q, block_k) tile at a time with the online softmax:
    no (Tq, Tk) matrix is ever held. Tiles no query may use (above the causal diagonal,
    outside the window, False in the block `layout`, a bool (ceil(Tq/block_q),
    ceil(Tk/block_k))) are skipped. Queries with no allowed key get 0.
    q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv) -> (..., Tq, dv)."""
    _check_block("block_q", block_q)
    _check_block("block_k", block_k)
    if window is not None:
        _check_block("window", window)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    tq, tk = q.shape[-2], k.shape[-2]
    out = []
    for i, q0 in enumerate(range(0, tq, block_q)):
        q1 = min(q0 + block_q, tq)
        qb = q[..., q0:q1, :] * scale
        m = torch.full(qb.shape[:-1], NEG_INF, dtype=q.dtype, device=q.device)
        l, acc = torch.zeros_like(m), q.new_zeros(*qb.shape[:-1], v.shape[-1])
        lo, hi = _key_range(q0, q1, tk, causal, window)
        for k0 in range(lo // block_k * block_k, hi, block_k):
            if layout is not None and not layout[i, k0 // block_k]:
                continue
            k1 = min(k0 + block_k, tk)
            s = qb @ k[..., k0:k1, :].transpose(-2, -1)
            if causal or window is not None:
                ok = _allowed(
                    torch.arange(q0, q1), torch.arange(k0, k1), causal, window
                )
                if not ok.all():
                    s = s.masked_fill(~ok.to(s.device), NEG_INF)
            m, l, acc = _online_update(m, l, acc, s, v[..., k0:k1, :])
        l = torch.where(l > 0, l, torch.ones_like(l))  # rows with no key: 0 / 1
        out.append(acc / l[..., None])
    return torch.cat(out, dim=-2)


def sliding_window_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    window: int,
    *,
    causal: bool = True,
    block: int = 64,
) -> Tensor:
    """Each query i sees the keys i - window < j <= i (causal) or |i - j| < window:
    O(T window) time and O(T) memory, exact attention when window >= T."""
    return tiled_attention(
        q, k, v, block_q=block, block_k=block, causal=causal, window=window
    )


def local_global_layout(n_blocks: int, local: int = 1, n_global: int = 1) -> Tensor:
    """(n_blocks, n_blocks) bool block layout: block row i keeps the `local` blocks
    i - local + 1..i before and at it, and the first `n_global` blocks (a causal
    local + global pattern, as in Sparse Transformer / Longformer)."""
    _check_block("n_blocks", n_blocks)
    _check_block("local", local)
    if isinstance(n_global, bool) or not isinstance(n_global, int) or n_global < 0:
        raise ValueError(f"n_global must be an int >= 0, got {n_global!r}")
    i = torch.arange(n_blocks)
    d = i[:, None] - i[None, :]
    return ((d >= 0) & (d < local)) | ((i[None, :] < n_global) & (d >= 0))


def block_sparse_attention(
    q: Tensor, k: Tensor, v: Tensor, layout: Tensor, *, block: int, causal: bool = True
) -> Tensor:
    """Attention over the (block, block) tiles that `layout` marks True only: layout
    is bool (ceil(Tq/block), ceil(Tk/block)). Causal masking holds in kept tiles."""
    n_q, n_k = math.ceil(q.shape[-2] / block), math.ceil(k.shape[-2] / block)
    if layout.dtype != torch.bool or tuple(layout.shape) != (n_q, n_k):
        raise ValueError(
            f"layout must be bool of shape ({n_q}, {n_k}) for block={block}, got "
            f"{layout.dtype} {tuple(layout.shape)}"
        )
    return tiled_attention(
        q, k, v, block_q=block, block_k=block, causal=causal, layout=layout
    )


def elu_feature_map(x: Tensor) -> Tensor:
    """phi(x) = elu(x) + 1 > 0 (Katharopoulos et al., 2020). x (..., T, d) -> same."""
    return F.elu(x) + 1


def random_features(x: Tensor, omega: Tensor) -> Tensor:
    """Positive random features of the softmax kernel (Performer, FAVOR+): with
    omega (r, d) ~ N(0, I), E[phi(q) . phi(k)] = exp(q . k / sqrt(d)). x (..., T, d)
    -> (..., T, r). A constant per leading index is subtracted in the exponent (for
    overflow); it cancels when the attention output is normalised."""
    x = x * x.shape[-1] ** -0.25
    logits = x @ omega.T - 0.5 * (x * x).sum(dim=-1, keepdim=True)
    logits = logits - logits.amax(dim=(-2, -1), keepdim=True)
    return torch.exp(logits) / math.sqrt(omega.shape[0])


FeatureMap = Callable[[Tensor], Tensor]


def linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    feature_map: FeatureMap = elu_feature_map,
    chunk: int = 64,
) -> Tensor:
    """out_i = phi(q_i)^T U / phi(q_i)^T z with U = sum_j phi(k_j) v_j^T (r, dv) and
    z = sum_j phi(k_j) (r,), over all keys, or (causal) over j <= i: then the sums run
    chunk by chunk, a masked (chunk, chunk) product inside each chunk. O(T) memory."""
    _check_block("chunk", chunk)
    fq, fk = feature_map(q), feature_map(k)
    if not causal:
        kv = fk.transpose(-2, -1) @ v  # (..., r, dv)
        return (fq @ kv) / (fq @ fk.sum(dim=-2)[..., None])
    if q.shape[-2] != k.shape[-2]:
        raise ValueError("causal linear attention needs as many queries as keys")
    state = fq.new_zeros(*fq.shape[:-2], fq.shape[-1], v.shape[-1])  # U
    z = fq.new_zeros(*fq.shape[:-2], fq.shape[-1], 1)
    out = []
    for c0 in range(0, q.shape[-2], chunk):
        a, b, vc = (
            fq[..., c0 : c0 + chunk, :],
            fk[..., c0 : c0 + chunk, :],
            v[..., c0 : c0 + chunk, :],
        )
        inner = torch.tril(a @ b.transpose(-2, -1))  # (..., c, c): keys of this chunk
        num = a @ state + inner @ vc
        den = a @ z + inner.sum(dim=-1, keepdim=True)
        out.append(num / den)
        state = state + b.transpose(-2, -1) @ vc
        z = z + b.sum(dim=-2)[..., None]
    return torch.cat(out, dim=-2)


def linear_attention_quadratic(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    feature_map: FeatureMap = elu_feature_map,
) -> Tensor:
    """The same output in quadratic form: A = phi(Q) phi(K)^T (lower triangle when
    causal), out = A V / A 1. It holds the (..., Tq, Tk) matrix: a reference only."""
    a = feature_map(q) @ feature_map(k).transpose(-2, -1)
    if causal:
        a = torch.tril(a)
    return (a @ v) / a.sum(dim=-1, keepdim=True)


class _QuietFd2:
    """Silence file descriptor 2 (the profiler's C++ log lines) inside a block."""

    def __enter__(self):
        self.saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)


def peak_bytes(fn: Callable[[], object], device: torch.device | None = None) -> int:
    """Peak bytes allocated by torch while fn() runs, above what was allocated before.
    CUDA: torch.cuda.max_memory_allocated. CPU: the allocation and free events of
    torch.profiler (profile_memory=True), summed in time order (tracemalloc and RSS do
    not see torch's allocator reliably)."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with (
        _QuietFd2(),
        profile(activities=[ProfilerActivity.CPU], profile_memory=True) as p,
    ):
        fn()
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in p.profiler.kineto_results.events()
        if e.name() == "[memory]"
    )
    now = peak = 0
    for _, nbytes in events:
        now += nbytes
        peak = max(peak, now)
    return peak


def median_seconds(
    fn: Callable[[], object], repeats: int = 5, device: torch.device | None = None
) -> float:
    """Median wall time of `repeats` calls of fn() after one warm-up call."""
    _check_block("repeats", repeats)
    sync = (
        torch.cuda.synchronize if device is not None and device.type == "cuda" else None
    )
    fn()
    times = []
    for _ in range(repeats):
        if sync:
            sync(device)
        start = time.perf_counter()
        fn()
        if sync:
            sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
