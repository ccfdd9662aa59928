"""Laws fitted to inter-arrival gaps by maximum likelihood (scipy.stats, location fixed at 0),
each with its Kolmogorov-Smirnov distance D, and BurstGPT's per-window Gamma.

Only D is reported: a KS p-value assumes the law was fixed in advance, and these were fitted
to the same data. A gap of 0 (two equal arrival times) has no logarithm, so the fits count it
as half the trace's time resolution, as ``llmtraces fit`` does.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats as st

from .model import Fit, GammaWindow

#: The most gaps a fit uses; longer traces are strided evenly (every k-th gap).
MAX_FIT = 1_000_000
#: Fewest gaps a window needs for its own Gamma fit.
MIN_WINDOW_GAPS = 3


def for_fitting(gaps_s: np.ndarray, floor_s: float) -> np.ndarray:
    """The gaps >= 0 with each 0 raised to ``floor_s``, strided down to :data:`MAX_FIT`."""
    x = gaps_s[gaps_s >= 0]
    if len(x) > MAX_FIT:
        x = x[:: math.ceil(len(x) / MAX_FIT)]
    return np.where(x == 0, floor_s, x)


def _ks(x: np.ndarray, cdf: object) -> float:
    return float(st.kstest(x, cdf).statistic)


def fit_laws(x: np.ndarray) -> tuple[Fit, Fit, Fit] | None:
    """Gamma, Weibull and exponential fits of positive gaps ``x``; None under 2 values or when
    all are equal (no spread to fit)."""
    if len(x) < 2 or float(x.min()) == float(x.max()):
        return None
    with warnings.catch_warnings():  # the optimisers' step warnings are not the user's
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            ga, _, gs = st.gamma.fit(x, floc=0)
            wc, _, ws = st.weibull_min.fit(x, floc=0)
        except RuntimeError:  # scipy's FitError: no optimum found; the fits stay null
            return None
    es = float(x.mean())
    return (Fit(shape=float(ga), scale_s=float(gs), ks_d=_ks(x, st.gamma(ga, scale=gs).cdf)),
            Fit(shape=float(wc), scale_s=float(ws),
                ks_d=_ks(x, st.weibull_min(wc, scale=ws).cdf)),
            Fit(shape=None, scale_s=es, ks_d=_ks(x, st.expon(scale=es).cdf)))


def gamma_windows(arrival_us: np.ndarray, window_s: float, floor_s: float
                  ) -> list[GammaWindow]:
    """BurstGPT Fig. 6: a Gamma fitted to the gaps starting in each ``window_s`` window from
    the first arrival (file order; CV of the fitted law = 1/sqrt(shape))."""
    if len(arrival_us) < 2:
        return []
    first = int(arrival_us.min())
    win_us = window_s * 1e6
    gaps = np.diff(arrival_us) / 1e6
    gap_win = ((arrival_us[:-1] - first) // win_us).astype(np.int64)
    arr_win = ((arrival_us - first) // win_us).astype(np.int64)
    requests = np.bincount(arr_win)
    keep = gaps >= 0
    order = np.argsort(gap_win[keep], kind="stable")  # each window's gaps, contiguous
    by_window = np.split(gaps[keep][order], np.cumsum(
        np.bincount(gap_win[keep], minlength=len(requests)))[:-1])
    out = []
    for w in range(len(requests)):
        g = by_window[w] if w < len(by_window) else gaps[:0]
        shape = scale = cv_fit = cv = None
        if len(g) >= MIN_WINDOW_GAPS:
            mean = float(g.mean())
            cv = float(g.std() / mean) if mean > 0 else None
            x = np.where(g == 0, floor_s, g)
            if float(x.min()) != float(x.max()):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    try:
                        a, _, s = st.gamma.fit(x, floc=0)
                    except RuntimeError:  # scipy's FitError: this window stays unfitted
                        a = s = None
                if a is not None and s is not None:
                    shape, scale, cv_fit = float(a), float(s), 1.0 / math.sqrt(a)
        out.append(GammaWindow(start_s=w * window_s, requests=int(requests[w]),
                               gaps=len(g), shape=shape,
                               scale_s=scale, cv_fit=cv_fit, cv=cv))
    return out
