"""Fit a BurstGPT trace model: :func:`fit`, one pass feeding three independent fits.

Each batch goes to :class:`ArrivalFit` (per-window Gamma inter-arrivals), to
:class:`RequestLengthFit` (a bounded Zipf of input lengths) and to :class:`ResponseFit`
(output-length percentiles per request-length bin); each keeps only running sums or counts,
and builds its part of the :class:`~llmtraces.transforms.modeled.TraceModel` at the end.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..pipeline.inputs import TraceLike, open_trace
from ..pipeline.view import TraceView, TransformError
from ._math import gamma_mle, zipf_mle
from ._stream import require_timing
from .modeled import (
    BINS_PER_OCTAVE,
    MIN_GAPS,
    QUANTILES,
    GammaWindow,
    ResponseBin,
    ResponseLengths,
    TraceModel,
    ZipfLengths,
)

#: The columns a fit reads.
COLUMNS = ["arrival_us", "input_tokens", "output_tokens", "failed", "model", "service"]
#: Metadata of the fitted trace kept in the model's ``fitted_from``.
PROVENANCE = ("source", "trace", "native_file", "native_sha256", "time_origin", "licence",
              "citation", "transforms")


def resolution_us(meta: dict[str, Any]) -> float:
    """The trace's time resolution in µs, from its metadata (1 µs when not recorded)."""
    time = meta.get("time") if isinstance(meta.get("time"), dict) else None
    text = str((time or {}).get("resolution") or "")
    m = re.fullmatch(r"\s*([0-9.]+)\s*(ns|us|µs|ms|s)\s*", text)
    if not m:
        return 1.0
    scale = {"ns": 1e-3, "us": 1.0, "µs": 1.0, "ms": 1e3, "s": 1e6}[m.group(2)]
    return float(m.group(1)) * scale


class ArrivalFit:
    """Per-window sums of the inter-arrival gaps, then a Gamma MLE per window.

    Windows start at the first arrival; a gap belongs to the window where it starts. A gap of
    0 µs counts as ``floor_s`` (half the time resolution), so that its log is finite.
    """

    def __init__(self, window_s: float, floor_s: float) -> None:
        self.window_s = window_s
        self.floor_s = floor_s
        self.win_us = round(window_s * 1e6)
        #: window -> [requests, gaps, zero gaps, sum of gaps, sum of log gaps]
        self.stats: dict[int, list[float]] = {}
        self.rows = 0
        self.first: int | None = None
        self.prev: int | None = None

    def add(self, arr: pa.Array) -> None:
        """Take the next ``arrival_us`` values, which must be non-null and in time order."""
        n = len(arr)
        if arr.null_count:
            raise TransformError("fit needs arrival times, but the trace has rows with a null "
                                 "arrival_us (no timing)")
        if self.first is None:
            self.first = self.prev = arr[0].as_py()
        assert self.prev is not None and self.first is not None
        ext = pa.concat_arrays([pa.array([self.prev], pa.int64()), arr])
        gaps = pc.pairwise_diff(ext).slice(1)
        if pc.min(gaps).as_py() < 0:
            at = self.rows + pc.indices_nonzero(pc.less(gaps, 0))[0].as_py()
            raise TransformError(f"fit needs arrivals in time order; row {at} goes back in "
                                 "time (sort the trace first)")
        starts = ext.slice(0, n)
        if self.rows == 0:  # the first row starts no gap
            gaps, starts = gaps.slice(1), starts.slice(1)
        gap_s = pc.divide(gaps.cast(pa.float64()), 1e6)
        zero = pc.equal(gaps, 0)
        gap_s = pc.if_else(zero, self.floor_s, gap_s)
        # window of each gap's start; windows of the arrivals themselves
        gwin = pc.divide(pc.subtract(starts, self.first), self.win_us)
        awin = pc.divide(pc.subtract(arr, self.first), self.win_us)
        g = pa.table({"w": gwin, "g": gap_s, "l": pc.ln(gap_s), "z": zero.cast(pa.int64())}
                     ).group_by("w").aggregate([("g", "count"), ("z", "sum"), ("g", "sum"),
                                                ("l", "sum")])
        for w, cnt, z, s, sl in zip(*(g.column(c).to_pylist() for c in (
                "w", "g_count", "z_sum", "g_sum", "l_sum")), strict=True):
            acc = self.stats.setdefault(w, [0, 0, 0, 0.0, 0.0])
            acc[1] += cnt
            acc[2] += z
            acc[3] += s
            acc[4] += sl
        a = pa.table({"w": awin}).group_by("w").aggregate([("w", "count")])
        for w, cnt in zip(a.column("w").to_pylist(), a.column("w_count").to_pylist(),
                          strict=True):
            self.stats.setdefault(w, [0, 0, 0, 0.0, 0.0])[0] += cnt
        self.prev = arr[n - 1].as_py()
        self.rows += n

    @property
    def span_s(self) -> float:
        """Seconds from the first to the last arrival seen."""
        if self.prev is None or self.first is None:
            return 0.0
        return (self.prev - self.first) / 1e6

    def windows(self) -> list[GammaWindow]:
        """One window per ``window_s`` from the first arrival, fitted where it has enough gaps."""
        out = []
        for w in range(max(self.stats) + 1 if self.stats else 0):
            req, cnt, z, total, total_log = self.stats.get(w, [0, 0, 0, 0.0, 0.0])
            alpha = beta = None
            if cnt >= MIN_GAPS:
                alpha, beta = gamma_mle(total / cnt, total_log / cnt)
            out.append(GammaWindow(start_s=w * self.win_us / 1e6, requests=int(req),
                                   gaps=int(cnt), zero_gaps=int(z), alpha=alpha, beta=beta))
        return out


