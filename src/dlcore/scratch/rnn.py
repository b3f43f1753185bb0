"""Recurrent neural networks in NumPy: the tanh RNN, backpropagation through time (BPTT)
written by hand, and a small character language model built on them.

Notation (Part III, ch. 3). A layer maps inputs x_t ∈ ℝ^{B×D} and the previous state
h_{t-1} ∈ ℝ^{B×H} to

    a_t = x_t W_xh + h_{t-1} W_hh + b,    h_t = tanh(a_t),       t = 1..T,

with W_xh: (D, H), W_hh: (H, H), b: (H,). PyTorch's `nn.RNN` stores the transposes,
weight_ih = W_xhᵀ and weight_hh = W_hhᵀ, and two biases whose sum is b. A stack of L
layers feeds the states of layer l as the inputs of layer l + 1.

BPTT, with G_t = ∂L/∂h_t arriving from the layer's output at step t and δ_t the total
gradient of h_t (from the output *and* from step t + 1):

    δ_T = G_T + ∂L/∂h_T(final state),   δ_{t-1} = G_{t-1} + (δ_t ⊙ (1 − h_t²)) W_hhᵀ,
    ∂L/∂W_hh = Σ_t h_{t-1}ᵀ (δ_t ⊙ (1 − h_t²)),  ∂L/∂W_xh = Σ_t x_tᵀ (δ_t ⊙ (1 − h_t²)),
    ∂L/∂b = Σ_t 1ᵀ (δ_t ⊙ (1 − h_t²)),           ∂L/∂x_t = (δ_t ⊙ (1 − h_t²)) W_xhᵀ,

and ∂L/∂h_0 = δ_0. The derivative is taken from the output, 1 − h², never from
1/cosh²(a): for |a| ≳ 20 in float64 tanh(a) is exactly ±1 and the derivative exactly 0,
which is also what PyTorch computes.

Shapes: sequences are time-major (T, B, D) unless `batch_first=True` ((B, T, D)), as
in `nn.RNN`; states are (L, B, H). Everything is dtype-agnostic (float64 to check
against PyTorch, float32 to train).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Array = np.ndarray
Layer = dict[str, Array]  # {"W_xh": (D, H), "W_hh": (H, H), "b": (H,)}

__all__ = [
    "init_rnn",
    "from_torch",
    "rnn_forward",
    "rnn_backward",
    "RNNCache",
    "log_softmax",
    "temperature_probs",
    "global_norm",
    "CharRNN",
]


def init_rnn(
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    *,
    seed: int = 0,
    dtype=np.float64,
) -> list[Layer]:
    """Parameters of a stack of tanh RNN layers, drawn as PyTorch does:
    U(−1/√H, 1/√H) for every entry (the bias b is the sum of two such draws)."""
    for name, v in [("input_size", input_size), ("hidden_size", hidden_size)]:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if (
        isinstance(num_layers, bool)
        or not isinstance(num_layers, int)
        or num_layers < 1
    ):
        raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(hidden_size)
    layers = []
    for layer in range(num_layers):
        d = input_size if layer == 0 else hidden_size
        u = lambda *shape: rng.uniform(-k, k, size=shape).astype(dtype)  # noqa: E731
        layers.append(
            {
                "W_xh": u(d, hidden_size),
                "W_hh": u(hidden_size, hidden_size),
                "b": u(hidden_size) + u(hidden_size),
            }
        )
    return layers


def from_torch(rnn) -> list[Layer]:
    """The parameters of a tanh `torch.nn.RNN` (with biases, one direction) as float64
    NumPy layers: W_xh = weight_ihᵀ, W_hh = weight_hhᵀ, b = bias_ih + bias_hh."""
    if getattr(rnn, "nonlinearity", None) != "tanh":
        raise ValueError("from_torch needs an nn.RNN with nonlinearity='tanh'")
    if rnn.bidirectional or not rnn.bias or getattr(rnn, "proj_size", 0):
        raise ValueError("from_torch supports one direction, with biases, no proj")
    get = lambda name: getattr(rnn, name).detach().cpu().double().numpy()  # noqa: E731
    return [
        {
            "W_xh": get(f"weight_ih_l{k}").T.copy(),
            "W_hh": get(f"weight_hh_l{k}").T.copy(),
            "b": get(f"bias_ih_l{k}") + get(f"bias_hh_l{k}"),
        }
        for k in range(rnn.num_layers)
    ]


@dataclass
class RNNCache:
    """What `rnn_backward` needs: each layer's inputs (T, B, D_l) and states
    (T + 1, B, H) — index 0 is h_0 — and the parameters."""

    inputs: list[Array]
    states: list[Array]
    layers: list[Layer]
    batch_first: bool


def _check_layers(layers: list[Layer], input_size: int) -> int:
    if not layers:
        raise ValueError("layers is empty: give at least one RNN layer")
    hidden = layers[0]["W_hh"].shape[0]
    for k, p in enumerate(layers):
        d = input_size if k == 0 else hidden
        shapes = {"W_xh": (d, hidden), "W_hh": (hidden, hidden), "b": (hidden,)}
        for name, shape in shapes.items():
            if name not in p or np.shape(p[name]) != shape:
                got = np.shape(p[name]) if name in p else "missing"
                raise ValueError(
                    f"layer {k}: {name} must have shape {shape}, got {got}"
                )
    return hidden


def rnn_forward(
    x: Array, layers: list[Layer], h0: Array | None = None, *, batch_first=False
) -> tuple[Array, Array, RNNCache]:
    """Run the stack over a sequence.

    x: (T, B, D), or (B, T, D) with batch_first; h0: (L, B, H) or None (zeros).
    Returns out (the top layer's states h_1..h_T, shaped like x with H features),
    h_n: (L, B, H) (each layer's final state) and the cache for `rnn_backward`.
    """
    x = np.asarray(x)
    if x.ndim != 3 or 0 in x.shape:
        raise ValueError(f"x must be a non-empty (T, B, D) array, got {x.shape}")
    seq = np.swapaxes(x, 0, 1) if batch_first else x
    T, B, D = seq.shape
    H = _check_layers(layers, D)
    L = len(layers)
    if h0 is None:
        h0 = np.zeros((L, B, H), dtype=x.dtype)
    elif np.shape(h0) != (L, B, H):
        raise ValueError(f"h0 must have shape {(L, B, H)}, got {np.shape(h0)}")
    inputs, states, inp = [], [], seq
    for k, p in enumerate(layers):
        # one matrix product for all T input terms; the recurrence is the loop
        a_in = (inp.reshape(T * B, -1) @ p["W_xh"] + p["b"]).reshape(T, B, H)
        hs = np.empty((T + 1, B, H), dtype=np.result_type(a_in, h0))
        hs[0] = h0[k]
        for t in range(T):
            hs[t + 1] = np.tanh(a_in[t] + hs[t] @ p["W_hh"])
        inputs.append(inp)
        states.append(hs)
        inp = hs[1:]
    out = np.swapaxes(inp, 0, 1) if batch_first else inp
    h_n = np.stack([hs[-1] for hs in states])
    return out.copy(), h_n, RNNCache(inputs, states, layers, batch_first)


def rnn_backward(
    d_out: Array | None,
    d_hn: Array | None,
    cache: RNNCache,
    *,
    return_state_grads: bool = False,
):
    """Backpropagation through time.

    d_out: ∂L/∂out, shaped like `out` (None: zeros); d_hn: ∂L/∂h_n (L, B, H) (None:
    zeros). Returns (dx shaped like x, dh0 (L, B, H), grads), grads[l] holding
    ∂L/∂W_xh, ∂L/∂W_hh, ∂L/∂b of layer l. With `return_state_grads`, a fourth item:
    per layer the total gradients δ_t = ∂L/∂h_t for t = 0..T, shape (T + 1, B, H).
    """
    T, B, H = cache.states[0].shape[0] - 1, *cache.states[0].shape[1:]
    L = len(cache.layers)
    dtype = cache.states[-1].dtype
    if d_out is None:
        g = np.zeros((T, B, H), dtype=dtype)
    else:
        g = np.swapaxes(d_out, 0, 1) if cache.batch_first else np.asarray(d_out)
        if g.shape != (T, B, H):
            raise ValueError(f"d_out must match out's shape, got {np.shape(d_out)}")
    if d_hn is None:
        d_hn = np.zeros((L, B, H), dtype=dtype)
    elif np.shape(d_hn) != (L, B, H):
        raise ValueError(f"d_hn must have shape {(L, B, H)}, got {np.shape(d_hn)}")
    grads, dh0, state_grads = [None] * L, np.empty((L, B, H), dtype=dtype), [None] * L
    for k in reversed(range(L)):
        p, hs, inp = cache.layers[k], cache.states[k], cache.inputs[k]
        da = np.empty((T, B, H), dtype=dtype)  # ∂L/∂a_t
        deltas = np.empty((T + 1, B, H), dtype=dtype)
        carry = d_hn[k]  # the gradient reaching h_t from step t + 1 (or h_n)
        for t in reversed(range(T)):
            deltas[t + 1] = g[t] + carry
            da[t] = deltas[t + 1] * (1.0 - hs[t + 1] ** 2)
            carry = da[t] @ p["W_hh"].T
        deltas[0] = dh0[k] = carry
        flat = da.reshape(T * B, H)
        grads[k] = {
            "W_xh": inp.reshape(T * B, -1).T @ flat,
            "W_hh": hs[:-1].reshape(T * B, H).T @ flat,
            "b": flat.sum(axis=0),
        }
        g = (flat @ p["W_xh"].T).reshape(T, B, -1)  # ∂L/∂(inputs of layer k)
        state_grads[k] = deltas
    dx = np.swapaxes(g, 0, 1).copy() if cache.batch_first else g
    if return_state_grads:
        return dx, dh0, grads, state_grads
    return dx, dh0, grads


def log_softmax(z: Array, axis: int = -1) -> Array:
    """log softmax(z), stable for any finite z (the maximum is subtracted first)."""
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def temperature_probs(logits: Array, temperature: float) -> Array:
    """softmax(logits / τ) along the last axis. τ = 0 is greedy decoding: probability 1
    on the largest logit (the first, on ties); τ → ∞ tends to uniform."""
    if not np.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be finite and >= 0, got {temperature!r}")
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        probs = np.zeros_like(logits)
        np.put_along_axis(probs, logits.argmax(-1)[..., None], 1.0, axis=-1)
        return probs
    return np.exp(log_softmax(logits / temperature))


def global_norm(grads) -> float:
    """‖g‖₂ of all gradient arrays together (a dict, or a list of dicts/arrays)."""
    if isinstance(grads, dict):
        grads = list(grads.values())
    return float(
        np.sqrt(
            sum(
                global_norm(g) ** 2 if isinstance(g, dict) else float(np.sum(g * g))
                for g in grads
            )
        )
    )


class CharRNN:
    """A character language model in NumPy: one-hot x_t (V,) → a tanh RNN layer (H) →
    logits o_t = h_t W_hy + b_y (V). `loss_and_grads` returns the mean cross-entropy in
    nats per character and its gradient by BPTT; `step` generates one character."""

    def __init__(self, vocab_size: int, hidden_size: int, *, seed: int = 0):
        rnn = init_rnn(vocab_size, hidden_size, seed=seed)[0]
        rng = np.random.default_rng(seed + 1)
        k = 1.0 / np.sqrt(hidden_size)
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        self.params = {
            **rnn,
            "W_hy": rng.uniform(-k, k, size=(hidden_size, vocab_size)),
            "b_y": np.zeros(vocab_size),
        }

    def _rnn(self) -> list[Layer]:
        return [{k: self.params[k] for k in ("W_xh", "W_hh", "b")}]

    def forward(self, ids: Array, h0: Array | None = None):
        """ids: (B, T) ints → logits (B, T, V), final state (B, H), cache."""
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.min() < 0 or ids.max() >= self.vocab_size:
            raise ValueError(f"ids must be (B, T) ints in [0, {self.vocab_size})")
        x = np.eye(self.vocab_size)[ids]  # one-hot: x_t W_xh picks a row of W_xh
        h0 = None if h0 is None else np.asarray(h0)[None]
        out, h_n, cache = rnn_forward(x, self._rnn(), h0, batch_first=True)
        logits = out @ self.params["W_hy"] + self.params["b_y"]
        return logits, h_n[0], (out, cache)

    def loss_and_grads(self, ids: Array, targets: Array, h0: Array | None = None):
        """Mean cross-entropy (nats/char) of predicting targets (B, T) from ids (B, T),
        its gradients (keyed like `params`) and the final state (B, H)."""
        logits, h_T, (out, cache) = self.forward(ids, h0)
        B, T, V = logits.shape
        logp = log_softmax(logits)
        targets = np.asarray(targets)
        loss = -np.take_along_axis(logp, targets[..., None], -1).mean()
        d_logits = np.exp(logp)
        np.put_along_axis(
            d_logits,
            targets[..., None],
            np.take_along_axis(d_logits, targets[..., None], -1) - 1.0,
            -1,
        )
        d_logits /= B * T
        grads = {
            "W_hy": out.reshape(B * T, -1).T @ d_logits.reshape(B * T, V),
            "b_y": d_logits.sum(axis=(0, 1)),
        }
        _, _, (rnn_grads,) = rnn_backward(d_logits @ self.params["W_hy"].T, None, cache)
        grads.update(rnn_grads)
        return float(loss), grads, h_T

    def step(self, token: int, h: Array | None = None):
        """One step of generation: logits (V,) for the character after `token`, and the
        new state (H,)."""
        logits, h_T, _ = self.forward(
            np.array([[token]]), None if h is None else h[None]
        )
        return logits[0, -1], h_T[0]
