"""The unified schema as Parquet: zstd, ~1M-row row groups, row order kept, metadata inside."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..atomic import atomic_path
from ..errors import InvalidTraceError
from ..schema import (
    COLUMNS,
    METADATA_KEY,
    SCHEMA_VERSION,
    TRACE_SCHEMA,
    VERSION_KEY,
    TraceStream,
    row_index,
)
from ..text.limits import require_regular_file
from . import Writer

#: 128 Ki rows per row group (DuckDB writes 122,880 by default): large enough for fast scans,
#: small enough that buffering one group keeps conversion within ~256 MB whatever the file size.
ROW_GROUP_ROWS = 1 << 17
#: ... or fewer, where the rows are wide (token id lists): a row group is written once it
#: holds this many bytes, so memory stays bounded whatever a row holds.
ROW_GROUP_BYTES = 128 << 20


#: Low-cardinality strings gain from dictionaries; dictionary attempts on ids and times only
#: cost time before falling back (half the write time, and files ~40% larger).
DICTIONARY_COLUMNS = ["model", "service", "session_id"]
#: Row indices and arrivals grow steadily: delta encoding stores them in a few bits each.
DELTA_COLUMNS = {name: "DELTA_BINARY_PACKED" for name in ("request_id", "source_row",
                                                          "arrival_us")}


class _WriterThread:
    """Encodes and writes row groups in a second thread while the caller parses the next ones.

    pyarrow releases the GIL in both CSV parsing and Parquet encoding, so on two cores the
    two overlap. A new row group is handed over only once the previous one is written, so at
    most two are alive and memory stays bounded.
    """

    def __init__(self, writer: pq.ParquetWriter, row_group_rows: int) -> None:
        self._writer = writer
        self._rows = row_group_rows
        self._queue: queue.Queue[pa.Table | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="llmtraces-parquet",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (table := self._queue.get()) is not None:
            try:
                if self._error is None:  # after a failure, only drain
                    self._writer.write_table(table, row_group_size=self._rows)
                    del table
                    # Hand freed blocks back to the OS so RSS tracks what is live.
                    pa.default_memory_pool().release_unused()
            except BaseException as exc:  # re-raised in the caller's thread
                self._error = exc
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def put(self, table: pa.Table) -> None:
        """Queue a row group once the previous one is written: at most two are alive."""
        self._queue.join()
        if self._error is not None:
            raise self._error
        self._queue.put(table)

    def finish(self, raise_error: bool = True) -> None:
        """Wait for every queued row group; re-raise a write error in the caller."""
        self._queue.put(None)
        self._thread.join()
        if raise_error and self._error is not None:
            raise self._error


def write(stream: TraceStream, dest: Path, row_group_rows: int = ROW_GROUP_ROWS) -> int:
    """Write a unified stream to ``dest`` atomically; memory is bounded by two row groups."""
    rows = 0
    with atomic_path(dest) as tmp:
        writer = pq.ParquetWriter(tmp, TRACE_SCHEMA, compression="zstd",
                                  use_dictionary=DICTIONARY_COLUMNS,
                                  column_encoding=DELTA_COLUMNS)
        background = _WriterThread(writer, row_group_rows)
        complete = False
        try:
            pending: list[pa.RecordBatch] = []
            buffered = size = 0
            for batch in stream.batches:
                pending.append(batch)
                buffered += batch.num_rows
                size += batch.nbytes
                rows += batch.num_rows
                if buffered >= row_group_rows or size >= ROW_GROUP_BYTES:
                    background.put(pa.Table.from_batches(pending, TRACE_SCHEMA))
                    pending, buffered, size = [], 0, 0
            if pending:
                background.put(pa.Table.from_batches(pending, TRACE_SCHEMA))
            complete = True
        finally:
            try:
                # Always wait for the thread before close(); a write error matters only if
                # the stream itself did not already fail.
                background.finish(raise_error=complete)
                if complete:
                    writer.add_key_value_metadata(
                        {METADATA_KEY: json.dumps(stream.meta, sort_keys=True)})
            finally:
                writer.close()
    return rows


def read_metadata(path: Path) -> dict[str, Any]:
    """The trace metadata stored in a unified Parquet file."""
    try:
        kv = pq.read_metadata(path).metadata or {}
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise InvalidTraceError(f"{path}: not a readable Parquet file: {exc}") from None
    raw = kv.get(METADATA_KEY.encode())
    if raw is None:
        raise InvalidTraceError(f"{path}: no {METADATA_KEY} metadata; not an llmtraces file")
    try:
        meta: dict[str, Any] = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidTraceError(f"{path}: {METADATA_KEY} metadata is not JSON ({exc}); "
                                "not a readable llmtraces file") from None
    if not isinstance(meta, dict):
        raise InvalidTraceError(f"{path}: {METADATA_KEY} metadata must be a JSON object, "
                                f"got {type(meta).__name__}")
    meta.setdefault("schema_version", kv.get(VERSION_KEY.encode(), b"").decode(
        errors="replace") or None)
    return meta


def is_parquet(path: Path) -> bool:
    """True if ``path`` is a Parquet file (by its magic bytes)."""
    require_regular_file(Path(path))  # a FIFO would block the read below forever
    with Path(path).open("rb") as fh:
        return fh.read(4) == b"PAR1"


def is_unified(path: Path) -> bool:
    """True if ``path`` is a Parquet file written by llmtraces (it carries trace metadata);
    other Parquet files are native inputs (Kavier, LMSys shards) for the source readers."""
    if not is_parquet(path):
        return False
    try:
        kv = pq.read_metadata(path).metadata or {}
    except (OSError, ValueError, pa.ArrowException):
        return True  # unreadable: let read_metadata report it as a unified file would be
    return METADATA_KEY.encode() in kv


def read_stream(path: Path, batch_rows: int = 1 << 17) -> TraceStream:
    """A unified Parquet file as a stream: batches read lazily, metadata complete.

    A batch holds at most ``batch_rows`` rows, and fewer where rows are wide (token id lists):
    about :data:`ROW_GROUP_BYTES` / 4 of decoded data.
    """
    meta = read_metadata(path)
    pf = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)  # page by page
    md = pf.metadata
    size = sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
    if md.num_rows and size:
        batch_rows = max(1, min(batch_rows, (ROW_GROUP_BYTES // 4) * md.num_rows // size))
    missing = [n for n in TRACE_SCHEMA.names if n not in pf.schema_arrow.names]
    if missing:
        raise InvalidTraceError(f"{path}: not unified schema v{SCHEMA_VERSION}: no {missing}")
    names = pf.schema_arrow.names
    twice = sorted({n for n in TRACE_SCHEMA.names if names.count(n) > 1})
    if twice:
        raise InvalidTraceError(f"{path}: duplicate column(s) {twice}; not unified schema "
                                f"v{SCHEMA_VERSION}")
    return TraceStream(_cast_batches(path, pf, batch_rows), meta)


#: Columns with a lower bound (token counts, times): checked on every read, not only by
#: ``validate``, so a unified file loaded through the API cannot carry a negative count.
_BOUNDED = [(c.name, c.minimum) for c in COLUMNS
            if c.minimum is not None and not pa.types.is_list(c.type)]
_REQUIRED = [c.name for c in COLUMNS if not c.nullable]
T = TypeVar("T", pa.Table, pa.RecordBatch)


def _first_bad(mask: pa.Array | pa.ChunkedArray) -> int | None:
    """Index of the first true value of a boolean mask (nulls false), or None."""
    hits = pc.indices_nonzero(pc.fill_null(mask, False))
    return hits[0].as_py() if len(hits) else None


def check_values(path: Path, data: pa.RecordBatch | pa.Table, start: int = 0, *,
                 ids: bool = True) -> None:
    """The value invariants ``validate`` checks, on rows read from ``path`` (whatever columns
    they hold): required columns without nulls, bounded columns at or above their minimum and,
    with ``ids`` (rows read in full, unfiltered), request ids ``start``.. in order. The first
    offence is one error naming the file and row."""
    names = set(data.schema.names)
    if ids and "request_id" in names:
        rid = data.column("request_id")
        bad = _first_bad(pc.not_equal(rid, row_index(start, data.num_rows)))
        if bad is not None:
            raise InvalidTraceError(f"{path}: row {start + bad + 1:,}: request_id is "
                                    f"{rid[bad].as_py()}, expected {start + bad} (ids run "
                                    f"0..n-1 in row order); run `llmtraces validate {path}`")
    for name in (n for n in _REQUIRED if n in names):
        col = data.column(name)
        if col.null_count:
            bad = _first_bad(col.is_null())
            raise InvalidTraceError(f"{path}: row {start + (bad or 0) + 1:,}: {name} is null, "
                                    f"expected a value; run `llmtraces validate {path}`")
    for name, minimum in _BOUNDED:
        if name not in names:
            continue
        col = data.column(name)
        if col.null_count == len(col) or pc.min(col).as_py() >= minimum:
            continue
        bad = _first_bad(pc.less(col, minimum))
        if bad is not None:
            raise InvalidTraceError(f"{path}: row {start + bad + 1:,}: {name} is "
                                    f"{col[bad].as_py()}, expected >= {minimum}; run "
                                    f"`llmtraces validate {path}`")


def conform(path: Path, data: T, start: int = 0, *, ids: bool = True) -> T:
    """Rows read from ``path`` with any columns (``load``'s table, ``iter_requests``' batches):
    each unified column cast to its schema type and checked (:func:`check_values`), so what the
    API returns holds no value ``validate`` refuses; one error naming the file otherwise."""
    fields = [TRACE_SCHEMA.field(n) if n in TRACE_SCHEMA.names else data.schema.field(n)
              for n in data.schema.names]
    try:
        data = data.cast(pa.schema(fields, metadata=data.schema.metadata))
    except (ValueError, pa.ArrowException) as exc:
        raise InvalidTraceError(f"{path}: does not fit unified schema v{SCHEMA_VERSION}: "
                                f"{' '.join(str(exc).split())}; run `llmtraces validate "
                                f"{path}`") from None
    check_values(path, data, start, ids=ids)
    return data


def _cast_batches(path: Path, pf: pq.ParquetFile, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The file's batches cast to the unified schema and checked as ``validate`` checks
    values; a value that does not fit (a null in a required column, a NaN, a negative or
    out-of-range count, an id out of sequence) is one error naming the file and row."""
    rows = 0
    for b in pf.iter_batches(batch_size=batch_rows, columns=TRACE_SCHEMA.names):
        try:
            batch = b.select(TRACE_SCHEMA.names).cast(TRACE_SCHEMA)
        except (ValueError, pa.ArrowException) as exc:
            raise InvalidTraceError(f"{path}: rows {rows + 1:,}-{rows + b.num_rows:,} do not "
                                    f"fit unified schema v{SCHEMA_VERSION}: {exc}; run "
                                    f"`llmtraces validate {path}`") from None
        check_values(path, batch, rows)
        yield batch
        rows += b.num_rows


WRITER = Writer("parquet", ".parquet", f"unified schema v{SCHEMA_VERSION}, zstd Parquet", write)
