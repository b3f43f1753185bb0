"""Edge cases of the from-scratch autograd engine against torch.autograd, in float64.

Extreme inputs (|x| up to 1000, where exp overflows and sigmoid's tails are tiny), exact
zeros (x**0, |x| and relu at x = 0), size-1 axes, dtype preservation, and arguments
checked at the public boundary with errors that name them. Tolerances are relative
(1e-13) with an absolute floor of 1e-300, so a tail value of 4e-18 returned as 0 fails.
"""

import numpy as np
import pytest
import torch

from dlcore.scratch import autodiff as ad
from dlcore.scratch.autodiff import Tensor

EXTREME = np.array(
    [-1000, -800, -700, -40, -1, -1e-300, -0.0, 0, 1e-300, 1, 40, 709, 800, 1000.0]
)
EDGE = dict(rtol=1e-13, atol=1e-300, equal_nan=True)

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's overflow


def _both(f, *arrays, upstream=None):
    """f on our engine and on torch (float64 leaves); back-propagate; return both."""
    ours = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, ref = f(*ours), f(*theirs)
    g = np.ones(out.shape) if upstream is None else upstream
    out.backward(g)
    ref.backward(torch.from_numpy(np.array(g)))
    return out, ref, ours, theirs


def _assert_same(out, ref, ours, theirs):
    assert out.shape == tuple(ref.shape)
    assert out.data.dtype == np.float64
    np.testing.assert_allclose(out.data, ref.detach().numpy(), **EDGE)
    for a, t in zip(ours, theirs):
        assert a.grad.dtype == np.float64 and a.grad.shape == a.shape
        np.testing.assert_allclose(a.grad, t.grad.numpy(), **EDGE)


ELEMENTWISE = {
    "exp": lambda a: a.exp(),
    "log": lambda a: a.log(),
    "tanh": lambda a: a.tanh(),
    "sigmoid": lambda a: a.sigmoid(),
    "relu": lambda a: a.relu(),
    "abs": lambda a: a.abs(),
    "neg": lambda a: -a,
    "log_sigmoid": lambda a: a.sigmoid().log(),  # -inf if sigmoid's tail is lost
    "one_minus_sigmoid": lambda a: 1.0 - a.sigmoid(),
    "sigmoid_of_neg": lambda a: (-a).sigmoid(),
    "rdiv": lambda a: 1.0 / a,
    "mul_self": lambda a: a * a,
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_ops_at_extreme_and_zero_inputs(name):
    _assert_same(*_both(ELEMENTWISE[name], EXTREME))


def test_sigmoid_tails_stay_finite_where_torch_does():
    x = np.array([-700.0, -100.0, -40.0, 40.0, 100.0, 700.0])
    out, ref, ours, theirs = _both(lambda a: a.sigmoid().log(), x)
    assert np.all(np.isfinite(out.data)) and np.all(np.isfinite(ours[0].grad))
    np.testing.assert_allclose(out.data[:3], x[:3], rtol=1e-12)  # log σ(x) ≈ x far left
    np.testing.assert_allclose(ours[0].grad[:3], 1.0, rtol=1e-12)  # d/dx log σ = 1 − σ
    _assert_same(out, ref, ours, theirs)


@pytest.mark.parametrize("p", [0, 1, 2, 3, 0.5, -1, -2, 2.5])
def test_pow_at_zero_and_extremes(p):
    # -0.0 is left out: for p = 0.5 torch's gradient there is -inf (rsqrt(-0)), NumPy's
    # power gives +inf (IEEE pow(-0, -0.5)); both are "infinite slope at 0".
    x = np.array([-1e300, -2.0, -1.0, -1e-300, 0.0, 1e-300, 0.5, 1.0, 1e300])
    _assert_same(*_both(lambda a: a**p, x))


def test_sigmoid_in_the_subnormal_range_is_finite_and_close_to_torch():
    x = np.array([-745.0, -740.0, -720.0])  # e^x is subnormal; torch rounds σ to 0
    out, ref, ours, theirs = _both(lambda a: a.sigmoid(), x)
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=0, atol=1e-300)
    assert np.all(out.data > 0)  # so log σ(x) is finite here (torch's is -inf)
    assert np.all(np.isfinite(Tensor(x).sigmoid().log().data))


