"""Kavier's input Parquet, the ``.parquet`` form its ``InputSpec`` reads (the Marconi-Kavier
``marconi_full.parquet``): the ``kavier-parquet`` reader and writer.

Reader: the ``kavier-csv`` columns (``session_id,turn_id,ts,num_input_tokens,
num_output_tokens,input_tokens,output_tokens``; only the two counts are required) with the
Arrow types whoever wrote the file chose (``marconi_full.parquet`` was written by pandas):
token lists as JSON strings or native ``list<int>``, ``ts`` float or integer, ``session_id``
integer or text, counts integer or whole floats. A text column goes through the CSV logic
(null and ``""`` are both empty), a numeric or list column is read by value; both are mapped to
unified columns as :mod:`._kavier` describes. Other columns are kept in ``extra`` as text,
which must cast back to the same values. The file's Arrow schema is kept in the trace metadata
(``native_layout``) for the writer.

Writer: unified trace -> Kavier input Parquet. A trace read from a Kavier Parquet file is
written with that file's Arrow schema (column order, types such as ``large_string`` or
``list<element: int64>``, nullability and the pandas metadata) and the raw values kept in
``extra`` (``ts`` floats that µs do not give back, ``""`` cells, unknown columns), so reading
the output gives a table equal to the input's. Any other trace gets the canonical layout:
``session_id`` int64, ``turn_id`` int64, ``ts`` float64 seconds, ``num_input_tokens`` and
``num_output_tokens`` int64, and the token id lists as ``json.dumps`` text
(``"[1, 100, 2]"``), null where the trace has none.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..atomic import atomic_path
from ..errors import InvalidTraceError
from ..schema import TraceStream
from ..text import ReadContext, one_line
from ..text.csv import SHOW_CHARS, CsvBatch, check_header, parse_counts, report_rows
from ..text.csvwrite import kept_values
from ..text.seconds import format_seconds
from . import NativeFormat, Writer
from ._kavier import (
    COUNTS,
    CSV_COLUMNS,
    CSV_REQUIRED,
    ID_COLUMNS,
    Fields,
    batch_rows,
    blank_is_null,
    native_lists,
    number_counts,
    number_seconds,
    number_session,
    number_turn,
    text_lists,
    text_seconds,
    text_turn,
    token_list_texts,
    unified_batch,
)
from .marconi import TIME
from .parquet import ROW_GROUP_BYTES, ROW_GROUP_ROWS

# --- reading -------------------------------------------------------------------------------------


def _is_text(t: pa.DataType) -> bool:
    """Whether ``t`` is a string type (the CSV logic reads it)."""
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _numeric(t: pa.DataType) -> bool:
    """Whether ``t`` is read by value as a number (null: an all-null column)."""
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t)


def _id_list(t: pa.DataType) -> bool:
    """Whether ``t`` is a native list of integer token ids."""
    return ((pa.types.is_list(t) or pa.types.is_large_list(t))
            and pa.types.is_integer(t.value_type))


def _casts(values: pa.Array) -> bool:
    """Whether ``values`` cast to text and back without an error."""
    try:
        pc.cast(pc.cast(values, pa.string()), values.type)
    except pa.ArrowException:
        return False
    return True


def _verbatim(t: pa.DataType) -> bool:
    """Whether a column of type ``t`` can be kept in ``extra`` as text and cast back."""
    return _casts(pa.nulls(1, t))


#: What each Kavier column may be in Parquet: a test of its (decoded) Arrow type, and the
#: words an error uses.
PARQUET_TYPES: dict[str, tuple[Callable[[pa.DataType], bool], str]] = {
    "session_id": (lambda t: _numeric(t) or _is_text(t), "an integer or text column"),
    "turn_id": (lambda t: _numeric(t) or _is_text(t), "an integer column"),
    "ts": (lambda t: _numeric(t) or _is_text(t), "a float (seconds) or integer column"),
    "num_input_tokens": (lambda t: _numeric(t) or _is_text(t), "an integer column"),
    "num_output_tokens": (lambda t: _numeric(t) or _is_text(t), "an integer column"),
    "input_tokens": (lambda t: _is_text(t) or _id_list(t) or pa.types.is_null(t),
                     "JSON-array text or list<int>"),
    "output_tokens": (lambda t: _is_text(t) or _id_list(t) or pa.types.is_null(t),
                      "JSON-array text or list<int>"),
}


def _decoded(t: pa.DataType) -> pa.DataType:
    """The value type of a dictionary type, else ``t``."""
    return t.value_type if pa.types.is_dictionary(t) else t


def _check_schema(ctx: ReadContext, schema: pa.Schema) -> bool:
    """Report a schema Kavier cannot have (a missing count, a repeated name, a column of a
    type that cannot be read or kept); True if it is fine."""
    names = schema.names
    if not check_header(ctx, names, CSV_REQUIRED, CSV_COLUMNS):
        return False
    ok = True
    for f in schema:
        t = _decoded(f.type)
        test, words = PARQUET_TYPES.get(f.name, (_verbatim, "a scalar column (number, text, "
                                                 "bool, date or time), which extra can keep"))
        if not test(t):
            ctx.report.error("type", ctx.label, f"column {f.name} is {f.type}; expected {words}",
                             column=f.name, value=str(f.type))
            ok = False
    return ok


def parquet_layout(schema: pa.Schema) -> dict[str, Any]:
    """What the writer needs to give back an equal table: names, types (for people) and the
    Arrow schema itself (IPC, base64), metadata included."""
    return {"columns": schema.names, "types": [str(f.type) for f in schema],
            "arrow_schema": base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")}


def layout_schema(layout: dict[str, Any]) -> pa.Schema:
    """The Arrow schema kept by :func:`parquet_layout`."""
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(layout["arrow_schema"])))


def _parquet_block(start: int, batch: pa.RecordBatch) -> tuple[CsvBatch, dict[str, pa.Array]]:
    """A Parquet batch as a block: dictionaries decoded, Kavier text columns as string with
    null -> ``""`` (the CSV logic's empty cell); and, per such column, the mask of cells that
    really were ``""``, so a writer can give them back."""
    columns: dict[str, pa.Array] = {}
    blank: dict[str, pa.Array] = {}
    for name, col in zip(batch.schema.names, batch.columns, strict=True):
        if pa.types.is_dictionary(col.type):
            col = pc.cast(col, col.type.value_type)
        if _is_text(col.type):
            col = pc.cast(col, pa.string())
            if name in CSV_COLUMNS:
                blank[name] = pc.fill_null(pc.equal(col, ""), False)
                col = pc.fill_null(col, "")
        columns[name] = col
    return CsvBatch(start, columns, batch.num_rows, first_line=1), blank


def _parquet_extra(ctx: ReadContext, b: CsvBatch, name: str) -> pa.Array:
    """An unknown column as text for ``extra`` (null stays null). Values that do not cast to
    text and back to themselves (bytes that are not UTF-8, say) are errors: nothing may change
    on the way."""
    col = b.columns[name]
    if _is_text(col.type):
        return col
    try:
        text = pc.cast(col, pa.string())
        back = pc.cast(text, col.type)
    except pa.ArrowException as exc:
        bad = next(i for i in range(len(col)) if not _casts(col.slice(i, 1)))  # slow path
        ctx.report.error("type", ctx.label,
                         f"value cannot be kept in extra as text ({one_line(exc)})",
                         line=b.line(bad), column=name, value=str(col[bad].as_py())[:SHOW_CHARS])
        return pa.nulls(b.num_rows, pa.string())
    if not back.equals(col):
        try:
            changed = pc.fill_null(pc.not_equal(back, col), False)
            if pa.types.is_floating(col.type):  # NaN is not equal to itself
                changed = pc.and_(changed, pc.invert(pc.and_(pc.is_nan(back), pc.is_nan(col))))
        except pa.ArrowNotImplementedError:
            changed = pc.is_valid(col)
        report_rows(ctx, b, changed, name, "type", "value does not survive as text in extra")
    return text


def parquet_fields(ctx: ReadContext, b: CsvBatch, blank: dict[str, pa.Array]) -> Fields:
    """The Kavier columns of a Parquet block: text columns by the CSV logic, the others by
    value. A ``""`` cell that the CSV logic reads as empty keeps its ``""`` for the writer."""
    n = b.num_rows

    def counts(name: str) -> pa.Array:
        return parse_counts(ctx, b, name) if name in blank else number_counts(ctx, b, name)

    f = Fields(counts("num_input_tokens"), counts("num_output_tokens"))
    for name in b.columns:
        text = name in blank
        if name in COUNTS:
            continue
        if name == "ts":
            f.columns["arrival_us"], f.kept[name] = (text_seconds(ctx, b) if text
                                                     else number_seconds(ctx, b))
        elif name == "session_id":
            f.columns["session_id"] = (blank_is_null(b.columns[name]) if text
                                       else number_session(ctx, b))
            f.kept[name] = pa.nulls(n, pa.string())
        elif name == "turn_id" and text:
            f.columns["turn"], f.kept[name] = text_turn(ctx, b)
        elif name == "turn_id":
            f.columns["turn"] = number_turn(ctx, b)
        elif name in ID_COLUMNS and text:
            f.ids[name], f.kept[name] = text_lists(ctx, b, name)
        elif name in ID_COLUMNS:
            f.ids[name] = native_lists(ctx, b, name)
        else:
            f.kept[name] = _parquet_extra(ctx, b, name)
        if text:
            f.kept[name] = pc.if_else(blank[name], "", f.kept[name])
    return f


def read_kavier_parquet(ctx: ReadContext) -> Iterator[pa.RecordBatch]:
    """Stream a Kavier Parquet file as unified batches, a bounded number of rows at a time."""
    try:
        # Column chunks are read page by page (buffer_size), not whole and ahead of time
        # (pre_buffer), so memory follows the batch, not the row group (a pandas file is
        # often one row group).
        pf = pq.ParquetFile(ctx.path, buffer_size=1 << 20, pre_buffer=False)
    except (OSError, ValueError, pa.ArrowException) as exc:
        ctx.report.error("structure", ctx.label, f"unreadable Parquet file: {one_line(exc)}")
        return
    schema = pf.schema_arrow
    if not _check_schema(ctx, schema):
        return
    ctx.meta.setdefault("native_layout", {}).update(parquet_layout(schema))
    start = 0
    last: int | None = None
    batches = pf.iter_batches(batch_size=batch_rows(pf), use_threads=True)
    while True:
        try:
            batch = next(batches)
            batch.validate(full=True)  # a damaged page can hold text that is not UTF-8
        except StopIteration:
            return
        except (OSError, ValueError, pa.ArrowException) as exc:
            ctx.report.error("structure", ctx.label,
                             f"unreadable Parquet data after row {start:,}: {one_line(exc)}",
                             line=start + 1)
            return
        b, blank = _parquet_block(start, batch)
        out, last = unified_batch(ctx, b, parquet_fields(ctx, b, blank), last)
        del b, blank, batch
        pa.default_memory_pool().release_unused()  # RSS tracks the live batch
        yield out
        start += out.num_rows


class KavierParquet(NativeFormat):
    """Kavier input Parquet (``InputSpec``'s ``.parquet``; the Marconi-Kavier aggregate)."""

    name = "kavier-parquet"
    description = ("Kavier input Parquet ([session_id,turn_id,ts,]num_input_tokens,"
                   "num_output_tokens[,input_tokens,output_tokens] as JSON text or list<int>)")
    time = TIME

    def sniff(self, first_line: str) -> bool:
        return False  # a Parquet file is recognised by its schema, never by a text line

    def sniff_parquet(self, schema: pa.Schema) -> bool:
        return set(CSV_REQUIRED) <= set(schema.names)

    def read(self, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        return read_kavier_parquet(ctx)


FORMATS = (KavierParquet(),)


# --- writing -------------------------------------------------------------------------------------

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
    if meta.get("native_format") == KavierParquet.name and layout.get("arrow_schema"):
        return layout_schema(layout), True
    return CANONICAL, False


def _first_bad(batch: pa.RecordBatch, bad: pa.Array) -> tuple[int, Any]:
    """The request_id and session_id of the first row where ``bad`` is true."""
    i = pc.indices_nonzero(bad)[0].as_py()
    return batch.column("request_id")[i].as_py(), batch.column("session_id")[i].as_py()


def _sessions(batch: pa.RecordBatch, t: pa.DataType) -> pa.Array:
    """``session_id`` for a column of type ``t``: the text, or its integer value."""
    text = batch.column("session_id")
    if _is_text(t) or pa.types.is_null(t):
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
    if _is_text(t):
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
        values = token_list_texts(ids) if _is_text(base) else ids
    else:
        values = pa.nulls(n, pa.string())  # an unknown column: only what extra kept
    raw = kept.get(name)
    if raw is not None and raw.null_count < len(raw):
        if _is_text(base):
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


WRITER = Writer("kavier-parquet", ".parquet", "Kavier input Parquet (session_id,turn_id,ts,"
                "num_input_tokens,num_output_tokens,input_tokens,output_tokens; a Kavier "
                "Parquet's own schema is kept)", write)
