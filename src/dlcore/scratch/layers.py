"""Multilayer perceptrons in NumPy: layers with hand-written forward and backward.

Every layer caches what its backward pass needs during `forward` and, given the
upstream gradient `dout = ∂L/∂out`, returns `∂L/∂x` from `backward` (parameter layers
also store `dW`, `db`). Shapes: a batch of B examples with D features is `x: (B, D)`.
The code is dtype-agnostic: float64 in, float64 out for checking against
`torch.autograd`, float32 for training. Bad arguments raise an error that names the
argument (a `(B, 1)` output against `(B,)` targets, a label −1, a negative learning
rate, a dropout probability outside [0, 1]).

Chapter: Part I, 3 — Multilayer Perceptrons and Backpropagation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Array = np.ndarray

__all__ = [
    "Affine",
    "ReLU",
    "LeakyReLU",
    "Sigmoid",
    "Tanh",
    "Dropout",
    "SoftmaxWithLoss",
    "MSELoss",
    "softmax",
    "MLP",
    "TwoLayerNet",
    "SGD",
    "Adam",
    "ACTIVATIONS",
]


# ---------------------------------------------------------------- argument checks


def _number(value, name: str, low: float, high: float, *, open_high=False) -> None:
    """value must be a finite real number in [low, high] (or [low, high))."""
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(
        value, bool
    )
    ok = ok and math.isfinite(value) and low <= value
    ok = ok and (value < high if open_high else value <= high)
    if not ok:
        bracket = ")" if open_high else "]"
        raise ValueError(
            f"{name} must be a number in [{low}, {high}{bracket}, got {value!r}"
        )


def _cached(layer, attribute: str):
    value = getattr(layer, attribute, None)
    if value is None:
        raise RuntimeError(f"{type(layer).__name__}.backward called before forward")
    return value


def _check_dout(dout: Array, shape: tuple, layer) -> None:
    if np.shape(dout) != shape:
        raise ValueError(
            f"{type(layer).__name__}.backward: dout must have the output's shape "
            f"{shape}, got {np.shape(dout)}"
        )


def _check_labels(z: Array, t: Array, layer) -> None:
    """z: (B, K) scores; t: (B,) integer class indices in [0, K)."""
    name = type(layer).__name__
    if z.ndim != 2:
        raise ValueError(f"{name}: scores z must have shape (B, K), got {z.shape}")
    t = np.asarray(t)
    if not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"{name}: t must hold integer class indices, got {t.dtype}")
    if t.shape != (z.shape[0],):
        raise ValueError(
            f"{name}: t must have shape ({z.shape[0]},) to match z {z.shape}, got "
            f"{t.shape}"
        )
    if t.size and (t.min() < 0 or t.max() >= z.shape[1]):
        raise ValueError(
            f"{name}: t (class indices) must lie in [0, {z.shape[1]}), got values "
            f"from {t.min()} to {t.max()}"
        )


# ---------------------------------------------------------------- layers


class Affine:
    """y = x W + b.  x: (B, D), W: (D, H), b: (H,) -> y: (B, H).

    Backward, with G = ∂L/∂y of shape (B, H):
    ∂L/∂x = G Wᵀ (B, D),  ∂L/∂W = xᵀ G (D, H),  ∂L/∂b = Σ_batch G (H,).
    """

    def __init__(self, W: Array, b: Array):
        if np.ndim(W) != 2:
            raise ValueError(f"Affine: W must have shape (D, H), got {np.shape(W)}")
        if np.shape(b) != (W.shape[1],):
            raise ValueError(
                f"Affine: b must have shape ({W.shape[1]},) to match W {W.shape}, "
                f"got {np.shape(b)}"
            )
        self.W, self.b = W, b
        self.x: Array | None = None
        self.dW: Array | None = None
        self.db: Array | None = None

    def forward(self, x: Array) -> Array:
        if np.ndim(x) != 2 or x.shape[1] != self.W.shape[0]:
            raise ValueError(
                f"Affine: x must have shape (B, {self.W.shape[0]}), got {np.shape(x)}"
            )
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout: Array) -> Array:
        x = _cached(self, "x")
        _check_dout(dout, (x.shape[0], self.W.shape[1]), self)
        self.dW = x.T @ dout
        self.db = dout.sum(axis=0)  # b is broadcast over the batch: its gradients add
        return dout @ self.W.T


class ReLU:
    """y = max(x, 0), elementwise. Backward: ∂L/∂x = G ⊙ [x > 0] (the gradient at 0 is
    taken as 0, as in PyTorch)."""

    def forward(self, x: Array) -> Array:
        self.mask = x > 0
        return x * self.mask

    def backward(self, dout: Array) -> Array:
        mask = _cached(self, "mask")
        _check_dout(dout, mask.shape, self)
        return dout * mask


class LeakyReLU:
    """y = x if x > 0 else slope·x. Backward: ∂L/∂x = G ⊙ (1 if x > 0 else slope); at
    x = 0 the slope, as in PyTorch."""

    def __init__(self, slope: float = 0.01):
        _number(slope, "slope", -math.inf, math.inf, open_high=True)
        self.slope = slope

    def forward(self, x: Array) -> Array:
        self.mask = x > 0
        return np.where(self.mask, x, self.slope * x)

    def backward(self, dout: Array) -> Array:
        mask = _cached(self, "mask")
        _check_dout(dout, mask.shape, self)
        return np.where(mask, dout, self.slope * dout)


class Sigmoid:
    """y = 1 / (1 + e^{-x}). Backward: ∂L/∂x = G ⊙ y (1 − y), from the cached output."""

    def forward(self, x: Array) -> Array:
        # Two branches so that exp never overflows: for x < 0 use e^x / (1 + e^x).
        e = np.exp(-np.abs(x))
        self.out = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
        return self.out

    def backward(self, dout: Array) -> Array:
        out = _cached(self, "out")
        _check_dout(dout, out.shape, self)
        return dout * out * (1 - out)


class Tanh:
    """y = tanh(x). Backward: ∂L/∂x = G ⊙ (1 − y²)."""

    def forward(self, x: Array) -> Array:
        self.out = np.tanh(x)
        return self.out

    def backward(self, dout: Array) -> Array:
        out = _cached(self, "out")
        _check_dout(dout, out.shape, self)
        return dout * (1 - out**2)


class Dropout:
    """Inverted dropout: in training, y = x ⊙ m / (1 − p) with m ~ Bernoulli(1 − p)
    (each unit is dropped with probability p), so that the expected activation is
    unchanged and evaluation needs no rescaling. Backward: G ⊙ m / (1 − p). p = 0 is
    the identity; p = 1 drops everything (output and gradient 0), as
    `torch.nn.functional.dropout` does."""

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None):
        _number(p, "p (the dropout probability)", 0, 1)
        self.p, self.rng = p, rng or np.random.default_rng()
        self.training = True

    def forward(self, x: Array) -> Array:
        if not self.training or self.p == 0:
            self.scale = np.ones_like(x)
        elif self.p == 1:
            self.scale = np.zeros_like(x)
        else:
            keep = self.rng.random(x.shape) >= self.p  # True with probability 1 − p
            self.scale = keep.astype(x.dtype) / (1 - self.p)
        return x * self.scale

    def backward(self, dout: Array) -> Array:
        scale = _cached(self, "scale")
        _check_dout(dout, scale.shape, self)
        return dout * scale


def softmax(z: Array) -> Array:
    """Softmax over the last axis, stable for large logits. (..., K) -> (..., K), each
    row sums to 1."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))  # the shift changes only overflow
    return e / e.sum(axis=-1, keepdims=True)


