"""Transforms of unified traces: select rows, move and stretch the time axis.

Every function takes a trace (a :class:`~llmtraces.transforms.TraceView`, a pyarrow Table in
the unified schema, a path or a registry id) and returns a :class:`TraceView` that can be read
any number of times, each read streamed batch by batch. Rows keep their order;
``request_id`` is renumbered 0..n-1 after rows are dropped and ``parent_request_id`` follows
its parent's new id (null when the parent was dropped). Each transform appends
``{"op": name, ...parameters}`` to the metadata's ``transforms`` list. Sampling is in
:mod:`.sampling`, merging in :mod:`.merging`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..pipeline.inputs import TraceLike, open_trace
from ..pipeline.view import TraceView, TransformError, arrival_facts, span_text
from ..text.timestamps import epoch_us_of, iso_utc
from ._stream import (
    Batches,
    BatchFn,
    check_arrivals,
    derive,
    replayable,
    require_timing,
    select_rows,
    set_column,
)


def window(trace: TraceLike, start_s: float, duration_s: float) -> TraceView:
    """The requests that arrive in ``[start_s, start_s + duration_s)`` seconds.

    Times are on the trace's own axis (``arrival_us`` is µs since its time origin). Arrivals
    are not moved: follow with :func:`rebase` for a window that starts at 0. A window that
    holds no request warns (:class:`EmptyResultWarning`), naming the trace's span.

    Parameters
    ----------
    trace : TraceView, pyarrow.Table, path or registry id
        A unified trace with timing.
    start_s, duration_s : float
        Window start and length in seconds; ``duration_s`` must be positive.

    Returns
    -------
    TraceView
        The rows in the window, renumbered.

    Raises
    ------
    TransformError
        A trace without timing, or a bad window.

    Examples
    --------
    >>> import llmtraces
    >>> t = llmtraces.window("azure-llm-2023/code", 30, 30).to_table()
    >>> t.num_rows, t["request_id"][0].as_py(), t["arrival_us"][0].as_py()
    (46, 0, 30177869)
    """
    if not duration_s > 0 or start_s != start_s:
        raise TransformError(f"window: duration must be > 0 s (got {duration_s})")
    inp = open_trace(trace)
    require_timing(inp.meta, "window")
    lo = round(start_s * 1e6)
    hi = lo + round(duration_s * 1e6)
    seen: list[int] = []  # first and last arrival of the input, for the empty-window warning

    def keep(batch: pa.RecordBatch) -> pa.Array:
        arr = batch.column("arrival_us")
        check_arrivals(arr, "window")
        if len(arr):
            mm = pc.min_max(arr)
            seen[:] = [min(seen[:1] + [mm["min"].as_py()]), max(seen[1:] + [mm["max"].as_py()])]
        return pc.and_(pc.greater_equal(arr, lo), pc.less(arr, hi))

    def empty() -> str:
        first, last = seen[0] / 1e6, seen[1] / 1e6
        return (f": its arrivals span {first:,.1f} s..{last:,.1f} s ({span_text(last - first)}"
                f") on its own axis; pick a window inside it")

    return select_rows(inp, {"op": "window", "start_s": start_s, "duration_s": duration_s},
                      keep, ["arrival_us"], empty=empty)


def head(trace: TraceLike, n: int) -> TraceView:
    """The first ``n`` requests in row order.

    A unified Parquet input is read only as far as needed; a native file is still read to
    its end, so that it is checked as a conversion checks it.

    Examples
    --------
    >>> import llmtraces
    >>> llmtraces.head("azure-llm-2023/code", 5).num_rows
    5
    """
    if n < 0:
        raise TransformError(f"head: n must be >= 0 (got {n})")
    inp = open_trace(trace)
    drain = inp.checked_at_end

    def make() -> BatchFn:
        def run(batches: Batches) -> Batches:
            left = n
            for batch in batches:
                if left > 0:
                    out = batch.slice(0, min(left, batch.num_rows))
                    left -= out.num_rows
                    yield out
                if left <= 0 and not drain:
                    break
        return run
    # head keeps a prefix: ids and parent links stay valid (parents precede their children)
    return derive(inp, {"op": "head", "n": n}, make, (), warn_empty=n > 0)


def filter(trace: TraceLike, *, model: str | Sequence[str] | None = None,
           service: str | Sequence[str] | None = None, failed: bool | None = None
           ) -> TraceView:
    """The requests of the given models and services, failed or not.

    Parameters
    ----------
    model, service : str or sequence of str, optional
        Keep rows whose value is one of these (rows where it is null are dropped).
    failed : bool, optional
        True: only rows marked failed. False: every row not marked failed (null counts as not
        failed, as for sources that record no failures).

    Examples
    --------
    >>> from llmtraces.transforms import filter
    >>> filter("azure-llm-2023/code", service="code").num_rows
    8819
    """
    inp = open_trace(trace)
    models = [model] if isinstance(model, str) else None if model is None else list(model)
    services = ([service] if isinstance(service, str) else None if service is None
                else list(service))
    entry: dict[str, Any] = {"op": "filter"}
    needs = []
    if models is not None:
        entry["model"] = models
        needs.append("model")
    if services is not None:
        entry["service"] = services
        needs.append("service")
    if failed is not None:
        entry["failed"] = bool(failed)
        needs.append("failed")

    def keep(batch: pa.RecordBatch) -> pa.Array:
        mask = pc.fill_null(pa.nulls(batch.num_rows, pa.bool_()), True)
        if models is not None:
            mask = pc.and_(mask, pc.is_in(batch.column("model"), pa.array(models, pa.string())))
        if services is not None:
            mask = pc.and_(mask, pc.is_in(batch.column("service"),
                                          pa.array(services, pa.string())))
        if failed is not None:
            marked = pc.fill_null(batch.column("failed"), False)
            mask = pc.and_(mask, marked if failed else pc.invert(marked))
        return mask

    return select_rows(inp, entry, keep, needs)


# --- time axis -------------------------------------------------------------------------------

#: The latest arrival a scaled trace may have: int64 µs, with headroom for later offsets.
MAX_ARRIVAL_US = 2.0 ** 62


def _scaled(inp: TraceView, entry: dict[str, Any], speedup: float) -> TraceView:
    def make() -> BatchFn:
        def run(batches: Batches) -> Batches:
            for batch in batches:
                arr = batch.column("arrival_us")
                check_arrivals(arr, entry["op"])
                moved = pc.round(pc.divide(arr.cast(pa.float64()), speedup))
                last = pc.max(moved).as_py()
                if last is not None and not last < MAX_ARRIVAL_US:
                    raise TransformError(
                        f"{entry['op']}: scaling by {speedup:g} puts an arrival at {last:.3g} µs, "
                        f"past what int64 microseconds hold; expected a scale that keeps the "
                        f"trace under {MAX_ARRIVAL_US:.3g} µs")
                yield set_column(batch, "arrival_us", moved.cast(pa.int64()))
        return run
    return derive(inp, entry, make, {"arrival_us"})


def time_scale(trace: TraceLike, speedup: float) -> TraceView:
    """Arrivals divided by ``speedup`` (2: twice as fast), rounded to the microsecond.

    The axis is scaled about its origin (``arrival_us = 0``), so ``time_origin`` still names
    the instant of 0; ``e2e_latency_us`` is a measurement and is not scaled.

    Examples
    --------
    >>> import llmtraces
    >>> llmtraces.time_scale("azure-llm-2023/code", 2.0).to_table()["arrival_us"][1].as_py()
    26000
    """
    if not speedup > 0 or speedup == float("inf"):
        raise TransformError(f"time_scale: speedup must be a positive number (got {speedup})")
    inp = open_trace(trace)
    require_timing(inp.meta, "time_scale")
    return _scaled(inp, {"op": "time_scale", "speedup": speedup}, speedup)


def mean_rate(trace: TraceLike) -> float:
    """Mean request rate in requests per second: ``(n - 1) / (last - first arrival)``, the
    inverse of the mean inter-arrival time (BurstGPT's "average RPS").

    Examples
    --------
    >>> from llmtraces.testing import tiny_trace
    >>> round(mean_rate(tiny_trace()), 3)   # 12 requests over 5.5 s
    2.0
    """
    inp = replayable(open_trace(trace))
    facts = arrival_facts(inp)
    if facts.nulls:
        raise TransformError("the trace has rows with a null arrival_us (no timing): no rate")
    if facts.rows < 2 or facts.first_us == facts.last_us:
        raise TransformError(f"a rate needs two distinct arrival times; the trace has "
                             f"{facts.rows} row(s) spanning 0 s")
    assert facts.first_us is not None and facts.last_us is not None
    return (facts.rows - 1) / ((facts.last_us - facts.first_us) / 1e6)


def rate_scale(trace: TraceLike, rps: float) -> TraceView:
    """BurstGPT's RPS scaling: arrivals scaled so the mean rate becomes ``rps`` requests/s.

    The current rate is :func:`mean_rate`, read from Parquet statistics or one pass over
    ``arrival_us``; the factor is then applied as :func:`time_scale` does.

    Examples
    --------
    >>> import llmtraces
    >>> code = llmtraces.load("azure-llm-2023", trace="code")
    >>> round(mean_rate(code), 4), round(mean_rate(rate_scale(code, rps=10.0)), 4)
    (2.5664, 10.0)
    """
    if not rps > 0 or rps == float("inf"):
        raise TransformError(f"rate_scale: rps must be a positive number (got {rps})")
    inp = open_trace(trace)
    require_timing(inp.meta, "rate_scale")
    inp = replayable(inp)
    current = mean_rate(inp)
    speedup = rps / current
    return _scaled(inp, {"op": "rate_scale", "rps": rps, "from_rps": current,
                         "speedup": speedup}, speedup)


def rebase(trace: TraceLike) -> TraceView:
    """Arrivals shifted so that the first (earliest) one is at 0.

    ``time_origin``, where the trace has one, moves by the same amount, so wall-clock times
    are unchanged.

    Examples
    --------
    >>> from llmtraces.transforms import rebase, window
    >>> t = rebase(window("azure-llm-2023/code", 30, 30)).to_table()
    >>> t["arrival_us"][0].as_py(), t["arrival_us"][-1].as_py()
    (0, 9149648)
    """
    inp = open_trace(trace)
    require_timing(inp.meta, "rebase")
    inp = replayable(inp)
    facts = arrival_facts(inp)
    if facts.nulls:
        raise TransformError("rebase needs arrival times, but the trace has rows with a null "
                             "arrival_us (no timing)")
    shift = facts.first_us or 0
    entry = {"op": "rebase", "shift_us": shift}

    def overrides() -> dict[str, Any]:
        origin = inp.meta.get("time_origin")
        return {"time_origin": iso_utc(epoch_us_of(origin) + shift) if origin else origin}

    def make() -> BatchFn:
        def run(batches: Batches) -> Batches:
            for batch in batches:
                arr = batch.column("arrival_us")
                yield set_column(batch, "arrival_us", pc.subtract(arr, shift))
        return run

    out = derive(inp, entry, make, {"arrival_us"}, overrides)
    out.meta.update(overrides())
    return out
