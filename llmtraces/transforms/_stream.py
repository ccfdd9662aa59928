"""Plumbing shared by the transforms: the re-readable :class:`TraceView`, first passes, live
metadata, and request-id renumbering with parent links kept.

Every transform takes a trace and returns a :class:`TraceView`: a recipe, not a result. Each
read (``batches``, :meth:`TraceView.to_table`, a writer) opens its source again (a unified
Parquet file, a pyarrow Table, a native file, or the view it was derived from) and streams it
batch by batch, so a view can be read any number of times in bounded memory. The few
transforms that need a fact about the whole trace (its first arrival, its mean rate, a
sampling threshold) take it in a first pass over only the columns they need (``reopen``);
where that would mean parsing a native file twice, it is spooled once to a temporary Parquet
file instead.
"""

from __future__ import annotations

import array
import copy
import importlib
import json
import os
import shutil
import sys
import tempfile
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import InvalidTraceError, LLMTracesError
from ..schema import METADATA_KEY, TRACE_SCHEMA, TraceStream

#: Rows per batch that the transforms read and write (the Parquet writer's row group size).
BATCH_ROWS = 1 << 17

#: What the transforms accept: a :class:`TraceView` (or any stream), a pyarrow Table in the
#: unified schema, a path to a unified Parquet file or a native trace file, or a registry id
#: (``"azure-llm-2023/code"``; ``"burstgpt"`` alone for a source with one trace).
TraceLike: TypeAlias = "TraceStream | pa.Table | str | os.PathLike[str]"

#: Opens a trace again: the batches of the given columns only, from the start.
Reopen = Callable[[Sequence[str]], Iterator[pa.RecordBatch]]


class TransformError(LLMTracesError, ValueError):
    """A transform that cannot apply to this trace or these parameters (e.g. no timing)."""


class EmptyResultWarning(UserWarning):
    """A transform kept none of its input's requests (e.g. a window outside the trace)."""


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
        return to_table(self)

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


