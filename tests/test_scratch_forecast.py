"""The forecasting code of chapter III.6 against statsmodels (float64): AR(p) least
squares and its forecasts equal `AutoReg(..., trend="c")`; MASE equals a hand-computed
example; the baselines, direct strategy and rolling origin on small exact cases."""

import inspect

import numpy as np
import pytest
import statsmodels.api as sm
from statsmodels.tsa.ar_model import AutoReg

from dlcore.scratch import forecast as F

TOL = dict(rtol=1e-8, atol=1e-8)


def _autoreg(y, p):
    """AutoReg with a constant; `old_names=False` where this statsmodels still has the
    argument (it was removed in 0.15, where the new names are the only ones)."""
    kwargs = {"trend": "c"}
    if "old_names" in inspect.signature(AutoReg.__init__).parameters:
        kwargs["old_names"] = False
    return AutoReg(y, lags=p, **kwargs).fit()


def _sunspots():
    return sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(float)


def _ar_series(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = np.zeros(n)
    for t in range(2, n):
        y[t] = 0.3 + 0.6 * y[t - 1] - 0.2 * y[t - 2] + rng.normal()
    return y


SERIES = {"sunspots": _sunspots, "ar2": _ar_series}


@pytest.mark.parametrize("name", SERIES)
@pytest.mark.parametrize("p", [1, 2, 9, 20])
def test_ar_coefficients_and_forecasts_equal_autoreg(name, p):
    y = SERIES[name]()[:250]
    res = _autoreg(y, p)
    coef = F.fit_ar(y, p)
    np.testing.assert_allclose(coef, res.params, **TOL)
    # in-sample one-step predictions for t = p..n-1
    np.testing.assert_allclose(
        F.ar_one_step(coef, y), res.predict(start=p, end=len(y) - 1), **TOL
    )
    # out-of-sample: statsmodels forecasts recursively (dynamic)
    np.testing.assert_allclose(
        F.ar_recursive(coef, y, 15), res.predict(start=len(y), end=len(y) + 14), **TOL
    )


# statsmodels warns that n = 2p + 1 leaves no residual degrees of freedom: expected here
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.filterwarnings("ignore:The adjusted number of observations")
def test_ar_large_offset_and_shortest_series():
    """A level of 1e6 (conditioning of the design) and the fewest values AR(p)
    accepts, n = 2p + 1 (as many equations as coefficients)."""
    y = 1e6 + _ar_series(120, seed=3)
    res = _autoreg(y, 3)
    np.testing.assert_allclose(F.fit_ar(y, 3), res.params, rtol=1e-7)
    np.testing.assert_allclose(F.ar_recursive(F.fit_ar(y, 3), y, 5), res.forecast(5))
    short = _ar_series(7, seed=4)
    np.testing.assert_allclose(F.fit_ar(short, 3), _autoreg(short, 3).params, **TOL)
    with pytest.raises(ValueError, match="equations"):
        F.fit_ar(short[:6], 3)


def test_ar_refuses_undetermined_fits_and_bad_input():
    with pytest.raises(ValueError, match="rank"):
        F.fit_ar(np.full(50, 3.0), 2)  # every column of the design is constant
    with pytest.raises(ValueError, match="NaN"):
        F.fit_ar(np.array([1.0, np.nan, 2.0, 3.0, 4.0]), 1)
    with pytest.raises(ValueError, match="1-D"):
        F.fit_ar(np.ones((10, 2)), 1)
    with pytest.raises(ValueError, match="positive int"):
        F.fit_ar(_ar_series(), 0)


def test_recursive_ar1_is_geometric():
    """AR(1) without noise: the h-step forecast is c(1+φ+…+φ^{h-1}) + φ^h y."""
    coef = np.array([2.0, 0.5])
    got = F.ar_recursive(coef, np.array([10.0]), 4)
    np.testing.assert_allclose(got, [7.0, 5.5, 4.75, 4.375], **TOL)


def test_direct_first_row_is_one_step_fit_and_forecast_uses_observed_lags():
    y = _ar_series(200, seed=1)
    H, p = 6, 4
    coefs = F.fit_ar_direct(y, p, H)
    assert coefs.shape == (H, p + 1)
    np.testing.assert_allclose(coefs[0], F.fit_ar(y[: len(y) - H + 1], p), **TOL)
    # each horizon is its own least-squares regression on the same windows
    X, Y = F.direct_targets(y, p, H)
    design = np.column_stack([np.ones(len(X)), X[:, ::-1]])
    for h in range(H):
        ref = np.linalg.lstsq(design, Y[:, h], rcond=None)[0]
        np.testing.assert_allclose(coefs[h], ref, **TOL)
    history = y[:150]
    lags = history[::-1][:p]
    np.testing.assert_allclose(
        F.ar_direct(coefs, history), coefs[:, 0] + coefs[:, 1:] @ lags, **TOL
    )


def test_direct_targets_windows():
    X, Y = F.direct_targets(np.arange(7.0), 3, 2)
    np.testing.assert_array_equal(X, [[0, 1, 2], [1, 2, 3], [2, 3, 4]])
    np.testing.assert_array_equal(Y, [[3, 4], [4, 5], [5, 6]])
    X1, Y1 = F.direct_targets(np.arange(4.0), 3, 1)  # exactly one window
    assert X1.shape == (1, 3) and Y1.shape == (1, 1)
    with pytest.raises(ValueError, match="at least"):
        F.direct_targets(np.arange(4.0), 3, 2)


def test_naive_and_seasonal_naive():
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    np.testing.assert_array_equal(F.naive(y, 3), [5, 5, 5])
    np.testing.assert_array_equal(F.naive(np.array([7.0]), 1), [7])  # length 1
    # m = 3: the last season (3, 4, 5) repeated; h > m wraps around
    np.testing.assert_array_equal(F.seasonal_naive(y, 7, 3), [3, 4, 5, 3, 4, 5, 3])
    np.testing.assert_array_equal(F.seasonal_naive(y, 2, 1), F.naive(y, 2))
    with pytest.raises(ValueError, match="at least 6"):
        F.seasonal_naive(y, 2, 6)
    with pytest.raises(ValueError, match="at least 1"):
        F.naive(np.array([]), 1)


def test_mase_hand_computed():
    train = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    # m = 1: |3-1| + |2-3| + |5-2| + |4-5| = 2 + 1 + 3 + 1 = 7 over n - m = 4 values
    assert F.mase_scale(train, 1) == pytest.approx(7 / 4)
    # m = 2: |2-1| + |5-3| + |4-2| = 5 over 3 values
    assert F.mase_scale(train, 2) == pytest.approx(5 / 3)
    pred, truth = np.array([4.0, 4.0, 6.0]), np.array([5.0, 2.0, 6.0])
    assert F.mae(pred, truth) == pytest.approx(1.0)  # (1 + 2 + 0) / 3
    assert F.mase(pred, truth, train, 1) == pytest.approx(4 / 7)
    assert F.mase(pred, truth, train, 2) == pytest.approx(3 / 5)


def test_mase_zero_scale_and_short_train_are_errors():
    with pytest.raises(ValueError, match="MASE undefined"):
        F.mase_scale(np.full(10, 2.5), 1)
    periodic = np.tile([1.0, 4.0, 2.0], 4)  # repeats exactly with period 3
    assert F.mase_scale(periodic, 1) > 0
    with pytest.raises(ValueError, match="MASE undefined"):
        F.mase(np.zeros(2), np.ones(2), periodic, 3)
    with pytest.raises(ValueError, match="at least 4"):
        F.mase_scale(np.arange(3.0), 3)


def test_mae_refuses_broadcasting():
    with pytest.raises(ValueError, match="same shape"):
        F.mae(np.zeros((3, 1)), np.zeros(3))


def test_rolling_origin_sees_only_the_past():
    y = np.arange(10.0)
    seen = []

    def spy(history, horizon):
        seen.append(len(history))
        history[:] = -1.0  # writing must not reach the series
        return np.full(horizon, len(history), dtype=float)

    preds, truths = F.rolling_origin(y, [4, 6, 8], 2, spy)
    assert seen == [4, 6, 8]
    np.testing.assert_array_equal(preds, [[4, 4], [6, 6], [8, 8]])
    np.testing.assert_array_equal(truths, [[4, 5], [6, 7], [8, 9]])
    np.testing.assert_array_equal(y, np.arange(10.0))
    with pytest.raises(ValueError, match="origins"):
        F.rolling_origin(y, [9], 2, spy)  # the target y[10] does not exist
    with pytest.raises(ValueError, match="shape"):
        F.rolling_origin(y, [4], 2, lambda h, k: np.zeros(k + 1))


def test_rolling_origin_naive_on_sunspots_equals_lagged_differences():
    y = _sunspots()
    origins = range(269, 309)
    preds, truths = F.rolling_origin(y, origins, 1, F.naive)
    np.testing.assert_allclose(preds[:, 0], y[268:308])
    assert F.mae(preds, truths) == pytest.approx(np.mean(np.abs(np.diff(y[268:]))))


def test_winner_needs_every_seed():
    assert F.winner({"a": [1.0, 1.1, 1.2], "b": [1.3, 1.4, 1.5]}) == "a"
    assert F.winner({"a": [1.0, 1.1, 1.35], "b": [1.3, 1.4, 1.5]}) == "undecided"
    assert F.winner({"a": [0.9, 0.95, 0.99], "naive": [1.0]}) == "a"
    assert F.winner({"a": [0.9, 0.95, 1.01], "naive": [1.0]}) == "undecided"
    with pytest.raises(ValueError):
        F.winner({"a": [1.0]})
