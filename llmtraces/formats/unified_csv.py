"""Unified trace -> CSV with every column of the unified schema, one row per request.

The header is the schema's column names in order. Integers are written as digits, booleans as
``true``/``false``, lists as compact JSON arrays (``"[1,2,3]"``, quoted since they hold
commas), strings as they are (quoted where they hold ``,``, ``"`` or a line end). A null is an
empty cell; an empty string is ``""``, so the two stay apart. LF line ends, final newline.
The trace metadata goes to ``<file>.meta.json`` (see :mod:`._unified`); the ``llmtraces-csv``
reader reads both back.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..atomic import atomic_path
from ..errors import InvalidTraceError
from ..schema import TRACE_SCHEMA
from . import TraceStream, Writer
from ._csvwrite import csv_field
from ._unified import CSV_FORMAT, CSV_HEADER, write_sidecar


def _list_text(col: pa.Array) -> pa.Array:
    """A list column as compact JSON arrays (null stays null)."""
    values = pc.cast(col, pa.list_(pa.string()))
    joined = pc.binary_join(values, ",")
    return pc.binary_join_element_wise("[", joined, "]", "")


def cell_text(col: pa.Array) -> pa.Array:
    """One unified column as CSV fields."""
    t = col.type
    if pa.types.is_boolean(t):
        text = pc.if_else(col, "true", "false")
    elif pa.types.is_integer(t):
        text = pc.cast(col, pa.string())
    elif pa.types.is_list(t):
        text = csv_field(_list_text(col))
    else:
        empty = pc.fill_null(pc.equal(col, ""), False)
        text = pc.if_else(empty, '""', csv_field(col))
    return pc.fill_null(text, "")


def _no_line_breaks(batch: pa.RecordBatch) -> None:
    """llmtraces reads CSV line by line, so a text cell may not hold a line break."""
    for name in ("model", "service", "session_id", "extra"):
        col = batch.column(name)
        breaks = pc.fill_null(pc.match_substring_regex(col, "[\r\n]"), False)
        if pc.any(breaks).as_py():
            i = pc.indices_nonzero(breaks)[0].as_py()
            raise InvalidTraceError(
                f"request_id {batch.column('request_id')[i].as_py()}: {name} holds a line "
                "break, which a unified CSV cannot carry; use --to jsonl or --to parquet")


def write(stream: TraceStream, dest: Path) -> int:
    """Write the stream as unified CSV at ``dest`` (and its metadata sidecar), atomically."""
    rows = 0
    with atomic_path(dest) as tmp:
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            fh.write(CSV_HEADER + "\n")
            for batch in stream.batches:
                if not batch.num_rows:
                    continue
                batch = batch.select(TRACE_SCHEMA.names)
                _no_line_breaks(batch)
                cols = [cell_text(batch.column(i)) for i in range(batch.num_columns)]
                lines = pc.binary_join_element_wise(*cols, ",")
                fh.write("\n".join(lines.to_pylist()) + "\n")
                rows += batch.num_rows
        write_sidecar(Path(dest), CSV_FORMAT, rows, stream.meta)
    return rows


WRITER = Writer("csv", ".csv", "the unified schema as CSV (every column; lists as JSON arrays; "
                "metadata in <file>.meta.json)", write)
