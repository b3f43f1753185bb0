"""Time-series forecasting from scratch in NumPy: baselines, AR(p) by least squares,
recursive and direct multi-step forecasts, MAE and MASE, rolling-origin evaluation.

Conventions (one meaning each, as in the chapter):
- a series is a 1-D float array `y` of length n, `y[t]` the value at time t;
- a *history* is the observed past `y[:o]` before a forecast *origin* o; a forecast of
  horizon H predicts `y[o], ..., y[o + H - 1]` and is an array of shape (H,);
- `p` is the number of lags (the window length), `m` a seasonal period (m = 1: none).

AR(p) with a constant (statsmodels' `AutoReg(y, lags=p, trend="c")`):
    y[t] = c + φ₁ y[t-1] + … + φ_p y[t-p] + ε[t],
fitted by ordinary least squares on the rows t = p, …, n-1; the coefficient vector is
(c, φ₁, …, φ_p), the order of `AutoReg(...).fit().params`.

MASE (Hyndman & Koehler 2006): MAE of the forecast divided by the in-sample MAE of the
seasonal naive one-step forecast on the *training* series,
    scale = 1/(n-m) · Σ_{t=m}^{n-1} |y[t] - y[t-m]|   (0-based t, n training values).
A scale of 0 (a training series that repeats itself with period m) has no MASE: an
error, not a division by zero.

Chapter: Part III, 6 — Time-Series Forecasting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Array = np.ndarray
Forecaster = Callable[[Array, int], Array]

__all__ = [
    "naive",
    "seasonal_naive",
    "lag_matrix",
    "fit_ar",
    "ar_one_step",
    "ar_recursive",
    "direct_targets",
    "fit_ar_direct",
    "ar_direct",
    "recursive",
    "mae",
    "mase_scale",
    "mase",
    "rolling_origin",
    "winner",
]


# ---------------------------------------------------------------- argument checks


def _series(y, name: str = "y", min_len: int = 1) -> Array:
    arr = np.asarray(y, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D series, got shape {arr.shape}")
    if len(arr) < min_len:
        raise ValueError(f"{name} needs at least {min_len} values, got {len(arr)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values: fill gaps first")
    return arr


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


# ---------------------------------------------------------------- baselines


def naive(history: Array, horizon: int) -> Array:
    """The last observed value, repeated: ŷ[o+h-1] = y[o-1]. -> (horizon,)."""
    y = _series(history, "history")
    return np.full(_positive_int(horizon, "horizon"), y[-1])


def seasonal_naive(history: Array, horizon: int, m: int) -> Array:
    """The value one season earlier: ŷ[o+h-1] = y[o+h-1 - m·⌈h/m⌉], h = 1..horizon,
    i.e. the last observed season repeated. history needs ≥ m values. -> (horizon,)."""
    m = _positive_int(m, "m")
    y = _series(history, "history", min_len=m)
    h = np.arange(1, _positive_int(horizon, "horizon") + 1)
    return y[len(y) - m + (h - 1) % m]


# ---------------------------------------------------------------- AR(p)


def lag_matrix(y: Array, p: int) -> tuple[Array, Array]:
    """The regression of y[t] on its p lags, t = p..n-1.

    Returns X (n-p, p+1) with columns (1, y[t-1], …, y[t-p]) and the targets
    (n-p,) = y[p:]. Needs n ≥ p + 1 values."""
    p = _positive_int(p, "p")
    y = _series(y, min_len=p + 1)
    n = len(y)
    lags = [y[p - k : n - k] for k in range(1, p + 1)]
    return np.column_stack([np.ones(n - p), *lags]), y[p:]


def fit_ar(y: Array, p: int) -> Array:
    """AR(p) with a constant by least squares. -> coef (p+1,) = (c, φ₁, …, φ_p).

    Needs more rows than coefficients (n - p ≥ p + 1); a rank-deficient design
    (e.g. a constant series) is an error rather than an arbitrary minimum-norm fit."""
    X, target = lag_matrix(y, p)
    if len(target) < p + 1:
        raise ValueError(
            f"AR({p}) has {p + 1} coefficients but only {len(target)} equations: "
            f"needs at least {2 * p + 1} values, got {len(y)}"
        )
    coef, _, rank, _ = np.linalg.lstsq(X, target, rcond=None)
    if rank < p + 1:
        raise ValueError(
            f"AR({p}) design matrix has rank {rank} < {p + 1} (a constant or "
            "exactly linear-recurrent series?): the coefficients are not determined"
        )
    return coef


def _ar_order(coef) -> tuple[Array, int]:
    coef = np.asarray(coef, dtype=float)
    if coef.ndim != 1 or len(coef) < 2:
        raise ValueError(f"coef must be (c, φ₁, …, φ_p) with p ≥ 1, got {coef.shape}")
    return coef, len(coef) - 1


def ar_one_step(coef: Array, y: Array) -> Array:
    """In-sample one-step predictions ŷ[t] = c + Σ φ_k y[t-k], t = p..n-1. -> (n-p,)."""
    coef, p = _ar_order(coef)
    X, _ = lag_matrix(y, p)
    return X @ coef


def recursive(step: Callable[[Array], float], history: Array, p: int, horizon: int):
    """Recursive multi-step forecast: apply a one-step model `step(window) -> ŷ`,
    window = the last p values (oldest first), append ŷ and repeat. -> (horizon,)."""
    p, horizon = _positive_int(p, "p"), _positive_int(horizon, "horizon")
    buf = list(_series(history, "history", min_len=p)[-p:])
    out = np.empty(horizon)
    for h in range(horizon):
        out[h] = step(np.asarray(buf[-p:]))
        buf.append(out[h])
    return out


def ar_recursive(coef: Array, history: Array, horizon: int) -> Array:
    """AR(p) forecast of horizon H from the end of `history`, each step feeding the
    previous predictions back as lags (statsmodels' out-of-sample `predict`)."""
    coef, p = _ar_order(coef)
    phi_reversed = coef[1:][::-1]  # the window is oldest first: y[t-p], …, y[t-1]
    return recursive(lambda w: coef[0] + w @ phi_reversed, history, p, horizon)


def direct_targets(y: Array, p: int, horizon: int) -> tuple[Array, Array]:
    """Windows for direct forecasting: X (N, p) = y[t-p:t] (oldest first) and
    Y (N, horizon) = y[t:t+horizon], t = p..n-horizon, so N = n - p - horizon + 1."""
    p, horizon = _positive_int(p, "p"), _positive_int(horizon, "horizon")
    y = _series(y, min_len=p + horizon)
    n_rows = len(y) - p - horizon + 1
    idx = np.arange(n_rows)[:, None]
    return y[idx + np.arange(p)], y[idx + p + np.arange(horizon)]


def fit_ar_direct(y: Array, p: int, horizon: int) -> Array:
    """Direct strategy: one least-squares regression per horizon h of y[t+h-1] on
    (1, y[t-1], …, y[t-p]). -> coefs (horizon, p+1), row h-1 = (c_h, φ_{h,1..p}),
    lags in the order of `fit_ar`. Row 0 equals `fit_ar(y[:n-horizon+1], p)`."""
    X, Y = direct_targets(y, p, horizon)
    design = np.column_stack([np.ones(len(X)), X[:, ::-1]])  # (1, y[t-1], …, y[t-p])
    if len(design) < p + 1:
        raise ValueError(
            f"direct AR({p}) for horizon {horizon} has {len(design)} rows for "
            f"{p + 1} coefficients: series too short ({len(y)} values)"
        )
    coefs, _, rank, _ = np.linalg.lstsq(design, Y, rcond=None)
    if rank < p + 1:
        raise ValueError(f"direct AR({p}) design matrix has rank {rank} < {p + 1}")
    return coefs.T


def ar_direct(coefs: Array, history: Array) -> Array:
    """Direct forecast: ŷ[o+h-1] = c_h + Σ_k φ_{h,k} y[o-k], from observed lags only
    (no prediction is fed back). coefs (H, p+1) from `fit_ar_direct`. -> (H,)."""
    coefs = np.asarray(coefs, dtype=float)
    if coefs.ndim != 2 or coefs.shape[1] < 2:
        raise ValueError(f"coefs must have shape (H, p+1), got {coefs.shape}")
    p = coefs.shape[1] - 1
    lags = _series(history, "history", min_len=p)[::-1][:p]  # y[o-1], …, y[o-p]
    return coefs[:, 0] + coefs[:, 1:] @ lags


# ---------------------------------------------------------------- errors


def mae(pred: Array, truth: Array) -> float:
    """Mean absolute error; pred and truth of the same shape (no broadcasting)."""
    pred, truth = np.asarray(pred, dtype=float), np.asarray(truth, dtype=float)
    if pred.shape != truth.shape:
        raise ValueError(
            f"pred and truth must have the same shape, got {pred.shape} and "
            f"{truth.shape}"
        )
    if pred.size == 0:
        raise ValueError("mae of no values is undefined")
    return float(np.mean(np.abs(pred - truth)))


def mase_scale(train: Array, m: int = 1) -> float:
    """The MASE denominator: in-sample MAE of the seasonal naive one-step forecast on
    the training series, 1/(n-m) Σ_{t=m}^{n-1} |y[t] - y[t-m]|. Needs n > m and a
    nonzero result."""
    m = _positive_int(m, "m")
    y = _series(train, "train", min_len=m + 1)
    scale = float(np.mean(np.abs(y[m:] - y[:-m])))
    if scale == 0.0:
        raise ValueError(
            f"MASE undefined: the training series repeats itself exactly with period "
            f"m = {m}, so the in-sample seasonal naive MAE is 0"
        )
    return scale


def mase(pred: Array, truth: Array, train: Array, m: int = 1) -> float:
    """Mean absolute scaled error: mae(pred, truth) / mase_scale(train, m)."""
    return mae(pred, truth) / mase_scale(train, m)


# ---------------------------------------------------------------- evaluation


def rolling_origin(
    y: Array, origins: Sequence[int], horizon: int, forecaster: Forecaster
) -> tuple[Array, Array]:
    """Forecast from each origin o in `origins`, seeing only `y[:o]`.

    forecaster(history, horizon) -> (horizon,). Every target y[o : o+horizon] must
    exist (o + horizon ≤ n). Whether the model was fitted once or is refitted on each
    history is the forecaster's business: this function only guarantees that it never
    sees y[o:]. -> forecasts (len(origins), horizon), truths of the same shape."""
    y = _series(y)
    horizon = _positive_int(horizon, "horizon")
    origins = [int(o) for o in origins]
    if not origins:
        raise ValueError("origins is empty")
    bad = [o for o in origins if o < 1 or o + horizon > len(y)]
    if bad:
        raise ValueError(
            f"origins must satisfy 1 ≤ o ≤ n - horizon = {len(y) - horizon}; "
            f"got {bad[:3]}"
        )
    preds = np.empty((len(origins), horizon))
    for i, o in enumerate(origins):
        history = y[:o].copy()  # a copy: the forecaster cannot peek or write ahead
        forecast = np.asarray(forecaster(history, horizon), dtype=float)
        if forecast.shape != (horizon,):
            raise ValueError(
                f"forecaster returned shape {forecast.shape}, expected ({horizon},)"
            )
        preds[i] = forecast
    truths = np.stack([y[o : o + horizon] for o in origins])
    return preds, truths


def winner(scores: dict[str, Sequence[float]]) -> str:
    """The method whose *worst* score (lower is better) beats every other method's
    *best* score, else "undecided". scores: name -> one score per seed (a method
    without seeds, e.g. a baseline, gives one value)."""
    if len(scores) < 2:
        raise ValueError("winner needs at least two methods")
    worst = {k: float(np.max(v)) for k, v in scores.items()}
    best = {k: float(np.min(v)) for k, v in scores.items()}
    leader = min(worst, key=worst.get)
    others = [best[k] for k in scores if k != leader]
    return leader if worst[leader] < min(others) else "undecided"
