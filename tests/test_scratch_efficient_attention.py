"""dlcore.scratch.efficient_attention against F.scaled_dot_product_attention (the
reference is never our own code), torch.softmax and torch.logsumexp."""

import pytest
import torch
import torch.nn.functional as F

from dlcore.scratch import efficient_attention as E

TIGHT = dict(rtol=1e-10, atol=1e-10)


def qkv(tq=37, tk=None, d=8, dv=5, lead=(2, 3), seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    tk = tq if tk is None else tk
    q = torch.randn(*lead, tq, d, generator=g, dtype=dtype)
    k = torch.randn(*lead, tk, d, generator=g, dtype=dtype)
    v = torch.randn(*lead, tk, dv, generator=g, dtype=dtype)
    return q, k, v


def sdpa_masked(q, k, v, allowed):
    """PyTorch's attention with a boolean mask (True = may attend)."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


def band(tq, tk, window, causal=True):
    d = torch.arange(tq)[:, None] - torch.arange(tk)[None, :]
    ok = (d < window) & (d > -window)
    return ok & (d >= 0) if causal else ok


@pytest.mark.parametrize("block", [1, 5, 16, 37, 64])  # 5, 16 do not divide 37
def test_online_softmax_equals_torch(block):
    x = torch.randn(4, 37, dtype=torch.float64) * 30
    torch.testing.assert_close(
        E.online_softmax(x, block), torch.softmax(x, -1), **TIGHT
    )
    torch.testing.assert_close(
        E.online_logsumexp(x, block), torch.logsumexp(x, -1), **TIGHT
    )


def test_online_softmax_huge_scores_where_naive_exp_overflows():
    x = torch.tensor([[1e4, -1e4, 9_999.0, 3.0, 1e4]], dtype=torch.float64)
    assert torch.isinf(torch.exp(x)).any()  # the naive version overflows
    torch.testing.assert_close(E.online_softmax(x, 2), torch.softmax(x, -1), **TIGHT)
    torch.testing.assert_close(
        E.online_logsumexp(x, 2), torch.logsumexp(x, -1), **TIGHT
    )


def test_online_softmax_stats_are_max_and_scaled_sum():
    x = torch.randn(3, 11, dtype=torch.float64)
    m, l = E.online_softmax_stats(x, 3)
    torch.testing.assert_close(m, x.amax(-1), **TIGHT)
    torch.testing.assert_close(l, torch.exp(x - x.amax(-1, keepdim=True)).sum(-1))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("bq,bk", [(64, 64), (8, 8), (5, 7), (16, 3), (1, 1), (37, 4)])
def test_tiled_equals_sdpa(causal, bq, bk):
    q, k, v = qkv()
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    out = E.tiled_attention(q, k, v, block_q=bq, block_k=bk, causal=causal)
    torch.testing.assert_close(out, ref, **TIGHT)


@pytest.mark.parametrize("tq,tk", [(1, 1), (1, 9), (9, 1), (13, 29), (29, 13)])
def test_tiled_sizes_one_and_rectangular(tq, tk):
    q, k, v = qkv(tq, tk)
    for causal in (False, True):
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        out = E.tiled_attention(q, k, v, block_q=4, block_k=6, causal=causal)
        torch.testing.assert_close(out, ref, **TIGHT)


def test_tiled_huge_scores():
    q, k, v = qkv(23)
    q = q * 2_000.0  # |scores| ~ 1e4 after the 1/sqrt(d) scale
    s = (q @ k.transpose(-2, -1)) / 8**0.5
    assert s.abs().max() > 5e3 and torch.isinf(torch.exp(s)).any()
    for causal in (False, True):
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        out = E.tiled_attention(q, k, v, block_q=4, block_k=5, causal=causal)
        torch.testing.assert_close(out, ref, **TIGHT)


def test_naive_equals_sdpa():
    q, k, v = qkv(21)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(E.naive_attention(q, k, v, causal=True), ref, **TIGHT)
    ref = sdpa_masked(q, k, v, band(21, 21, 4))
    out = E.naive_attention(q, k, v, causal=True, window=4)
    torch.testing.assert_close(out, ref, **TIGHT)


@pytest.mark.parametrize("causal", [False, True])
def test_tiled_gradients_equal_sdpa_autograd(causal):
    q, k, v = (t.requires_grad_() for t in qkv(19))
    w = torch.randn(2, 3, 19, 5, dtype=torch.float64)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    g_ref = torch.autograd.grad((ref * w).sum(), (q, k, v))
    out = E.tiled_attention(q, k, v, block_q=4, block_k=7, causal=causal)
    g_out = torch.autograd.grad((out * w).sum(), (q, k, v))
    for a, b in zip(g_out, g_ref):
        torch.testing.assert_close(a, b, **TIGHT)


def grads(out_fn, q, k, v, w):
    """dL/dq, dL/dk, dL/dv of the loss sum(w * out_fn(q, k, v))."""
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    return torch.autograd.grad((out_fn(q, k, v) * w).sum(), (q, k, v))


@pytest.mark.parametrize("causal", [False, True])
def test_tiled_gradients_at_huge_scores(causal):
    q, k, v = qkv(23)
    q = q * 2_000  # scores ~ 1e4: exp overflows, softmax nearly one-hot
    w = torch.randn(2, 3, 23, 5, dtype=torch.float64)
    g_ref = grads(
        lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=causal),
        q,
        k,
        v,
        w,
    )
    g_out = grads(
        lambda a, b, c: E.tiled_attention(a, b, c, block_q=4, block_k=5, causal=causal),
        q,
        k,
        v,
        w,
    )
    for a, b in zip(g_out, g_ref):
        torch.testing.assert_close(a, b, **TIGHT)


@pytest.mark.parametrize("window", [1, 4, 11, 30])
@pytest.mark.parametrize("causal", [False, True])
def test_sliding_window_gradients_equal_masked_sdpa(window, causal):
    q, k, v = qkv(30)
    w = torch.randn(2, 3, 30, 5, dtype=torch.float64)
    mask = band(30, 30, window, causal)
    g_ref = grads(lambda a, b, c: sdpa_masked(a, b, c, mask), q, k, v, w)
    g_out = grads(
        lambda a, b, c: E.sliding_window_attention(
            a, b, c, window, causal=causal, block=7
        ),
        q,
        k,
        v,
        w,
    )
    for a, b in zip(g_out, g_ref):
        torch.testing.assert_close(a, b, **TIGHT)


LAYOUTS = {
    "local 2 + global 1": E.local_global_layout(6, local=2, n_global=1),
    "local 1 + global 2": E.local_global_layout(6, local=1, n_global=2),
    "irregular": torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],
            [0, 1, 0, 0, 0, 0],
            [1, 0, 1, 0, 0, 0],
            [0, 1, 1, 1, 0, 0],
            [1, 0, 0, 0, 1, 0],
            [0, 0, 1, 0, 1, 1],
        ],
        dtype=torch.bool,
    ),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_block_sparse_values_and_gradients_equal_masked_sdpa(name):
    layout = LAYOUTS[name]
    q, k, v = qkv(45)  # 45 = 5 full blocks of 8 + a partial one
    w = torch.randn(2, 3, 45, 5, dtype=torch.float64)
    tokens = layout.repeat_interleave(8, 0).repeat_interleave(8, 1)[:45, :45]
    mask = tokens & band(45, 45, 45)
    ref = sdpa_masked(q, k, v, mask)
    out = E.block_sparse_attention(q, k, v, layout, block=8)
    torch.testing.assert_close(out, ref, **TIGHT)
    g_ref = grads(lambda a, b, c: sdpa_masked(a, b, c, mask), q, k, v, w)
    g_out = grads(
        lambda a, b, c: E.block_sparse_attention(a, b, c, layout, block=8),
        q,
        k,
        v,
        w,
    )
    for a, b in zip(g_out, g_ref):
        torch.testing.assert_close(a, b, **TIGHT)


def test_merge_stats_equals_logsumexp_of_the_whole_row():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 9, generator=g, dtype=torch.float64) * 3_000  # |x| ~ 1e4
    x[1, :5] = float("-inf")  # first part of row 1 fully masked
    x[2, 5:] = float("-inf")  # second part of row 2 fully masked
    x[3] = float("-inf")  # row 3: both parts masked
    m, l = E.merge_stats(
        *E.online_softmax_stats(x[:, :5], 5), *E.online_softmax_stats(x[:, 5:], 4)
    )
    torch.testing.assert_close(m, x.amax(-1), **TIGHT)
    lse = torch.logsumexp(x[:3], -1)
    torch.testing.assert_close(m[:3] + torch.log(l[:3]), lse, **TIGHT)
    assert l[3].item() == 0.0 and torch.isneginf(m[3])
    m, l = E.online_softmax_stats(x[3], 4)  # an all -inf row: no nan
    assert torch.isneginf(m) and l.item() == 0.0


@pytest.mark.parametrize("window", [1, 3, 8, 30])
@pytest.mark.parametrize("causal", [False, True])
def test_sliding_window_equals_masked_sdpa(window, causal):
    q, k, v = qkv(30)
    ref = sdpa_masked(q, k, v, band(30, 30, window, causal))
    out = E.sliding_window_attention(q, k, v, window, causal=causal, block=7)
    torch.testing.assert_close(out, ref, **TIGHT)


@pytest.mark.parametrize("window", [30, 31, 100])
def test_sliding_window_at_least_t_is_exact(window):
    q, k, v = qkv(30)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    out = E.sliding_window_attention(q, k, v, window, block=8)
    torch.testing.assert_close(out, ref, **TIGHT)


def test_block_sparse_equals_masked_sdpa():
    q, k, v = qkv(45)  # 45 = 5 full blocks of 8 + a partial one
    layout = E.local_global_layout(6, local=2, n_global=1)
    tokens = layout.repeat_interleave(8, 0).repeat_interleave(8, 1)[:45, :45]
    ref = sdpa_masked(q, k, v, tokens & band(45, 45, 45))
    out = E.block_sparse_attention(q, k, v, layout, block=8)
    torch.testing.assert_close(out, ref, **TIGHT)


def test_block_sparse_full_layout_is_exact_and_empty_row_is_zero():
    q, k, v = qkv(16)
    full = torch.ones(4, 4, dtype=torch.bool)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    out = E.block_sparse_attention(q, k, v, full, block=4)
    torch.testing.assert_close(out, ref, **TIGHT)
    empty = full.clone()
    empty[2] = False  # block row 2 keeps no tile: its queries see nothing
    out = E.block_sparse_attention(q, k, v, empty, block=4, causal=False)
    assert torch.equal(out[..., 8:12, :], torch.zeros_like(out[..., 8:12, :]))


def test_local_global_layout():
    layout = E.local_global_layout(5, local=2, n_global=1)
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [1, 1, 1, 0, 0],
            [1, 0, 1, 1, 0],
            [1, 0, 0, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(layout, expected)


def linear_by_hand(q, k, v, causal, phi):
    """phi(Q) phi(K)^T V normalised, one query at a time (loops, no shared code)."""
    fq, fk = phi(q), phi(k)
    out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=q.dtype)
    for i in range(q.shape[-2]):
        n = i + 1 if causal else k.shape[-2]
        w = (fq[..., i : i + 1, :] * fk[..., :n, :]).sum(-1)  # (..., n)
        out[..., i, :] = (w[..., None] * v[..., :n, :]).sum(-2) / w.sum(-1)[..., None]
    return out


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("chunk", [1, 4, 7, 64])
def test_linear_attention_equals_its_quadratic_form(causal, chunk):
    q, k, v = qkv(23)
    phi = E.elu_feature_map
    direct = linear_by_hand(q, k, v, causal, phi)
    torch.testing.assert_close(
        E.linear_attention(q, k, v, causal=causal, chunk=chunk), direct, **TIGHT
    )
    torch.testing.assert_close(
        E.linear_attention_quadratic(q, k, v, causal=causal), direct, **TIGHT
    )


def test_linear_attention_t_one_and_random_features():
    q, k, v = qkv(1)
    out = E.linear_attention(q, k, v, causal=True)
    torch.testing.assert_close(out, v, **TIGHT)  # one key: its value
    q, k, v = qkv(17)
    omega = torch.randn(32, 8, dtype=torch.float64)

    def phi(x):
        return E.random_features(x, omega)

    direct = linear_by_hand(q, k, v, True, phi)
    out = E.linear_attention(q, k, v, causal=True, feature_map=phi, chunk=5)
    torch.testing.assert_close(out, direct, **TIGHT)


def test_random_features_approximate_the_softmax_kernel():
    g = torch.Generator().manual_seed(0)
    q, k, v = qkv(12, d=4, lead=(1,), seed=1)
    q, k = q * 0.5, k * 0.5
    omega = torch.randn(200_000, 4, generator=g, dtype=torch.float64)
    out = E.linear_attention(q, k, v, feature_map=lambda x: E.random_features(x, omega))
    ref = F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, ref, rtol=0, atol=2e-2)


def test_bad_arguments_raise():
    q, k, v = qkv(8)
    with pytest.raises(ValueError, match="block_q"):
        E.tiled_attention(q, k, v, block_q=0)
    with pytest.raises(ValueError, match="window"):
        E.sliding_window_attention(q, k, v, 0)
    with pytest.raises(ValueError, match="layout"):
        E.block_sparse_attention(q, k, v, torch.ones(3, 3, dtype=torch.bool), block=4)
    with pytest.raises(ValueError, match="chunk"):
        E.linear_attention(q, k, v, causal=True, chunk=-1)


def test_peak_bytes_sees_a_torch_allocation():
    n = 1_000_000
    peak = E.peak_bytes(lambda: torch.ones(n, dtype=torch.float32).sum())
    assert 4 * n <= peak < 4 * n + 65_536
    assert E.median_seconds(lambda: None, repeats=3) >= 0