class SoftmaxWithLoss:
    """Mean cross-entropy of softmax(z) against integer labels. z: (B, K), t: (B,)
    in [0, K) -> scalar.

    L = (1/B) Σ_i [log Σ_k e^{z_ik} − z_i,t_i]; backward: ∂L/∂z = (softmax(z) −
    onehot(t)) / B.
    """

    def forward(self, z: Array, t: Array) -> float:
        _check_labels(z, t, self)
        m = z.max(axis=1, keepdims=True)
        log_sum_exp = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
        self.p, self.t = softmax(z), t
        return float(np.mean(log_sum_exp - z[np.arange(len(t)), t]))

    def backward(self, dout: float = 1.0) -> Array:
        grad = _cached(self, "p").copy()
        grad[np.arange(len(self.t)), self.t] -= 1
        return grad * (dout / len(self.t))


class MSELoss:
    """Mean squared error. y: (B, K), t: (B, K), the same shape -> scalar; backward:
    ∂L/∂y = 2 (y − t) / (B·K)."""

    def forward(self, y: Array, t: Array) -> float:
        if np.shape(y) != np.shape(t):
            raise ValueError(
                f"MSELoss: y and t must have the same shape, got {np.shape(y)} and "
                f"{np.shape(t)} (broadcasting them would compare every pair)"
            )
        self.diff = y - t
        return float(np.mean(self.diff**2))

    def backward(self, dout: float = 1.0) -> Array:
        diff = _cached(self, "diff")
        return (2 * dout / diff.size) * diff


# ---------------------------------------------------------------- networks

_LAYERS: dict[str, Callable[[], object]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
}
_LOSSES = {"softmax": SoftmaxWithLoss, "mse": MSELoss}


