"""The capacity search: the largest load at which a point PASSes, found with few points.

Pure logic over a ``measure(load) -> outcome`` callable (a real point against an engine, or a
scripted curve in tests). Steps (docs/bench.md, "The search"):

0. idle check: concurrency 1, closed loop; FAIL -> capacity 0 (the SLO is unattainable);
1. saturation probe (rps only): closed loop at ``sat_concurrency`` (by default 4 x the
   server's slots where it says how many, else 256); its completed requests/s, ``X_sat``, sets
   the scale;
2. geometric bracket from ``0.5 X_sat`` (rps) or 2 (concurrency): double while PASS (capped at
   ``1.5 X_sat``, and once a point there passes, at ``8 X_sat``: the probe underestimated),
   halve while FAIL (floored at ``X_sat / 64`` or 1);
3. geometric bisection ``x = sqrt(lo hi)`` while ``hi / lo > 1 + precision`` (concurrency: also
   ``hi - lo > 1``);
4. one confirmation of ``lo`` (its repeat 1: another seed); a FAIL makes it ``hi`` and the
   search goes on below, at most twice;
5. an UNSURE point is re-measured once longer and then decided by its point estimate; an
   INVALID one (the client could not keep up) stops the search and says so;
6. with a time budget, a point (or a longer re-measure) that would end past it, judged by the
   longest point so far, is not started: the search stops with status ``time`` and keeps its
   bracket (``--quick`` sets 270 s, so a local server's search ends within 5 minutes).

``monotonic`` is false when a PASS lies at or above a FAIL (noise, a confirmation that
disagrees, or a server that gets better under load): the result is flagged, not trusted
blindly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .verdict import FAIL, INVALID, PASS, UNSURE

VARIABLES = ("rps", "concurrency")


class Outcome(Protocol):
    """What a measured point tells the search."""

    @property
    def verdict(self) -> str: ...

    @property
    def uncertain(self) -> bool: ...

    @property
    def throughput_rps(self) -> float | None: ...


@dataclass(frozen=True)
class Load:
    """One point to measure: ``x`` of ``variable``; ``closed`` loops run at concurrency
    ``x``; ``longer`` re-measures an unsure point with twice the window; ``repeat`` > 0 is a
    confirmation (another arrival seed)."""

    variable: str
    x: float
    kind: str                 # idle, saturation, bracket, refine, confirm
    longer: bool = False
    repeat: int = 0

    @property
    def closed(self) -> bool:
        """Runs at a fixed concurrency (closed loop) rather than a rate."""
        return self.variable == "concurrency" or self.kind in ("idle", "saturation")

    @property
    def key(self) -> str:
        """A folder name that identifies the load: ``rps=3.162-r0``, ``conc=12-r1-long``."""
        if self.kind in ("idle", "saturation"):
            name = f"probe-{self.kind}"
        elif self.variable == "rps":
            name = f"rps={self.x:.6g}"
        else:
            name = f"conc={int(self.x)}"
        return f"{name}-r{self.repeat}" + ("-long" if self.longer else "")


@dataclass
class Step:
    """One measured point of the history."""

    load: Load
    outcome: Any
    seconds: float = 0.0


@dataclass
class SearchResult:
    """Where the search stands (also after each point, for ``capacity.json``)."""

    variable: str
    capacity: float | None = None        # lo: the largest PASS (confirmed when converged)
    first_failing: float | None = None   # hi: the smallest FAIL above lo
    status: str = "running"
    converged: bool = False
    confirmed: bool = False
    monotonic: bool = True
    x_sat: float | None = None
    reason: str | None = None
    history: list[Step] = field(default_factory=list)

    @property
    def bracket_ratio(self) -> float | None:
        """hi / lo, when both are known."""
        if self.capacity and self.first_failing:
            return self.first_failing / self.capacity
        return None


#: the saturation probe's concurrency when neither the user nor the server says (vLLM's
#: infinite-rate run uses 256; GuideLLM's sweep 512)
SAT_CONCURRENCY = 256


#: how far past the saturation probe's throughput the bracket may go once a point at its cap
#: (1.5 x) passed: the probe, a short closed loop, underestimated the server
PAST_CAP = 8.0


class _Stop(Exception):
    """The search cannot go on (INVALID point, point or time budget spent)."""


@dataclass
class Search:
    """One capacity search; :meth:`run` calls ``measure`` point by point."""

    measure: Callable[[Load], Outcome]
    variable: str = "rps"
    precision: float = 0.05
    max_points: int = 12
    sat_concurrency: int | None = None
    #: the server's slots, asked when the saturation probe's concurrency is not given
    slots: Callable[[], int | None] | None = None
    on_step: Callable[[SearchResult], None] | None = None
    time_budget_s: float | None = None
    clock: Callable[[], float] = time.monotonic
    points: int = 0
    result: SearchResult = field(init=False)
    _started: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        if self.variable not in VARIABLES:
            raise ValueError(f"variable must be rps or concurrency (got {self.variable!r})")
        if not self.precision > 0:
            raise ValueError(f"precision must be > 0 (got {self.precision})")
        if self.max_points < 1 or (self.sat_concurrency is not None
                                   and self.sat_concurrency < 1):
            raise ValueError("max_points and sat_concurrency must be >= 1")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"time_budget_s must be > 0 (got {self.time_budget_s})")
        self.result = SearchResult(self.variable)

    # -- one point -------------------------------------------------------------------

    def _point(self, x: float, kind: str, repeat: int = 0, budget: bool = True) -> str:
        """Measure ``x`` (and once more, longer, if unsure); its final verdict."""
        if budget:
            if self.points >= self.max_points:
                raise _Stop("budget")
            self.points += 1
        load = Load(self.variable, x, kind, repeat=repeat)
        self._check_time(1)
        out = self._measured(load)
        if out.verdict == UNSURE and kind != "saturation":   # the probe's verdict is unused
            self._check_time(2)
            out = self._measured(Load(self.variable, x, kind, longer=True, repeat=repeat))
        if out.verdict == INVALID and kind != "saturation":  # the probe only sets a scale
            self.result.reason = (f"the client could not keep up at {self.variable} {x:g}: "
                                  "the result says nothing about the server")
            raise _Stop("invalid")
        return PASS if out.verdict == PASS else FAIL

    def _check_time(self, factor: float) -> None:
        """Stop before a point that would end past the time budget (a point's length is
        guessed as the longest so far, ``factor`` times; a longer re-measure is twice)."""
        if self.time_budget_s is None:
            return
        lengths = [s.seconds / (2 if s.load.longer else 1) for s in self.result.history]
        need = factor * max(lengths, default=0.0)
        spent = self.clock() - self._started
        if spent + need > self.time_budget_s:
            self.result.reason = (f"the time budget of {self.time_budget_s:g} s would be "
                                  f"exceeded by the next point (spent {spent:.0f} s, a point "
                                  f"takes about {need:.0f} s)")
            raise _Stop("time")

    def _measured(self, load: Load) -> Outcome:
        began = self.clock()
        out = self.measure(load)
        self.result.history.append(Step(load, out, self.clock() - began))
        self._update_monotonic()
        if self.on_step is not None:
            self.on_step(self.result)
        return out

    def _update_monotonic(self) -> None:
        judged = [(s.load.x, s.outcome.verdict) for s in self.result.history
                  if s.load.kind not in ("idle", "saturation")
                  and s.outcome.verdict in (PASS, FAIL)]
        passes = [x for x, v in judged if v == PASS]
        fails = [x for x, v in judged if v == FAIL]
        # a PASS at or above a FAIL: a dip, or repeats of one load that disagree
        self.result.monotonic = not (passes and fails and max(passes) >= min(fails))

    # -- the steps -------------------------------------------------------------------

    def _round(self, x: float) -> float:
        return float(max(1, round(x))) if self.variable == "concurrency" else x

    def _narrow(self, lo: float, hi: float) -> bool:
        wide = hi / lo > 1 + self.precision
        if self.variable == "concurrency":
            wide = wide and hi - lo > 1
        return wide

    def _mid(self, lo: float, hi: float) -> float:
        x = math.sqrt(lo * hi)
        if self.variable == "concurrency":
            x = float(min(max(round(x), lo + 1), hi - 1))
        return x

    def run(self) -> SearchResult:
        """The whole search; never raises for a result (INVALID, budget: see ``status``)."""
        res = self.result
        self._started = self.clock()
        try:
            self._search()
        except _Stop as stop:
            res.status = str(stop)
        res.converged = res.status == "converged"
        if self.on_step is not None:
            self.on_step(res)
        return res

    def _search(self) -> None:
        res = self.result
        idle = self._point(1, "idle", budget=False)
        if idle == FAIL:
            res.capacity, res.first_failing = 0.0, 1.0 if self.variable == "concurrency" \
                else None
            res.status, res.reason = "unattainable_at_idle", (
                "the SLO is not met even by one request at a time (concurrency 1)")
            return
        if self.variable == "rps":
            self._point(self._sat_concurrency(), "saturation", budget=False)
            sat = res.history[-1].outcome.throughput_rps
            if not sat or sat <= 0:
                res.status, res.reason = "no_throughput", (
                    "the saturation probe completed no request")
                return
            res.x_sat = sat
            start, cap, hard, floor = 0.5 * sat, 1.5 * sat, PAST_CAP * sat, sat / 64
        else:
            start, cap, floor = 2.0, float(self._sat_concurrency()), 1.0
            hard = cap
        lo, hi = self._bracket(start, cap, hard, floor)
        if lo is None or hi is None:
            return
        self._refine_and_confirm(lo, hi)

    def _sat_concurrency(self) -> int:
        """The given concurrency, else 4 x the server's slots (enough to keep every slot busy
        without a backlog the server works through after the point), else 256."""
        if self.sat_concurrency is not None:
            return self.sat_concurrency
        slots = self.slots() if self.slots is not None else None
        return 4 * slots if slots else SAT_CONCURRENCY

    def _bracket(self, x: float, cap: float, hard: float, floor: float
                 ) -> tuple[float | None, float | None]:
        res = self.result
        lo: float | None = 1.0 if self.variable == "concurrency" else None
        hi: float | None = None
        if self._point(x, "bracket") == PASS:
            lo = x
            while True:
                if lo >= cap:   # a pass at the cap: the probe underestimated; go on to hard
                    cap = hard
                nxt = self._round(min(2 * lo, cap))
                if nxt <= lo:
                    res.capacity, res.status = lo, "at_least"
                    res.reason = f"every load up to the cap {cap:g} passed: capacity >= {lo:g}"
                    return None, None
                res.capacity = lo
                if self._point(nxt, "bracket") == PASS:
                    lo = nxt
                else:
                    hi = nxt
                    break
        else:
            hi = x
            while True:
                nxt = self._round(max(hi / 2, floor))
                if lo is not None and nxt <= lo:
                    break  # concurrency: 1 passed at the idle check
                if nxt >= hi:
                    res.capacity, res.first_failing = 0.0, hi
                    res.status = "below_floor"
                    res.reason = f"every load down to the floor {floor:g} failed"
                    return None, None
                res.first_failing = hi
                if self._point(nxt, "bracket") == PASS:
                    lo = nxt
                    break
                hi = nxt
        res.capacity, res.first_failing = lo, hi
        return lo, hi

    def _refine_and_confirm(self, lo: float, hi: float) -> None:
        res = self.result
        confirmations = 0
        while True:
            while self._narrow(lo, hi):
                res.capacity, res.first_failing = lo, hi
                x = self._mid(lo, hi)
                if self._point(x, "refine") == PASS:
                    lo = x
                else:
                    hi = x
            res.capacity, res.first_failing = lo, hi
            if confirmations >= 2:
                res.status = "unconfirmed"
                res.reason = "the passing end failed two confirmations"
                return
            confirmations += 1
            if self._point(lo, "confirm", repeat=confirmations) == PASS:
                res.confirmed, res.status = True, "converged"
                return
            hi = lo
            below = [s.load.x for s in res.history if s.load.x < lo
                     and s.load.kind in ("bracket", "refine", "confirm")
                     and s.outcome.verdict == PASS]
            if below:
                lo = max(below)
            elif self.variable == "concurrency" and lo > 1:
                lo = 1.0
            else:
                res.capacity, res.first_failing = 0.0, hi
                res.status = "below_floor"
                res.reason = "the lowest passing load failed its confirmation"
                return
            res.capacity, res.first_failing = lo, hi
