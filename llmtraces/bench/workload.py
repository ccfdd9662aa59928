"""The stream a benchmark replays: a trace, from a window on, with its arrivals (the trace's
own, rate-scaled with the bursts kept, or a Poisson/Gamma renewal at the same mean rate).

Every point of a search replays the head of *the same* ordered stream; only the time axis
changes with the rate (a higher rate uses more rows). :meth:`Workload.timing` turns a load
into the replayer's :class:`~llmtraces.replay.schedule.Timing` and the measured window.
The **workload digest** (SHA-256 of the window's ``request_id, arrival_us, input_tokens,
output_tokens`` rows, the transforms applied, the arrival mode, its CV and the seed) names the
stream; ``bench compare`` refuses results whose digests differ.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ..replay.errors import ReplayError
from ..replay.schedule import ARRIVALS, Timing
from ..transforms import TraceLike, open_trace, rebase, replayable, window

#: columns hashed into the workload digest
DIGEST_COLUMNS = ("request_id", "arrival_us", "input_tokens", "output_tokens")
#: closed-loop points compress the trace's arrivals by this much: every request is due at
#: once and the concurrency limit alone paces them
CLOSED_SPEEDUP = 1e9


@dataclass(frozen=True)
class Measured:
    """How a point runs: the replay's timing and its measured window (seconds after the
    replay's start; by scheduled time for rates, by ready time for concurrency)."""

    timing: Timing
    from_s: float
    until_s: float | None       # None: closed loop, the runner stops it
    expected: int | None        # measured requests the schedule holds (rates, trace arrivals)
    short: bool                 # the window has fewer rows than min_requests needs


@dataclass
class Workload:
    """A trace and where its stream starts: ``window = (start_s, duration_s)`` or None."""

    trace: TraceLike
    window: tuple[float, float] | None = None
    arrivals: str = "trace"
    cv: float = 1.0
    seed: int = 0
    _arrivals_s: list[float] | None = field(default=None, repr=False)
    _digest: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.arrivals not in ARRIVALS:
            raise ReplayError(f"--arrivals: {self.arrivals!r} is not one of "
                              f"{', '.join(ARRIVALS)}")

    def _view(self) -> Any:
        view = open_trace(self.trace)
        if self.window is not None:
            view = window(view, *self.window)
        return replayable(rebase(view))

    def _load(self) -> None:
        times: list[float] = []
        h = hashlib.sha256()
        view = self._view()
        for batch in view.reopen(list(DIGEST_COLUMNS)):
            cols = {n: batch.column(n).to_pylist() for n in DIGEST_COLUMNS}
            h.update(json.dumps(cols, separators=(",", ":")).encode())
            times.extend(t / 1e6 for t in cols["arrival_us"] if t is not None)
        if len(times) < 2:
            raise ReplayError(f"the workload window holds {len(times)} request(s) with an "
                              "arrival time; a benchmark needs at least 2 (widen --window)")
        h.update(json.dumps({"transforms": view.meta.get("transforms", []),
                             "arrivals": self.arrivals, "cv": self.cv, "seed": self.seed},
                            sort_keys=True, default=str).encode())
        self._arrivals_s = sorted(times)
        self._digest = h.hexdigest()

    @property
    def arrivals_s(self) -> list[float]:
        """The window's arrival times, seconds from its first request."""
        if self._arrivals_s is None:
            self._load()
        assert self._arrivals_s is not None
        return self._arrivals_s

    @property
    def digest(self) -> str:
        """The workload digest (hex SHA-256)."""
        if self._digest is None:
            self._load()
        assert self._digest is not None
        return self._digest

    @property
    def mean_rate(self) -> float:
        """The window's own mean rate, ``(n - 1) / span`` requests/s."""
        t = self.arrivals_s
        span = t[-1] - t[0]
        if span <= 0:
            raise ReplayError("every request of the workload window arrives at the same "
                              "instant: it has no rate to scale")
        return (len(t) - 1) / span

    def describe(self) -> dict[str, Any]:
        """What ``plan.json`` and ``point.json`` record of the workload."""
        trace = self.trace if isinstance(self.trace, str) else str(self.trace) \
            if hasattr(self.trace, "__fspath__") else type(self.trace).__name__
        return {"trace": trace, "window": list(self.window) if self.window else None,
                "arrivals": self.arrivals, "cv": self.cv, "seed": self.seed,
                "requests": len(self.arrivals_s), "mean_rate_rps": self.mean_rate,
                "digest": self.digest}

    def open_loop(self, rps: float, warmup_s: float, measure_s: float, min_requests: int,
                  repeat: int = 0) -> Measured:
        """The timing of a point at mean rate ``rps``: warm-up ``[0, warmup_s)``, then at least
        ``measure_s`` seconds and ``min_requests`` requests measured (as far as the window
        has rows)."""
        if not rps > 0:
            raise ReplayError(f"rate must be > 0 requests/s (got {rps})")
        until = warmup_s + max(measure_s, min_requests / rps)
        expected: int | None = None
        short = False
        if self.arrivals == "trace":
            speedup = rps / self.mean_rate
            # as the replay's time_scale computes them: rounded to the microsecond
            due = [round(t * 1e6 / speedup) / 1e6 for t in self.arrivals_s]
            first = bisect.bisect_left(due, warmup_s)
            need = first + min_requests - 1
            if need < len(due):
                until = max(warmup_s + measure_s, due[need] + 1e-6)
            else:
                until, short = due[-1] + 1e-6, True
            expected = bisect.bisect_left(due, until) - first
            timing = Timing(speedup=speedup, window=self.window, duration_s=until,
                            seed=self.seed + repeat)
        else:
            short = len(self.arrivals_s) < min_requests + warmup_s * rps
            timing = Timing(rps=rps, arrivals=self.arrivals, cv=self.cv, window=self.window,
                            duration_s=until, seed=self.seed + repeat)
        return Measured(timing, warmup_s, until, expected, short)

    def closed_loop(self, warmup_s: float, repeat: int = 0) -> Measured:
        """The timing of a fixed-concurrency point: every request due at once, in order."""
        timing = Timing(speedup=CLOSED_SPEEDUP, window=self.window, seed=self.seed + repeat)
        return Measured(timing, warmup_s, None, None, False)
