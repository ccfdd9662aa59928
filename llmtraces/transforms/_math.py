"""Numerics for the trace model, in pure Python plus pyarrow compute (no numpy, no scipy).

- digamma / trigamma: recurrence up to x >= 10, then their asymptotic series (error < 1e-12).
- Gamma MLE: Minka (2002), "Estimating a Gamma distribution": the generalised-Newton update
  on the shape from the sufficient statistics mean(x) and mean(log x); rate = shape / mean.
- Bounded Zipf MLE: P(k) ~ k^-s on [k_min, k_max]; the likelihood equation
  E_s[log K] = mean(log k) solved by safeguarded Newton (the derivative is -Var_s[log K]),
  with the support's sums vectorised in pyarrow.
- Samplers draw only from :meth:`random.Random.random`, whose sequence for a seed Python
  guarantees across versions, so a seed gives the same trace on every machine and release:
  Marsaglia-Tsang (2000) for the Gamma, Box-Muller normals, inverse CDFs for the rest.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ..schema import row_index


def digamma(x: float) -> float:
    """ψ(x) for x > 0."""
    result = 0.0
    while x < 10.0:
        result -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    return result + math.log(x) - 0.5 / x - f * (
        1 / 12 - f * (1 / 120 - f * (1 / 252 - f * (1 / 240 - f / 132))))


def trigamma(x: float) -> float:
    """ψ'(x) for x > 0."""
    result = 0.0
    while x < 10.0:
        result += 1.0 / (x * x)
        x += 1.0
    f = 1.0 / (x * x)
    return result + 1.0 / x + f / 2 + f / x * (
        1 / 6 - f * (1 / 30 - f * (1 / 42 - f / 30)))


#: Shapes above this are reported as this: gaps (almost) all equal, a near-deterministic clock.
MAX_SHAPE = 1e6


def gamma_mle(mean: float, mean_log: float, *, tol: float = 1e-12, steps: int = 100
              ) -> tuple[float, float]:
    """Shape α and rate β of the Gamma MLE from mean(x) and mean(log x) (Minka 2002).

    Examples
    --------
    >>> a, b = gamma_mle(2.0, math.log(2.0) - 0.5 / 4.0)
    >>> round(a, 3), round(b, 3)
    (4.159, 2.08)
    """
    s = math.log(mean) - mean_log
    if not s > 1.0 / MAX_SHAPE / 2:  # Jensen gap ~ 1/(2α)
        return MAX_SHAPE, MAX_SHAPE / mean
    a = (3.0 - s + math.sqrt((s - 3.0) ** 2 + 24.0 * s)) / (12.0 * s)
    for _ in range(steps):
        num = mean_log - math.log(mean) + math.log(a) - digamma(a)
        den = a * a * (1.0 / a - trigamma(a))
        new = 1.0 / (1.0 / a + num / den)
        if not new > 0:
            new = a / 2
        done = abs(new - a) <= tol * a
        a = new
        if done:
            break
    a = min(a, MAX_SHAPE)
    return a, a / mean


def _log_support(k_min: int, k_max: int) -> pa.Array:
    n = k_max - k_min + 1
    return pc.ln(pc.add(row_index(k_min, n), 0).cast(pa.float64()))


def _zipf_moments(logk: pa.Array, s: float) -> tuple[float, float]:
    """E_s[log K] and Var_s[log K] on the support whose logs are ``logk``."""
    scaled = pc.multiply(logk, -s)
    top = pc.max(scaled).as_py()
    w = pc.exp(pc.subtract(scaled, top))
    total = pc.sum(w).as_py()
    m1 = pc.sum(pc.multiply(w, logk)).as_py() / total
    m2 = pc.sum(pc.multiply(w, pc.multiply(logk, logk))).as_py() / total
    return m1, max(m2 - m1 * m1, 0.0)


#: The exponent is searched in [-LIMIT, LIMIT]: beyond it the support's end holds all mass.
ZIPF_LIMIT = 30.0


def zipf_mle(mean_log: float, k_min: int, k_max: int, *, tol: float = 1e-12) -> float:
    """Exponent s of the bounded Zipf P(k) ~ k^-s on [k_min, k_max] with mean(log k) given.

    Examples
    --------
    >>> round(zipf_mle(0.9, 1, 1000), 4)
    1.713
    """
    if k_max <= k_min:
        return 0.0
    logk = _log_support(k_min, k_max)
    lo, hi = -ZIPF_LIMIT, ZIPF_LIMIT
    s = 1.0
    for _ in range(200):
        m, var = _zipf_moments(logk, s)
        f = m - mean_log  # decreasing in s
        if f > 0:
            lo = s
        else:
            hi = s
        step = f / var if var > 0 else float("inf")
        new = s + step
        if not lo < new < hi:
            new = (lo + hi) / 2
        if abs(new - s) <= tol * max(1.0, abs(s)) or hi - lo <= tol:
            return new
        s = new
    return s


def zipf_cdf(s: float, k_min: int, k_max: int) -> list[float]:
    """Cumulative probabilities of the bounded Zipf over k_min..k_max (last one 1.0)."""
    logk = _log_support(k_min, k_max)
    scaled = pc.multiply(logk, -s)
    w = pc.exp(pc.subtract(scaled, pc.max(scaled).as_py()))
    cdf = pc.divide(pc.cumulative_sum(w), pc.sum(w).as_py()).to_pylist()
    cdf[-1] = 1.0
    return cdf


class Sampler:
    """Random variates from one :class:`random.Random` stream, via ``random()`` only."""

    def __init__(self, seed: str) -> None:
        self._rng = random.Random(seed)
        self.random = self._rng.random
        self._spare: float | None = None

    def normal(self) -> float:
        """A standard normal (Box-Muller; the second value of each pair is kept)."""
        if self._spare is not None:
            z, self._spare = self._spare, None
            return z
        u1 = 1.0 - self.random()  # (0, 1]
        u2 = self.random()
        r = math.sqrt(-2.0 * math.log(u1))
        self._spare = r * math.sin(2.0 * math.pi * u2)
        return r * math.cos(2.0 * math.pi * u2)

    def gamma(self, shape: float, rate: float) -> float:
        """A Gamma(shape, rate) variate (Marsaglia-Tsang; shape < 1 by the u^(1/α) boost)."""
        boost = 1.0
        if shape < 1.0:
            boost = (1.0 - self.random()) ** (1.0 / shape)
            shape += 1.0
        d = shape - 1.0 / 3.0
        c = 1.0 / math.sqrt(9.0 * d)
        while True:
            x = self.normal()
            v = 1.0 + c * x
            if v <= 0.0:
                continue
            v = v * v * v
            u = 1.0 - self.random()
            if u < 1.0 - 0.0331 * x ** 4 or math.log(u) < 0.5 * x * x + d * (
                    1.0 - v + math.log(v)):
                return boost * d * v / rate

    def exponential(self, rate: float) -> float:
        """An Exponential(rate) variate."""
        return -math.log(1.0 - self.random()) / rate

    def index(self, cdf: Sequence[float]) -> int:
        """An index drawn from a cumulative distribution (inverse CDF)."""
        return min(bisect.bisect_right(cdf, self.random()), len(cdf) - 1)

    def quantile(self, q: Sequence[int]) -> int:
        """A value of the piecewise-linear distribution through equally spaced quantiles."""
        p = self.random() * (len(q) - 1)
        i = int(p)
        if i >= len(q) - 1:
            return q[-1]
        return round(q[i] + (q[i + 1] - q[i]) * (p - i))
