"""When each request is due: the trace's own arrivals, scaled or replaced, streamed.

Selections and the time axis reuse :mod:`llmtraces.transforms`, in this order: failed rows
dropped (``skip_failed``), ``window``, ``head`` (``max_requests``), ``rebase`` (the first
request is due at 0), then ``time_scale`` (``speedup``) or ``rate_scale`` (``rps``). With
``arrivals="poisson"`` or ``"gamma"`` the trace's lengths are kept and its arrival times
replaced by a renewal process at ``rps`` (Gamma shape ``1/cv^2``); with ``modeled`` they come
from :func:`~llmtraces.transforms.synthesize` of the trace's
:func:`~llmtraces.transforms.fit` (per-window Gamma). ``duration_s`` ends the schedule.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..request import Request
from ..schema import TraceStream
from ..transforms import (
    TraceLike,
    filter,
    fit,
    head,
    open_trace,
    rate_scale,
    rebase,
    replayable,
    synthesize,
    time_scale,
    window,
)
from ..transforms._math import Sampler
from .errors import ReplayError
from .options import MAX_SPAN_S, check_range, check_ranges

ARRIVALS = ("trace", "poisson", "gamma")
#: rows decoded into Request records at a time (small: the producer shares the GIL)
DECODE_ROWS = 256


@dataclass(frozen=True)
class Timing:
    """The timing options of a replay (the CLI's ``--speedup``, ``--rps``, ...)."""

    speedup: float | None = None
    rps: float | None = None
    window: tuple[float, float] | None = None
    max_requests: int | None = None
    duration_s: float | None = None
    arrivals: str = "trace"
    cv: float = 1.0
    modeled: bool = False
    model_window_s: float = 1200.0
    seed: int = 0
    skip_failed: bool = False

    def check(self) -> Timing:
        """Raise :class:`ReplayError` for contradictory or bad options; return self."""
        if self.arrivals not in ARRIVALS:
            raise ReplayError(f"--arrivals must be one of {', '.join(ARRIVALS)}")
        if self.speedup is not None and self.rps is not None and self.arrivals == "trace" \
                and not self.modeled:
            raise ReplayError("give one of --speedup and --rps: both set the time scale")
        if self.arrivals != "trace" and self.rps is None:
            raise ReplayError(f"--arrivals {self.arrivals} needs --rps R")
        if self.modeled and self.arrivals != "trace":
            raise ReplayError("--modeled and --arrivals both set the arrivals: give one")
        if self.modeled and self.speedup is not None:
            raise ReplayError("--modeled takes --rps (the model's rate is scaled), not "
                              "--speedup")
        check_ranges([("--speedup", self.speedup), ("--rps", self.rps),
                      ("--duration", self.duration_s), ("--cv", self.cv),
                      ("--max-requests", self.max_requests)])
        if self.window is not None:
            check_range("--window START", self.window[0], "--window")
            check_range("--window DURATION", self.window[1], "--window")
        return self

    def as_dict(self) -> dict[str, Any]:
        """The options, for summary.json."""
        return asdict(self)


@dataclass(frozen=True)
class Scheduled:
    """One request of the schedule: due ``due_s`` seconds after the run's start."""

    due_s: float
    request: Request


def _selected(trace: TraceLike, timing: Timing) -> TraceStream:
    stream = open_trace(trace)
    if timing.skip_failed:
        stream = filter(stream, failed=False)
    if timing.window is not None:
        stream = window(stream, *timing.window)
    if timing.max_requests is not None:
        stream = head(stream, timing.max_requests)
    return stream


def _rows(stream: TraceStream) -> Iterator[Request]:
    for batch in stream.batches:
        for start in range(0, batch.num_rows, DECODE_ROWS):
            part = pa.Table.from_batches([batch.slice(start, DECODE_ROWS)])
            for row in part.to_pylist():
                yield Request.from_row(row)


def _span_s(stream: Any) -> float:
    """Seconds from the earliest to the latest arrival of a replayable stream (0 when empty),
    from one pass over ``arrival_us`` only."""
    lo: int | None = None
    hi: int | None = None
    for batch in stream.reopen(["arrival_us"]):
        mm = pc.min_max(batch.column(0))
        if mm["min"].as_py() is not None:
            lo = min(x for x in (lo, mm["min"].as_py()) if x is not None)
            hi = max(x for x in (hi, mm["max"].as_py()) if x is not None)
    return 0.0 if lo is None or hi is None else (hi - lo) / 1e6


def _check_span(t: Timing, span_s: float, speedup: float) -> None:
    """Refuse a time scale that stretches the schedule past :data:`MAX_SPAN_S` (where the
    arrival times would also overflow): one line naming the option and the bound."""
    if not span_s or span_s / speedup <= MAX_SPAN_S:
        return
    option, value = ("--speedup", t.speedup) if t.speedup is not None else ("--rps", t.rps)
    assert value is not None
    least = value * span_s / speedup / MAX_SPAN_S
    raise ReplayError(f"{option}: {value:g} stretches the trace's {span_s:,.0f} s to "
                      f"{span_s / speedup:.3g} s; expected {option} >= {least:.3g}, which keeps "
                      f"the schedule under {MAX_SPAN_S:.0e} s (about 3 years)")


class Schedule:
    """The requests of a trace with their due times, streamed in order of the trace's rows.

    ``meta`` is the trace metadata after the replay's transforms (its ``transforms`` list
    says what was applied). Iterate once.
    """

    def __init__(self, trace: TraceLike, timing: Timing) -> None:
        self.timing = timing.check()
        t = self.timing
        stream: TraceStream
        if t.arrivals == "trace" and not t.modeled:
            stream = rebase(_selected(trace, t))
            if t.speedup is not None or t.rps is not None:
                stream = replayable(stream)
                span_s = _span_s(stream)
                if t.speedup is not None:
                    stream = time_scale(stream, t.speedup)
                else:
                    stream = rate_scale(stream, t.rps)  # type: ignore[arg-type]
                _check_span(t, span_s, stream.meta["transforms"][-1]["speedup"])
            self.meta: dict[str, Any] = stream.meta
            self._iter = self._own(stream)
        elif t.modeled:
            model = fit(_selected(trace, t), window_s=t.model_window_s)
            synth = synthesize(model, rps=t.rps, duration_s=t.duration_s, seed=t.seed)
            stream = _selected(trace, t)
            self.meta = stream.meta
            self.meta.setdefault("transforms", [])
            self.meta["transforms"] = [*self.meta["transforms"],
                                       *synth.meta["transforms"]]
            self.model = model
            self._iter = self._zip(stream, synth)
        else:
            stream = _selected(trace, t)
            self.meta = stream.meta
            self._iter = self._renewal(stream)

    def __iter__(self) -> Iterator[Scheduled]:
        return self._iter

    def _cut(self, due: float) -> bool:
        return self.timing.duration_s is not None and due >= self.timing.duration_s

    def _own(self, stream: TraceStream) -> Iterator[Scheduled]:
        for req in _rows(stream):
            if req.arrival_us is None:
                raise ReplayError(f"request {req.request_id} has no arrival time; replay "
                                  "it with --arrivals poisson|gamma --rps R")
            due = req.arrival_us / 1e6
            if self._cut(due):
                return
            yield Scheduled(due, req)

    def _renewal(self, stream: TraceStream) -> Iterator[Scheduled]:
        t = self.timing
        assert t.rps is not None
        draw = Sampler(f"llmtraces:{t.seed}:replay-arrivals")
        shape = 1.0 / (t.cv * t.cv)
        due = 0.0
        for req in _rows(stream):
            if self._cut(due):
                return
            yield Scheduled(due, req)
            due += draw.exponential(t.rps) if t.arrivals == "poisson" else \
                draw.gamma(shape, shape * t.rps)

    def _zip(self, stream: TraceStream, synth: TraceStream) -> Iterator[Scheduled]:
        def arrivals() -> Iterator[int]:
            for batch in synth.batches:
                yield from batch.column("arrival_us").to_pylist()

        times = arrivals()
        for req in _rows(stream):
            at = next(times, None)
            if at is None:
                return
            due = at / 1e6
            if self._cut(due):
                return
            yield Scheduled(due, req)


def worker_of(req: Request, workers: int) -> int:
    """The worker (0 .. ``workers`` - 1) that sends ``req``: a session's turns all go to one
    worker (CRC-32 of its ``session_id``, so that its history is built there); a request
    without a session goes by ``request_id``, round robin. The same on every host."""
    if workers <= 1:
        return 0
    if req.session_id is not None:
        return zlib.crc32(req.session_id.encode("utf-8", "surrogatepass")) % workers
    return req.request_id % workers


def share(schedule: Iterable[Scheduled], index: int, workers: int) -> Iterator[Scheduled]:
    """Worker ``index``'s part of ``schedule`` (:func:`worker_of`), due times unchanged: every
    worker reads the whole schedule, so synthetic arrivals are drawn identically."""
    for s in schedule:
        if worker_of(s.request, workers) == index:
            yield s
