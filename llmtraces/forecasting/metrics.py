"""The error measures of a forecast: :func:`nmae` and :func:`nmse`.

BurstGPT (§5.4, Figures 17-18) reports NMAE and NMSE without defining them; these are the
common definitions, normalised so that a constant forecast at the actuals' mean scores 1.0
in NMSE and the error is relative to the load in NMAE.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def nmae(actual: Sequence[float], predicted: Sequence[float]) -> float:
    """Normalised mean absolute error: sum |y - yhat| / sum |y| (nan when every y is 0)."""
    num = math.fsum(abs(a - p) for a, p in zip(actual, predicted, strict=True))
    den = math.fsum(abs(a) for a in actual)
    return num / den if den > 0 else math.nan


def nmse(actual: Sequence[float], predicted: Sequence[float]) -> float:
    """Normalised mean squared error: sum (y - yhat)^2 / sum (y - mean(y))^2 (nan when y is
    constant)."""
    ys = list(actual)
    mean = math.fsum(ys) / len(ys) if ys else math.nan
    num = math.fsum((a - p) ** 2 for a, p in zip(ys, predicted, strict=True))
    den = math.fsum((a - mean) ** 2 for a in ys)
    return num / den if den > 0 else math.nan


__all__ = ["nmae", "nmse"]