class RequestLengthFit:
    """Sufficient statistics of a bounded Zipf on the input lengths >= 1: count, sum of logs,
    range; a length of 0 is counted and left out."""

    def __init__(self) -> None:
        self.rows = 0
        self.zeros = 0
        self.sum_log = 0.0
        self.k_min: int | None = None
        self.k_max: int | None = None

    def add(self, k: pa.Array) -> None:
        """Take the next ``input_tokens`` values."""
        kpos = k.filter(pc.greater(k, 0))
        self.zeros += len(k) - len(kpos)
        if not len(kpos):
            return
        self.rows += len(kpos)
        self.sum_log += pc.sum(pc.ln(kpos.cast(pa.float64()))).as_py()
        mm = pc.min_max(kpos)
        lo, hi = mm["min"].as_py(), mm["max"].as_py()
        self.k_min = lo if self.k_min is None else min(self.k_min, lo)
        self.k_max = hi if self.k_max is None else max(self.k_max, hi)

    def result(self) -> ZipfLengths | None:
        """The Zipf fit by MLE; None when no input length was >= 1."""
        if self.k_min is None or self.k_max is None:
            return None
        exponent = zipf_mle(self.sum_log / self.rows, self.k_min, self.k_max)
        return ZipfLengths(exponent=exponent, min=self.k_min, max=self.k_max, rows=self.rows,
                           zeros=self.zeros)


def percentiles(counts: dict[int, int]) -> list[int]:
    """The 0th..100th percentiles (nearest rank) of the values counted in ``counts``."""
    values = sorted(counts)
    total = sum(counts.values())
    out, cum, i = [], 0, 0
    for j in range(QUANTILES):
        rank = max(1, math.ceil(j * total / (QUANTILES - 1)))
        while cum + counts[values[i]] < rank:
            cum += counts[values[i]]
            i += 1
        out.append(values[i])
    return out


