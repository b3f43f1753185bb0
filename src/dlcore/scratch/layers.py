"""Multilayer perceptrons in NumPy: layers with hand-written forward and backward passes.

Every layer caches what its backward pass needs during `forward` and, given the upstream
gradient `dout = ∂L/∂out`, returns `∂L/∂x` from `backward` (parameter layers also store
`dW`, `db`). Shapes: a batch of B examples with D features is `x: (B, D)`. The code is
dtype-agnostic: float64 for checking against `torch.autograd`, float32 for training.

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


# ---------------------------------------------------------------- layers


class Affine:
    """y = x W + b.  x: (B, D), W: (D, H), b: (H,) -> y: (B, H).

    Backward, with G = ∂L/∂y of shape (B, H):
    ∂L/∂x = G Wᵀ (B, D),  ∂L/∂W = xᵀ G (D, H),  ∂L/∂b = Σ_batch G (H,).
    """

    def __init__(self, W: Array, b: Array):
        self.W, self.b = W, b
        self.x: Array | None = None
        self.dW: Array | None = None
        self.db: Array | None = None

    def forward(self, x: Array) -> Array:
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout: Array) -> Array:
        self.dW = self.x.T @ dout
        self.db = dout.sum(
            axis=0
        )  # b is broadcast over the batch, so its gradients add up
        return dout @ self.W.T


class ReLU:
    """y = max(x, 0), elementwise. Backward: ∂L/∂x = G ⊙ [x > 0] (the gradient at 0 is taken as 0)."""

    def forward(self, x: Array) -> Array:
        self.mask = x > 0
        return x * self.mask

    def backward(self, dout: Array) -> Array:
        return dout * self.mask


class LeakyReLU:
    """y = x if x > 0 else slope·x. Backward: ∂L/∂x = G ⊙ (1 if x > 0 else slope)."""

    def __init__(self, slope: float = 0.01):
        self.slope = slope

    def forward(self, x: Array) -> Array:
        self.mask = x > 0
        return np.where(self.mask, x, self.slope * x)

    def backward(self, dout: Array) -> Array:
        return np.where(self.mask, dout, self.slope * dout)


class Sigmoid:
    """y = 1 / (1 + e^{-x}). Backward: ∂L/∂x = G ⊙ y (1 − y), from the cached output."""

    def forward(self, x: Array) -> Array:
        # Two branches so that exp never overflows: for x < 0 use e^x / (1 + e^x).
        e = np.exp(-np.abs(x))
        self.out = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
        return self.out

    def backward(self, dout: Array) -> Array:
        return dout * self.out * (1 - self.out)


class Tanh:
    """y = tanh(x). Backward: ∂L/∂x = G ⊙ (1 − y²)."""

    def forward(self, x: Array) -> Array:
        self.out = np.tanh(x)
        return self.out

    def backward(self, dout: Array) -> Array:
        return dout * (1 - self.out**2)


class Dropout:
    """Inverted dropout: in training, y = x ⊙ m / (1 − p) with m ~ Bernoulli(1 − p), so that the
    expected activation is unchanged and evaluation needs no rescaling. Backward: G ⊙ m / (1 − p)."""

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None):
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p, self.rng = p, rng or np.random.default_rng()
        self.training = True

    def forward(self, x: Array) -> Array:
        if not self.training or self.p == 0:
            self.scale = np.ones_like(x)
        else:
            self.scale = (self.rng.random(x.shape) >= self.p).astype(x.dtype) / (
                1 - self.p
            )
        return x * self.scale

    def backward(self, dout: Array) -> Array:
        return dout * self.scale


def softmax(z: Array) -> Array:
    """Row-wise softmax, stable for large logits. z: (B, K) -> (B, K), rows sum to 1."""
    e = np.exp(
        z - z.max(axis=1, keepdims=True)
    )  # shifting by the row max changes nothing but overflow
    return e / e.sum(axis=1, keepdims=True)


class SoftmaxWithLoss:
    """Mean cross-entropy of softmax(z) against integer labels.  z: (B, K), t: (B,) -> scalar.

    L = (1/B) Σ_i [log Σ_k e^{z_ik} − z_i,t_i]; backward: ∂L/∂z = (softmax(z) − onehot(t)) / B.
    """

    def forward(self, z: Array, t: Array) -> float:
        m = z.max(axis=1, keepdims=True)
        log_sum_exp = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
        self.p, self.t = softmax(z), t
        return float(np.mean(log_sum_exp - z[np.arange(len(t)), t]))

    def backward(self, dout: float = 1.0) -> Array:
        grad = self.p.copy()
        grad[np.arange(len(self.t)), self.t] -= 1
        return grad * (dout / len(self.t))


class MSELoss:
    """Mean squared error. y: (B, K), t: (B, K) -> scalar; backward: ∂L/∂y = 2 (y − t) / (B·K)."""

    def forward(self, y: Array, t: Array) -> float:
        self.diff = y - t
        return float(np.mean(self.diff**2))

    def backward(self, dout: float = 1.0) -> Array:
        return (2 * dout / self.diff.size) * self.diff


# ---------------------------------------------------------------- networks

_LAYERS: dict[str, Callable[[], object]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
}


class MLP:
    """A multilayer perceptron: Affine → activation → … → Affine, then a loss layer.

    sizes: [D, H1, ..., K]; x: (B, D) -> scores (B, K). `loss="softmax"` takes integer labels
    t: (B,); `loss="mse"` takes targets t: (B, K). Weights use He initialisation (std √(2/fan_in))
    for ReLU-like activations and Glorot/Xavier (std √(1/fan_in)) otherwise, so that activations
    keep roughly unit scale layer after layer. Parameters live in `params` ("W1", "b1", ...).
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
        self.last = {"softmax": SoftmaxWithLoss, "mse": MSELoss}[loss]()

    def train(self, mode: bool = True) -> MLP:
        """Switch dropout layers between training (random masks) and evaluation (identity)."""
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
        """Backpropagation: one forward pass, then every layer's backward in reverse order.
        Returns the loss and ∂L/∂p for every parameter, keyed like `params`."""
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
        """Fraction of correct top-1 predictions, in batches to bound memory. x: (N, D), t: (N,)."""
        correct = sum(
            int((self.predict(x[i : i + batch]).argmax(1) == t[i : i + batch]).sum())
            for i in range(0, len(x), batch)
        )
        return correct / len(x)


