"""The NumPy layers of chapter I.3 against torch.autograd: values and gradients,
float64. Extreme and degenerate inputs: test_scratch_edges_regression_layers.py."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlcore.scratch import layers as L

rng = np.random.default_rng(0)


def _backward_matches(layer, torch_fn, x: np.ndarray) -> None:
    """layer.forward/backward vs torch_fn and autograd, for a random upstream
    gradient."""
    out = layer.forward(x)
    dout = rng.normal(size=out.shape)
    dx = layer.backward(dout)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch_fn(xt)
    yt.backward(torch.tensor(dout))
    torch.testing.assert_close(torch.tensor(out), yt.detach())
    torch.testing.assert_close(torch.tensor(dx), xt.grad)


@pytest.mark.parametrize(
    "layer, torch_fn",
    [
        (L.ReLU(), torch.relu),
        (L.LeakyReLU(0.1), lambda x: F.leaky_relu(x, 0.1)),
        (L.Sigmoid(), torch.sigmoid),
        (L.Tanh(), torch.tanh),
    ],
)
def test_activation_layers_match_autograd(layer, torch_fn):
    _backward_matches(layer, torch_fn, rng.normal(size=(8, 5)) * 3)


def test_sigmoid_does_not_overflow():
    with np.errstate(over="raise"):
        y = L.Sigmoid().forward(np.array([[-1000.0, 0.0, 1000.0]]))
    np.testing.assert_allclose(y, [[0.0, 0.5, 1.0]])


def test_affine_matches_autograd():
    x, W, b = rng.normal(size=(6, 4)), rng.normal(size=(4, 3)), rng.normal(size=3)
    layer = L.Affine(W, b)
    Wt, bt = torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True)
    _backward_matches(layer, lambda xt: xt @ Wt + bt, x)
    torch.testing.assert_close(torch.tensor(layer.dW), Wt.grad)
    torch.testing.assert_close(torch.tensor(layer.db), bt.grad)
    assert layer.dW.shape == W.shape and layer.db.shape == b.shape


def test_dropout_matches_masked_autograd_and_is_identity_in_eval():
    """Nothing is read from the layer: the kept units come from the zeros of its output
    (x has none), the scale must be 1/(1 − p) for the p we asked for, the drop rate p
    within 5 binomial standard deviations. (More p, incl. 0 and 1, and a proof that
    this check fails for a wrong scale or rate: the edges test file.)"""
    p = 0.3
    layer = L.Dropout(p, np.random.default_rng(1))
    x = rng.uniform(0.5, 2.0, size=(50, 40))
    out = layer.forward(x)
    kept = out != 0
    np.testing.assert_allclose(out[kept], x[kept] / (1 - p), rtol=1e-12)
    assert abs((~kept).mean() - p) < 5 * np.sqrt(p * (1 - p) / x.size)
    dout = rng.normal(size=out.shape)
    xt = torch.tensor(x, requires_grad=True)
    (xt * torch.tensor(kept) / (1 - p)).backward(torch.tensor(dout))
    torch.testing.assert_close(torch.tensor(layer.backward(dout)), xt.grad)
    layer.training = False
    np.testing.assert_array_equal(layer.forward(x), x)


def test_softmax_with_loss_matches_cross_entropy_even_for_huge_logits():
    z, t = rng.normal(size=(16, 10)) * 100, rng.integers(0, 10, 16)
    layer = L.SoftmaxWithLoss()
    loss = layer.forward(z, t)
    dz = layer.backward()
    zt = torch.tensor(z, requires_grad=True)
    lt = F.cross_entropy(zt, torch.tensor(t))
    lt.backward()
    assert np.isfinite(loss)
    torch.testing.assert_close(torch.tensor(loss, dtype=torch.float64), lt.detach())
    torch.testing.assert_close(torch.tensor(dz), zt.grad)
    np.testing.assert_allclose(L.softmax(z).sum(1), 1.0)


def test_mse_loss_matches_autograd():
    y, t = rng.normal(size=(7, 2)), rng.normal(size=(7, 2))
    layer = L.MSELoss()
    loss = layer.forward(y, t)
    yt = torch.tensor(y, requires_grad=True)
    lt = F.mse_loss(yt, torch.tensor(t))
    lt.backward()
    assert abs(loss - lt.item()) < 1e-12
    torch.testing.assert_close(torch.tensor(layer.backward()), yt.grad)


def _torch_forward(net: L.MLP, x: np.ndarray, act) -> tuple[dict, torch.Tensor]:
    params = {k: torch.tensor(v, requires_grad=True) for k, v in net.params.items()}
    h = torch.tensor(x)
    n = len(params) // 2
    for i in range(1, n + 1):
        h = h @ params[f"W{i}"] + params[f"b{i}"]
        if i < n:
            h = act(h)
    return params, h


@pytest.mark.parametrize(
    "activation, act",
    [("relu", torch.relu), ("tanh", torch.tanh), ("sigmoid", torch.sigmoid)],
)
def test_mlp_parameter_gradients_match_autograd(activation, act):
    net = L.MLP([5, 7, 6, 3], activation=activation, seed=3)
    x, t = rng.normal(size=(9, 5)), rng.integers(0, 3, 9)
    loss, grads = net.gradient(x, t)
    params, logits = _torch_forward(net, x, act)
    lt = F.cross_entropy(logits, torch.tensor(t))
    lt.backward()
    assert abs(loss - lt.item()) < 1e-12
    assert grads.keys() == net.params.keys()
    for k, p in params.items():
        torch.testing.assert_close(
            torch.tensor(grads[k]), p.grad, msg=f"gradient of {k}"
        )


def test_two_layer_net_mse_and_predict_shapes():
    net = L.TwoLayerNet(4, 8, 3, seed=0)
    x = rng.normal(size=(10, 4))
    assert net.predict(x).shape == (10, 3)
    assert 0.0 <= net.accuracy(x, rng.integers(0, 3, 10)) <= 1.0
    reg = L.MLP([1, 16, 1], activation="tanh", loss="mse")
    xs, ys = rng.normal(size=(12, 1)), rng.normal(size=(12, 1))
    _, grads = reg.gradient(xs, ys)
    params, out = _torch_forward(reg, xs, torch.tanh)
    F.mse_loss(out, torch.tensor(ys)).backward()
    for k, p in params.items():
        torch.testing.assert_close(torch.tensor(grads[k]), p.grad)


@pytest.mark.parametrize(
    "make_ours, make_torch",
    [
        (lambda: L.SGD(0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
        (
            lambda: L.SGD(0.1, momentum=0.9),
            lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
        ),
        (lambda: L.Adam(0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    ],
)
def test_optimisers_match_torch_over_several_steps(make_ours, make_torch):
    params = {"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}
    tparams = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    ours, theirs = make_ours(), make_torch(list(tparams.values()))
    for _ in range(5):
        grads = {k: rng.normal(size=v.shape) for k, v in params.items()}
        ours.update(params, grads)
        for k, p in tparams.items():
            p.grad = torch.tensor(grads[k])
        theirs.step()
    for k in params:
        torch.testing.assert_close(torch.tensor(params[k]), tparams[k].detach())


def test_training_reduces_the_loss_on_a_tiny_problem():
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    t = np.array([0, 1, 1, 0])  # XOR: needs the hidden layer
    net, opt = L.MLP([2, 8, 2], activation="tanh", seed=0), L.Adam(0.05)
    first = net.loss(x, t)
    for _ in range(300):
        _, grads = net.gradient(x, t)
        opt.update(net.params, grads)
    assert net.loss(x, t) < 0.05 * first
    assert net.accuracy(x, t) == 1.0


_TORCH_ACTS = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.01),
    "gelu": F.gelu,
    "silu": F.silu,
    "softplus": F.softplus,
}


@pytest.mark.parametrize("name", sorted(L.ACTIVATIONS))
def test_gallery_derivatives_match_autograd(name):
    f, df = L.ACTIVATIONS[name]
    x = np.linspace(-6, 6, 101) + 1e-3  # avoid the kink of relu at exactly 0
    xt = torch.tensor(x, requires_grad=True)
    yt = _TORCH_ACTS[name](xt)
    yt.sum().backward()
    torch.testing.assert_close(torch.tensor(f(x)), yt.detach())
    torch.testing.assert_close(torch.tensor(df(x)), xt.grad)
