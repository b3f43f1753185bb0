"""Multi-head attention from scratch against nn.MultiheadAttention and
F.scaled_dot_product_attention: values and gradients (inputs and every weight), float64,
causal and key-padding masks, one head, T = 1, averaged and per-head weights."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlcore.scratch import multihead as MH

D = torch.float64
TOL = dict(rtol=1e-10, atol=1e-12)


def _torch_mha(c: int, h: int, seed: int = 0, bias: bool = True):
    torch.manual_seed(seed)
    mha = nn.MultiheadAttention(c, h, bias=bias, batch_first=True, dtype=D)
    if bias:  # torch starts the biases at 0: make them count
        with torch.no_grad():
            mha.in_proj_bias.normal_()
            mha.out_proj.bias.normal_()
    return mha


def _padding(lengths: list[int], t: int) -> torch.Tensor:
    """torch's key_padding_mask: True = padding (ignored)."""
    return torch.arange(t)[None, :] >= torch.tensor(lengths)[:, None]


CASES = [  # B, Tq, Tk, C, h, key lengths (None: no padding)
    (3, 5, 5, 8, 2, [5, 2, 1]),
    (1, 1, 1, 4, 1, None),  # one head, T = 1
    (2, 1, 4, 6, 3, [4, 1]),  # one query
    (2, 6, 6, 12, 1, [6, 3]),  # one head, padded
    (4, 7, 7, 16, 4, [7, 6, 3, 1]),
]


@pytest.mark.parametrize("b,tq,tk,c,h,lengths", CASES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("average", [True, False])
def test_equals_nn_multihead_attention(b, tq, tk, c, h, lengths, causal, average):
    if causal and tq != tk:
        pytest.skip("causal self-attention: Tq = Tk")
    mha = _torch_mha(c, h)
    torch.manual_seed(1)
    query = torch.randn(b, tq, c, dtype=D, requires_grad=True)
    key = torch.randn(b, tk, c, dtype=D, requires_grad=True)
    value = torch.randn(b, tk, c, dtype=D, requires_grad=True)
    pad = None if lengths is None else _padding(lengths, tk)
    tri = torch.ones(tq, tk, dtype=torch.bool).triu(1) if causal else None  # True=hide
    ref, ref_w = mha(
        query,
        key,
        value,
        key_padding_mask=pad,
        attn_mask=tri,
        average_attn_weights=average,
    )
    out, w = MH.multi_head_attention(
        query,
        key,
        value,
        MH.params_from_torch(mha),
        h,
        key_mask=None if pad is None else ~pad,
        causal=causal,
        average_weights=average,
    )
    torch.testing.assert_close(out, ref, **TOL)
    torch.testing.assert_close(w, ref_w, **TOL)
    leaves = [query, key, value, *mha.parameters()]
    upstream = torch.randn_like(ref)
    g_ref = torch.autograd.grad(ref, leaves, upstream)
    g_out = torch.autograd.grad(out, leaves, upstream)
    for a, r in zip(g_out, g_ref):
        torch.testing.assert_close(a, r, **TOL)


def test_module_loads_torch_weights_and_matches_gradients():
    mha = _torch_mha(8, 2, seed=3)
    ours = MH.MultiHeadAttention(8, 2, causal=True).double().load_from_torch(mha)
    x = torch.randn(3, 6, 8, dtype=D)
    pad = _padding([6, 4, 1], 6)
    tri = torch.ones(6, 6, dtype=torch.bool).triu(1)
    ref = mha(x, x, x, key_padding_mask=pad, attn_mask=tri, need_weights=False)[0]
    out = ours(x, key_mask=~pad)
    torch.testing.assert_close(out, ref, **TOL)
    ref.square().sum().backward()
    out.square().sum().backward()
    torch.testing.assert_close(ours.in_proj_weight.grad, mha.in_proj_weight.grad, **TOL)
    torch.testing.assert_close(ours.in_proj_bias.grad, mha.in_proj_bias.grad, **TOL)
    torch.testing.assert_close(
        ours.out_proj.weight.grad, mha.out_proj.weight.grad, **TOL
    )


def test_no_bias_and_large_inputs():
    mha = _torch_mha(8, 4, seed=5, bias=False)
    x = 300.0 * torch.randn(2, 5, 8, dtype=D)  # scores of size ~1e4: saturated softmax
    ref = mha(x, x, x, need_weights=False)[0]
    out = MH.multi_head_attention(x, x, x, MH.params_from_torch(mha), 4)[0]
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, **TOL)


