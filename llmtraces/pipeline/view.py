"""The re-readable unified trace, :class:`TraceView`: what the transforms return and what
the API, the writers and the replayer read.

A view is a recipe, not a result. Each read (``batches``, :meth:`TraceView.to_table`, a
writer) opens its source again (a unified Parquet file, a pyarrow Table, a native file, or the
view it was derived from) and streams it batch by batch, so a view can be read any number of
times in bounded memory. :func:`llmtraces.pipeline.inputs.open_trace` makes one of any input.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import LLMTracesError
from ..schema import METADATA_KEY, TRACE_SCHEMA, TraceStream

#: Rows per batch that the views read and write (the Parquet writer's row group size).
BATCH_ROWS = 1 << 17

#: Opens a trace again: the batches of the given columns only, from the start.
Reopen = Callable[[Sequence[str]], Iterator[pa.RecordBatch]]


class TransformError(LLMTracesError, ValueError):
    """A transform that cannot apply to this trace or these parameters (e.g. no timing).

    Defined with the view, which raises it too (a one-shot stream read a second time)."""


class TraceView(TraceStream):
    """A unified trace that can be read again and again: what every transform returns.

    Reading it (``batches``, :meth:`to_table`, :meth:`to_pandas`, any writer or
    :func:`llmtraces.export`) opens its source again and streams it, so reading twice gives
    the same rows, and memory holds a batch at a time unless :meth:`to_table` is asked for.
    Pass it to any transform, to :func:`llmtraces.load` or :func:`llmtraces.iter_requests`.

    ``meta`` (also :attr:`metadata`) is the trace metadata; a read keeps it up to date (its
    ``rows`` is set once a read has finished). ``reopen(columns)`` reads only those columns,
    for first passes, where that is cheap (None for a native file, which is spooled instead);
    ``parquet`` is set for an untransformed unified Parquet file.

    Examples
    --------
    >>> import llmtraces
    >>> w = llmtraces.window(llmtraces.load("azure-llm-2023", trace="code"), 30, 30)
    >>> w
    <TraceView azure-llm-2023/code: 46 requests, 9.1 s, window(30s..60s)>
    >>> w.num_rows, w.to_table().num_rows, w.to_table().num_rows   # re-readable
    (46, 46, 46)
    """

    def __init__(self, meta: dict[str, Any], read: Callable[[], Iterator[pa.RecordBatch]], *,
                 reopen: Reopen | None = None, parquet: Path | None = None,
                 first: Iterator[pa.RecordBatch] | None = None, settled: bool = True,
                 checked_at_end: bool = False, table: pa.Table | None = None) -> None:
        self.meta = meta
        self.reopen = reopen
        self.parquet = parquet
        #: Metadata complete before any read (False: a native reader fills it as it goes).
        self.settled = settled
        #: A read must go to the end for the input to be checked (a native reader's checks).
        self.checked_at_end = checked_at_end
        self._read = read
        self._first = first  # a read already opened (a native file's first scan)
        self._table = table
        self._facts: ArrivalFacts | None = None

    @property
    def batches(self) -> Iterator[pa.RecordBatch]:
        """A new read of the trace from its start (unified record batches)."""
        first, self._first = self._first, None
        return first if first is not None else self._read()

    @batches.setter
    def batches(self, value: Iterator[pa.RecordBatch]) -> None:
        raise AttributeError("a TraceView is re-read from its source; its batches cannot be "
                             "replaced (build a TraceStream instead)")

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    @property
    def metadata(self) -> dict[str, Any]:
        """The trace metadata (source, licence, time semantics, ``transforms``, ``rows``)."""
        return self.meta

    @property
    def num_rows(self) -> int:
        """Number of requests: from the metadata or Parquet footer when known, else counted
        in one pass over as few columns as the recipe needs (nothing is kept)."""
        if self._table is not None:
            return int(self._table.num_rows)
        if self.parquet is not None:
            return int(pq.ParquetFile(self.parquet).metadata.num_rows)
        rows = self.meta.get("rows")
        if rows is None:
            batches = self.reopen(["request_id"]) if self.reopen is not None else self.batches
            rows = sum(b.num_rows for b in batches)
            self.meta["rows"] = rows
        return int(rows)

    def to_table(self) -> pa.Table:
        """The whole trace as a pyarrow Table in the unified schema, its metadata in the
        schema's ``llmtraces.trace`` entry (read it into memory only when it fits)."""
        table = pa.Table.from_batches(list(self.batches), schema=TRACE_SCHEMA)
        meta = {**(TRACE_SCHEMA.metadata or {}),
                METADATA_KEY.encode(): json.dumps(self.meta, sort_keys=True).encode()}
        return table.replace_schema_metadata(meta)

    def to_pandas(self) -> Any:
        """The whole trace as a pandas DataFrame (needs the ``pandas`` extra)."""
        try:
            importlib.import_module("pandas")
        except ImportError:
            raise ImportError("TraceView.to_pandas needs pandas: pip install "
                              "'llmtraces[pandas]' (or use to_table(), a pyarrow Table)"
                              ) from None
        return self.to_table().to_pandas()

    def __repr__(self) -> str:
        return f"<TraceView {label(self.meta)}: {self._summary()}>"

    def _summary(self) -> str:
        """Rows and time span where they are cheap to know, then the transforms applied."""
        parts = []
        facts = self._cheap_facts()
        rows = facts.rows if facts is not None else self.meta.get("rows")
        parts.append(f"{rows:,} requests" if rows is not None else "? requests (not read yet)")
        if facts is not None and facts.first_us is not None and facts.last_us is not None:
            parts.append(span_text((facts.last_us - facts.first_us) / 1e6))
        ops = [describe_op(e) for e in self.meta.get("transforms") or []]
        if ops:
            parts.append(" | ".join(ops))
        return ", ".join(parts)

    def _cheap_facts(self) -> ArrivalFacts | None:
        """Rows and arrival range, from statistics or a pass over ``arrival_us``; None where
        that would mean parsing a native file, or where the pass fails."""
        if self._facts is None and self.reopen is not None:
            try:
                self._facts = arrival_facts(self)
            except Exception:  # a repr never raises: the read reports the problem
                return None
        return self._facts


