"""Input and output lengths: summaries, their correlation, and the Zipf fit of each."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats as st

from .model import LengthPair, Lengths
from .zipf import fit_zipf


def summary(values: np.ndarray, nulls: int) -> Lengths:
    """Count, mean, population std, min, p50/p90/p99 (linear interpolation), max, Zipf."""
    if not len(values):
        return Lengths(count=0, nulls=nulls, mean=None, std=None, min=None, p50=None,
                       p90=None, p99=None, max=None)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return Lengths(count=len(values), nulls=nulls, mean=float(values.mean()),
                   std=float(values.std()), min=int(values.min()), p50=float(p50),
                   p90=float(p90), p99=float(p99), max=int(values.max()),
                   zipf=fit_zipf(values))


def correlation(x: np.ndarray, y: np.ndarray) -> tuple[float | None, float | None]:
    """Pearson r and Spearman rho; None where either column is constant or too short."""
    if len(x) < 2 or x.min() == x.max() or y.min() == y.max():
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = float(st.pearsonr(x, y).statistic)
        rho = float(st.spearmanr(x, y).statistic)
    return r, rho


def lengths(inputs: np.ndarray, outputs: np.ndarray, has_output: np.ndarray) -> LengthPair:
    """Both columns summarised, correlated over the rows where the output is known."""
    out = outputs[has_output]
    r, rho = correlation(inputs[has_output], out)
    return LengthPair(input=summary(inputs, 0),
                      output=summary(out, int((~has_output).sum())), pearson=r, spearman=rho)