def _sdpa_reference(x, p: MH.MHAParams, h: int, mask):
    """Projections by F.linear, heads by reshape, core by F.sdpa (True = attend)."""
    b, t, c = x.shape

    def heads(w, bias):
        return F.linear(x, w, bias).reshape(b, t, h, c // h).permute(0, 2, 1, 3)

    q, k, v = heads(p.w_q, p.b_q), heads(p.w_k, p.b_k), heads(p.w_v, p.b_v)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return F.linear(o.permute(0, 2, 1, 3).reshape(b, t, c), p.w_o, p.b_o)


@pytest.mark.parametrize(
    "b,t,c,h,lengths", [(3, 6, 12, 3, [6, 2, 1]), (1, 1, 4, 1, [1])]
)
def test_equals_sdpa_with_padding_and_causal(b, t, c, h, lengths):
    torch.manual_seed(2)
    p = MH.MHAParams(
        *(torch.randn(c, c, dtype=D) / c**0.5 for _ in range(4)),
        *(torch.randn(c, dtype=D) for _ in range(4)),
    )
    for w in vars(p).values():
        w.requires_grad_(True)
    x = torch.randn(b, t, c, dtype=D, requires_grad=True)
    key_mask = ~_padding(lengths, t)
    mask = key_mask[:, None, None, :] & torch.ones(t, t, dtype=torch.bool).tril()
    ref = _sdpa_reference(x, p, h, mask)
    out = MH.multi_head_attention(x, x, x, p, h, key_mask=key_mask, causal=True)[0]
    torch.testing.assert_close(out, ref, **TOL)
    leaves = [x, *vars(p).values()]
    for a, r in zip(
        torch.autograd.grad(out.sum(), leaves), torch.autograd.grad(ref.sum(), leaves)
    ):
        torch.testing.assert_close(a, r, **TOL)


def test_fully_padded_sequence_gives_bias_not_nan():
    mha = _torch_mha(4, 2)
    x = torch.randn(2, 3, 4, dtype=D)
    key_mask = torch.tensor([[True, True, False], [False, False, False]])
    out, w = MH.multi_head_attention(
        x, x, x, MH.params_from_torch(mha), 2, key_mask=key_mask
    )
    assert torch.isfinite(out).all()
    assert torch.equal(w[1], torch.zeros(3, 3, dtype=D))
    torch.testing.assert_close(out[1], mha.out_proj.bias.detach().expand(3, 4))
    # the chapter's remark: nn.MultiheadAttention (need_weights=True) gives NaN
    ref = mha(x, x, x, key_padding_mask=~key_mask)[0]  # need_weights=True
    assert torch.isnan(ref[1]).all() and torch.isfinite(ref[0]).all()


def test_split_and_combine_heads():
    x = torch.arange(2 * 3 * 6.0).reshape(2, 3, 6)
    s = MH.split_heads(x, 3)
    assert s.shape == (2, 3, 3, 2)
    assert torch.equal(s[:, 1], x[..., 2:4])  # head 1 = channels 2, 3
    assert torch.equal(MH.combine_heads(s), x)


def test_rope_inside_attention_equals_rotated_reference():
    from dlcore.scratch import positions as P

    torch.manual_seed(4)
    mha = _torch_mha(8, 2)
    p = MH.params_from_torch(mha)
    x = torch.randn(2, 5, 8, dtype=D)
    out = MH.multi_head_attention(x, x, x, p, 2, causal=True, rope=True)[0]

    def heads(w, bias):
        return F.linear(x, w, bias).reshape(2, 5, 2, 4).permute(0, 2, 1, 3)

    q, k, v = heads(p.w_q, p.b_q), heads(p.w_k, p.b_k), heads(p.w_v, p.b_v)
    q, k = P.apply_rope(q), P.apply_rope(k)
    o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    ref = F.linear(o.permute(0, 2, 1, 3).reshape(2, 5, 8), p.w_o, p.b_o)
    torch.testing.assert_close(out, ref, **TOL)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="num_heads"):
        MH.MultiHeadAttention(10, 3)
    p = MH.params_from_torch(_torch_mha(4, 2))
    x = torch.randn(2, 3, 4, dtype=D)
    with pytest.raises(ValueError, match="key_mask"):
        MH.multi_head_attention(x, x, x, p, 2, key_mask=torch.ones(2, 3))
    with pytest.raises(ValueError, match="key_mask"):
        MH.multi_head_attention(x, x, x, p, 2, key_mask=torch.ones(3, 2).bool())
    with pytest.raises(ValueError, match="divisible"):
        MH.multi_head_attention(x, x, x, p, 3)
