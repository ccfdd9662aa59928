"""Load forecasting (BurstGPT §5.4): the error measures, binning, the time-ordered split
without leakage, the baselines, a daily pattern the model must learn, and the verb."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest

from llmtraces.forecasting import bin_counts, forecast, forecast_series, nmae, nmse
from llmtraces.forecasting.evaluate import MissingExtraError, features, usable_features
from llmtraces.forecasting.series import BinnedSeries
from llmtraces.pipeline.view import TransformError

CODE = "azure-llm-2023/code"
MONDAY = datetime(2024, 5, 6, tzinfo=UTC)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One OpenMP thread for the booster: on a shared machine, spinning threads cost more than
    they give on these small series."""
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    with threadpool_limits(1):
        yield


def daily(days: int, bin_s: int, seed: int = 0) -> BinnedSeries:
    """Poisson counts around a daily sine (20 +- 15 requests a minute), from a Monday."""
    t = np.arange(days * 86_400 // bin_s) * bin_s
    lam = (20 + 15 * np.sin(2 * np.pi * t / 86_400)) * bin_s / 60
    return BinnedSeries(np.random.default_rng(seed).poisson(lam), bin_s, MONDAY)


def test_error_measures_follow_their_definitions():
    y, p = [1.0, 3.0, 0.0, 4.0], [2.0, 1.0, 0.0, 4.0]
    assert nmae(y, p) == pytest.approx((1 + 2 + 0 + 0) / 8)
    # mean 2: squared deviations 1, 1, 4, 4
    assert nmse(y, p) == pytest.approx((1 + 4 + 0 + 0) / 10)
    assert nmse(y, [2.0] * 4) == pytest.approx(1.0)  # the mean scores 1
    assert np.isnan(nmae([0.0, 0.0], [1.0, 1.0])) and np.isnan(nmse([2.0, 2.0], [1.0, 1.0]))


def test_bins_of_the_azure_code_trace():
    s = bin_counts(CODE, 60)
    assert len(s.counts) == 58 and int(s.counts.sum()) == 8819
    assert s.origin == datetime(2023, 11, 16, 18, 17, 3, 979960, tzinfo=UTC)
    assert int(bin_counts(CODE, 600).counts.sum()) == 8819


def test_forecast_on_the_azure_code_trace():
    r = forecast(CODE, bin_s=60, horizon=1)
    y = bin_counts(CODE, 60).counts.astype(float)
    assert (r.bins, r.train_bins, r.test_bins) == (58, 44, 11)
    assert r.actual.tolist() == y[47:].tolist()
    assert r.predicted["persistence"].tolist() == y[46:57].tolist()
    assert r.scores["persistence"] == {"nmae": nmae(y[47:], y[46:57]),
                                       "nmse": nmse(y[47:], y[46:57])}
    # one hour: no day or week to compare with, and no clock feature worth learning
    assert r.scores["seasonal_day"] is None and r.scores["seasonal_week"] is None
    assert "shorter than the period" in r.notes["seasonal_day"]
    assert r.features == ("lag1", "lag2", "lag3", "mean_1h", "std_1h")
    assert (r.predicted["model"] >= 0).all() and r.wall_clock


def test_mean_input_tokens_skip_empty_bins():
    s = bin_counts(CODE, 60)
    assert s.tokens is not None and s.tokens.sum() == 18_059_974  # sum of ContextTokens
    r = forecast(CODE, bin_s=60, target="mean_input_tokens")
    y = s.values("mean_input_tokens")[47:]
    assert np.isnan(y).sum() == 3  # three test bins have no request: not scored
    assert r.actual.tolist() == y[~np.isnan(y)].tolist()
    assert r.target == "mean_input_tokens" and len(r.predicted["model"]) == 8
    assert not np.isnan(r.predicted["persistence"]).any()  # the last known mean, carried
    model = r.scores["model"]
    assert model is not None and model["nmae"] == nmae(r.actual, r.predicted["model"])


def test_the_model_beats_persistence_on_a_daily_pattern():
    r = forecast_series(daily(10, 600), horizon=1)
    assert "hour_of_day" in r.features and "weekday" in r.features
    model, persistence = r.scores["model"], r.scores["persistence"]
    assert model is not None and persistence is not None
    assert model["nmse"] < 0.8 * persistence["nmse"]
    assert model["nmae"] < persistence["nmae"]
    assert r.scores["seasonal_day"] is not None and r.scores["seasonal_week"] is not None
    day = 86_400 // 600
    test_t = np.arange(r.bins - r.test_bins, r.bins)
    assert r.predicted["seasonal_day"].tolist() == daily(10, 600).counts[test_t - day].tolist()
    assert r.predicted["seasonal_week"].tolist() == \
        daily(10, 600).counts[test_t - 7 * day].tolist()


def test_shuffling_the_future_leaves_training_unchanged():
    s = daily(2, 600, seed=3)
    first = forecast_series(s, horizon=2)
    split = first.bins - first.test_bins
    shuffled = s.counts.copy()
    np.random.default_rng(9).shuffle(shuffled[split:])
    assert not np.array_equal(shuffled, s.counts)
    second = forecast_series(BinnedSeries(shuffled, s.bin_s, s.origin), horizon=2)
    assert np.array_equal(first.train_predicted, second.train_predicted)
    assert not np.array_equal(first.actual, second.actual)


def test_features_read_nothing_after_t_minus_horizon():
    s = daily(2, 600, seed=1)
    t, h = np.array([100]), 3
    names = usable_features(200, 600)
    before = features(s, t, h, names)
    changed = s.counts.copy()
    changed[98:] += 1000  # bins t-h+1 .. the end
    after = features(BinnedSeries(changed, 600, MONDAY), t, h, names)
    assert np.array_equal(before, after)
    assert before[0, :3].tolist() == s.counts[[97, 96, 95]].tolist()
    assert before[0, 3] == pytest.approx(s.counts[92:98].mean())  # the hour ending at t-h


def test_clock_features_need_a_covered_cycle():
    assert usable_features(143, 600) == ("lag1", "lag2", "lag3", "mean_1h", "std_1h")
    assert "hour_of_day" in usable_features(144, 600)
    assert "weekday" not in usable_features(1007, 600)
    assert "weekday" in usable_features(1008, 600)


def test_too_short_a_series_is_refused():
    with pytest.raises(TransformError, match=r"6 bins of 600 s leave 2 to train on"):
        forecast(CODE, bin_s=600)
    with pytest.raises(TransformError, match="--horizon"):
        forecast_series(daily(1, 600), horizon=0)


def test_missing_scikit_learn_names_the_extra(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "sklearn.ensemble", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'llmtraces\[forecast\]'"):
        forecast_series(daily(1, 600))


def test_forecast_verb(cli):
    r = cli("forecast", CODE, "--bin", "60", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["bins"] == 58 and doc["scores"]["seasonal_day"] is None
    assert set(doc["definitions"]) == {"nmae", "nmse"}
    text = cli("forecast", CODE)
    assert text.exit_code == 0 and "persistence" in text.output and "NMSE" in text.output
    tokens = cli("forecast", CODE, "--target", "mean_input_tokens", "--json")
    assert tokens.exit_code == 0 and json.loads(tokens.output)["target"] == "mean_input_tokens"
    bad = cli("forecast", CODE, "--bin", "600")
    assert bad.exit_code != 0 and len(bad.output.strip().splitlines()) == 1