class ResponseFit:
    """Output lengths counted per request-length bin (:func:`modeled.length_bin`), over the
    rows not marked failed whose output length is known; failed rows are counted."""

    def __init__(self) -> None:
        self.failed = 0
        self.counts: dict[int, dict[int, int]] = {}  # length bin -> output length -> count
        self.ranges: dict[int, list[int]] = {}  # length bin -> [lowest, highest] input length

    def add(self, batch: pa.RecordBatch) -> None:
        """Take the next rows' ``input_tokens``, ``output_tokens`` and ``failed``."""
        k = batch.column("input_tokens")
        marked = pc.fill_null(batch.column("failed"), False)
        self.failed += pc.sum(marked.cast(pa.int64())).as_py() or 0
        out = batch.column("output_tokens")
        ok = pc.and_(pc.invert(marked), pc.is_valid(out))
        kb = pc.if_else(pc.greater(k, 0), pc.floor(pc.multiply(pc.log2(pc.if_else(
            pc.greater(k, 0), k, 1).cast(pa.float64())), BINS_PER_OCTAVE)), -1.0)
        r = pa.table({"b": kb.cast(pa.int64()), "o": out, "k": k}).filter(ok)
        r = r.group_by(["b", "o"]).aggregate([("k", "count"), ("k", "min"), ("k", "max")])
        for b, o, cnt, lo, hi in zip(*(r.column(c).to_pylist() for c in (
                "b", "o", "k_count", "k_min", "k_max")), strict=True):
            per = self.counts.setdefault(b, {})
            per[o] = per.get(o, 0) + cnt
            span = self.ranges.setdefault(b, [lo, hi])
            span[0], span[1] = min(span[0], lo), max(span[1], hi)

    def result(self) -> ResponseLengths:
        """The bins in order, each with its percentiles."""
        bins = [ResponseBin(bin=b, lo=self.ranges[b][0], hi=self.ranges[b][1],
                            count=sum(self.counts[b].values()),
                            quantiles=percentiles(self.counts[b]))
                for b in sorted(self.counts)]
        return ResponseLengths(rows=sum(b.count for b in bins), bins=bins)


def _batches(stream: TraceView) -> Iterator[pa.RecordBatch]:
    return stream.reopen(COLUMNS) if stream.reopen is not None else stream.batches


def fit(trace: TraceLike, window_s: float = 1200.0) -> TraceModel:
    """Fit a BurstGPT trace model: per-window Gamma arrivals, Zipf request lengths, and
    response lengths conditional on request length.

    One pass over ``arrival_us``, ``input_tokens``, ``output_tokens``, ``failed``, ``model``
    and ``service``; memory holds per-window sums and one count per (length bin, output
    length) pair. Windows start at the first arrival; a gap belongs to the window where it
    starts. Arrivals must be in time order.

    Parameters
    ----------
    trace : TraceView, pyarrow.Table, path or registry id
        A unified trace with timing.
    window_s : float
        Window length in seconds (the paper's 20 minutes by default).

    Returns
    -------
    TraceModel

    Examples
    --------
    >>> m = fit("azure-llm-2023/code")
    >>> len(m.windows), round(m.windows[0].alpha, 3), round(m.request_lengths.exponent, 3)
    (3, 0.24, 0.523)
    """
    if not window_s > 0:
        raise TransformError(f"fit: window_s must be > 0 (got {window_s})")
    stream = open_trace(trace)
    require_timing(stream.meta, "fit")
    arrivals = ArrivalFit(window_s, max(resolution_us(stream.meta), 1.0) / 2 / 1e6)
    requests = RequestLengthFit()
    responses = ResponseFit()
    names: dict[str, set[str | None]] = {"model": set(), "service": set()}
    for batch in _batches(stream):
        if not batch.num_rows:
            continue
        arrivals.add(batch.column("arrival_us"))
        requests.add(batch.column("input_tokens"))
        responses.add(batch)
        for name, seen in names.items():
            if len(seen) <= 1:
                seen.update(pc.unique(batch.column(name)).to_pylist())
    request_lengths = requests.result()
    if arrivals.rows == 0 or request_lengths is None:
        raise TransformError("fit needs a trace with rows (and input lengths >= 1)")
    models, services = names["model"], names["service"]
    return TraceModel(
        window_s=window_s, span_s=arrivals.span_s, gap_floor_s=arrivals.floor_s,
        rows=arrivals.rows, failed=responses.failed,
        model=next(iter(models)) if len(models) == 1 else None,
        service=next(iter(services)) if len(services) == 1 else None,
        windows=arrivals.windows(), request_lengths=request_lengths,
        response_lengths=responses.result(),
        fitted_from={k: stream.meta.get(k) for k in PROVENANCE if k in stream.meta},
    )
