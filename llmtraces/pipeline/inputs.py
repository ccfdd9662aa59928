"""Any trace input opened as a :class:`~llmtraces.pipeline.view.TraceView`.

What the API, the transforms and the replayer accept (:data:`TraceInput`): a view (or any
stream), a pyarrow Table in the unified schema, a path to a unified Parquet file or a native
trace file, or a registry id (``"azure-llm-2023/code"``; ``"burstgpt"`` alone for a source
with one trace), fetched and converted into the cache on first use. :func:`open_trace` turns
each into a view: Tables, unified Parquet files and registry ids re-readable, native files
read through their reader and checked as ``convert`` checks them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InvalidTraceError
from ..formats.parquet import is_unified, read_stream
from ..report import Report
from ..schema import METADATA_KEY, TRACE_SCHEMA, TraceStream
from .scan import identify, scan
from .unified import registry_path
from .view import BATCH_ROWS, TraceView, TransformError, live

#: What :func:`open_trace`, the API (:func:`llmtraces.load`, :func:`llmtraces.export`, ...)
#: and the transforms read: a registry id, a path, a pyarrow Table or a TraceView (any stream).
TraceInput: TypeAlias = "TraceStream | pa.Table | str | os.PathLike[str]"
#: The transforms' name for :data:`TraceInput`.
TraceLike: TypeAlias = TraceInput


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


def open_trace(trace: TraceInput) -> TraceView:
    """Any trace-like input as a :class:`TraceView`: views as they are, Tables, unified
    Parquet files and registry ids as re-readable views, native files through their reader
    (checked as ``convert`` does), any other stream as a view that can be read once.

    Examples
    --------
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
        return parquet_stream(registry_path(trace))
    if not path.is_file():
        raise InvalidTraceError(f"{path}: no such file")
    return parquet_stream(path) if is_unified(path) else native_stream(path)


def to_table(trace: TraceInput) -> pa.Table:
    """A trace read whole into a pyarrow Table in the unified schema (for small results; the
    writers stream instead). The trace metadata goes into the schema's ``llmtraces.trace``
    entry, as :func:`table_stream` reads it back.

    Examples
    --------
    >>> import llmtraces
    >>> to_table(llmtraces.head("azure-llm-2023/code", 5)).num_rows
    5
    """
    return open_trace(trace).to_table()
