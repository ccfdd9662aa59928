"""The verdict of one load point: joint SLO attainment with a Wilson score interval.

A point PASSes when the interval's lower end reaches the target attainment, FAILs when its
upper end is below it, and is UNSURE otherwise (the caller re-measures it longer). INVALID
means the client could not keep to the schedule and the server still passed: the result
says nothing about the server (a FAIL under a late client stands: the load was gentler).
The interval is one-sided 95 % (z = 1.645), the same idea as MLPerf LoadGen's early
stopping applied to attainment (docs/bench.md, "The verdict").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PASS, FAIL, UNSURE, INVALID = "PASS", "FAIL", "UNSURE", "INVALID"
VERDICTS = (PASS, FAIL, UNSURE, INVALID)
#: one-sided 95 % normal quantile
Z = 1.645


def wilson(good: int, n: int, z: float = Z) -> tuple[float, float]:
    """The Wilson score interval ``(lo, hi)`` of a proportion ``good / n`` (``(0, 1)`` when
    ``n`` is 0): Wilson (1927), as in ``statsmodels.proportion_confint(method="wilson")``."""
    if n < 0 or not 0 <= good <= n:
        raise ValueError(f"wilson: need 0 <= good <= n (got good={good}, n={n})")
    if n == 0:
        return 0.0, 1.0
    p = good / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Attainment:
    """``good`` of ``n`` measured requests met every SLO bound; ``a`` and its interval."""

    good: int
    n: int
    a: float | None
    lo: float
    hi: float

    @classmethod
    def of(cls, good: int, n: int, z: float = Z) -> Attainment:
        """The attainment of ``good`` out of ``n``."""
        lo, hi = wilson(good, n, z)
        return cls(good, n, good / n if n else None, lo, hi)


def judge(att: Attainment, target: float, *, kept_up: bool = True,
          final: bool = False) -> tuple[str, bool]:
    """(verdict, uncertain): PASS if ``lo >= target``, FAIL if ``hi < target``, else UNSURE;
    with ``final`` (the longer re-measurement) an unsure point is decided by ``a >= target``
    and marked uncertain.

    When the client did not keep up, the server saw a gentler load than the schedule's
    (requests sent late, so spread out and fewer at a time): a FAIL under it stands, but a
    PASS or UNSURE says nothing about the schedule's load and is INVALID."""
    if not 0 < target <= 1:
        raise ValueError(f"attainment target must be in (0, 1] (got {target})")
    if att.hi < target:
        return FAIL, False
    if not kept_up:
        return INVALID, False
    if att.n and att.lo >= target:
        return PASS, False
    if not final:
        return UNSURE, False
    return (PASS if att.a is not None and att.a >= target else FAIL), True