class MLP:
    """A multilayer perceptron: Affine → activation → … → Affine, then a loss layer.

    sizes: [D, H1, ..., K]; x: (B, D) -> scores (B, K). `loss="softmax"` takes integer
    labels t: (B,); `loss="mse"` takes targets t: (B, K). Weights are drawn from
    N(0, gain/fan_in): He initialisation (gain 2, std √(2/fan_in)) for ReLU-like
    activations, LeCun initialisation (gain 1, std √(1/fan_in)) for sigmoid and tanh,
    so that activations keep roughly unit scale layer after layer. (Not Glorot/Xavier,
    whose std is √(2/(fan_in + fan_out)).) Biases start at 0. Parameters live in
    `params` ("W1", "b1", ...).
    """

    def __init__(
        self,
        sizes: list[int],
        activation: str = "relu",
        loss: str = "softmax",
        dropout: float = 0.0,
        seed: int = 0,
        dtype: type = np.float64,
    ):
        if len(sizes) < 2 or not all(
            isinstance(n, (int, np.integer)) and n > 0 for n in sizes
        ):
            raise ValueError(
                f"sizes must be a list of at least two positive ints, got {sizes!r}"
            )
        if activation not in _LAYERS:
            raise ValueError(
                f"activation must be one of {sorted(_LAYERS)}, got {activation!r}"
            )
        if loss not in _LOSSES:
            raise ValueError(f"loss must be one of {sorted(_LOSSES)}, got {loss!r}")
        _number(dropout, "dropout", 0, 1)
        if not np.issubdtype(dtype, np.floating):
            raise TypeError(f"dtype must be a floating type, got {dtype!r}")
        rng = np.random.default_rng(seed)
        gain = 2.0 if activation in ("relu", "leaky_relu") else 1.0
        self.params: dict[str, Array] = {}
        self.layers: list = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            W = rng.normal(0, math.sqrt(gain / fan_in), (fan_in, fan_out)).astype(dtype)
            b = np.zeros(fan_out, dtype=dtype)
            self.params[f"W{i}"], self.params[f"b{i}"] = W, b
            self.layers.append(Affine(W, b))
            if i < len(sizes) - 1:
                self.layers.append(_LAYERS[activation]())
                if dropout > 0:
                    self.layers.append(Dropout(dropout, rng))
        self.last = _LOSSES[loss]()

    def train(self, mode: bool = True) -> MLP:
        """Switch dropout layers between training (random masks) and evaluation
        (identity)."""
        for layer in self.layers:
            if isinstance(layer, Dropout):
                layer.training = mode
        return self

    def predict(self, x: Array) -> Array:
        """Scores (logits for softmax, outputs for mse). x: (B, D) -> (B, K)."""
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def loss(self, x: Array, t: Array) -> float:
        return self.last.forward(self.predict(x), t)

    def gradient(self, x: Array, t: Array) -> tuple[float, dict[str, Array]]:
        """Backpropagation: one forward pass, then every layer's backward in reverse
        order. Returns the loss and ∂L/∂p for every parameter, keyed like `params`."""
        value = self.loss(x, t)
        dout = self.last.backward(1.0)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        affines = [layer for layer in self.layers if isinstance(layer, Affine)]
        grads = {}
        for i, layer in enumerate(affines, start=1):
            grads[f"W{i}"], grads[f"b{i}"] = layer.dW, layer.db
        return value, grads

    def accuracy(self, x: Array, t: Array, batch: int = 10_000) -> float:
        """Fraction of correct top-1 predictions, in batches to bound memory.
        x: (N, D), t: (N,)."""
        if not isinstance(batch, (int, np.integer)) or batch <= 0:
            raise ValueError(f"batch must be a positive int, got {batch!r}")
        if len(x) != len(t) or len(x) == 0:
            raise ValueError(
                f"x and t must have the same non-zero length, got {len(x)} and {len(t)}"
            )
        correct = sum(
            int((self.predict(x[i : i + batch]).argmax(1) == t[i : i + batch]).sum())
            for i in range(0, len(x), batch)
        )
        return correct / len(x)


