"""Load forecasting as in BurstGPT §5.4: request counts (or mean input tokens) per time bin
predicted by gradient boosting from lags 1-3, rolling statistics and time-of-day / weekday
features, scored with NMAE and NMSE on a time-ordered split against persistence and seasonal
baselines.

Needs the ``forecast`` extra (scikit-learn, with numpy). See ``docs/stats.md`` ("Forecasting").
"""

from __future__ import annotations

from .evaluate import ForecastResult, forecast, forecast_series
from .metrics import nmae, nmse
from .series import TARGETS, BinnedSeries, bin_counts

__all__ = ["TARGETS", "BinnedSeries", "ForecastResult", "bin_counts", "forecast",
           "forecast_series", "nmae", "nmse"]
