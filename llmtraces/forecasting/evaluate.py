"""Forecast requests per bin (or their mean input tokens) and score it: :func:`forecast` (a
trace) and :func:`forecast_series` (a binned series).

Each bin t is predicted ``horizon`` bins ahead, from what was known at bin t - horizon: the
counts of bins t-h, t-h-1, t-h-2 (lags 1-3), the mean and standard deviation of the bins in
the hour ending with bin t-h (BurstGPT's "rolling window of up to 60 minutes": fewer bins at
the start of the trace), and the hour of day and weekday of bin t. The hour of day is used
only when the training bins span a day or more, and the weekday only when they span a week:
over a shorter span either is a stand-in for "how late in the trace", which a tree cannot
carry past the split. The split is by time: the last ``test_fraction`` of the bins is the test
set, the model is fitted on the bins before it only, and no feature of a bin reads a later
bin, so the test bins cannot leak into training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from ..errors import LLMTracesError
from ..pipeline.inputs import TraceLike
from ..pipeline.view import TransformError
from .metrics import nmae, nmse
from .series import BinnedSeries, bin_counts

FEATURES = ("lag1", "lag2", "lag3", "mean_1h", "std_1h", "hour_of_day", "weekday")
#: Bins a model needs before the test split to be fitted at all.
MIN_TRAIN = 20
DAY_S = 86_400
#: The booster's settings: fixed, so a series gives the same forecast on every run.
BOOSTER = {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 15,
           "early_stopping": False, "random_state": 0}


class MissingExtraError(LLMTracesError):
    """An optional dependency is not installed; the message names the extra."""


@dataclass
class ForecastResult:
    """Scores of the model and the baselines on the test bins, and the series behind them."""

    target: str
    bin_s: int
    horizon: int
    bins: int
    train_bins: int
    test_bins: int
    test_start_s: float
    wall_clock: bool
    features: tuple[str, ...]
    scores: dict[str, dict[str, float] | None]
    notes: dict[str, str]
    actual: np.ndarray = field(repr=False)
    predicted: dict[str, np.ndarray] = field(repr=False)
    train_predicted: np.ndarray = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        """The summary as JSON-ready values (no per-bin series)."""
        return {
            "target": self.target, "bin_s": self.bin_s, "horizon": self.horizon,
            "bins": self.bins, "train_bins": self.train_bins, "test_bins": self.test_bins,
            "test_start_s": self.test_start_s, "wall_clock": self.wall_clock,
            "features": list(self.features), "model": "sklearn HistGradientBoostingRegressor",
            "scores": self.scores, "notes": self.notes,
            "definitions": {
                "nmae": "sum |y - yhat| / sum |y| over the test bins (with requests, for "
                        "mean_input_tokens)",
                "nmse": "sum (y - yhat)^2 / sum (y - mean y)^2 over the same bins",
            },
        }


def _regressor() -> Any:
    try:
        # lazy: the optional 'forecast' extra
        from sklearn.ensemble import HistGradientBoostingRegressor  # type: ignore[import-untyped]
    except ImportError as exc:
        raise MissingExtraError(f"llmtraces forecast needs scikit-learn ({exc.name} is "
                                "missing): pip install 'llmtraces[forecast]'") from None
    return HistGradientBoostingRegressor(**BOOSTER)


def _clock(series: BinnedSeries, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hour of day (fractional) and weekday (0 = Monday) of the start of bins ``t``; without
    wall time, from the trace's time 0 taken as a Monday midnight."""
    base_s, base_day = 0.0, 0
    if series.origin is not None:
        o = series.origin
        base_s = o.hour * 3600 + o.minute * 60 + o.second + o.microsecond / 1e6
        base_day = o.weekday()
    seconds = base_s + t * float(series.bin_s)
    return (seconds % DAY_S) / 3600.0, (base_day + seconds // DAY_S) % 7


def features(series: BinnedSeries, t: np.ndarray, horizon: int,
             names: tuple[str, ...] = FEATURES, target: str = "requests") -> np.ndarray:
    """The feature rows (columns ``names``, from :data:`FEATURES`) of target bins ``t``; each
    reads only bins up to t - horizon. A bin with no value (mean tokens of an empty bin) is
    NaN in the lags and left out of the hour's mean and std (the booster takes NaN)."""
    y = series.values(target)
    known = ~np.isnan(y)
    yz = np.where(known, y, 0.0)
    w = max(1, round(3600 / series.bin_s))
    c0 = np.concatenate([[0], np.cumsum(known)])
    c1 = np.concatenate([[0.0], np.cumsum(yz)])
    c2 = np.concatenate([[0.0], np.cumsum(yz * yz)])
    end = t - horizon + 1  # one past the last bin a feature may read
    start = np.maximum(end - w, 0)
    k = (c0[end] - c0[start]).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(k > 0, (c1[end] - c1[start]) / k, np.nan)
        var = np.maximum((c2[end] - c2[start]) / k - mean * mean, 0.0)
    hour, weekday = _clock(series, t)
    cols = {"lag1": y[t - horizon], "lag2": y[t - horizon - 1], "lag3": y[t - horizon - 2],
            "mean_1h": mean, "std_1h": np.sqrt(var), "hour_of_day": hour, "weekday": weekday}
    return np.column_stack([cols[name] for name in names])


def usable_features(train_bins: int, bin_s: int) -> tuple[str, ...]:
    """:data:`FEATURES` less the clock features whose cycle the training span does not
    cover (hour of day: a day; weekday: a week)."""
    span = train_bins * bin_s
    drop = {"hour_of_day"} if span < DAY_S else set()
    drop |= {"weekday"} if span < 7 * DAY_S else set()
    return tuple(f for f in FEATURES if f not in drop)


def first_target(series: BinnedSeries, horizon: int) -> int:
    """The first bin whose features all exist (its three lags)."""
    return horizon + 2


def _seasonal(y: np.ndarray, t: np.ndarray, period: int, horizon: int, test_start: int,
              name: str) -> tuple[np.ndarray | None, str]:
    if period < horizon:
        return None, f"{name}: a period shorter than the horizon is not a forecast"
    if test_start - period < 0:
        return None, f"{name}: the span before the test bins is shorter than the period"
    return y[t - period], f"{name}: the value of the same bin {period} bins earlier"


def _carried(y: np.ndarray) -> np.ndarray:
    """``y`` with each NaN replaced by the last value before it (0 before the first)."""
    idx = np.where(~np.isnan(y), np.arange(len(y)), -1)
    np.maximum.accumulate(idx, out=idx)
    return np.where(idx >= 0, y[np.maximum(idx, 0)], 0.0)


def forecast_series(series: BinnedSeries, horizon: int = 1, test_fraction: float = 0.2,
                    target: str = "requests") -> ForecastResult:
    """Fit on the bins before the split, predict the test bins, score model and baselines.

    ``target`` is ``requests`` (per bin) or ``mean_input_tokens`` (of a bin's requests:
    bins with none are neither trained on nor scored, and the baselines carry the last
    known mean forward)."""
    if not (isinstance(horizon, int) and horizon >= 1):
        raise TransformError(f"forecast: --horizon must be a whole number of bins >= 1 "
                             f"(got {horizon!r})")
    if not (0 < test_fraction < 1):
        raise TransformError(f"forecast: test_fraction must be in (0, 1) (got "
                             f"{test_fraction!r})")
    y = series.values(target)
    carried = _carried(y)
    n = len(y)
    t0 = first_target(series, horizon)
    usable = n - t0
    n_test = max(1, math.ceil(usable * test_fraction))
    n_train = usable - n_test
    if n_train < MIN_TRAIN:
        raise TransformError(
            f"forecast: {n:,} bins of {series.bin_s} s leave {max(n_train, 0)} to train on "
            f"(need {MIN_TRAIN} before the test split, after {t0} bins of history); use a "
            f"smaller --bin or a longer trace")
    train_t = np.arange(t0, t0 + n_train)
    test_t = np.arange(t0 + n_train, n)
    names = usable_features(n_train, series.bin_s)
    fit_t = train_t[~np.isnan(y[train_t])]
    if len(fit_t) < MIN_TRAIN:
        raise TransformError(f"forecast: only {len(fit_t)} training bins have a "
                             f"{target} value (need {MIN_TRAIN})")
    model = _regressor()
    model.fit(features(series, fit_t, horizon, names, target), y[fit_t])
    predicted = {"model": np.maximum(model.predict(features(series, test_t, horizon, names,
                                                            target)), 0.0),
                 "persistence": carried[test_t - horizon]}
    notes = {"model": "gradient boosting on " + ", ".join(names) + "; negative "
                      "predictions clipped to 0",
             "persistence": f"the value {horizon} bin(s) earlier (the last one known)"}
    day = DAY_S // series.bin_s if DAY_S % series.bin_s == 0 else 0
    for name, period in (("seasonal_day", day), ("seasonal_week", 7 * day)):
        if not period:
            notes[name] = f"{name}: a day is not a whole number of {series.bin_s} s bins"
            continue
        pred, why = _seasonal(carried, test_t, period, horizon, int(test_t[0]), name)
        notes[name] = why
        if pred is not None:
            predicted[name] = pred
    scored = ~np.isnan(y[test_t])  # every test bin, for requests
    actual = y[test_t][scored]
    predicted = {name: pred[scored] for name, pred in predicted.items()}
    scores: dict[str, dict[str, float] | None] = {
        name: ({"nmae": nmae(actual.tolist(), predicted[name].tolist()),
                "nmse": nmse(actual.tolist(), predicted[name].tolist())}
               if name in predicted else None)
        for name in ("model", "persistence", "seasonal_day", "seasonal_week")}
    return ForecastResult(
        target=target, bin_s=series.bin_s, horizon=horizon, bins=n, train_bins=n_train,
        test_bins=n_test,
        test_start_s=float(test_t[0] * series.bin_s), wall_clock=series.origin is not None,
        features=names, scores=scores, notes=notes, actual=actual, predicted=predicted,
        train_predicted=model.predict(features(series, train_t, horizon, names, target)))


def forecast(trace: TraceLike, bin_s: int = 60, horizon: int = 1,
             test_fraction: float = 0.2, target: str = "requests") -> ForecastResult:
    """Forecast ``trace``'s requests (or their mean input tokens) per ``bin_s``-second bin
    ``horizon`` bins ahead; see :func:`forecast_series`.

    Examples
    --------
    >>> r = forecast("azure-llm-2023/code", bin_s=60, horizon=1)
    >>> r.bins, r.train_bins, r.test_bins
    (58, 44, 11)
    """
    return forecast_series(bin_counts(trace, bin_s), horizon, test_fraction, target)


def origin_text(origin: datetime | None) -> str:
    """How the terminal view names the clock of the time features."""
    return "wall clock (UTC)" if origin is not None else "trace time (0 = Monday 00:00)"


__all__ = ["FEATURES", "ForecastResult", "MissingExtraError", "features", "first_target",
           "forecast", "forecast_series"]