#: The old name of :class:`TraceView`.
ReplayableStream = TraceView


def label(meta: dict[str, Any]) -> str:
    """``source/trace`` of a trace's metadata, or what names it best."""
    source, trace = meta.get("source"), meta.get("trace")
    if source and trace:
        return f"{source}/{trace}"
    return str(trace or meta.get("native_file") or "trace")


def span_text(seconds: float) -> str:
    """A duration in the unit that reads best: ``29.1 s``, ``57.3 min``, ``2.5 h``."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def describe_op(entry: dict[str, Any]) -> str:
    """One ``transforms`` entry as a short call: ``window(30s..60s)``, ``head(5)``."""
    op = str(entry.get("op"))
    args: list[str] = []
    if op == "window":
        start, length = entry.get("start_s", 0), entry.get("duration_s", 0)
        args.append(f"{start:g}s..{start + length:g}s")
    elif op in ("head", "rebase"):
        args += [str(entry["n"])] if "n" in entry else []
    elif op == "time_scale":
        args.append(f"{entry.get('speedup'):g}x")
    elif op == "rate_scale":
        args.append(f"rps={entry.get('rps', entry.get('target_rps')):g}")
    elif op == "merge":
        args.append(f"{entry.get('inputs')} traces, align={entry.get('align')}")
    else:
        keep = {"sample": ("fraction", "n", "seed"), "filter": ("model", "service", "failed"),
                "synthesize": ("rps", "duration_s", "seed")}.get(op, ())
        args += [f"{k}={entry[k]!r}" for k in keep if entry.get(k) is not None]
    return f"{op}({', '.join(args)})"


# --- live metadata ---------------------------------------------------------------------------

def live(batches: Iterator[pa.RecordBatch], inp: dict[str, Any], out: dict[str, Any],
         overrides: Callable[[], dict[str, Any]] | None = None) -> Iterator[pa.RecordBatch]:
    """Yield ``batches`` while keeping ``out`` in step with the input's live metadata (a native
    reader fills ``time_origin`` and ``native_layout`` as it reads, ``rows`` at the end), and
    set ``out['rows']`` to the rows actually yielded once done."""
    own = {"transforms", "rows"}

    def sync() -> None:
        for key, value in inp.items():
            if key not in own:
                out[key] = value
        if overrides is not None:
            out.update(overrides())

    rows = 0
    for batch in batches:
        sync()
        rows += batch.num_rows
        yield batch
    sync()
    out["rows"] = rows


# --- first passes ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ArrivalFacts:
    """Counts and range of ``arrival_us`` over a whole trace."""

    rows: int
    nulls: int
    first_us: int | None
    last_us: int | None


def _stats_facts(path: Path) -> ArrivalFacts | None:
    """From Parquet row-group statistics alone (no data read), where every group has them."""
    md = pq.ParquetFile(path).metadata
    col = TRACE_SCHEMA.get_field_index("arrival_us")
    rows = nulls = 0
    lo: int | None = None
    hi: int | None = None
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        stats = rg.column(col).statistics
        if stats is None or not stats.has_null_count:
            return None
        rows += rg.num_rows
        nulls += stats.null_count
        if stats.null_count < rg.num_rows:
            if not stats.has_min_max:
                return None
            lo = stats.min if lo is None else min(lo, stats.min)
            hi = stats.max if hi is None else max(hi, stats.max)
    return ArrivalFacts(rows, nulls, lo, hi)


def arrival_facts(stream: TraceView) -> ArrivalFacts:
    """Row count, nulls, first and last arrival of a replayable stream: from Parquet
    statistics when it is a file as stored, else one pass over ``arrival_us`` only."""
    if stream.parquet is not None:
        facts = _stats_facts(stream.parquet)
        if facts is not None:
            return facts
    assert stream.reopen is not None
    rows = nulls = 0
    lo: int | None = None
    hi: int | None = None
    for batch in stream.reopen(["arrival_us"]):
        arr = batch.column(0)
        rows += len(arr)
        nulls += arr.null_count
        mm = pc.min_max(arr)
        bmin, bmax = mm["min"].as_py(), mm["max"].as_py()
        if bmin is not None:
            lo = bmin if lo is None else min(lo, bmin)
            hi = bmax if hi is None else max(hi, bmax)
    return ArrivalFacts(rows, nulls, lo, hi)
