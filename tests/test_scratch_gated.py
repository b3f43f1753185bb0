"""Part III ch4's scratch LSTM and GRU against `nn.LSTM` / `nn.GRU` (float64): outputs,
final states and gradients (autograd through the scratch code vs autograd through
PyTorch's), for several layers, both directions, batch_first, length-1 sequences,
given initial states, unbatched input and no biases; the hand-derived cell backward
passes against autograd, with saturated gates; and the GRU's reset-gate placement."""

import pytest
import torch
from torch import nn

from dlcore.scratch import gated

D = torch.float64
TOL = dict(rtol=1e-10, atol=1e-12)


def _module(kind, d_in, hidden, **kw):
    torch.manual_seed(0)
    cls = nn.LSTM if kind == "lstm" else nn.GRU
    return cls(d_in, hidden, **kw).to(D)


def _both(kind, module, x, state, batch_first):
    params = gated.params_from_module(module)
    if kind == "lstm":
        ours = gated.lstm(x, params, state, batch_first=batch_first)
        theirs = module(x, state)
        flat = lambda out: (out[0], *out[1])  # noqa: E731
    else:
        ours = gated.gru(x, params, state, batch_first=batch_first)
        theirs = module(x, state)
        flat = lambda out: out  # noqa: E731
    return flat(ours), flat(theirs)


CASES = [  # (num_layers, bidirectional, batch_first, T, with initial state)
    (1, False, False, 7, False),
    (2, True, True, 5, True),  # the case the issue names
    (2, True, True, 1, True),  # length-1 sequence
    (3, False, False, 4, True),
    (2, True, False, 6, False),
]


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("layers, bidir, batch_first, T, with_state", CASES)
def test_matches_torch_values_and_gradients(
    kind, layers, bidir, batch_first, T, with_state
):
    B, d_in, H = 3, 4, 5
    module = _module(
        kind, d_in, H, num_layers=layers, bidirectional=bidir, batch_first=batch_first
    )
    g = torch.Generator().manual_seed(1)
    shape = (B, T, d_in) if batch_first else (T, B, d_in)
    x = torch.randn(shape, generator=g, dtype=D, requires_grad=True)
    n_states = layers * (2 if bidir else 1)
    state = None
    if with_state:
        h0 = torch.randn(n_states, B, H, generator=g, dtype=D, requires_grad=True)
        c0 = torch.randn(n_states, B, H, generator=g, dtype=D, requires_grad=True)
        state = (h0, c0) if kind == "lstm" else h0
    ours, theirs = _both(kind, module, x, state, batch_first)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, **TOL)
    # gradients of a random linear function of every output, w.r.t. everything
    weights = [torch.randn(t.shape, generator=g, dtype=D) for t in ours]
    leaves = [x, *module.parameters()]
    if with_state:
        leaves += [h0, c0] if kind == "lstm" else [h0]
    loss_ours = sum((w * t).sum() for w, t in zip(weights, ours))
    loss_theirs = sum((w * t).sum() for w, t in zip(weights, theirs))
    g_ours = torch.autograd.grad(loss_ours, leaves)
    g_theirs = torch.autograd.grad(loss_theirs, leaves)
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_unbatched_and_no_bias(kind):
    module = _module(kind, 3, 4, num_layers=2, bidirectional=True, bias=False)
    x = torch.randn(6, 3, dtype=D)  # (T, D): no batch dimension
    ours, theirs = _both(kind, module, x, None, False)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, **TOL)


def _cell_params(gates, d_in, H, scale, g):
    return gated.LayerParams(
        *(
            (scale * torch.randn(shape, generator=g, dtype=D)).requires_grad_()
            for shape in [(gates * H, d_in), (gates * H, H), (gates * H,), (gates * H,)]
        )
    )


@pytest.mark.parametrize("scale", [0.5, 30.0])  # 30: saturated gates, σ' and tanh' ≈ 0
def test_lstm_cell_backward_matches_autograd(scale):
    g = torch.Generator().manual_seed(2)
    B, d_in, H = 4, 3, 5
    p = _cell_params(4, d_in, H, scale, g)
    x, h, c = (
        torch.randn(B, n, generator=g, dtype=D, requires_grad=True)
        for n in (d_in, H, H)
    )
    h_new, c_new, cache = gated.lstm_cell(x, h, c, p)
    dh, dc = (
        torch.randn(B, H, generator=g, dtype=D),
        torch.randn(B, H, generator=g, dtype=D),
    )
    ours = gated.lstm_cell_backward(dh, dc, cache)
    leaves = [x, h, c, p.w_ih, p.w_hh, p.b_ih, p.b_hh]
    theirs = torch.autograd.grad((h_new * dh).sum() + (c_new * dc).sum(), leaves)
    for name, b in zip(["x", "h", "c", "w_ih", "w_hh", "b_ih", "b_hh"], theirs):
        torch.testing.assert_close(ours[name], b, **TOL, msg=f"∂L/∂{name}")
    if scale == 30.0:  # the extreme case is extreme: most gates are saturated
        assert ((cache["f"] < 1e-6) | (cache["f"] > 1 - 1e-6)).float().mean() >= 0.8


