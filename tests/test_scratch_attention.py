"""Part IV ch1's scratch attention against trusted references: the output of
`F.scaled_dot_product_attention` (masks, causal, float64, Tq or Tk = 1), weights
against `torch.softmax` of masked scores (not our masked_softmax), additive scores
against a hand loop over query–key pairs, Nadaraya–Watson against the ratio of kernel
sums; and the extremes that break a naive softmax: fully masked rows, |scores| ~ 1e4
in float32 and float64, gradients through masked rows."""

import math

import pytest
import torch
import torch.nn.functional as F

from dlcore.scratch import attention as A

D = torch.float64
TOL = dict(rtol=1e-10, atol=1e-12)


def _qkv(b, tq, tk, d, dv, dtype=D, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, tq, d, generator=g, dtype=dtype)
    k = torch.randn(b, tk, d, generator=g, dtype=dtype)
    v = torch.randn(b, tk, dv, generator=g, dtype=dtype)
    return q, k, v


def _ref_weights(q, k, mask=None):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return torch.softmax(s, dim=-1)


@pytest.mark.parametrize("tq,tk", [(5, 7), (1, 7), (5, 1), (1, 1), (6, 6)])
def test_sdpa_matches_pytorch_no_mask(tq, tk):
    q, k, v = _qkv(3, tq, tk, 8, 4)
    out, w = A.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), **TOL)
    torch.testing.assert_close(w, _ref_weights(q, k), **TOL)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, tq, dtype=D), **TOL)


@pytest.mark.parametrize("tq,tk", [(4, 6), (1, 6), (6, 6)])
def test_sdpa_matches_pytorch_padding_mask(tq, tk):
    q, k, v = _qkv(3, tq, tk, 8, 5, seed=1)
    lengths = torch.tensor([tk, 2, 1])
    mask = A.length_mask(lengths, tk)[:, None, :]  # (B, 1, Tk)
    out, w = A.scaled_dot_product_attention(q, k, v, mask=mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref, **TOL)
    torch.testing.assert_close(w, _ref_weights(q, k, mask), **TOL)
    assert (w[1, :, 2:] == 0).all() and (w[2, :, 1:] == 0).all()


@pytest.mark.parametrize("tq,tk", [(6, 6), (3, 6), (1, 4)])
def test_sdpa_causal_matches_pytorch(tq, tk):
    q, k, v = _qkv(2, tq, tk, 4, 3, seed=2)
    out, w = A.scaled_dot_product_attention(q, k, v, causal=True)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(out, ref, **TOL)
    assert (w.triu(diagonal=1) == 0).all()


def test_sdpa_causal_and_padding_combined_and_heads_broadcast():
    q, k, v = _qkv(2, 5, 5, 6, 3, seed=3)
    q, k, v = (t.unsqueeze(1).expand(-1, 2, -1, -1) for t in (q, k, v))  # 2 heads
    pad = A.length_mask(torch.tensor([5, 3]), 5)[:, None, None, :]
    out, _ = A.scaled_dot_product_attention(q, k, v, mask=pad, causal=True)
    both = pad & torch.ones(5, 5, dtype=torch.bool).tril()
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=both)
    torch.testing.assert_close(out, ref, **TOL)


def test_fully_masked_row_gives_zeros_not_nan_and_finite_grad():
    scores = torch.randn(2, 3, 4, dtype=D, requires_grad=True)
    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    mask[0, 1] = False  # query 1 of batch 0 may look at nothing
    w = A.masked_softmax(scores, mask)
    assert not torch.isnan(w).any()
    assert (w[0, 1] == 0).all()
    torch.testing.assert_close(w[1], torch.softmax(scores[1], -1).detach(), **TOL)
    # the naive version fails exactly here
    naive = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1)
    assert torch.isnan(naive[0, 1]).all()
    (w * torch.randn_like(w)).sum().backward()
    assert torch.isfinite(scores.grad).all()
    assert (scores.grad[0, 1] == 0).all()


def test_masked_positions_get_no_gradient_and_no_weight():
    scores = torch.randn(3, 5, dtype=D, requires_grad=True)
    mask = torch.tensor([True, False, True, True, False])
    w = A.masked_softmax(scores, mask)
    assert (w[:, ~mask] == 0).all()
    (w * torch.randn_like(w)).sum().backward()
    assert (scores.grad[:, ~mask] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_huge_scores_are_stable(dtype, scale):
    g = torch.Generator().manual_seed(4)
    scores = (torch.randn(4, 6, generator=g, dtype=D) * scale).to(dtype)
    w = A.masked_softmax(scores)
    naive = torch.exp(scores) / torch.exp(scores).sum(-1, keepdim=True)
    assert not torch.isfinite(naive).all()  # exp overflows (or 0/0) without the shift
    torch.testing.assert_close(w, torch.softmax(scores, -1))
    mask = torch.rand(4, 6, generator=g) > 0.3
    mask[:, 0] = True
    ref = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1)
    torch.testing.assert_close(A.masked_softmax(scores, mask), ref)


def test_masked_softmax_size_one_key():
    s = torch.tensor([[1e4], [-3.0]], dtype=torch.float32)
    assert (A.masked_softmax(s) == 1).all()
    w = A.masked_softmax(s, torch.tensor([[True], [False]]))
    assert w.tolist() == [[1.0], [0.0]]


