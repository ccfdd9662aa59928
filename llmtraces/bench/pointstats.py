"""A point's numbers from its ``requests.parquet``: the measured requests, their joint and
per-bound SLO attainment, latency percentiles, throughputs, and the output tokens generated
inside the measured window (for energy per token)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..replay import metrics
from ..replay.metrics import Slo
from .verdict import Attainment, wilson

BOUNDS = ("ttft_ms", "tpot_ms", "e2e_ms")


@dataclass
class PointStats:
    """What the verdict and ``results.parquet`` need of one point."""

    attainment: Attainment
    per_bound: dict[str, float | None]
    summary: dict[str, Any]
    kept_up: bool
    lateness_p99_ms: float | None
    late_warning: str | None
    span_s: float
    tokens_in_window: float
    output_tokens: int
    completed: int            # requests that ended ok inside the window (throughput)

    @property
    def binding(self) -> str | None:
        """The bound met least often (the one that limits capacity)."""
        got = [(a, b) for b, a in self.per_bound.items() if a is not None]
        return min(got)[1] if got else None


def measured_rows(table: pa.Table, column: str, start_s: float, until_s: float) -> pa.Table:
    """The rows whose ``column`` (``scheduled_s`` or ``ready_s``) is in ``[start, until)``."""
    col = table[column]
    mask = pc.and_(pc.greater_equal(col, start_s), pc.less(col, until_s))
    return table.filter(pc.fill_null(mask, False))


def _share(table: pa.Table, slo: Slo) -> float | None:
    if not table.num_rows:
        return None
    good = pc.sum(pc.cast(metrics.good_mask(table, slo), pa.int64())).as_py() or 0
    return int(good) / table.num_rows


def tokens_between(table: pa.Table, start_s: float, until_s: float) -> float:
    """Output tokens generated in ``[start_s, until_s]``: each request's tokens times the
    share of its output chunks that arrived inside (the design's energy-per-token rule)."""
    total = 0.0
    for chunks, n in zip(table["chunk_times_s"].to_pylist(),
                         table["output_tokens"].to_pylist(), strict=True):
        if not chunks or not n:
            continue
        inside = sum(1 for c in chunks if start_s <= c <= until_s)
        total += n * inside / len(chunks)
    return total


def kept_up(table: pa.Table, late_ms: float, late_share: float) -> tuple[bool, float | None,
                                                                         str | None]:
    """Whether the client kept to the schedule over ``table``'s requests: the share of them
    sent more than ``late_ms`` late is at most ``late_share``, judged as attainment is (the
    Wilson interval's lower end, so one stall among 50 requests is not taken for a client
    that fell behind); with the p99 lateness (ms) and, when not, the reason."""
    late = pc.drop_null(table["lateness_s"])
    if not len(late):
        return True, None, None
    p99 = float(pc.quantile(late, q=0.99, interpolation="linear")[0].as_py()) * 1000
    k = int(pc.sum(pc.cast(pc.greater(late, late_ms / 1000), pa.int64())).as_py() or 0)
    lo, _ = wilson(k, len(late))
    if lo <= late_share:
        return True, p99, None
    return False, p99, (f"the client could not keep up: {k} of {len(late)} requests sent more "
                        f"than {late_ms:g} ms late (at least {lo:.1%} at 95 % confidence; "
                        f"bound: {late_share:.1%}), p99 dispatch lateness {p99:.1f} ms; the "
                        "server saw a gentler load than scheduled")


def point_stats(requests: Path, slo: Slo, *, by: str, start_s: float, until_s: float,
                percentiles: list[float], late_ms: float = 10.0,
                late_share: float = 0.01) -> PointStats:
    """The numbers of one point, measured over ``[start_s, until_s)`` of column ``by``."""
    table = pq.read_table(requests)
    measured = measured_rows(table, by, start_s, until_s)
    n = measured.num_rows
    good = int(pc.sum(pc.cast(metrics.good_mask(measured, slo), pa.int64())).as_py() or 0) \
        if n else 0
    per_bound = {b: _share(measured, Slo(**{b: v})) for b, v in slo.as_dict().items()}
    summary = metrics.summarize(measured, percentiles=percentiles, slo=slo)
    up, p99, why = kept_up(measured, late_ms, late_share)
    span = max(until_s - start_s, 1e-9)
    ok = measured.filter(pc.fill_null(measured["ok"], False))
    out_tokens = int(pc.sum(ok["output_tokens"]).as_py() or 0)
    ends = pc.fill_null(pc.and_(pc.greater_equal(table["end_s"], start_s),
                                pc.less(table["end_s"], until_s)), False)
    completed = int(pc.sum(pc.cast(pc.and_(ends, pc.fill_null(table["ok"], False)),
                                   pa.int64())).as_py() or 0)
    return PointStats(Attainment.of(good, n), per_bound, summary, up, p99, why, span,
                      tokens_between(table, start_s, until_s), out_tokens, completed)
