"""BurstGPT's Zipf law of lengths, with its KS distance.

BurstGPT (§3, Fig. 8; §5.3 "Modeled Scaling") says request lengths "adhere to a Zipf
distribution" and samples them from one with parameter θ. What is fitted here is that law as a
power law in the length value itself: P(L = k) proportional to k^-s for integer k in
[k_min, k_max] (the observed range of lengths >= 1), the exponent s by maximum likelihood
(:func:`llmtraces.transforms._math.zipf_mle`, the fit ``llmtraces fit`` uses). It is not a
rank-frequency Zipf (frequency against the rank of a length). D is the largest gap between the
empirical CDF and the fitted CDF over the support; both are step functions on the integers.
"""

from __future__ import annotations

import numpy as np

from ..transforms._math import zipf_cdf, zipf_mle
from .model import Zipf

#: Support longer than this is not fitted (the CDF would be held whole); lengths stay reported.
MAX_SUPPORT = 50_000_000


def fit_zipf(lengths: np.ndarray) -> Zipf | None:
    """The bounded Zipf of the lengths >= 1; None when there are fewer than two distinct."""
    k = lengths[lengths >= 1]
    if not len(k):
        return None
    k_min, k_max = int(k.min()), int(k.max())
    if k_max == k_min or k_max - k_min + 1 > MAX_SUPPORT:
        return None
    s = zipf_mle(float(np.log(k).mean()), k_min, k_max)
    model = np.asarray(zipf_cdf(s, k_min, k_max))
    counts = np.bincount(k - k_min, minlength=k_max - k_min + 1)
    empirical = np.cumsum(counts) / len(k)
    return Zipf(exponent=float(s), k_min=k_min, k_max=k_max, rows=len(k),
                ks_d=float(np.abs(empirical - model).max()))