class TwoLayerNet(MLP):
    """The classic two-layer network: Affine(D→H) → ReLU → Affine(H→K) → softmax cross-entropy."""

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


# ---------------------------------------------------------------- optimisers (update in place)


class SGD:
    """p ← p − lr·v with v ← μ·v + g (PyTorch's heavy-ball momentum; μ = 0 is plain SGD)."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.0):
        self.lr, self.momentum = lr, momentum
        self.v: dict[str, Array] = {}

    def update(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        for k, g in grads.items():
            if self.momentum:
                self.v[k] = (
                    g.copy() if k not in self.v else self.momentum * self.v[k] + g
                )
                g = self.v[k]
            params[k] -= self.lr * g  # in place: the layers hold the same arrays


class Adam:
    """Adam (Kingma & Ba 2015), the same update as `torch.optim.Adam`:
    m ← β1 m + (1−β1) g,  v ← β2 v + (1−β2) g²,  p ← p − lr · m̂ / (√v̂ + ε), with bias-corrected
    m̂ = m / (1−β1^t), v̂ = v / (1−β2^t)."""

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m: dict[str, Array] = {}
        self.v: dict[str, Array] = {}
        self.t = 0

    def update(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        self.t += 1
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t  # bias corrections
        for k, g in grads.items():
            if k not in self.m:
                self.m[k], self.v[k] = np.zeros_like(g), np.zeros_like(g)
            m, v = self.m[k], self.v[k]
            # In-place updates: no temporaries the size of the weights (this loop is a hot spot).
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            denom = np.sqrt(v / c2)
            denom += self.eps
            params[k] -= (self.lr / c1) * m / denom


# ---------------------------------------------------------------- the activation gallery

_SQRT2 = math.sqrt(2.0)
_erf = np.vectorize(math.erf, otypes=[float])


def _sigmoid(x: Array) -> Array:
    return Sigmoid().forward(x)


def _phi(x: Array) -> Array:
    """Standard normal CDF Φ(x)."""
    return 0.5 * (1 + _erf(x / _SQRT2))


# name -> (f, f'): each derivative written out by hand (checked against autograd in the tests).
ACTIVATIONS: dict[str, tuple[Callable[[Array], Array], Callable[[Array], Array]]] = {
    "sigmoid": (_sigmoid, lambda x: _sigmoid(x) * (1 - _sigmoid(x))),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "relu": (lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(float)),
    "leaky_relu": (
        lambda x: np.where(x > 0, x, 0.01 * x),
        lambda x: np.where(x > 0, 1.0, 0.01),
    ),
    # GELU: x Φ(x) (Hendrycks & Gimpel 2016); derivative Φ(x) + x φ(x).
    "gelu": (
        lambda x: x * _phi(x),
        lambda x: _phi(x) + x * np.exp(-(x**2) / 2) / math.sqrt(2 * math.pi),
    ),
    # SiLU / swish: x σ(x); derivative σ(x) (1 + x (1 − σ(x))).
    "silu": (
        lambda x: x * _sigmoid(x),
        lambda x: _sigmoid(x) * (1 + x * (1 - _sigmoid(x))),
    ),
    # softplus: log(1 + e^x), a smooth ReLU, written stably; derivative σ(x).
    "softplus": (lambda x: np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))), _sigmoid),
}