class TwoLayerNet(MLP):
    """The classic two-layer network: Affine(D→H) → ReLU → Affine(H→K) → softmax
    cross-entropy."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        seed: int = 0,
        dtype: type = np.float64,
    ):
        super().__init__(
            [input_size, hidden_size, output_size],
            "relu",
            "softmax",
            seed=seed,
            dtype=dtype,
        )


# ------------------------------------------------------ optimisers (update in place)


def _check_update(params: dict[str, Array], grads: dict[str, Array]) -> None:
    if not isinstance(params, dict) or not isinstance(grads, dict):
        raise TypeError(
            "update(params, grads) takes two dicts {name: array}, got "
            f"{type(params).__name__} and {type(grads).__name__}"
        )
    for k, g in grads.items():
        if k not in params:
            raise KeyError(f"grads has {k!r}, which params does not have")
        if np.shape(g) != np.shape(params[k]):
            raise ValueError(
                f"grads[{k!r}] has shape {np.shape(g)}, params[{k!r}] "
                f"{np.shape(params[k])}"
            )


class SGD:
    """p ← p − lr·v with v ← μ·v + g (PyTorch's heavy-ball momentum; μ = 0 is plain
    SGD). lr ≥ 0 and μ ≥ 0, as `torch.optim.SGD` requires."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.0):
        _number(lr, "lr", 0, math.inf, open_high=True)
        _number(momentum, "momentum", 0, math.inf, open_high=True)
        self.lr, self.momentum = lr, momentum
        self.v: dict[str, Array] = {}

    def update(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        _check_update(params, grads)
        for k, g in grads.items():
            if self.momentum:
                self.v[k] = (
                    g.copy() if k not in self.v else self.momentum * self.v[k] + g
                )
                g = self.v[k]
            params[k] -= self.lr * g  # in place: the layers hold the same arrays


class Adam:
    """Adam (Kingma & Ba 2015), the same update as `torch.optim.Adam`:
    m ← β1 m + (1−β1) g,  v ← β2 v + (1−β2) g²,  p ← p − lr · m̂ / (√v̂ + ε), with
    bias-corrected m̂ = m / (1−β1^t), v̂ = v / (1−β2^t). lr ≥ 0, 0 ≤ β < 1, ε ≥ 0."""

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        _number(lr, "lr", 0, math.inf, open_high=True)
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair (β1, β2), got {betas!r}")
        _number(betas[0], "betas[0]", 0, 1, open_high=True)
        _number(betas[1], "betas[1]", 0, 1, open_high=True)
        _number(eps, "eps", 0, math.inf, open_high=True)
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m: dict[str, Array] = {}
        self.v: dict[str, Array] = {}
        self.t = 0

    def update(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        _check_update(params, grads)
        self.t += 1
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t  # bias corrections
        for k, g in grads.items():
            if k not in self.m:
                self.m[k], self.v[k] = np.zeros_like(g), np.zeros_like(g)
            m, v = self.m[k], self.v[k]
            # In place: no temporaries the size of the weights (a hot spot).
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            denom = np.sqrt(v / c2)
            denom += self.eps
            params[k] -= (self.lr / c1) * m / denom


# ------------------------------------------------------------ the activation gallery

_SQRT2 = math.sqrt(2.0)
_erfc = np.vectorize(math.erfc, otypes=[float])


def _as_input(values, x: Array) -> Array:
    """values in x's floating dtype (float32 in, float32 out); float64 for ints."""
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    return np.asarray(values, dtype=dtype)


def _sigmoid(x: Array) -> Array:
    return Sigmoid().forward(x)


def _phi(x: Array) -> Array:
    """Standard normal CDF Φ(x) = ½ erfc(−x/√2): erfc keeps the left tail's digits,
    where 1 + erf(x/√2) rounds to 0 (x < −8.3 in float64)."""
    return _as_input(0.5 * _erfc(-np.asarray(x, dtype=np.float64) / _SQRT2), x)


def _gelu_grad(x: Array) -> Array:
    density = np.exp(-(x**2) / 2) / math.sqrt(2 * math.pi)
    return _as_input(_phi(x) + x * density, x)


# name -> (f, f'): each derivative written out by hand (checked against autograd).
ACTIVATIONS: dict[str, tuple[Callable[[Array], Array], Callable[[Array], Array]]] = {
    "sigmoid": (_sigmoid, lambda x: _sigmoid(x) * (1 - _sigmoid(x))),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    # at exactly 0: relu′ = 0 and leaky_relu′ = slope, PyTorch's conventions
    "relu": (lambda x: np.maximum(x, 0), lambda x: _as_input(x > 0, x)),
    "leaky_relu": (
        lambda x: np.where(x > 0, x, 0.01 * x),
        lambda x: _as_input(np.where(x > 0, 1.0, 0.01), x),
    ),
    # GELU: x Φ(x) (Hendrycks & Gimpel 2016); derivative Φ(x) + x φ(x).
    "gelu": (lambda x: x * _phi(x), _gelu_grad),
    # SiLU / swish: x σ(x); derivative σ(x) (1 + x (1 − σ(x))).
    "silu": (
        lambda x: x * _sigmoid(x),
        lambda x: _sigmoid(x) * (1 + x * (1 - _sigmoid(x))),
    ),
    # softplus: log(1 + e^x), a smooth ReLU, written stably; derivative σ(x).
    "softplus": (lambda x: np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))), _sigmoid),
}
