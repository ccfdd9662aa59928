"""Plumbing shared by the transforms: re-readable streams, first passes, live metadata, and
request-id renumbering with parent links kept.

A transform takes a :class:`~llmtraces.formats.TraceStream` and returns one. Most work batch
by batch. The few that need a fact about the whole trace (its first arrival, its mean rate, a
sampling threshold) read it in a first pass over only the columns they need, from a
:class:`ReplayableStream`: a stream that can be opened again, column-projected. A unified
Parquet file or a pyarrow Table is replayable as it is; any other stream is spooled once to a
temporary Parquet file first, so memory stays bounded whatever the trace's size.
"""

from __future__ import annotations

import array
import copy
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import InvalidTraceError, LLMTracesError
from ..formats import TraceStream
from ..schema import METADATA_KEY, TRACE_SCHEMA

#: Rows per batch that the transforms read and write (the Parquet writer's row group size).
BATCH_ROWS = 1 << 17

#: What the transforms accept: a stream, a pyarrow Table in the unified schema, or a path to a
#: unified Parquet file or a native trace file.
TraceLike: TypeAlias = "TraceStream | pa.Table | str | os.PathLike[str]"

#: Opens a trace again: the batches of the given columns only, from the start.
Reopen = Callable[[Sequence[str]], Iterator[pa.RecordBatch]]


class TransformError(LLMTracesError, ValueError):
    """A transform that cannot apply to this trace or these parameters (e.g. no timing)."""


@dataclass
class ReplayableStream(TraceStream):
    """A :class:`TraceStream` that can be read again, column-projected, for first passes.

    ``reopen(columns)`` yields the batches of just those columns from the start, as many times
    as asked. ``parquet`` is set when the stream is an untransformed unified Parquet file, whose
    row-group statistics then answer min/max questions without reading any data.
    """

    reopen: Reopen | None = None
    parquet: Path | None = None


def _cast_columns(batch: pa.RecordBatch, names: Sequence[str]) -> pa.RecordBatch:
    fields = [TRACE_SCHEMA.field(n) for n in names]
    arrays = [batch.column(n) for n in names]
    arrays = [a if a.type.equals(f.type) else a.cast(f.type) for a, f in zip(arrays, fields,
                                                                            strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def parquet_stream(path: Path) -> ReplayableStream:
    """A unified Parquet file as a replayable stream (metadata complete from the start)."""
    from ..formats.parquet import read_stream

    path = Path(path)
    base = read_stream(path, batch_rows=BATCH_ROWS)

    def reopen(columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        names = [n for n in TRACE_SCHEMA.names if n in set(columns)]
        pf = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=names):
            yield _cast_columns(batch, names)

    return ReplayableStream(base.batches, base.meta, reopen=reopen, parquet=path)


def table_stream(table: pa.Table) -> ReplayableStream:
    """A pyarrow Table in the unified schema as a replayable stream; its trace metadata is the
    schema's ``llmtraces.trace`` entry where present (tables read from llmtraces Parquet)."""
    import json

    missing = [n for n in TRACE_SCHEMA.names if n not in table.schema.names]
    if missing:
        raise InvalidTraceError(f"not a unified trace table: no columns {missing}")
    raw = (table.schema.metadata or {}).get(METADATA_KEY.encode())
    meta: dict[str, Any] = json.loads(raw) if raw else {}
    table = table.select(TRACE_SCHEMA.names).cast(TRACE_SCHEMA)

    def reopen(columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        names = [n for n in TRACE_SCHEMA.names if n in set(columns)]
        yield from table.select(names).to_batches(max_chunksize=BATCH_ROWS)

    return ReplayableStream(iter(table.to_batches(max_chunksize=BATCH_ROWS)), meta,
                            reopen=reopen)


def open_trace(trace: TraceLike) -> TraceStream:
    """Any trace-like input as a stream: streams as they are, Tables and unified Parquet files
    as replayable streams, native files through their reader (checked as ``convert`` does).

    Examples
    --------
    >>> import llmtraces
    >>> s = open_trace(llmtraces.load("azure-llm-2023", trace="code"))
    >>> sum(b.num_rows for b in s.batches)
    8819
    """
    if isinstance(trace, TraceStream):
        return trace
    if isinstance(trace, pa.Table):
        return table_stream(trace)
    path = Path(os.fspath(trace)).expanduser()
    if not path.is_file():
        raise InvalidTraceError(f"{path}: no such file")
    from ..formats.parquet import is_unified

    if is_unified(path):
        return parquet_stream(path)
    from ..convert import identify, scan
    from ..report import Report

    report = Report()
    return scan(identify(path, report), report)


def to_table(trace: TraceLike) -> pa.Table:
    """A trace read whole into a pyarrow Table in the unified schema (for small results; the
    writers stream instead). The trace metadata goes into the schema's ``llmtraces.trace``
    entry, as :func:`table_stream` reads it back.

    Examples
    --------
    >>> import llmtraces
    >>> to_table(llmtraces.load("azure-llm-2023", trace="code")).num_rows
    8819
    """
    import json

    stream = open_trace(trace)
    table = pa.Table.from_batches(list(stream.batches), schema=TRACE_SCHEMA)
    meta = {**(TRACE_SCHEMA.metadata or {}),
            METADATA_KEY.encode(): json.dumps(stream.meta, sort_keys=True).encode()}
    return table.replace_schema_metadata(meta)


def replayable(stream: TraceStream) -> ReplayableStream:
    """``stream`` itself when it can be re-read; otherwise it is written once to a temporary
    unified Parquet file (removed when the returned stream is garbage-collected) and read from
    there, so a first pass costs one sequential write, not memory."""
    if isinstance(stream, ReplayableStream) and stream.reopen is not None:
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


def arrival_facts(stream: ReplayableStream) -> ArrivalFacts:
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


def derive(inp: TraceStream, entry: dict[str, Any], make: Callable[[], Callable[
        [Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]], needs: Iterable[str],
        overrides: Callable[[], dict[str, Any]] | None = None) -> ReplayableStream:
    """The stream ``make()(inp.batches)``, with metadata ``entry`` appended to ``transforms``.

    ``make`` returns a fresh batch function for each run (it may hold state), so the output can
    be replayed, column-projected, whenever the input can: the function then runs on the
    input's batches of the asked columns plus ``needs``.
    """
    needs = set(needs)
    out_meta = derived_meta(inp.meta, entry)
    reopen: Reopen | None = None
    in_reopen = inp.reopen if isinstance(inp, ReplayableStream) else None
    if in_reopen is not None:
        def reopen(columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
            assert in_reopen is not None
            cols = set(columns) | needs
            return project(make()(in_reopen(sorted(cols))), columns)
    batches = live(make()(inp.batches), inp.meta, out_meta, overrides)
    return ReplayableStream(batches, out_meta, reopen=reopen)
