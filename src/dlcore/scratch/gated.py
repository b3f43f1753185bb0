"""LSTM and GRU from scratch: the gated cells, their hand-derived backward passes, and
multi-layer, bidirectional wrappers with the interface of `nn.LSTM` / `nn.GRU`.

Plain tensor code (use float64 to compare with PyTorch). Gate order and equations are
PyTorch's, so weights copied from `nn.LSTM` / `nn.GRU` give the same numbers. For an
input x: (B, D), a state h: (B, H) and the weights W_ih: (G·H, D), W_hh: (G·H, H),
b_ih, b_hh: (G·H,) with G = 4 (LSTM) or 3 (GRU) gates stacked row-wise:

LSTM (rows i, f, g, o):
    i = σ(W_ii x + b_ii + W_hi h + b_hi)      input gate
    f = σ(W_if x + b_if + W_hf h + b_hf)      forget gate
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)   candidate cell
    o = σ(W_io x + b_io + W_ho h + b_ho)      output gate
    c' = f ⊙ c + i ⊙ g,   h' = o ⊙ tanh(c')

GRU (rows r, z, n):
    r = σ(W_ir x + b_ir + W_hr h + b_hr)      reset gate
    z = σ(W_iz x + b_iz + W_hz h + b_hz)      update gate
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
    h' = (1 − z) ⊙ n + z ⊙ h

The GRU's reset gate multiplies W_hn h + b_hn, *after* the matrix product, as PyTorch
and cuDNN do; Cho et al. (2014) apply it before, n = tanh(W_in x + W_hn (r ⊙ h) + b).
The two are different functions of the weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "LayerParams",
    "lstm_cell",
    "lstm_cell_backward",
    "gru_cell",
    "gru_cell_backward",
    "lstm_layer",
    "lstm_layer_backward",
    "lstm",
    "gru",
    "params_from_module",
]

Tensor = torch.Tensor


@dataclass
class LayerParams:
    """The weights of one direction of one layer: W_ih (G·H, D), W_hh (G·H, H) and the
    biases (G·H,), or None for a layer built with bias=False."""

    w_ih: Tensor
    w_hh: Tensor
    b_ih: Tensor | None = None
    b_hh: Tensor | None = None


def _affine(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """x (B, D) @ wᵀ (D, G·H) + b -> (B, G·H)."""
    out = x @ w.T
    return out if b is None else out + b


# ---------------------------------------------------------------------- cells


def lstm_cell(
    x: Tensor, h: Tensor, c: Tensor, p: LayerParams
) -> tuple[Tensor, Tensor, dict]:
    """One LSTM step. x: (B, D), h, c: (B, H) -> h', c' (B, H) and a cache for
    `lstm_cell_backward`."""
    a = _affine(x, p.w_ih, p.b_ih) + _affine(h, p.w_hh, p.b_hh)  # (B, 4H)
    a_i, a_f, a_g, a_o = a.chunk(4, dim=1)
    i, f, o = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.sigmoid(a_o)
    g = torch.tanh(a_g)
    c_new = f * c + i * g
    tanh_c = torch.tanh(c_new)
    h_new = o * tanh_c
    cache = dict(x=x, h=h, c=c, i=i, f=f, g=g, o=o, tanh_c=tanh_c, p=p)
    return h_new, c_new, cache


def lstm_cell_backward(dh_new: Tensor, dc_new: Tensor, cache: dict) -> dict:
    """Backward through one LSTM step, derived by hand. dh_new = ∂L/∂h', dc_new = ∂L/∂c'
    (B, H) -> dict of ∂L/∂x (B, D), ∂L/∂h, ∂L/∂c (B, H) and the weight gradients
    w_ih, w_hh, b_ih, b_hh (same shapes as the weights).

    The cell receives gradient along two roads: directly (dc_new) and through
    h' = o ⊙ tanh(c'), so dc = dc_new + dh_new ⊙ o ⊙ (1 − tanh²c'). Then
    ∂L/∂c = dc ⊙ f  — the forget gate alone scales the gradient passed back in time."""
    x, h, c, p = cache["x"], cache["h"], cache["c"], cache["p"]
    i, f, g, o, tanh_c = (cache[k] for k in ("i", "f", "g", "o", "tanh_c"))
    dc = dc_new + dh_new * o * (1 - tanh_c**2)
    d_i, d_f, d_g, d_o = dc * g, dc * c, dc * i, dh_new * tanh_c
    da = torch.cat(  # through σ' = σ(1 − σ) and tanh' = 1 − tanh²
        [d_i * i * (1 - i), d_f * f * (1 - f), d_g * (1 - g**2), d_o * o * (1 - o)],
        dim=1,
    )  # (B, 4H): ∂L/∂ of the pre-activations
    db = da.sum(0)
    return dict(
        x=da @ p.w_ih,
        h=da @ p.w_hh,
        c=dc * f,
        w_ih=da.T @ x,
        w_hh=da.T @ h,
        b_ih=db if p.b_ih is not None else None,
        b_hh=db if p.b_hh is not None else None,
    )


def gru_cell(x: Tensor, h: Tensor, p: LayerParams) -> tuple[Tensor, dict]:
    """One GRU step (PyTorch's equations). x: (B, D), h: (B, H) -> h' (B, H) and a
    cache for `gru_cell_backward`."""
    gi = _affine(x, p.w_ih, p.b_ih)  # (B, 3H): W_i· x + b_i·
    gh = _affine(h, p.w_hh, p.b_hh)  # (B, 3H): W_h· h + b_h·
    gi_r, gi_z, gi_n = gi.chunk(3, dim=1)
    gh_r, gh_z, gh_n = gh.chunk(3, dim=1)
    r = torch.sigmoid(gi_r + gh_r)
    z = torch.sigmoid(gi_z + gh_z)
    n = torch.tanh(gi_n + r * gh_n)  # reset gate after the matrix product
    h_new = (1 - z) * n + z * h
    cache = dict(x=x, h=h, r=r, z=z, n=n, gh_n=gh_n, p=p)
    return h_new, cache


def gru_cell_backward(dh_new: Tensor, cache: dict) -> dict:
    """Backward through one GRU step, derived by hand. dh_new = ∂L/∂h' (B, H) -> dict
    of ∂L/∂x, ∂L/∂h and the weight gradients w_ih, w_hh, b_ih, b_hh.

    h' = (1 − z) ⊙ n + z ⊙ h passes dh_new ⊙ z straight back to h (the update gate's
    shortcut), besides the paths through r, z and n."""
    x, h, p = cache["x"], cache["h"], cache["p"]
    r, z, n, gh_n = cache["r"], cache["z"], cache["n"], cache["gh_n"]
    da_n = dh_new * (1 - z) * (1 - n**2)  # ∂L/∂(gi_n + r ⊙ gh_n)
    da_z = dh_new * (h - n) * z * (1 - z)
    da_r = da_n * gh_n * r * (1 - r)
    dgi = torch.cat([da_r, da_z, da_n], dim=1)  # ∂L/∂gi (B, 3H)
    dgh = torch.cat([da_r, da_z, da_n * r], dim=1)  # ∂L/∂gh (B, 3H)
    return dict(
        x=dgi @ p.w_ih,
        h=dh_new * z + dgh @ p.w_hh,
        w_ih=dgi.T @ x,
        w_hh=dgh.T @ h,
        b_ih=dgi.sum(0) if p.b_ih is not None else None,
        b_hh=dgh.sum(0) if p.b_hh is not None else None,
    )


# ------------------------------------------- backpropagation through time, by hand


def lstm_layer(
    x: Tensor, p: LayerParams, h0: Tensor, c0: Tensor
) -> tuple[Tensor, tuple[Tensor, Tensor], list[dict]]:
    """One LSTM layer, one direction, step by step. x: (T, B, D), h0, c0: (B, H) ->
    output (T, B, H), (h_T, c_T) and the T caches `lstm_layer_backward` needs."""
    h, c, out, caches = h0, c0, [], []
    for t in range(x.shape[0]):
        h, c, cache = lstm_cell(x[t], h, c, p)
        out.append(h)
        caches.append(cache)
    return torch.stack(out), (h, c), caches


def lstm_layer_backward(
    dout: Tensor, dh_n: Tensor, dc_n: Tensor, caches: list[dict]
) -> dict:
    """Backpropagation through time for `lstm_layer`, one `lstm_cell_backward` per step,
    last step first. dout = ∂L/∂output (T, B, H); dh_n, dc_n = ∂L/∂h_T, ∂L/∂c_T (B, H).
    Returns ∂L/∂x (T, B, D), ∂L/∂h0, ∂L/∂c0 (B, H) and the weight gradients, summed
    over the steps (the same weights act at every step)."""
    names = ("w_ih", "w_hh", "b_ih", "b_hh")
    grads = dict.fromkeys(names)
    dh_next, dc_next, dx = dh_n, dc_n, [None] * len(caches)
    for t in range(len(caches) - 1, -1, -1):
        # h_t feeds the output at t and the step t + 1; c_t only the step t + 1
        g = lstm_cell_backward(dout[t] + dh_next, dc_next, caches[t])
        dx[t], dh_next, dc_next = g["x"], g["h"], g["c"]
        for k in names:
            if g[k] is not None:
                grads[k] = g[k] if grads[k] is None else grads[k] + g[k]
    return dict(x=torch.stack(dx), h0=dh_next, c0=dc_next, **grads)


# ------------------------------------------------------- layers and directions


def _check(x: Tensor, params: list[list[LayerParams]], gates: int) -> None:
    if x.dim() != 3:
        raise ValueError(f"x must be (T, B, D) or (B, T, D), got {tuple(x.shape)}")
    if len(params) == 0 or len({len(layer) for layer in params}) != 1:
        raise ValueError(
            "params: a non-empty list of layers, each of 1 or 2 directions"
        )
    if len(params[0]) not in (1, 2):
        raise ValueError(f"each layer has 1 or 2 directions, got {len(params[0])}")
    if x.shape[-1] != params[0][0].w_ih.shape[1]:
        raise ValueError(
            f"x has {x.shape[-1]} features, the first layer expects "
            f"{params[0][0].w_ih.shape[1]}"
        )
    if params[0][0].w_hh.shape[0] != gates * params[0][0].w_hh.shape[1]:
        raise ValueError("w_hh must be (G·H, H) with G = 4 for an LSTM, 3 for a GRU")


def _run(kind: str, x, params, state, batch_first: bool):
    """Shared driver. x: (T, B, D) (or (B, T, D), or unbatched (T, D)); state: None
    or h0 (layers·dirs, B, H) (and c0 for an LSTM, as a tuple)."""
    gates = 4 if kind == "lstm" else 3
    unbatched = x.dim() == 2
    if unbatched:  # (T, D): a batch of one, as PyTorch allows
        x = x.unsqueeze(1)
        if state is not None:
            state = tuple(s.unsqueeze(1) for s in state)
    elif batch_first:
        x = x.transpose(0, 1)  # work in (T, B, D)
    _check(x, params, gates)
    T, B = x.shape[:2]
    dirs, H = len(params[0]), params[0][0].w_hh.shape[1]
    if state is None:
        zeros = x.new_zeros(len(params) * dirs, B, H)
        state = (zeros, zeros) if kind == "lstm" else (zeros,)
    finals = [[] for _ in state]  # h_n (and c_n): one (B, H) per layer and direction
    layer_in = x
    for layer, directions in enumerate(params):
        outs = []
        for d, p in enumerate(directions):
            k = layer * dirs + d
            s = [part[k] for part in state]  # h (and c) of this layer and direction
            steps = range(T - 1, -1, -1) if d == 1 else range(T)
            out = [None] * T
            for t in steps:
                if kind == "lstm":
                    s[0], s[1], _ = lstm_cell(layer_in[t], s[0], s[1], p)
                else:
                    s[0], _ = gru_cell(layer_in[t], s[0], p)
                out[t] = s[0]
            outs.append(torch.stack(out))  # (T, B, H), in time order
            for f, v in zip(finals, s):
                f.append(v)
        layer_in = torch.cat(outs, dim=2)  # (T, B, dirs·H): the next layer's input
    output = layer_in
    finals = [torch.stack(f) for f in finals]  # (layers·dirs, B, H)
    if unbatched:
        output, finals = output.squeeze(1), [f.squeeze(1) for f in finals]
    elif batch_first:
        output = output.transpose(0, 1)
    return output, finals


def lstm(
    x: Tensor,
    params: list[list[LayerParams]],
    state: tuple[Tensor, Tensor] | None = None,
    *,
    batch_first: bool = False,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """A stacked (bi)directional LSTM, like `nn.LSTM` without dropout or projections.

    x: (T, B, D), or (B, T, D) with batch_first, or (T, D); params[layer][direction];
    state (h0, c0), each (layers·dirs, B, H), zeros when None. Returns output
    (T, B, dirs·H) (the top layer's h at every step, both directions concatenated) and
    (h_n, c_n), each (layers·dirs, B, H), ordered layer by layer, forward before
    backward."""
    output, (h_n, c_n) = _run("lstm", x, params, state, batch_first)
    return output, (h_n, c_n)


def gru(
    x: Tensor,
    params: list[list[LayerParams]],
    h0: Tensor | None = None,
    *,
    batch_first: bool = False,
) -> tuple[Tensor, Tensor]:
    """A stacked (bi)directional GRU, like `nn.GRU` without dropout. Shapes as in
    `lstm`; returns output (T, B, dirs·H) and h_n (layers·dirs, B, H)."""
    output, (h_n,) = _run("gru", x, params, None if h0 is None else (h0,), batch_first)
    return output, h_n


def params_from_module(module: nn.LSTM | nn.GRU) -> list[list[LayerParams]]:
    """The weights of an `nn.LSTM` / `nn.GRU` (its own Parameters, not copies), as
    params[layer][direction] for `lstm` / `gru`."""
    if not isinstance(module, (nn.LSTM, nn.GRU)):
        raise TypeError(f"expected nn.LSTM or nn.GRU, got {type(module).__name__}")
    if getattr(module, "proj_size", 0):
        raise ValueError("LSTM projections (proj_size > 0) are not implemented here")
    dirs = 2 if module.bidirectional else 1
    params = []
    for layer in range(module.num_layers):
        directions = []
        for d in range(dirs):
            suffix = f"l{layer}" + ("_reverse" if d == 1 else "")
            directions.append(
                LayerParams(
                    getattr(module, f"weight_ih_{suffix}"),
                    getattr(module, f"weight_hh_{suffix}"),
                    getattr(module, f"bias_ih_{suffix}", None),
                    getattr(module, f"bias_hh_{suffix}", None),
                )
            )
        params.append(directions)
    return params
