"""Part III ch. 3's NumPy RNN and hand-written BPTT against `torch.nn.RNN` in float64:
outputs, final states and the gradients of every parameter, of the inputs and of h0,
time-major and batch-first, one and two layers, length-1 sequences, saturated tanh;
the character LM against an nn.RNN + Linear + cross-entropy twin; sampling helpers."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlcore.scratch.rnn import (
    CharRNN,
    from_torch,
    global_norm,
    init_rnn,
    log_softmax,
    rnn_backward,
    rnn_forward,
    temperature_probs,
)

D64 = torch.float64
TIGHT = {"rtol": 1e-10, "atol": 1e-10}


def _torch_twin(layers, batch_first):
    """An nn.RNN holding our parameters: weight = Wᵀ, bias_ih = b, bias_hh = 0."""
    D, H = layers[0]["W_xh"].shape
    rnn = nn.RNN(D, H, num_layers=len(layers), batch_first=batch_first, dtype=D64)
    with torch.no_grad():
        for k, p in enumerate(layers):
            getattr(rnn, f"weight_ih_l{k}").copy_(torch.tensor(p["W_xh"].T))
            getattr(rnn, f"weight_hh_l{k}").copy_(torch.tensor(p["W_hh"].T))
            getattr(rnn, f"bias_ih_l{k}").copy_(torch.tensor(p["b"]))
            getattr(rnn, f"bias_hh_l{k}").zero_()
    return rnn


def _compare_with_torch(x, layers, h0, batch_first):
    out, h_n, cache = rnn_forward(x, layers, h0, batch_first=batch_first)
    rnn = _torch_twin(layers, batch_first)
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0, requires_grad=True)
    out_t, h_n_t = rnn(xt, h0t)
    torch.testing.assert_close(torch.tensor(out), out_t.detach(), **TIGHT)
    torch.testing.assert_close(torch.tensor(h_n), h_n_t.detach(), **TIGHT)
    rng = np.random.default_rng(1)
    g_out, g_hn = rng.normal(size=out.shape), rng.normal(size=h_n.shape)
    (out_t * torch.tensor(g_out)).sum().add(
        (h_n_t * torch.tensor(g_hn)).sum()
    ).backward()
    dx, dh0, grads = rnn_backward(g_out, g_hn, cache)
    torch.testing.assert_close(torch.tensor(dx), xt.grad, **TIGHT)
    torch.testing.assert_close(torch.tensor(dh0), h0t.grad, **TIGHT)
    for k, g in enumerate(grads):
        w_ih, w_hh = getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}")
        torch.testing.assert_close(torch.tensor(g["W_xh"].T), w_ih.grad, **TIGHT)
        torch.testing.assert_close(torch.tensor(g["W_hh"].T), w_hh.grad, **TIGHT)
        for bias in ("bias_ih", "bias_hh"):
            theirs = getattr(rnn, f"{bias}_l{k}").grad
            torch.testing.assert_close(torch.tensor(g["b"]), theirs, **TIGHT)
    return out, grads


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("T", [1, 7])
def test_rnn_matches_torch(batch_first, num_layers, T):
    rng = np.random.default_rng(0)
    B, D, H = 3, 4, 5  # D != H, B > 1: a transposed or unsummed gradient shows
    layers = init_rnn(D, H, num_layers, seed=T)
    x = rng.normal(size=(B, T, D) if batch_first else (T, B, D))
    h0 = rng.normal(size=(num_layers, B, H))
    _compare_with_torch(x, layers, h0, batch_first)


def test_rnn_matches_torch_when_tanh_saturates():
    rng = np.random.default_rng(2)
    T, B, D, H = 6, 2, 3, 4
    layers = init_rnn(D, H, 2, seed=0)
    layers[0]["W_xh"] *= 1000.0  # a naive (e^{2a} − 1)/(e^{2a} + 1) gives nan here
    layers[1]["W_hh"] *= 50.0
    x = rng.normal(size=(T, B, D))
    assert np.abs(x @ layers[0]["W_xh"]).max() > 400  # e^{2a} overflows float64
    h0 = rng.normal(size=(2, B, H))
    out, grads = _compare_with_torch(x, layers, h0, False)
    assert np.mean(np.abs(out) == 1.0) > 0.3  # many states exactly ±1: derivative 0
    assert all(np.isfinite(global_norm(g)) for g in grads)


def test_from_torch_reads_both_biases_and_transposes():
    torch.manual_seed(0)
    rnn = nn.RNN(3, 4, num_layers=2, dtype=D64)
    layers = from_torch(rnn)
    x = torch.randn(5, 2, 3, dtype=D64)
    out, h_n, _ = rnn_forward(x.numpy(), layers)
    out_t, h_n_t = rnn(x)
    torch.testing.assert_close(torch.tensor(out), out_t.detach(), **TIGHT)
    torch.testing.assert_close(torch.tensor(h_n), h_n_t.detach(), **TIGHT)
    with pytest.raises(ValueError, match="tanh"):
        from_torch(nn.RNN(3, 4, nonlinearity="relu"))


def test_zero_h0_default_and_state_grads():
    rng = np.random.default_rng(3)
    layers = init_rnn(2, 3, seed=1)
    x = rng.normal(size=(4, 2, 2))
    out, h_n, cache = rnn_forward(x, layers)  # h0 = None means zeros
    out0, _, _ = rnn_forward(x, layers, np.zeros((1, 2, 3)))
    np.testing.assert_array_equal(out, out0)
    g_hn = rng.normal(size=h_n.shape)
    _, dh0, _, deltas = rnn_backward(None, g_hn, cache, return_state_grads=True)
    assert deltas[0].shape == (5, 2, 3)
    np.testing.assert_array_equal(deltas[0][-1], g_hn[0])  # δ_T = ∂L/∂h_T
    np.testing.assert_array_equal(deltas[0][0], dh0[0])  # δ_0 = ∂L/∂h_0
    # each δ_t against autograd of <g, h_T> with respect to the state h_t
    h = torch.zeros(2, 3, dtype=D64, requires_grad=True)
    W_xh, W_hh, b = (torch.tensor(layers[0][k]) for k in ("W_xh", "W_hh", "b"))
    kept = []
    for t in range(4):
        h.retain_grad()
        kept.append(h)
        h = torch.tanh(torch.tensor(x[t]) @ W_xh + h @ W_hh + b)
    (h * torch.tensor(g_hn[0])).sum().backward()
    for t in range(4):
        torch.testing.assert_close(torch.tensor(deltas[0][t]), kept[t].grad, **TIGHT)


def test_shape_errors_name_the_argument():
    layers = init_rnn(2, 3)
    with pytest.raises(ValueError, match="h0"):
        rnn_forward(np.zeros((4, 2, 2)), layers, np.zeros((1, 5, 3)))
    with pytest.raises(ValueError, match="W_xh"):
        rnn_forward(np.zeros((4, 2, 7)), layers)
    with pytest.raises(ValueError, match="x must"):
        rnn_forward(np.zeros((0, 2, 2)), layers)
    _, _, cache = rnn_forward(np.zeros((4, 2, 2)), layers)
    with pytest.raises(ValueError, match="d_out"):
        rnn_backward(np.zeros((4, 2, 4)), None, cache)


def _char_rnn_torch(model: CharRNN, ids, targets, h0):
    V, H = model.vocab_size, model.hidden_size
    rnn = _torch_twin(model._rnn(), batch_first=True)
    head = nn.Linear(H, V, dtype=D64)
    with torch.no_grad():
        head.weight.copy_(torch.tensor(model.params["W_hy"].T))
        head.bias.copy_(torch.tensor(model.params["b_y"]))
    x = F.one_hot(torch.tensor(ids), V).double()
    out, h_n = rnn(x, torch.tensor(h0)[None])
    logits = head(out)
    loss = F.cross_entropy(logits.flatten(0, 1), torch.tensor(targets).flatten())
    loss.backward()
    grads = {
        "W_xh": rnn.weight_ih_l0.grad.T,
        "W_hh": rnn.weight_hh_l0.grad.T,
        "b": rnn.bias_ih_l0.grad,
        "W_hy": head.weight.grad.T,
        "b_y": head.bias.grad,
    }
    return loss.item(), grads, h_n[0].detach()


@pytest.mark.parametrize("T", [1, 9])
def test_char_rnn_loss_and_grads_match_torch(T):
    rng = np.random.default_rng(4)
    model = CharRNN(11, 6, seed=2)
    model.params["b_y"] = rng.normal(size=11)
    ids, targets = rng.integers(0, 11, (3, T)), rng.integers(0, 11, (3, T))
    h0 = rng.normal(size=(3, 6))
    loss, grads, h_T = model.loss_and_grads(ids, targets, h0)
    loss_t, grads_t, h_T_t = _char_rnn_torch(model, ids, targets, h0)
    assert abs(loss - loss_t) < 1e-12
    torch.testing.assert_close(torch.tensor(h_T), h_T_t, **TIGHT)
    assert set(grads) == set(model.params)
    for name, g in grads_t.items():
        torch.testing.assert_close(torch.tensor(grads[name]), g, **TIGHT, msg=name)
    logits, h1 = model.step(int(ids[0, 0]), h0[0])
    assert logits.shape == (11,) and h1.shape == (6,)


def test_char_rnn_rejects_out_of_range_ids():
    model = CharRNN(5, 3)
    with pytest.raises(ValueError, match="ids"):
        model.forward(np.array([[0, 5]]))


def test_temperature_probs():
    logits = np.array([[1000.0, 999.0, -1000.0], [0.0, 0.0, 0.0]])
    p = temperature_probs(logits, 1.0)  # a naive exp overflows here
    torch.testing.assert_close(torch.tensor(p), torch.softmax(torch.tensor(logits), -1))
    cold = temperature_probs(logits, 0.0)
    np.testing.assert_array_equal(cold, [[1, 0, 0], [1, 0, 0]])
    hot = temperature_probs(logits[:1], 1e9)
    np.testing.assert_allclose(hot, np.full((1, 3), 1 / 3), rtol=1e-5)
    tiny = temperature_probs(np.array([2.0, 1.0]), 1e-3)  # logits/τ = 2000, 1000
    np.testing.assert_allclose(tiny, [1.0, 0.0], atol=1e-300)
    with pytest.raises(ValueError, match="temperature"):
        temperature_probs(logits, -1.0)


def test_log_softmax_and_global_norm():
    z = np.array([[1e4, 0.0, -1e4]])
    torch.testing.assert_close(
        torch.tensor(log_softmax(z)), torch.log_softmax(torch.tensor(z), -1)
    )
    grads = [{"a": np.array([3.0]), "b": np.array([[4.0]])}, np.zeros(2)]
    assert global_norm(grads) == 5.0
    tensors = [torch.tensor([3.0]), torch.tensor([[4.0]])]
    assert global_norm({"a": np.array([3.0]), "b": np.array([[4.0]])}) == float(
        torch.linalg.vector_norm(torch.cat([t.flatten() for t in tensors]))
    )
