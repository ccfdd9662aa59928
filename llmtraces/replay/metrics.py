"""The replay's metrics, from the rows of ``requests.parquet`` (see ``docs/replay.md`` for the
definitions and the names other tools give them).

Latencies are per successful request (``ok``), measured from ``sent_s`` (when the request
was handed to the HTTP client). ``requests.parquet`` and ``timeseries.parquet`` hold them in
seconds (``_s`` columns); ``summary.json`` in milliseconds, the unit of ``--slo`` and of what
the terminal shows, every key naming its unit (``ttft_ms``, ``duration_s``):

- TTFT = first_token - sent (streaming only); E2E = end - sent;
- TPOT = (E2E - TTFT) / (N - 1), N = output tokens (usage), for N >= 2;
- ITL = every gap between consecutive output chunks of a request;
- normalised latency = E2E / N;
- jitter = the population standard deviation of E2E (BurstGPT's sigma_L).

Run-wide: ``duration`` = last end - first send; throughputs are tokens of successful
requests over it; achieved rate = (sent - 1) / (last send - first send). Percentiles use
linear interpolation between order statistics (numpy's default, as vLLM and AIPerf do).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

#: ITL gaps kept exactly; past this many, every k-th gap (k doubling) is kept instead, so the
#: memory of a long run stays bounded (``itl_ms.stride`` in the summary says which).
ITL_CAP = 4_000_000

SLO_KEYS = ("ttft", "tpot", "e2e")
#: Seconds -> milliseconds: summary.json's latencies are in ms, like ``--slo``.
MS = 1000.0


@dataclass(frozen=True)
class Slo:
    """Service-level objectives in milliseconds; a request meets them when it succeeded and
    each given bound holds (TPOT of a 1-token answer is taken as met)."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None

    @classmethod
    def parse(cls, text: str | None) -> Slo | None:
        """``ttft=500,tpot=50,e2e=10000`` (ms) -> Slo; None or '' -> None."""
        if not text:
            return None
        values: dict[str, float] = {}
        for item in text.split(","):
            key, sep, value = item.partition("=")
            key = key.strip().lower()
            if not sep or key not in SLO_KEYS:
                raise ValueError(f"--slo: expected ttft=MS,tpot=MS,e2e=MS (got {item!r})")
            try:
                ms = float(value)
            except ValueError:
                raise ValueError(f"--slo: {key} must be a number of ms (got {value!r})") from None
            if not (ms > 0 and math.isfinite(ms)):
                raise ValueError(f"--slo: {key} must be a finite number of ms > 0 (got "
                                 f"{value!r})")
            values[f"{key}_ms"] = ms
        return cls(**values)

    def as_dict(self) -> dict[str, float]:
        """The bounds that are set."""
        return {k: v for k, v in (("ttft_ms", self.ttft_ms), ("tpot_ms", self.tpot_ms),
                                  ("e2e_ms", self.e2e_ms)) if v is not None}


def parse_percentiles(text: str) -> list[float]:
    """``50,90,99`` -> [50.0, 90.0, 99.0] (each in [0, 100])."""
    out = []
    for item in text.split(","):
        try:
            p = float(item)
        except ValueError:
            raise ValueError(f"--percentiles: not a number: {item!r}") from None
        if not 0 <= p <= 100:
            raise ValueError(f"--percentiles: {p} is outside [0, 100]")
        out.append(p)
    return sorted(set(out))


def _key(p: float) -> str:
    return f"p{p:g}".replace(".", "_")