@pytest.mark.parametrize("scale", [0.5, 30.0])
def test_gru_cell_backward_matches_autograd(scale):
    g = torch.Generator().manual_seed(3)
    B, d_in, H = 4, 3, 5
    p = _cell_params(3, d_in, H, scale, g)
    x, h = (
        torch.randn(B, n, generator=g, dtype=D, requires_grad=True) for n in (d_in, H)
    )
    h_new, cache = gated.gru_cell(x, h, p)
    dh = torch.randn(B, H, generator=g, dtype=D)
    ours = gated.gru_cell_backward(dh, cache)
    leaves = [x, h, p.w_ih, p.w_hh, p.b_ih, p.b_hh]
    theirs = torch.autograd.grad((h_new * dh).sum(), leaves)
    for name, b in zip(["x", "h", "w_ih", "w_hh", "b_ih", "b_hh"], theirs):
        torch.testing.assert_close(ours[name], b, **TOL, msg=f"∂L/∂{name}")


def test_cell_backward_without_bias():
    g = torch.Generator().manual_seed(4)
    p = _cell_params(4, 3, 2, 1.0, g)
    p = gated.LayerParams(p.w_ih, p.w_hh)
    x, h, c = (torch.randn(2, n, generator=g, dtype=D) for n in (3, 2, 2))
    _, _, cache = gated.lstm_cell(x, h, c, p)
    grads = gated.lstm_cell_backward(
        torch.ones(2, 2, dtype=D), torch.zeros(2, 2, dtype=D), cache
    )
    assert grads["b_ih"] is None and grads["b_hh"] is None


def test_gru_reset_gate_after_the_matmul():
    """PyTorch's n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)) is not Cho et al.'s
    tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn): a scratch GRU written the Cho way would
    fail the comparison with nn.GRU."""
    module = _module("gru", 3, 4)
    x = torch.randn(5, 2, 3, dtype=D)
    p = gated.params_from_module(module)[0][0]
    h = torch.zeros(2, 4, dtype=D)
    for t in range(5):  # Cho et al.'s variant
        gi = x[t] @ p.w_ih.T + p.b_ih
        w_r, w_z, w_n = p.w_hh.chunk(3)
        b_r, b_z, b_n = p.b_hh.chunk(3)
        r = torch.sigmoid(gi[:, :4] + h @ w_r.T + b_r)
        z = torch.sigmoid(gi[:, 4:8] + h @ w_z.T + b_z)
        n = torch.tanh(gi[:, 8:] + (r * h) @ w_n.T + b_n)
        h = (1 - z) * n + z * h
    ours, ref = gated.gru(x, [[p]])[1], module(x)[1]
    torch.testing.assert_close(ours, ref, **TOL)
    assert (h - ref[0]).abs().max() > 1e-3


def test_errors():
    lstm = _module("lstm", 3, 4)
    params = gated.params_from_module(lstm)
    with pytest.raises(ValueError, match="features"):
        gated.lstm(torch.randn(2, 2, 5, dtype=D), params)
    with pytest.raises(ValueError, match="G = 4"):
        gated.gru(torch.randn(2, 2, 3, dtype=D), params)  # LSTM weights in a GRU
    with pytest.raises(ValueError, match=r"\(T, B, D\)"):
        gated.lstm(torch.randn(2, 2, 2, 3, dtype=D), params)
    with pytest.raises(TypeError, match="nn.LSTM or nn.GRU"):
        gated.params_from_module(nn.RNN(3, 4))
    with pytest.raises(ValueError, match="proj_size"):
        gated.params_from_module(nn.LSTM(3, 4, proj_size=2))


@pytest.mark.parametrize("T", [1, 6])
def test_lstm_bptt_by_hand_matches_autograd(T):
    g = torch.Generator().manual_seed(5)
    B, d_in, H = 3, 4, 5
    p = _cell_params(4, d_in, H, 1.0, g)
    x, h0, c0 = (
        torch.randn(*shape, generator=g, dtype=D, requires_grad=True)
        for shape in [(T, B, d_in), (B, H), (B, H)]
    )
    out, (h_n, c_n), caches = gated.lstm_layer(x, p, h0, c0)
    dout, dh_n, dc_n = (
        torch.randn(t.shape, generator=g, dtype=D) for t in (out, h_n, c_n)
    )
    ours = gated.lstm_layer_backward(dout, dh_n, dc_n, caches)
    loss = (out * dout).sum() + (h_n * dh_n).sum() + (c_n * dc_n).sum()
    leaves = [x, h0, c0, p.w_ih, p.w_hh, p.b_ih, p.b_hh]
    theirs = torch.autograd.grad(loss, leaves)
    for name, b in zip(["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"], theirs):
        torch.testing.assert_close(ours[name], b, **TOL, msg=f"∂L/∂{name}")
    # the layer is the first layer of gated.lstm with the same weights
    ref_out, (ref_h, ref_c) = gated.lstm(x, [[p]], (h0[None], c0[None]))
    torch.testing.assert_close(out, ref_out, **TOL)
    torch.testing.assert_close(c_n, ref_c[0], **TOL)
