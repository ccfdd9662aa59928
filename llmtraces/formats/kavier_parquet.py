"""Unified trace -> Kavier input Parquet, the ``.parquet`` form Kavier's ``InputSpec`` reads.

A trace read from a Kavier Parquet file is written with that file's Arrow schema (kept in
``native_layout``: column order, types such as ``large_string`` or ``list<element: int64>``,
nullability and the pandas metadata) and the raw values kept in ``extra`` (``ts`` floats that
µs do not give back, ``""`` cells, unknown columns), so reading the output gives a table equal
to the input's. Any other trace gets the canonical layout: ``session_id`` int64, ``turn_id``
int64, ``ts`` float64 seconds, ``num_input_tokens`` and ``num_output_tokens`` int64, and the
token id lists as ``json.dumps`` text (``"[1, 100, 2]"``), null where the trace has none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..atomic import atomic_path
from ..errors import InvalidTraceError
from ..sources._seconds import format_seconds
from ..sources.kavier_input import CSV_COLUMNS, layout_schema, token_list_texts
from . import TraceStream, Writer
from ._csvwrite import kept_values
from .parquet import ROW_GROUP_BYTES, ROW_GROUP_ROWS

OWN_FORMAT = "kavier-parquet"
#: The layout of a trace that did not come from a Kavier Parquet file.
CANONICAL = pa.schema([
    ("session_id", pa.int64()), ("turn_id", pa.int64()), ("ts", pa.float64()),
    ("num_input_tokens", pa.int64()), ("num_output_tokens", pa.int64()),
    ("input_tokens", pa.string()), ("output_tokens", pa.string()),
])
assert CANONICAL.names == list(CSV_COLUMNS)
SOURCES = {"num_input_tokens": "input_tokens", "num_output_tokens": "output_tokens",
           "input_tokens": "input_token_ids", "output_tokens": "output_token_ids"}
#: Token ids rendered per slice of a batch, so text for rows of 10k ids stays bounded.
SLICE_IDS = 4 << 20


def plan(meta: dict[str, Any]) -> tuple[pa.Schema, bool]:
    """The schema to write and whether the trace is a native one (its kept values apply)."""
    layout = meta.get("native_layout") or {}
    if meta.get("native_format") == OWN_FORMAT and layout.get("arrow_schema"):
        return layout_schema(layout), True
    return CANONICAL, False


def _text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _first_bad(batch: pa.RecordBatch, bad: pa.Array) -> tuple[int, Any]:
    i = pc.indices_nonzero(bad)[0].as_py()
    return batch.column("request_id")[i].as_py(), batch.column("session_id")[i].as_py()


def _sessions(batch: pa.RecordBatch, t: pa.DataType) -> pa.Array:
    """``session_id`` for a column of type ``t``: the text, or its integer value."""
    text = batch.column("session_id")
    if _text(t) or pa.types.is_null(t):
        return text
    digits = pc.utf8_ltrim(text, characters="-")
    ok = pc.and_(pc.ascii_is_decimal(digits), pc.less_equal(pc.binary_length(digits), 18))
    bad = pc.fill_null(pc.invert(ok), False)
    if pc.any(bad).as_py():
        rid, value = _first_bad(batch, bad)
        raise InvalidTraceError(f"a Kavier Parquet with a {t} session_id column needs integer "
                                f"session ids; request_id {rid} has {value!r}")
    return pc.cast(text, pa.int64())


def _seconds(batch: pa.RecordBatch, t: pa.DataType) -> pa.Array:
    """``arrival_us`` as ``ts`` of type ``t``: float or text seconds, or whole integer ones."""
    us = batch.column("arrival_us")
    if _text(t):
        return format_seconds(us, "float")
    if pa.types.is_floating(t) or pa.types.is_null(t):
        return pc.divide(pc.cast(us, pa.float64()), 1e6)
    whole = pc.fill_null(pc.equal(pc.multiply(pc.divide(us, 1_000_000), 1_000_000), us), True)
    if not pc.all(whole).as_py():
        rid = batch.column("request_id")[pc.indices_nonzero(pc.invert(whole))[0].as_py()]
        raise InvalidTraceError(f"the Kavier Parquet's ts column is {t} (whole seconds), but "
                                f"request_id {rid.as_py()} arrives between two seconds")
    return pc.divide(us, 1_000_000)


def _column(name: str, t: pa.DataType, batch: pa.RecordBatch, kept: dict[str, pa.Array]
            ) -> pa.Array:
    """One column of the output, of type ``t`` (kept raw values win)."""
    n = batch.num_rows
    if pa.types.is_null(t):
        return pa.nulls(n)
    base = t.value_type if pa.types.is_dictionary(t) else t
    if name in ("num_input_tokens", "num_output_tokens"):
        values = batch.column(SOURCES[name])
        if values.null_count:
            raise InvalidTraceError(f"a Kavier Parquet needs {SOURCES[name]} for every "
                                    f"request; {values.null_count:,} rows have none")
    elif name == "session_id":
        values = _sessions(batch, base)
    elif name == "turn_id":
        values = batch.column("turn")
    elif name == "ts":
        values = _seconds(batch, base)
    elif name in ("input_tokens", "output_tokens"):
        ids = batch.column(SOURCES[name])
        values = token_list_texts(ids) if _text(base) else ids
    else:
        values = pa.nulls(n, pa.string())  # an unknown column: only what extra kept
    raw = kept.get(name)
    if raw is not None and raw.null_count < len(raw):
        if _text(base):
            values = pc.if_else(raw.is_valid(), raw, pc.cast(values, pa.string()))
        else:
            values = pc.if_else(raw.is_valid(), pc.cast(raw, base), pc.cast(values, base))
    return pc.cast(values, t)


def _slices(batch: pa.RecordBatch) -> list[pa.RecordBatch]:
    """``batch`` cut so that each piece renders at most about :data:`SLICE_IDS` token ids."""
    ids = sum(len(pc.list_flatten(batch.column(c))) for c in ("input_token_ids",
                                                              "output_token_ids"))
    if ids <= SLICE_IDS or batch.num_rows <= 1:
        return [batch]
    rows = max(1, batch.num_rows * SLICE_IDS // ids)
    return [batch.slice(i, rows) for i in range(0, batch.num_rows, rows)]


def write(stream: TraceStream, dest: Path) -> int:
    """Write the stream as a Kavier Parquet file at ``dest``, atomically."""
    rows = 0
    with atomic_path(dest) as tmp:
        schema: pa.Schema | None = None
        native = False
        writer: pq.ParquetWriter | None = None
        pending: list[pa.Table] = []
        try:
            for batch in stream.batches:
                if schema is None:
                    schema, native = plan(stream.meta)
                    writer = pq.ParquetWriter(tmp, schema, compression="zstd")
                for part in _slices(batch):
                    kept = kept_values(part, schema.names) if native else {}
                    arrays = [_column(f.name, f.type, part, kept) for f in schema]
                    pending.append(pa.Table.from_arrays(arrays, schema=schema))
                    rows += part.num_rows
                    if (sum(p.num_rows for p in pending) >= ROW_GROUP_ROWS
                            or sum(p.nbytes for p in pending) >= ROW_GROUP_BYTES):
                        assert writer is not None
                        writer.write_table(pa.concat_tables(pending))
                        pending = []
            if schema is None:  # an empty trace
                schema, _ = plan(stream.meta)
                writer = pq.ParquetWriter(tmp, schema, compression="zstd")
            assert writer is not None
            if pending:
                writer.write_table(pa.concat_tables(pending))
        finally:
            if writer is not None:
                writer.close()
    return rows


WRITER = Writer(OWN_FORMAT, ".parquet", "Kavier input Parquet (session_id,turn_id,ts,"
                "num_input_tokens,num_output_tokens,input_tokens,output_tokens; a Kavier "
                "Parquet's own schema is kept)", write)