def test_x_pow_0_at_0_is_1_with_gradient_0():
    out, ref, ours, theirs = _both(lambda a: a**0, np.zeros(3))
    np.testing.assert_array_equal(out.data, 1.0)
    np.testing.assert_array_equal(ours[0].grad, 0.0)  # not 0 · 0^(−1) = nan
    _assert_same(out, ref, ours, theirs)


@pytest.mark.parametrize("op", ["abs", "relu"])
def test_kinks_at_exact_zero_have_torch_gradient(op):
    x = np.array([-0.0, 0.0, 0.0])
    out, ref, ours, theirs = _both(lambda a: getattr(a, op)(), x)
    np.testing.assert_array_equal(ours[0].grad, 0.0)
    _assert_same(out, ref, ours, theirs)


@pytest.mark.parametrize(
    "shapes",
    [
        ((1,), ()),
        ((1, 1), (1,)),
        ((3, 1, 1), (1, 1, 4)),
        ((1,), (5,)),
        ((5, 1), (1,)),
        ((1, 1, 1), (2, 1, 3)),
    ],
)
@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
def test_binary_ops_on_size_one_axes(name, shapes):
    rng = np.random.default_rng(5)
    inputs = [rng.normal(size=s) for s in shapes]
    out_shape = np.broadcast_shapes(*shapes)
    upstream = rng.normal(size=out_shape)
    _assert_same(*_both(ad.BINARY[name], *inputs, upstream=upstream))


@pytest.mark.parametrize(
    "shapes",
    [((1, 1), (1, 1)), ((1, 3), (3, 1)), ((3, 1), (1, 3)), ((1, 2, 3), (4, 3, 2))],
)
def test_matmul_on_size_one_axes(shapes):
    rng = np.random.default_rng(6)
    a, b = (rng.normal(size=s) for s in shapes)
    upstream = rng.normal(size=np.shape(a @ b))
    _assert_same(*_both(lambda x, y: x @ y, a, b, upstream=upstream))


@pytest.mark.parametrize("reduce", ["sum", "mean"])
@pytest.mark.parametrize(
    "shape, axis, keepdims",
    [((1,), 0, False), ((1,), None, True), ((1, 1), (0, 1), False), ((3, 1), 1, True)],
)
def test_reductions_over_size_one_axes(reduce, shape, axis, keepdims):
    x = np.random.default_rng(7).normal(size=shape)
    f = lambda t: getattr(t, reduce)(axis, keepdims=keepdims)
    if axis is None:  # torch spells "all axes, keep them" differently
        f = lambda t: getattr(t, reduce)(tuple(range(t.ndim)), keepdims=True)
    _assert_same(*_both(f, x, upstream=np.ones(np.shape(f(Tensor(x)).data))))


def test_reshape_and_transpose_of_size_one_shapes():
    x = np.array([[3.0]])
    _assert_same(*_both(lambda t: t.reshape(()) * 2.0, x, upstream=np.array(1.5)))
    _assert_same(*_both(lambda t: t.transpose(0, 1), x, upstream=np.array([[2.0]])))
    _assert_same(*_both(lambda t: t.reshape(1, 1, 1), x, upstream=np.ones((1, 1, 1))))


def test_float32_stays_float32_through_every_op():
    x = Tensor(np.linspace(0.5, 2.0, 6, dtype=np.float32).reshape(2, 3), True)
    w = Tensor(np.ones((3, 2), np.float32), requires_grad=True)
    y = (
        (x @ w).sigmoid()
        + (x ** np.float64(2.0)).sum(axis=1, keepdims=True)  # a NumPy float64 exponent
        + (x.abs().log().tanh().exp().relu() / 3.0).mean(axis=1, keepdims=True)
        - 1
    )
    z = (y.T.reshape(-1) * np.float64(0.5)).mean()
    z.backward()
    for t in (y, z):
        assert t.data.dtype == np.float32, t.op
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32


def test_integer_and_bool_data_become_float64():
    assert Tensor([1, 2, 3]).data.dtype == np.float64
    assert Tensor(np.array([True, False])).data.dtype == np.float64


