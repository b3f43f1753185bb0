"""The from-scratch autograd engine equals torch.autograd, values and gradients, in
float64 (extreme inputs and bad arguments: test_scratch_autodiff_edges.py)."""

from collections import Counter

import numpy as np
import pytest
import torch

from dlcore.scratch import autodiff as ad
from dlcore.scratch.autodiff import Tensor

TIGHT = dict(rtol=1e-10, atol=1e-12)


def _run_both(inputs, f, upstream):
    """Evaluate f on our engine and on torch, back-propagate `upstream`, return both."""
    ours = [Tensor(x.copy(), requires_grad=True) for x in inputs]
    theirs = [torch.tensor(x, requires_grad=True) for x in inputs]
    out, ref = f(*ours), f(*theirs)
    out.backward(upstream)
    ref.backward(torch.from_numpy(upstream))
    return out, ref, ours, theirs


def _assert_same(out, ref, ours, theirs):
    assert out.shape == tuple(ref.shape)
    torch.testing.assert_close(
        torch.from_numpy(np.asarray(out.data)), ref.detach(), **TIGHT
    )
    for a, b in zip(ours, theirs):
        # an input the expression never used has no gradient on either side
        assert (a.grad is None) == (b.grad is None)
        if a.grad is not None:
            torch.testing.assert_close(torch.from_numpy(a.grad), b.grad, **TIGHT)


@pytest.mark.parametrize("seed", range(8))
def test_random_expressions_match_torch(seed):
    rng = np.random.default_rng(seed)
    used = Counter()
    for _ in range(100):
        inputs, f, ops = ad.random_expression(
            rng, int(rng.integers(1, 5)), int(rng.integers(2, 16))
        )
        used.update(ops)
        shape = np.shape(f(*[Tensor(x) for x in inputs]).data)
        _assert_same(*_run_both(inputs, f, rng.normal(size=shape)))
    assert set(used) == set(ad.UNARY) | set(ad.BINARY) | {"sum", "mean", "transpose"}


@pytest.mark.parametrize("name", sorted(ad.UNARY))
def test_each_unary_op_alone(name):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 4))
    _assert_same(*_run_both([x], ad.UNARY[name], rng.normal(size=(3, 4))))


@pytest.mark.parametrize("name", sorted(ad.BINARY))
@pytest.mark.parametrize(
    "shapes", [((3, 4, 4), (4, 4)), ((4, 1), (1, 1, 4)), ((2, 1, 4), (4, 4))]
)
def test_each_binary_op_broadcasts(name, shapes):
    rng = np.random.default_rng(2)
    inputs = [rng.normal(size=s) for s in shapes]
    out_shape = (
        torch.broadcast_shapes(*shapes)
        if name != "matmul"
        else np.shape(np.ones(shapes[0]) @ np.ones(shapes[1]))
    )
    _assert_same(*_run_both(inputs, ad.BINARY[name], rng.normal(size=out_shape)))


@pytest.mark.parametrize(
    "axis, keepdims",
    [(None, False), (0, False), (1, True), ((0, 2), False), (-1, True)],
)
def test_reductions(axis, keepdims):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 4))
    for reduce in ("sum", "mean"):
        f = lambda t, r=reduce: getattr(t, r)(axis=axis, keepdims=keepdims)
        shape = np.shape(getattr(x, reduce)(axis=axis, keepdims=keepdims))
        _assert_same(*_run_both([x], f, rng.normal(size=shape)))


def test_unbroadcast_sums_over_copied_axes():
    g = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(
        ad.unbroadcast(g, (3, 1)), g.sum(axis=(0, 2))[:, None]
    )
    np.testing.assert_array_equal(ad.unbroadcast(g, ()), g.sum())
    np.testing.assert_array_equal(ad.unbroadcast(g, (2, 3, 4)), g)


def test_shared_node_accumulates_and_backward_overwrites():
    x = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    y = x * x + x.tanh() * x  # x used four times: the gradients of all paths add up
    y.sum().backward()
    expected = 2 * x.data + np.tanh(x.data) + x.data * (1 - np.tanh(x.data) ** 2)
    np.testing.assert_allclose(x.grad, expected, rtol=1e-14)
    y.sum().backward()  # a second call gives the same gradient, not twice it
    np.testing.assert_allclose(x.grad, expected, rtol=1e-14)


def test_constants_get_no_gradient_and_dtype_is_kept():
    w = Tensor(np.ones((3, 2), np.float32), requires_grad=True)
    x = Tensor(np.ones((4, 3), np.float32))
    loss = ((x @ w) * 2.0).sigmoid().mean()
    loss.backward()
    assert (
        x.grad is None and w.grad.dtype == np.float32 and loss.data.dtype == np.float32
    )


def test_numerical_gradient_agrees_with_backward():
    rng = np.random.default_rng(4)
    X, W1, W2 = (
        rng.normal(size=(5, 6)),
        rng.normal(size=(6, 4)),
        rng.normal(size=(4, 3)),
    )
    loss = lambda a, b: ((Tensor(X) @ a).tanh() @ b).sigmoid().mean()
    w1, w2 = Tensor(W1, requires_grad=True), Tensor(W2, requires_grad=True)
    loss(w1, w2).backward()
    numerical = ad.numerical_grad(
        lambda: float(loss(Tensor(W1), Tensor(W2)).data), [W1, W2], h=1e-5
    )
    for num, ana in zip(numerical, (w1.grad, w2.grad)):
        assert np.max(np.abs(num - ana)) < 1e-9 * np.max(np.abs(ana)) + 1e-12
    subset = ad.numerical_grad(
        lambda: float(loss(Tensor(W1), Tensor(W2)).data), [W1], indices=[[0, 5]]
    )
    assert np.count_nonzero(subset[0]) == 2  # only the chosen entries are computed


def test_graph_layers_are_topological():
    a, b = Tensor(np.ones((2, 2)), name="a"), Tensor(np.ones(2), name="b")
    out = ((a @ a) + b).relu().sum()
    layers = ad.graph_layers(out)
    names = {d: [n.name or n.op for n in nodes] for d, nodes in layers.items()}
    # a leaf sits just before the first op that reads it: b next to the add
    assert names == {0: ["a"], 1: ["matmul", "b"], 2: ["add"], 3: ["relu"], 4: ["sum"]}