def _cast_columns(batch: pa.RecordBatch, names: Sequence[str]) -> pa.RecordBatch:
    fields = [TRACE_SCHEMA.field(n) for n in names]
    arrays = [batch.column(n) for n in names]
    arrays = [a if a.type.equals(f.type) else a.cast(f.type) for a, f in zip(arrays, fields,
                                                                            strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def _schema_order(columns: Sequence[str]) -> list[str]:
    return [n for n in TRACE_SCHEMA.names if n in set(columns)]


def parquet_stream(path: Path) -> TraceView:
    """A unified Parquet file as a view (metadata complete from the start)."""
    from ..formats.parquet import read_stream

    path = Path(path)
    meta = read_stream(path).meta  # checks the schema now, not at the first read

    def read() -> Iterator[pa.RecordBatch]:
        return read_stream(path, batch_rows=BATCH_ROWS).batches

    def reopen(columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        names = _schema_order(columns)
        pf = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=names):
            yield _cast_columns(batch, names)

    return TraceView(meta, read, reopen=reopen, parquet=path)


def table_stream(table: pa.Table) -> TraceView:
    """A pyarrow Table in the unified schema as a view; its trace metadata is the schema's
    ``llmtraces.trace`` entry where present (tables read from llmtraces Parquet), with
    ``rows`` the table's."""
    missing = [n for n in TRACE_SCHEMA.names if n not in table.schema.names]
    if missing:
        raise InvalidTraceError(f"not a unified trace table: no columns {missing} (a table "
                                "read with columns= holds only some; load it whole)")
    raw = (table.schema.metadata or {}).get(METADATA_KEY.encode())
    meta: dict[str, Any] = json.loads(raw) if raw else {}
    meta["rows"] = table.num_rows  # a filtered load keeps the whole file's metadata
    table = table.select(TRACE_SCHEMA.names).cast(TRACE_SCHEMA)

    def read() -> Iterator[pa.RecordBatch]:
        return iter(table.to_batches(max_chunksize=BATCH_ROWS))

    def reopen(columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        yield from table.select(_schema_order(columns)).to_batches(max_chunksize=BATCH_ROWS)

    return TraceView(meta, read, reopen=reopen, table=table)


def native_stream(path: Path) -> TraceView:
    """A native trace file as a view: every read parses it again through its reader, checked
    as ``convert`` checks it; first passes spool it (``reopen`` is None)."""
    from ..pipeline.convert import identify, scan
    from ..report import Report

    def open_scan() -> TraceStream:
        report = Report()
        return scan(identify(path, report), report)

    first = open_scan()  # recognises the format now; its metadata fills as it is read
    meta = first.meta

    def read() -> Iterator[pa.RecordBatch]:
        again = open_scan()
        return live(again.batches, again.meta, meta)

    return TraceView(meta, read, first=first.batches, settled=False, checked_at_end=True)


def once(stream: TraceStream) -> TraceView:
    """A one-shot stream (a native reader's, a writer hook's) as a view that can be read once;
    a second read is a clear error. First passes spool it."""
    def again() -> Iterator[pa.RecordBatch]:
        raise TransformError("this trace was built on a one-shot stream that has been read "
                             "already; start from a path, a registry id, a pyarrow Table or a "
                             "TraceView to read it again")

    return TraceView(stream.meta, again, first=stream.batches, settled=False,
                     checked_at_end=stream.meta.get("rows") is None)


def open_trace(trace: TraceLike) -> TraceView:
    """Any trace-like input as a :class:`TraceView`: views as they are, Tables, unified
    Parquet files and registry ids as re-readable views, native files through their reader
    (checked as ``convert`` does), any other stream as a view that can be read once.

    Examples
    --------
    >>> import llmtraces
    >>> s = open_trace("azure-llm-2023/code")    # fetched and converted into the cache
    >>> sum(b.num_rows for b in s.batches), s.num_rows
    (8819, 8819)
    """
    if isinstance(trace, TraceView):
        return trace
    if isinstance(trace, TraceStream):
        return once(trace)
    if isinstance(trace, pa.Table):
        return table_stream(trace)
    if not isinstance(trace, str | os.PathLike):
        raise TypeError(f"expected a trace (a path, a registry id, a pyarrow Table or a "
                        f"TraceView), got {type(trace).__name__}")
    path = Path(os.fspath(trace)).expanduser()
    if not path.exists() and isinstance(trace, str):
        from ..api import registry_path

        return parquet_stream(registry_path(trace))
    if not path.is_file():
        raise InvalidTraceError(f"{path}: no such file")
    from ..formats.parquet import is_unified

    return parquet_stream(path) if is_unified(path) else native_stream(path)


def to_table(trace: TraceLike) -> pa.Table:
    """A trace read whole into a pyarrow Table in the unified schema (for small results; the
    writers stream instead). The trace metadata goes into the schema's ``llmtraces.trace``
    entry, as :func:`table_stream` reads it back.

    Examples
    --------
    >>> import llmtraces
    >>> to_table(llmtraces.head("azure-llm-2023/code", 5)).num_rows
    5
    """
    stream = open_trace(trace)
    table = pa.Table.from_batches(list(stream.batches), schema=TRACE_SCHEMA)
    meta = {**(TRACE_SCHEMA.metadata or {}),
            METADATA_KEY.encode(): json.dumps(stream.meta, sort_keys=True).encode()}
    return table.replace_schema_metadata(meta)


def replayable(trace: TraceLike) -> TraceView:
    """``trace`` as a view with a cheap ``reopen`` for first passes: itself when it has one;
    otherwise it is written once to a temporary unified Parquet file (removed when the
    returned view is garbage-collected) and read from there, so a first pass costs one
    sequential write, not memory."""
    stream = open_trace(trace)
    if stream.reopen is not None:
        return stream
    from ..formats.parquet import write

    folder = tempfile.mkdtemp(prefix="llmtraces-spool-")
    try:
        path = Path(folder) / "spool.parquet"
        write(stream, path)
        out = parquet_stream(path)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    weakref.finalize(out, shutil.rmtree, folder, True)
    return out


def project(batches: Iterable[pa.RecordBatch], columns: Sequence[str]
            ) -> Iterator[pa.RecordBatch]:
    """Only ``columns`` of each batch, in schema order."""
    for batch in batches:
        yield batch.select([n for n in TRACE_SCHEMA.names if n in set(columns)
                            and n in batch.schema.names])


# --- metadata --------------------------------------------------------------------------------

def derived_meta(inp: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """The metadata of a derived trace: the input's, with ``entry`` appended to ``transforms``
    and ``rows`` unknown until the output is exhausted."""
    out = copy.deepcopy(inp)
    out["transforms"] = [*inp.get("transforms", []), entry]
    out["rows"] = None
    return out


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


def time_kind(meta: dict[str, Any]) -> str | None:
    """``absolute``, ``relative``, ``none`` (no timing) or None (not recorded)."""
    time = meta.get("time")
    return time.get("kind") if isinstance(time, dict) else None


def require_timing(meta: dict[str, Any], op: str) -> None:
    """Refuse a time-based transform on a trace whose metadata says it has no timing."""
    if time_kind(meta) == "none":
        what = meta.get("source") or meta.get("native_file") or "this trace"
        raise TransformError(f"{op} needs arrival times, but {what} has none (its time kind is "
                             "'none': arrival_us is null); use head, sample or filter instead")


def check_arrivals(arr: pa.Array, op: str) -> None:
    """A time-based transform met a row with no arrival time."""
    if arr.null_count:
        raise TransformError(f"{op} needs arrival times, but the trace has rows with a null "
                             "arrival_us (no timing); use head, sample or filter instead")


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


# --- renumbering -----------------------------------------------------------------------------

_I64 = pa.int64()


class IdMap:
    """Old request_id -> new request_id for one input, kept as 8 bytes per input row.

    Old ids are the input's 0..n-1 in row order (the unified schema's rule); the new id of a
    row that was dropped is -1. Parent links point back to earlier requests, so by the time a
    child is seen its parent's new id is known; a link to a dropped request becomes null.
    """

    def __init__(self) -> None:
        self._ids = array.array("q")

    def __len__(self) -> int:
        return len(self._ids)

    def append(self, old_ids: pa.Array | None, new_ids: pa.Array) -> None:
        """Record the new ids (-1: dropped) of the next rows, whose old ids are ``old_ids``."""
        start = len(self._ids)
        n = len(new_ids)
        if old_ids is not None and n:
            first, last = old_ids[0].as_py(), old_ids[n - 1].as_py()
            if first != start or last != start + n - 1 or old_ids.null_count:
                raise InvalidTraceError(
                    f"request_id must be 0..n-1 in row order (unified schema v1); rows "
                    f"{start}..{start + n - 1} have {first}..{last}")
        filled = pc.fill_null(new_ids.cast(_I64), -1)
        if isinstance(filled, pa.ChunkedArray):
            filled = filled.combine_chunks()
        if n:
            data = memoryview(filled.buffers()[1])
            self._ids.frombytes(data[8 * filled.offset: 8 * (filled.offset + n)])

    def lookup(self, parents: pa.Array) -> pa.Array:
        """New ids of the old ids in ``parents``; null where null, dropped or not seen yet."""
        if parents.null_count == len(parents):
            return pa.nulls(len(parents), _I64)
        size = len(self._ids)
        known = pc.and_kleene(pc.greater_equal(parents, 0), pc.less(parents, size))
        safe = pc.if_else(known, parents, pa.scalar(0, _I64))
        view = pa.Array.from_buffers(_I64, size, [None, pa.py_buffer(self._ids)])
        try:
            got = pc.take(view, safe) if size else pa.nulls(len(parents), _I64)
        finally:
            del view  # release the buffer export before the array grows again
        got = pc.if_else(pc.and_kleene(known, pc.greater_equal(got, 0)), got,
                         pa.scalar(None, _I64))
        return got.combine_chunks() if isinstance(got, pa.ChunkedArray) else got


def arange(start: int, n: int) -> pa.Array:
    """int64 ``start .. start+n-1``."""
    from ..schema import row_index

    return row_index(start, n)


def set_column(batch: pa.RecordBatch, name: str, values: pa.Array) -> pa.RecordBatch:
    """``batch`` with column ``name`` replaced by ``values``."""
    i = batch.schema.get_field_index(name)
    return batch.set_column(i, batch.schema.field(i), values)


class Renumber:
    """Drops rows and renumbers ``request_id`` 0..n-1, remapping ``parent_request_id``.

    Feed it every input batch in order with the mask of rows to keep; it returns the kept rows
    renumbered. Only the columns present in the batch are touched.
    """

    def __init__(self) -> None:
        self.kept = 0
        self.seen = 0
        self.ids = IdMap()

    def __call__(self, batch: pa.RecordBatch, keep: pa.Array | None) -> pa.RecordBatch:
        n = batch.num_rows
        names = batch.schema.names
        keep = pc.fill_null(pa.nulls(n, pa.bool_()) if keep is None else keep,
                            keep is None)
        taken = pc.sum(keep).as_py() or 0
        has_parents = "parent_request_id" in names
        if has_parents or taken != n:
            # cumulative count of kept rows gives each kept row its new id
            csum = pc.cumulative_sum(keep.cast(_I64))
            new = pc.if_else(keep, pc.add(csum, self.kept - 1), pa.scalar(-1, _I64))
        else:
            new = arange(self.kept, n)
        old = batch.column("request_id") if "request_id" in names else None
        self.ids.append(old, new)
        out = batch.filter(keep) if taken != n else batch
        if "request_id" in names:
            out = set_column(out, "request_id", arange(self.kept, taken))
        if has_parents:
            out = set_column(out, "parent_request_id",
                             self.ids.lookup(out.column("parent_request_id")))
        self.kept += taken
        self.seen += n
        return out


def _caller_level() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside this package (the
    user's line that read the trace), counted from the function that calls this one."""
    package = os.path.dirname(os.path.dirname(__file__))  # as code objects name their files
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(package):
        level += 1
        frame = frame.f_back  # type: ignore[assignment]
    return level


def derive(inp: TraceView, entry: dict[str, Any], make: Callable[[], Callable[
        [Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]], needs: Iterable[str],
        overrides: Callable[[], dict[str, Any]] | None = None, *,
        empty: Callable[[], str] | None = None, warn_empty: bool = True) -> TraceView:
    """The view ``make()(inp.batches)``, with metadata ``entry`` appended to ``transforms``.

    ``make`` returns a fresh batch function for each read (it may hold state), so the output
    is re-read by re-reading the input, and column-projected whenever the input can be: the
    function then runs on the input's batches of the asked columns plus ``needs``. A read
    that keeps none of a non-empty input's rows warns (:class:`EmptyResultWarning`), with
    ``empty()`` appended to the message, unless ``warn_empty`` is False (``head(0)``).
    """
    needs = set(needs)
    out_meta = derived_meta(inp.meta, entry)
    reopen: Reopen | None = None
    in_reopen = inp.reopen
    if in_reopen is not None:
        def reopen(columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
            assert in_reopen is not None
            cols = set(columns) | needs
            return project(make()(in_reopen(sorted(cols))), columns)

    def read() -> Iterator[pa.RecordBatch]:
        source = inp.batches  # now: a one-shot input already read fails here, clearly
        seen = [0]

        def counted() -> Iterator[pa.RecordBatch]:
            for batch in source:
                seen[0] += batch.num_rows
                yield batch

        def run() -> Iterator[pa.RecordBatch]:
            yield from live(make()(counted()), inp.meta, out_meta, overrides)
            if warn_empty and out_meta["rows"] == 0 and seen[0]:
                warnings.warn(f"{describe_op(entry)} kept none of the {seen[0]:,} requests of "
                              f"{label(inp.meta)}{empty() if empty is not None else ''}",
                              EmptyResultWarning, stacklevel=_caller_level())
        return run()

    return TraceView(out_meta, read, reopen=reopen, settled=inp.settled,
                     checked_at_end=inp.checked_at_end)