def test_numpy_array_on_the_left_gives_a_tensor():
    t = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    for out in (np.full(3, 2.0) * t, np.float64(2.0) - t, np.ones(3) / (t * t + 1.0)):
        assert isinstance(out, Tensor)
    (np.full(3, 2.0) * t).sum().backward()
    np.testing.assert_array_equal(t.grad, 2.0)


def test_backward_copies_the_upstream_gradient():
    t = Tensor(np.ones(2), requires_grad=True)
    out = t * 3.0
    g = np.array([1.0, 2.0])
    out.backward(g)
    g[:] = 100.0
    np.testing.assert_array_equal(out.grad, [1.0, 2.0])
    np.testing.assert_array_equal(t.grad, [3.0, 6.0])


# ---- arguments checked at the public boundary: each error names what is wrong ------
def test_tensor_data_is_checked():
    with pytest.raises(TypeError, match="data is already a Tensor"):
        Tensor(Tensor([1.0]))
    with pytest.raises(TypeError, match="data must be real numbers"):
        Tensor(np.array(["a", "b"]))
    with pytest.raises(TypeError, match="data must be real numbers"):
        Tensor(np.array([1 + 2j]))


def test_pow_exponent_is_checked():
    x = Tensor([1.0, 2.0])
    with pytest.raises(TypeError, match="exponent p"):
        x ** Tensor([2.0])
    with pytest.raises(TypeError, match="exponent p"):
        x**True


def test_matmul_shapes_are_checked():
    with pytest.raises(ValueError, match="ndim >= 2"):
        Tensor(np.ones(3)) @ Tensor(np.ones((3, 2)))
    with pytest.raises(ValueError, match="inner sizes differ"):
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((4, 2)))


def test_transpose_dims_are_checked():
    with pytest.raises(ValueError, match="dim0=-2"):
        _ = Tensor(np.ones(3)).T
    with pytest.raises(ValueError, match="dim1=5"):
        Tensor(np.ones((2, 3))).transpose(0, 5)


def test_backward_arguments_are_checked():
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(ValueError, match=r"grad has shape \(3, 1\)"):
        (x * 2.0).backward(np.ones((3, 1)))  # would broadcast to a wrong gradient
    with pytest.raises(RuntimeError, match="requires_grad"):
        (Tensor(np.ones(3)) * 2.0).backward()


def test_unbroadcast_refuses_shapes_that_do_not_match():
    with pytest.raises(ValueError, match="unbroadcast: grad of shape"):
        ad.unbroadcast(np.ones((2, 3)), (4,))


def test_numerical_grad_arguments_are_checked():
    p = np.ones((2, 3))
    f = lambda: float(p.sum())
    with pytest.raises(ValueError, match="step h must be > 0"):
        ad.numerical_grad(f, [p], h=0.0)
    with pytest.raises(ValueError, match="step h must be > 0"):
        ad.numerical_grad(f, [p], h=-1e-5)
    with pytest.raises(TypeError, match="params must be a list"):
        ad.numerical_grad(f, p)
    with pytest.raises(TypeError, match=r"params\[0\] must be a float ndarray"):
        ad.numerical_grad(f, [np.ones(3, dtype=int)])
    with pytest.raises(ValueError, match=r"params\[0\] must be C-contiguous"):
        ad.numerical_grad(f, [np.ones((3, 2)).T])
    with pytest.raises(ValueError, match="indices has 2 entries"):
        ad.numerical_grad(f, [p], indices=[[0], [1]])
    with pytest.raises(ValueError, match=r"indices\[0\] must lie in 0..5"):
        ad.numerical_grad(f, [p], indices=[[6]])


def test_numerical_grad_of_a_float32_array_is_float32():
    p = np.ones(3, np.float32)
    (g,) = ad.numerical_grad(
        lambda: float((p.astype(np.float64) ** 2).sum()), [p], 1e-2
    )
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, 2.0, rtol=1e-5)


def test_random_expression_arguments_are_checked():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="n_inputs=0"):
        ad.random_expression(rng, 0, 3)
    with pytest.raises(ValueError, match="n_ops=0"):
        ad.random_expression(rng, 2, 0)