def stats(values: pa.Array | pa.ChunkedArray | Sequence[float],
          percentiles: Sequence[float], scale: float = 1.0) -> dict[str, Any]:
    """count, mean, std (population), min, max and the percentiles of the non-null values,
    each multiplied by ``scale`` (1000: seconds to milliseconds)."""
    arr = values if isinstance(values, pa.Array | pa.ChunkedArray) else \
        pa.array(list(values), pa.float64())
    arr = pc.drop_null(arr.cast(pa.float64()))
    if scale != 1.0:
        arr = pc.multiply(arr, scale)
    n = len(arr)
    out: dict[str, Any] = {"count": n}
    if n == 0:
        out.update(mean=None, std=None, min=None, max=None)
        out.update({_key(p): None for p in percentiles})
        return out
    out["mean"] = pc.mean(arr).as_py()
    out["std"] = pc.stddev(arr, ddof=0).as_py()
    out["min"] = pc.min(arr).as_py()
    out["max"] = pc.max(arr).as_py()
    if percentiles:
        qs = pc.quantile(arr, q=[p / 100 for p in percentiles], interpolation="linear")
        out.update({_key(p): q for p, q in zip(percentiles, qs.to_pylist(), strict=True)})
    return out


def _gaps(chunks: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Gaps between consecutive values inside each list of ``chunks``."""
    if isinstance(chunks, pa.ChunkedArray):
        parts = [_gaps(c) for c in chunks.chunks]
        return pa.concat_arrays(parts) if parts else pa.array([], pa.float64())
    values = pc.list_flatten(chunks)
    if len(values) < 2:
        return pa.array([], pa.float64())
    parents = pc.list_parent_indices(chunks)
    same = pc.equal(parents.slice(1), parents.slice(0, len(parents) - 1))
    diff = pc.subtract(values.slice(1), values.slice(0, len(values) - 1))
    return pc.filter(diff, same)


@dataclass
class _ItlPool:
    """ITL gaps collected batch by batch, thinned by stride once over :data:`ITL_CAP`."""

    cap: int = ITL_CAP
    stride: int = 1
    seen: int = 0
    arrays: list[pa.Array] = field(default_factory=list)
    kept: int = 0

    def add(self, gaps: pa.Array) -> None:
        if not len(gaps):
            return
        if self.stride > 1:
            offset = (-self.seen) % self.stride
            gaps_kept = gaps.take(pa.array(range(offset, len(gaps), self.stride), pa.int64()))
        else:
            gaps_kept = gaps
        self.seen += len(gaps)
        self.arrays.append(gaps_kept)
        self.kept += len(gaps_kept)
        while self.kept > self.cap:
            self.stride *= 2
            whole = pa.concat_arrays(self.arrays)
            whole = whole.take(pa.array(range(0, len(whole), 2), pa.int64()))
            self.arrays, self.kept = [whole], len(whole)

    def values(self) -> pa.Array:
        return pa.concat_arrays(self.arrays) if self.arrays else pa.array([], pa.float64())


#: Columns the summary reads (everything but the chunk lists, read group by group for ITL).
SCALAR_COLUMNS = ["scheduled_s", "ready_s", "sent_s", "first_token_s", "end_s", "queue_s",
                   "lateness_s", "ttft_s", "e2e_s", "tpot_s", "input_tokens", "prompt_tokens",
                   "cached_tokens", "output_tokens_asked", "output_tokens", "short_output",
                   "usage_source", "ok", "error", "status"]


def measured_mask(table: pa.Table | pa.RecordBatch, start_s: float | None,
                  until_s: float | None) -> pa.Array:
    """Rows scheduled in the measured window ``[start_s, until_s)`` (None: unbounded)."""
    sched = table.column("scheduled_s")
    mask = pc.is_valid(sched)
    if start_s is not None:
        mask = pc.and_(mask, pc.greater_equal(sched, start_s))
    if until_s is not None:
        mask = pc.and_(mask, pc.less(sched, until_s))
    return pc.fill_null(mask, False)


def _itl(source: pa.Table | Path, ok_only: bool = True, start_s: float | None = None,
         until_s: float | None = None) -> _ItlPool:
    pool = _ItlPool()
    windowed = start_s is not None or until_s is not None
    if isinstance(source, pa.Table):
        table = source.filter(measured_mask(source, start_s, until_s)) if windowed else source
        table = table.filter(pc.fill_null(table["ok"], False)) if ok_only else table
        pool.add(_gaps(table["chunk_times_s"]))
        return pool
    pf = pq.ParquetFile(source)
    for batch in pf.iter_batches(batch_size=8192,
                                 columns=["chunk_times_s", "ok", "scheduled_s"]):
        if windowed:
            batch = batch.filter(measured_mask(batch, start_s, until_s))
        if ok_only:
            batch = batch.filter(pc.fill_null(batch.column("ok"), False))
        pool.add(_gaps(batch.column("chunk_times_s")))
    return pool


def _good(table: pa.Table, slo: Slo) -> pa.Array:
    """Mask of successful requests that meet every bound of ``slo``."""
    mask = pc.fill_null(table["ok"], False)
    for name, bound in (("ttft_s", slo.ttft_ms), ("tpot_s", slo.tpot_ms),
                        ("e2e_s", slo.e2e_ms)):
        if bound is None:
            continue
        col = table[name]
        meets = pc.less_equal(col, bound / 1000.0)
        # TPOT of a one-token answer does not exist: met. A missing TTFT/E2E: not met.
        meets = pc.fill_null(meets, name == "tpot_s")
        mask = pc.and_(mask, meets)
    return mask


def good_mask(table: pa.Table, slo: Slo) -> pa.Array:
    """Mask of the rows that succeeded and met every bound of ``slo`` (the goodput's)."""
    return _good(table, slo)


def _sum(col: pa.ChunkedArray | pa.Array) -> int:
    value = pc.sum(col).as_py()
    return int(value) if value is not None else 0


def fidelity(table: pa.Table, percentiles: Sequence[float] = (50, 99)) -> dict[str, Any]:
    """How well the dispatcher kept to the schedule: lateness (sent - ready) p50/p99/max,
    the share late by more than 1 ms and 10 ms, drift, the client queue time (all in ms),
    and a warning when the client could not keep up."""
    sent = table.filter(pc.is_valid(table["sent_s"]))
    late = sent["lateness_s"]
    n = len(late)
    pcts = sorted({50.0, 99.0, *percentiles})
    out: dict[str, Any] = {"requests": n, "lateness_ms": stats(late, pcts, MS)}
    if n:
        out["late_over_1ms"] = pc.sum(pc.greater(late, 0.001)).as_py() / n
        out["late_over_10ms"] = pc.sum(pc.greater(late, 0.010)).as_py() / n
        first_send, last_send = pc.min(sent["sent_s"]).as_py(), pc.max(sent["sent_s"]).as_py()
        first_s, last_s = (pc.min(sent["scheduled_s"]).as_py(),
                           pc.max(sent["scheduled_s"]).as_py())
        out["drift_ms"] = ((last_send - first_send) - (last_s - first_s)) * MS
    else:
        out.update(late_over_1ms=None, late_over_10ms=None, drift_ms=None)
    out["queue_ms"] = stats(sent["queue_s"], pcts, MS)
    p99 = out["lateness_ms"].get("p99")
    warn = None
    if n and ((p99 is not None and p99 > 10.0) or (out["late_over_10ms"] or 0) > 0.01):
        warn = (f"the client could not keep up with the schedule: p99 dispatch lateness "
                f"{p99:.1f} ms, {out['late_over_10ms']:.1%} of requests sent more than "
                "10 ms late; the server saw a smoother load than the trace (use fewer "
                "requests/s, --max-concurrency, or a faster machine)")
    out["kept_up"] = warn is None
    out["warning"] = warn
    return out


def summarize(source: pa.Table | Path, *, percentiles: Sequence[float] = (50, 90, 99),
              slo: Slo | None = None, measure_from_s: float | None = None,
              measure_until_s: float | None = None) -> dict[str, Any]:
    """The metrics of a requests table (or ``requests.parquet`` path): latencies in ms
    (``ttft_ms``, ...), the duration in s, throughputs per second. With a measured window
    only the requests scheduled in ``[measure_from_s, measure_until_s)`` count (the others
    were sent as warm-up or tail); ``measured`` then says the window and how many."""
    if isinstance(source, pa.Table):
        table = source
    else:
        table = pq.read_table(source, columns=SCALAR_COLUMNS)
    windowed = measure_from_s is not None or measure_until_s is not None
    every = table.num_rows
    if windowed:
        table = table.filter(measured_mask(table, measure_from_s, measure_until_s))
    pcts = list(percentiles)
    total = table.num_rows
    ok_mask = pc.fill_null(table["ok"], False)
    ok = table.filter(ok_mask)
    sent = table.filter(pc.is_valid(table["sent_s"]))
    n_ok, n_sent = ok.num_rows, sent.num_rows
    duration = None
    if n_sent:
        ends = pc.max(table["end_s"]).as_py()
        duration = (ends if ends is not None else pc.max(sent["sent_s"]).as_py()) \
            - pc.min(sent["sent_s"]).as_py()

    def rate(x: float) -> float | None:
        return x / duration if duration else None

    errors = table.filter(pc.is_valid(table["error"]))["error"]
    by_class: dict[str, int] = {}
    if len(errors):
        vc = pc.value_counts(errors)
        by_class = {v["values"]: v["counts"] for v in vc.to_pylist()}
    by_class = dict(sorted(by_class.items(), key=lambda kv: (-kv[1], kv[0])))
    out_tokens = ok["output_tokens"]
    prompt = pc.coalesce(ok["prompt_tokens"], ok["input_tokens"])
    normalised = pc.divide(ok["e2e_s"], pc.cast(out_tokens, pa.float64()))
    normalised = pc.if_else(pc.greater(out_tokens, 0), normalised,
                            pa.nulls(len(normalised), pa.float64()))
    itl = _itl(source, start_s=measure_from_s, until_s=measure_until_s)
    achieved = None
    if n_sent >= 2:
        span = pc.max(sent["sent_s"]).as_py() - pc.min(sent["sent_s"]).as_py()
        achieved = (n_sent - 1) / span if span > 0 else None
    sched = table["scheduled_s"]
    sched_span = (pc.max(sched).as_py() - pc.min(sched).as_py()) if total else 0.0
    summary: dict[str, Any] = {
        "requests": {
            "total": total, "sent": n_sent, "ok": n_ok, "failed": total - n_ok,
            "short_output": _sum(pc.cast(pc.fill_null(ok["short_output"], False), pa.int64())),
            "without_usage": _sum(pc.cast(pc.not_equal(
                pc.fill_null(ok["usage_source"], ""), "usage"), pa.int64())),
        },
        "duration_s": duration,
        "ttft_ms": stats(ok["ttft_s"], pcts, MS),
        "tpot_ms": stats(ok["tpot_s"], pcts, MS),
        "itl_ms": {**stats(itl.values(), pcts, MS), "gaps": itl.seen, "stride": itl.stride},
        "e2e_ms": stats(ok["e2e_s"], pcts, MS),
        "normalised_latency_ms": stats(normalised, pcts, MS),
        "jitter_ms": stats(ok["e2e_s"], [], MS)["std"],
        "input_tokens": _sum(prompt),
        "output_tokens": _sum(out_tokens),
        "cached_tokens": _sum(ok["cached_tokens"]),
        "input_throughput_tps": rate(_sum(prompt)),
        "output_throughput_tps": rate(_sum(out_tokens)),
        "request_throughput_rps": rate(n_ok),
        "achieved_rate_rps": achieved,
        "scheduled_rate_rps": (total - 1) / sched_span if total >= 2 and sched_span > 0
        else None,
        "failure_rate": (total - n_ok) / total if total else None,
        "failures": {k: {"count": v, "rate": v / total} for k, v in by_class.items()},
    }
    if windowed:
        summary["measured"] = {"from_s": measure_from_s, "until_s": measure_until_s,
                               "requests": total, "of": every}
    if slo is not None:
        good = _sum(pc.cast(_good(table, slo), pa.int64()))
        summary["goodput"] = {"slo_ms": slo.as_dict(), "requests": good,
                              "share": good / total if total else None, "rps": rate(good)}
    return summary


TIMESERIES_SCHEMA_BASE = [
    ("window", pa.int64()), ("start_s", pa.float64()), ("end_s", pa.float64()),
    ("requests", pa.int64()), ("rate_rps", pa.float64()), ("sent", pa.int64()),
    ("ok", pa.int64()), ("failed", pa.int64()), ("failure_rate", pa.float64()),
    ("e2e_mean_s", pa.float64()), ("e2e_std_s", pa.float64()),
    ("ttft_mean_s", pa.float64()), ("tpot_mean_s", pa.float64()),
    ("input_tokens", pa.int64()), ("output_tokens", pa.int64()),
    ("input_throughput_tps", pa.float64()), ("output_throughput_tps", pa.float64()),
    ("lateness_max_s", pa.float64()), ("goodput_rps", pa.float64()),
]


def timeseries_schema(percentiles: Sequence[float]) -> pa.Schema:
    """Columns of ``timeseries.parquet``: the base ones, then TTFT/TPOT/E2E percentiles."""
    extra = [(f"{m}_{_key(p)}_s", pa.float64()) for m in ("ttft", "tpot", "e2e")
             for p in percentiles]
    return pa.schema(TIMESERIES_SCHEMA_BASE + extra)


def timeseries(source: pa.Table | Path, window_s: float, *,
               percentiles: Sequence[float] = (50, 90, 99), slo: Slo | None = None
               ) -> pa.Table:
    """Per-window metrics over the schedule's time axis (BurstGPT's R, L, sigma_L, P).

    A request belongs to the window of its ``scheduled_s``: ``rate_rps`` is R (requests
    scheduled per second), ``e2e_mean_s`` L, ``e2e_std_s`` sigma_L, ``failure_rate`` P.
    Token throughputs are the window's successful requests' tokens over ``window_s``.
    """
    if not window_s > 0:
        raise ValueError(f"window must be > 0 s (got {window_s})")
    table = source if isinstance(source, pa.Table) else \
        pq.read_table(source, columns=SCALAR_COLUMNS)
    schema = timeseries_schema(percentiles)
    if table.num_rows == 0:
        return schema.empty_table()
    idx = pc.cast(pc.floor(pc.divide(table["scheduled_s"], window_s)), pa.int64())
    table = table.append_column("_w", idx).sort_by("_w")
    windows = table["_w"].to_pylist()
    good = _good(table, slo) if slo is not None else None
    rows: dict[str, list[Any]] = {name: [] for name in schema.names}
    start = 0
    n = len(windows)
    while start < n:
        w = windows[start]
        stop = start
        while stop < n and windows[stop] == w:
            stop += 1
        part = table.slice(start, stop - start)
        ok = part.filter(pc.fill_null(part["ok"], False))
        count, n_ok = part.num_rows, ok.num_rows
        e2e = stats(ok["e2e_s"], percentiles)
        ttft = stats(ok["ttft_s"], percentiles)
        tpot = stats(ok["tpot_s"], percentiles)
        inp = _sum(pc.coalesce(ok["prompt_tokens"], ok["input_tokens"]))
        outp = _sum(ok["output_tokens"])
        late = pc.max(part["lateness_s"]).as_py()
        row = {"window": w, "start_s": w * window_s, "end_s": (w + 1) * window_s,
               "requests": count, "rate_rps": count / window_s,
               "sent": _sum(pc.cast(pc.is_valid(part["sent_s"]), pa.int64())),
               "ok": n_ok, "failed": count - n_ok, "failure_rate": (count - n_ok) / count,
               "e2e_mean_s": e2e["mean"], "e2e_std_s": e2e["std"],
               "ttft_mean_s": ttft["mean"], "tpot_mean_s": tpot["mean"],
               "input_tokens": inp, "output_tokens": outp,
               "input_throughput_tps": inp / window_s, "output_throughput_tps": outp / window_s,
               "lateness_max_s": late,
               "goodput_rps": (_sum(pc.cast(good.slice(start, stop - start), pa.int64()))
                               / window_s) if good is not None else None}
        for m, st in (("ttft", ttft), ("tpot", tpot), ("e2e", e2e)):
            for p in percentiles:
                row[f"{m}_{_key(p)}_s"] = st[_key(p)]
        for name in schema.names:
            rows[name].append(row[name])
        start = stop
    return pa.table(rows, schema=schema)

