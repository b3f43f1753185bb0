"""The modern-GPT pieces from scratch against PyTorch: rms_norm vs F.rms_norm and
nn.RMSNorm, silu vs F.silu, swiglu vs three nn.Linear layers, grouped-query attention
vs F.scaled_dot_product_attention(enable_gqa=True); values and gradients in float64,
plus zeros, huge inputs, size-1 dims, end-aligned causal masks and shape errors."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlcore.scratch import gpt as G

D = torch.float64
TOL = dict(rtol=1e-10, atol=1e-12)


def _grads(out, leaves, upstream):
    return torch.autograd.grad(out, leaves, upstream)


def _assert_same_grads(out, ref, leaves, **tol):
    upstream = torch.randn_like(ref)
    for a, r in zip(_grads(out, leaves, upstream), _grads(ref, leaves, upstream)):
        torch.testing.assert_close(a, r, **(tol or TOL))


# ---------------------------------------------------------------- rms_norm


@pytest.mark.parametrize("shape", [(2, 5, 8), (7, 3), (4,)])
@pytest.mark.parametrize("eps", [1e-5, 1e-2])
def test_rms_norm_equals_torch_values_and_grads(shape, eps):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=D, requires_grad=True)
    w = torch.randn(shape[-1], dtype=D, requires_grad=True)
    out = G.rms_norm(x, w, eps)
    ref = F.rms_norm(x, (shape[-1],), w, eps)
    torch.testing.assert_close(out, ref, **TOL)
    _assert_same_grads(out, ref, [x, w])


def test_rms_norm_equals_nn_rmsnorm_module():
    torch.manual_seed(1)
    mod = nn.RMSNorm(6, eps=1e-5, dtype=D)
    with torch.no_grad():
        mod.weight.normal_()  # torch starts at ones: make the weight count
    x = torch.randn(3, 4, 6, dtype=D, requires_grad=True)
    ref = mod(x)
    out = G.rms_norm(x, mod.weight, 1e-5)
    torch.testing.assert_close(out, ref, **TOL)
    _assert_same_grads(out, ref, [x, mod.weight])


def test_rms_norm_zero_row_gives_zero_and_finite_grads():
    torch.manual_seed(2)
    x = torch.randn(3, 5, dtype=D)
    x[1] = 0.0
    x.requires_grad_(True)
    w = torch.randn(5, dtype=D, requires_grad=True)
    out = G.rms_norm(x, w)
    assert torch.equal(out[1].detach(), torch.zeros(5, dtype=D))
    ref = F.rms_norm(x, (5,), w, 1e-5)
    upstream = torch.randn_like(ref)
    g_out = _grads(out, [x, w], upstream)
    assert all(torch.isfinite(g).all() for g in g_out)
    for a, r in zip(g_out, _grads(ref, [x, w], upstream)):
        torch.testing.assert_close(a, r, **TOL)


def test_rms_norm_large_inputs_float32_no_overflow():
    torch.manual_seed(3)
    x = 1e6 * torch.randn(4, 16)  # x² ~ 1e12: fine in float32
    w = torch.randn(16)
    out = G.rms_norm(x, w)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out, F.rms_norm(x, (16,), w, 1e-5))
    exact = F.rms_norm(x.double(), (16,), w.double(), 1e-5)
    torch.testing.assert_close(out.double(), exact, rtol=1e-5, atol=1e-5)
    assert out.abs().max() < 5 * w.abs().max()  # normalised: O(1) per weight


def test_rms_norm_size_one_last_dim():
    x = torch.tensor([[3.0], [-0.5], [0.0]], dtype=D, requires_grad=True)
    w = torch.tensor([2.0], dtype=D, requires_grad=True)
    out = G.rms_norm(x, w, 1e-5)
    ref = F.rms_norm(x, (1,), w, 1e-5)
    torch.testing.assert_close(out, ref, **TOL)
    expected = x.detach() / torch.sqrt(x.detach() ** 2 + 1e-5) * 2.0  # ≈ 2 sign(x)
    torch.testing.assert_close(out.detach(), expected, **TOL)
    _assert_same_grads(out, ref, [x, w])


# ---------------------------------------------------------------- silu


def test_silu_equals_f_silu_over_wide_range_float32():
    x = torch.cat([torch.linspace(-1000, 1000, 4001), torch.tensor([-1e4, 1e4])])
    out = G.silu(x)
    assert not torch.isnan(out).any() and torch.isfinite(out).all()
    torch.testing.assert_close(out, F.silu(x))
    assert out[-2] == 0.0 and out[-1] == 1e4  # the two saturated tails


def test_silu_grads_float64_including_tails():
    x = torch.cat(
        [torch.linspace(-50, 50, 201, dtype=D), torch.tensor([-1e4, 1e4], dtype=D)]
    ).requires_grad_(True)
    out, ref = G.silu(x), F.silu(x)
    torch.testing.assert_close(out, ref, **TOL)
    upstream = torch.randn_like(ref)
    (g_out,), (g_ref,) = _grads(out, [x], upstream), _grads(ref, [x], upstream)
    assert torch.isfinite(g_out).all()
    torch.testing.assert_close(g_out, g_ref, **TOL)
    # and against the closed form σ(x)(1 + x(1 − σ(x)))
    s = torch.sigmoid(x.detach())
    torch.testing.assert_close(g_out, upstream * s * (1 + x.detach() * (1 - s)), **TOL)


# ---------------------------------------------------------------- swiglu


class _TorchSwiGLU(nn.Module):
    """The reference: three bias-free nn.Linear layers and F.silu."""

    def __init__(self, c: int, h: int):
        super().__init__()
        self.gate = nn.Linear(c, h, bias=False, dtype=D)
        self.up = nn.Linear(c, h, bias=False, dtype=D)
        self.down = nn.Linear(h, c, bias=False, dtype=D)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


@pytest.mark.parametrize("shape,h", [((2, 5, 8), 12), ((3, 4), 1), ((1, 1, 1), 3)])
def test_swiglu_equals_linear_layers_values_and_grads(shape, h):
    torch.manual_seed(4)
    ref_mod = _TorchSwiGLU(shape[-1], h)
    x = torch.randn(shape, dtype=D, requires_grad=True)
    ref = ref_mod(x)
    g, u, d = ref_mod.gate.weight, ref_mod.up.weight, ref_mod.down.weight
    out = G.swiglu(x, g, u, d)
    torch.testing.assert_close(out, ref, **TOL)
    _assert_same_grads(out, ref, [x, g, u, d])


def test_swiglu_gate_and_up_are_not_interchangeable():
    torch.manual_seed(5)
    ref_mod = _TorchSwiGLU(4, 6)
    x = torch.randn(3, 4, dtype=D)
    w = ref_mod.gate.weight, ref_mod.up.weight, ref_mod.down.weight
    swapped = G.swiglu(x, w[1], w[0], w[2])
    assert not torch.allclose(swapped, ref_mod(x))  # silu sits on the gate only


# ---------------------------------------------------------------- attention


def _qkv(b, h_q, h_kv, t, s, d, seed=0, scale=1.0):
    torch.manual_seed(seed)
    q = (scale * torch.randn(b, h_q, t, d, dtype=D)).requires_grad_(True)
    k = (scale * torch.randn(b, h_kv, s, d, dtype=D)).requires_grad_(True)
    v = torch.randn(b, h_kv, s, d, dtype=D, requires_grad=True)
    return q, k, v


def _sdpa(q, k, v, causal):
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)


@pytest.mark.parametrize("h_q,h_kv", [(4, 4), (4, 2), (4, 1)])
@pytest.mark.parametrize("causal", [True, False])
def test_gqa_equals_sdpa_values_and_grads(h_q, h_kv, causal):
    q, k, v = _qkv(2, h_q, h_kv, 6, 6, 8)
    out = G.grouped_query_attention(q, k, v, causal=causal)
    ref = _sdpa(q, k, v, causal)
    assert out.shape == (2, h_q, 6, 8)
    torch.testing.assert_close(out, ref, **TOL)
    _assert_same_grads(out, ref, [q, k, v])


@pytest.mark.parametrize("h_q,h_kv", [(4, 2), (6, 3), (4, 1)])
def test_gqa_query_head_h_reads_kv_head_h_over_group(h_q, h_kv):
    """The head convention on its own: query head h against kv head h // (Hq/Hkv)
    in plain single-head attention (also what SDPA's enable_gqa does, above)."""
    q, k, v = _qkv(1, h_q, h_kv, 3, 5, 4, seed=6)
    out = G.grouped_query_attention(q, k, v, causal=False)
    groups = h_q // h_kv
    for h in range(h_q):
        kh, vh = k[:, h // groups], v[:, h // groups]
        w = torch.softmax(q[:, h] @ kh.transpose(-1, -2) / math.sqrt(4), dim=-1)
        torch.testing.assert_close(out[:, h], w @ vh, **TOL)


def test_repeat_kv_equals_repeat_interleave():
    x = torch.randn(2, 3, 4, 5)
    torch.testing.assert_close(G.repeat_kv(x, 2), x.repeat_interleave(2, dim=1))
    assert torch.equal(G.repeat_kv(x, 1), x)


@pytest.mark.parametrize("h_q,h_kv", [(4, 4), (4, 2), (4, 1)])
def test_gqa_one_query_sees_all_cached_keys(h_q, h_kv):
    q, k, v = _qkv(2, h_q, h_kv, 1, 7, 8, seed=7)
    out = G.grouped_query_attention(q, k, v, causal=True)
    ref = _sdpa(q, k, v, causal=False)  # the last position sees every key
    torch.testing.assert_close(out, ref, **TOL)
    _assert_same_grads(out, ref, [q, k, v])


@pytest.mark.parametrize("t", [1, 3, 6])
@pytest.mark.parametrize("h_q,h_kv", [(4, 2), (2, 1)])
def test_gqa_causal_queries_align_to_the_end_of_the_keys(t, h_q, h_kv):
    """T < S queries = the last T rows of causal attention over all S positions."""
    s = 6
    q_all, k, v = _qkv(2, h_q, h_kv, s, s, 4, seed=8)
    q = q_all[:, :, s - t :]
    out = G.grouped_query_attention(q, k, v, causal=True)
    ref = _sdpa(q_all, k, v, causal=True)[:, :, s - t :]
    torch.testing.assert_close(out, ref, **TOL)
    _assert_same_grads(out, ref, [q_all, k, v])


def test_gqa_end_alignment_differs_from_sdpa_top_left():
    """SDPA is_causal=True aligns top-left when T != S; ours does not."""
    q, k, v = _qkv(1, 2, 1, 2, 5, 4, seed=9)
    out = G.grouped_query_attention(q, k, v, causal=True)
    assert not torch.allclose(out, _sdpa(q, k, v, causal=True))


def test_gqa_size_one_dims():
    q, k, v = _qkv(1, 1, 1, 1, 1, 2, seed=10)
    for causal in (True, False):
        out = G.grouped_query_attention(q, k, v, causal=causal)
        ref = _sdpa(q, k, v, causal)
        torch.testing.assert_close(out, ref, **TOL)
        torch.testing.assert_close(out.detach(), v.detach(), **TOL)  # one key
        _assert_same_grads(out, ref, [q, k, v])


def test_gqa_huge_scores_stay_finite():
    q, k, v = _qkv(2, 4, 2, 5, 5, 8, seed=11, scale=100.0)  # scores ~ 1e4
    out = G.grouped_query_attention(q, k, v, causal=True)
    ref = _sdpa(q, k, v, causal=True)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, **TOL)
    _assert_same_grads(out, ref, [q, k, v], rtol=1e-8, atol=1e-9)


# ---------------------------------------------------------------- errors


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="multiple of the number of kv heads"):
        G.grouped_query_attention(*_qkv(1, 3, 2, 4, 4, 8))
    q, k, v = _qkv(2, 4, 2, 4, 4, 8)
    with pytest.raises(ValueError, match="agree in B and D"):
        G.grouped_query_attention(q, k[..., :4], v[..., :4])
    with pytest.raises(ValueError, match="agree in B and D"):
        G.grouped_query_attention(q[:1], k, v)
    with pytest.raises(ValueError, match="k and v"):
        G.grouped_query_attention(q, k, v[:, :, :3])
    with pytest.raises(ValueError, match=r"q must be \(B, Hq, T, D\)"):
        G.grouped_query_attention(q[0], k, v)
    with pytest.raises(ValueError, match="T <= S"):
        G.grouped_query_attention(q, k[:, :, :2], v[:, :, :2], causal=True)
    G.grouped_query_attention(q, k[:, :, :2], v[:, :, :2], causal=False)  # allowed
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="weight"):
        G.rms_norm(x, torch.ones(5))
    with pytest.raises(ValueError, match="eps"):
        G.rms_norm(x, torch.ones(4), eps=-1.0)
    w = torch.randn(6, 4)
    with pytest.raises(ValueError, match="w_gate"):
        G.swiglu(x, torch.randn(6, 5), w, w.T)
    with pytest.raises(ValueError, match="w_up"):
        G.swiglu(x, w, torch.randn(5, 4), w.T)
    with pytest.raises(ValueError, match="w_down"):
        G.swiglu(x, w, w, w)