def test_additive_scores_against_hand_loop():
    g = torch.Generator().manual_seed(5)
    b, tq, tk, dq, dk, h = 2, 3, 4, 5, 6, 7
    q = torch.randn(b, tq, dq, generator=g, dtype=D)
    k = torch.randn(b, tk, dk, generator=g, dtype=D)
    w_q = torch.randn(h, dq, generator=g, dtype=D)
    w_k = torch.randn(h, dk, generator=g, dtype=D)
    v = torch.randn(h, generator=g, dtype=D)
    ours = A.additive_scores(q, k, w_q, w_k, v)
    ref = torch.empty(b, tq, tk, dtype=D)
    for n in range(b):
        for i in range(tq):
            for j in range(tk):
                ref[n, i, j] = torch.dot(v, torch.tanh(w_q @ q[n, i] + w_k @ k[n, j]))
    torch.testing.assert_close(ours, ref, **TOL)
    one = A.additive_scores(q[:, :1], k[:, :1], w_q, w_k, v)  # Tq = Tk = 1
    torch.testing.assert_close(one, ref[:, :1, :1], **TOL)


def test_additive_attention_with_mask():
    g = torch.Generator().manual_seed(6)
    q, k = torch.randn(2, 1, 3, generator=g, dtype=D), torch.randn(2, 4, 3, dtype=D)
    vals = torch.randn(2, 4, 2, dtype=D)
    w_q, w_k, v = torch.randn(5, 3, dtype=D), torch.randn(5, 3, dtype=D), torch.randn(5)
    mask = A.length_mask(torch.tensor([4, 2]), 4)[:, None, :]
    out, w = A.additive_attention(q, k, vals, w_q, w_k, v.to(D), mask)
    s = A.additive_scores(q, k, w_q, w_k, v.to(D)).masked_fill(~mask, float("-inf"))
    ref_w = torch.softmax(s, -1)
    torch.testing.assert_close(w, ref_w, **TOL)
    torch.testing.assert_close(out, ref_w @ vals, **TOL)
    assert (w[1, :, 2:] == 0).all()


def test_nadaraya_watson_against_direct_formula():
    g = torch.Generator().manual_seed(7)
    x_tr = torch.rand(30, generator=g, dtype=D) * 5
    y_tr = torch.sin(x_tr) + 0.1 * torch.randn(30, generator=g, dtype=D)
    x_q = torch.linspace(-1, 6, 11, dtype=D)
    h = 0.4
    pred, w = A.nadaraya_watson(x_q, x_tr, y_tr, h)
    ref = torch.empty(11, dtype=D)
    for i, x in enumerate(x_q):
        kern = [math.exp(-((x - xi) ** 2) / (2 * h * h)) for xi in x_tr.tolist()]
        ref[i] = sum(kv * yi for kv, yi in zip(kern, y_tr.tolist())) / sum(kern)
    torch.testing.assert_close(pred, ref, **TOL)
    torch.testing.assert_close(w.sum(1), torch.ones(11, dtype=D), **TOL)


def test_nadaraya_watson_far_query_and_tiny_bandwidth_stay_finite():
    x_tr = torch.tensor([0.0, 1.0, 2.0], dtype=D)
    y_tr = torch.tensor([1.0, 2.0, 3.0], dtype=D)
    # every kernel value underflows to 0 at x = 100 with h = 0.01: the naive ratio
    # is 0/0; the softmax form gives the nearest training point's y
    pred, _ = A.nadaraya_watson(torch.tensor([100.0], dtype=D), x_tr, y_tr, 0.01)
    assert pred.tolist() == [3.0]
    pred, _ = A.nadaraya_watson(x_tr, x_tr, y_tr, 1e-3)  # h -> 0: interpolation
    torch.testing.assert_close(pred, y_tr)
    wide, _ = A.nadaraya_watson(x_tr, x_tr, y_tr, 1e6)  # h -> inf: the mean
    torch.testing.assert_close(wide, torch.full((3,), 2.0, dtype=D))


def test_nadaraya_watson_multivariate_and_vector_targets():
    g = torch.Generator().manual_seed(8)
    x_tr, y_tr = torch.randn(20, 2, generator=g), torch.randn(20, 3, generator=g)
    pred, w = A.nadaraya_watson(torch.randn(4, 2, generator=g), x_tr, y_tr, 0.7)
    assert pred.shape == (4, 3) and w.shape == (4, 20)


def test_errors_name_the_bad_argument():
    s = torch.randn(2, 3)
    with pytest.raises(ValueError, match="mask"):
        A.masked_softmax(s, torch.ones(2, 3))  # not bool
    with pytest.raises(ValueError, match="mask"):
        A.masked_softmax(s, torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="scores"):
        A.masked_softmax(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="bandwidth"):
        A.nadaraya_watson(torch.randn(3), torch.randn(4), torch.randn(4), 0.0)
    with pytest.raises(ValueError, match="same last size"):
        A.scaled_dot_product_attention(
            torch.randn(2, 3), torch.randn(4, 5), torch.randn(4, 1)
        )


def test_fully_masked_rows_match_pytorch_zeros():
    # torch's scaled_dot_product_attention also returns 0 where a row allows no key
    q, k, v = _qkv(3, 4, 5, 6, 2, seed=9)
    mask = A.length_mask(torch.tensor([5, 0, 2]), 5)[:, None, :]  # sentence 1: empty
    out, w = A.scaled_dot_product_attention(q, k, v, mask=mask, causal=True)
    both = mask & torch.ones(4, 5, dtype=torch.bool).tril()
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=both)
    torch.testing.assert_close(out, ref, **TOL)
    assert (out[1] == 0).all() and (w[1] == 0).all()
