"""The unified schema as text, written by llmtraces (``--to csv`` / ``--to jsonl``) and read
back: the ``llmtraces-csv`` and ``llmtraces-jsonl`` readers and the ``csv`` and ``jsonl``
writers.

Metadata: CSV and JSONL have no room for the trace metadata, so it travels in a sidecar
``<file>.meta.json`` beside the file: ``{"format", "file", "rows", "trace"}``, where ``trace``
is the metadata a unified Parquet file would carry. The sidecar is written atomically, after
the data and before the data file is renamed into place, so a complete data file always has
the sidecar of its own rows. A reader that finds it restores the metadata (source, trace,
time semantics and origin, licence, citation, tokenizer); the provenance of the bytes read
(``native_file``, ``native_format``, checksums) stays that of the CSV/JSONL file, and the
original provenance moves to ``derived_from``.

Readers: a file is recognised by its first line: the exact unified header for CSV, a first
record whose keys are exactly the unified columns for JSONL. Every value is checked against the
schema (types, nulls, minimums, int32 ranges) and reported with its line. Columns are taken as
they are, ``request_id`` and ``source_row`` included, since the file is the unified trace itself.

Writer ``csv``: every column of the unified schema, one row per request. The header is the
schema's column names in order. Integers are written as digits, booleans as ``true``/``false``,
lists as compact JSON arrays (``"[1,2,3]"``, quoted since they hold commas), strings as they
are (quoted where they hold ``,``, ``"`` or a line end). A null is an empty cell; an empty
string is ``""``, so the two stay apart. LF line ends, final newline.

Writer ``jsonl``: every column of the unified schema, one object per request, with every column
as a key, in schema order (``json.dumps`` default separators, UTF-8 kept as is), nulls as
``null``, lists as arrays, ``extra`` as the JSON text it holds; every line validates against
``schemas/trace.schema.json``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from ..atomic import atomic_path
from ..errors import InvalidTraceError
from ..schema import COLUMN_NAMES, COLUMNS, TRACE_SCHEMA, Column, TraceStream, row_index
from ..text import ReadContext, one_line
from ..text.csv import stream_csv
from ..text.csvwrite import csv_field
from ..text.jsonl import JsonBlock, Key, first_record_keys, iter_jsonl, show
from ..text.limits import (
    MAX_LINE_ENV,
    deep_cells,
    is_too_deep,
    max_json_depth,
    max_line_bytes,
    size_text,
    too_deep,
)
from ..timing import TimeSemantics
from . import NativeFormat, Writer

# --- the metadata sidecar (readers and writers) -------------------------------------------------

SIDECAR_SUFFIX = ".meta.json"
CSV_FORMAT = "llmtraces-csv"
JSONL_FORMAT = "llmtraces-jsonl"
CSV_HEADER = ",".join(COLUMN_NAMES)
#: Keys that describe the bytes a trace was read from, not the trace itself.
PROVENANCE = ("native_file", "native_sha256", "native_verified", "native_format",
              "native_layout", "native_archive")


def sidecar_path(data: Path) -> Path:
    """Where the metadata of an exported CSV/JSONL file goes: ``<file>.meta.json``."""
    return data.with_name(data.name + SIDECAR_SUFFIX)


def write_sidecar(data: Path, fmt: str, rows: int, meta: dict[str, Any]) -> Path:
    """Write the sidecar of ``data`` (the final path) atomically; returns its path."""
    path = sidecar_path(data)
    doc = {"format": fmt, "file": data.name, "rows": rows, "trace": meta}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                       encoding="utf-8")
    return path


def read_sidecar(data: Path) -> dict[str, Any] | None:
    """The sidecar of ``data``, or None where there is none."""
    path = sidecar_path(data)
    if not path.is_file():
        return None
    try:
        if path.stat().st_size > max_line_bytes():
            raise ValueError(f"larger than {size_text(max_line_bytes())} ({MAX_LINE_ENV})")
        text = path.read_text(encoding="utf-8")
        if is_too_deep(text, max_json_depth()):
            raise ValueError(too_deep(max_json_depth()))
        doc = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidTraceError(f"{path}: unreadable metadata sidecar: {one_line(exc)}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("trace"), dict) \
            or not isinstance(doc.get("rows"), int):
        raise InvalidTraceError(f"{path}: not an llmtraces metadata sidecar (expected an object "
                                "with 'rows' and 'trace')")
    return doc


def restore(meta: dict[str, Any], doc: dict[str, Any]) -> None:
    """Fill a reader's live ``meta`` from a sidecar: the trace's metadata comes back, the
    provenance of the file being read stays, and the original provenance goes to
    ``derived_from`` (kept from the first export when a file is exported again)."""
    stored: dict[str, Any] = dict(doc["trace"])
    derived = stored.pop("derived_from", None) or {
        k: stored.get(k) for k in PROVENANCE if k in stored}
    for key in PROVENANCE:
        stored.pop(key, None)
    stored.pop("rows", None)
    meta.update(stored)
    meta["derived_from"] = derived
    # The stored time semantics already say whether the zone was assumed; keep them.
    meta["naive_timestamps"] = True


# --- reading -------------------------------------------------------------------------------------

_INT32 = (-(1 << 31), (1 << 31) - 1)
SHOW_CHARS = 120
Lines = Callable[[int], int]

TIME = TimeSemantics(
    kind="relative", native_format="arrival_us: integer microseconds (llmtraces unified schema)",
    resolution="1us", origin="the trace's own origin (its <file>.meta.json says which)")


class _Rows:
    """Reports problems of one block with physical lines and the raw values."""

    def __init__(self, ctx: ReadContext, line: Lines, raw: dict[str, pa.Array]) -> None:
        self.ctx, self.line, self.raw = ctx, line, raw

    def report(self, mask: pa.Array, column: str, code: str, message: str,
               level: str = "error") -> None:
        mask = pc.fill_null(mask, False)
        if not pc.any(mask).as_py():
            return
        values = self.raw[column]
        for i in pc.indices_nonzero(mask).to_pylist():
            value = values[i].as_py()
            text = value if isinstance(value, str) or value is None else show(value)
            if isinstance(text, str) and len(text) > SHOW_CHARS:
                text = text[: SHOW_CHARS - 1] + "…"
            self.ctx.report.add_problem("warning" if level == "warning" else "error", code,
                                        self.ctx.label, message, line=self.line(i),
                                        column=column, value=text)


def _is_int32(t: pa.DataType) -> bool:
    return t == pa.int32() or (pa.types.is_list(t) and t.value_type == pa.int32())


def _typed(rows: _Rows, col: Column, values: pa.Array) -> pa.Array:
    """``values`` (int64 for integer kinds) checked against ``col`` and cast to its type."""
    if not col.nullable:
        rows.report(values.is_null(), col.name, "missing", "null; this column is required")
    flat = values
    parents: pa.Array | None = None
    if pa.types.is_list(values.type):
        flat, parents = pc.list_flatten(values), pc.list_parent_indices(values)
    bad: pa.Array | None = None
    if col.minimum is not None and pa.types.is_integer(flat.type):
        bad = pc.less(flat, col.minimum)
    if _is_int32(col.type):
        out = pc.or_(pc.less(flat, _INT32[0]), pc.greater(flat, _INT32[1]))
        bad = out if bad is None else pc.or_(bad, out)
    if bad is not None and pc.any(pc.fill_null(bad, False)).as_py():
        if parents is not None:
            hit = pc.filter(parents, pc.fill_null(bad, False))
            bad = pc.is_in(pa.array(range(len(values)), pa.int64()), value_set=hit)
        rows.report(bad, col.name, "range", f"out of range for {col.type}"
                    + (f" (minimum {col.minimum})" if col.minimum is not None else ""))
        values = pc.if_else(pc.fill_null(bad, False), pa.scalar(None, values.type), values)
    return pc.cast(values, col.type)


def _batch(columns: dict[str, pa.Array]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([columns[n] for n in COLUMN_NAMES], schema=TRACE_SCHEMA)


def _restore(ctx: ReadContext) -> dict[str, Any] | None:
    ctx.meta["native_layout"] = {}
    doc = read_sidecar(ctx.path)
    if doc is not None:
        restore(ctx.meta, doc)
    return doc


def _check_rows(ctx: ReadContext, doc: dict[str, Any] | None, rows: int) -> None:
    if doc is not None and doc["rows"] != rows:
        ctx.report.warning("sidecar", ctx.label,
                           f"the metadata sidecar describes {doc['rows']:,} rows, the file has "
                           f"{rows:,}; it belongs to another version of the file")


def _ids(rows: _Rows, request_id: pa.Array, start: int) -> None:
    """A unified trace numbers its requests 0..n-1 in file order; any other id is an error."""
    off = pc.not_equal(pc.cast(request_id, pa.int64()), row_index(start, len(request_id)))
    rows.report(off, "request_id", "request-id", "request_id must be the row's index (0, 1, "
                "2, ... in file order)")


def _order(rows: _Rows, arrival: pa.Array, last: int | None) -> int | None:
    n = len(arrival)
    if not n:
        return last
    prev = pa.concat_arrays([pa.array([last], pa.int64()), arrival.slice(0, n - 1)])
    rows.report(pc.less(arrival, prev), "arrival_us", "order",
                "arrives before the previous row (row order is kept)", level="warning")
    valid = arrival.drop_null()
    return valid[-1].as_py() if len(valid) else last


# --- reading: CSV ------------------------------------------------------------------------------

_INT_TEXT = r"^-?[0-9]{1,18}$"


def _csv_lists(rows: _Rows, name: str, raw: pa.Array) -> pa.Array:
    """JSON-array cells as list<int64>: pyarrow's JSON parser, or json per row on failure.
    Cells nested too deep are reported (and null) before either parser sees them."""
    deep = deep_cells(raw, rows.ctx.max_depth)
    if deep:
        mask = pc.is_in(pa.array(range(len(raw)), pa.int64()), value_set=pa.array(deep, pa.int64()))
        rows.report(mask, name, "depth", too_deep(rows.ctx.max_depth))
        raw = pc.if_else(mask, pa.scalar(None, pa.string()), raw)
    lines = pc.binary_join_element_wise('{"v":', pc.fill_null(raw, "null"), "}", "")
    text = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(lines)], pa.int32()),
                                                   lines), "\n")[0].as_buffer()
    schema = pa.schema([("v", pa.list_(pa.int64()))])
    # The fast path: Arrow parses every cell at once; any odd cell falls back to the loop below,
    # which names it.
    with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
        table = pj.read_json(pa.BufferReader(text), parse_options=pj.ParseOptions(
            explicit_schema=schema, unexpected_field_behavior="error"))
        col = table.column("v").combine_chunks()
        if len(col) == len(raw) and not pc.list_flatten(col).null_count:
            return col
    values: list[list[int] | None] = []
    bad = []
    for cell in raw.to_pylist():
        try:
            v = None if cell is None else json.loads(cell)
            ok = v is None or (isinstance(v, list) and all(
                type(x) is int and -(1 << 63) <= x < (1 << 63) for x in v))
        except ValueError:
            v, ok = None, False
        values.append(v if ok else None)
        bad.append(not ok)
    rows.report(pa.array(bad), name, "type", "expected a JSON array of integers")
    return pa.array(values, pa.list_(pa.int64()))


def _csv_column(rows: _Rows, col: Column, raw: pa.Array) -> pa.Array:
    t = col.type
    if pa.types.is_integer(t):
        ok = pc.or_(raw.is_null(), pc.match_substring_regex(raw, _INT_TEXT))
        rows.report(pc.invert(ok), col.name, "type", "expected an integer")
        values = pc.cast(pc.if_else(ok, raw, pa.scalar(None, pa.string())), pa.int64())
    elif pa.types.is_boolean(t):
        ok = pc.or_(raw.is_null(), pc.is_in(raw, value_set=pa.array(["true", "false"])))
        rows.report(pc.invert(ok), col.name, "type", "expected true or false")
        values = pc.if_else(ok, pc.equal(raw, "true"), pa.scalar(None, pa.bool_()))
    elif pa.types.is_list(t):
        values = _csv_lists(rows, col.name, raw)
    else:
        values = raw
    return _typed(rows, col, values)


class UnifiedCSV(NativeFormat):
    """The unified schema as CSV, written by ``llmtraces convert --to csv``."""

    name = CSV_FORMAT
    description = "llmtraces unified CSV (request_id,arrival_us,...,extra)"
    time = TIME

    def sniff(self, first_line: str) -> bool:
        return first_line == CSV_HEADER

    def read(self, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        doc = _restore(ctx)
        rows = 0
        last: int | None = None
        for b in stream_csv(ctx, list(COLUMN_NAMES), empty_is_null=True):
            checks = _Rows(ctx, b.line, b.columns)
            columns = {c.name: _csv_column(checks, c, b.columns[c.name]) for c in COLUMNS}
            _ids(checks, columns["request_id"], rows)
            last = _order(checks, columns["arrival_us"], last)
            rows += b.num_rows
            yield _batch(columns)
        _check_rows(ctx, doc, rows)


# --- reading: JSONL ----------------------------------------------------------------------------


def _kind(t: pa.DataType) -> Any:
    """The :class:`Key` kind that reads a unified column of type ``t`` from JSON."""
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_list(t):
        return "int_list"
    return "string"


KEYS = tuple(Key(c.name, _kind(c.type), required=not c.nullable) for c in COLUMNS)


class UnifiedJSONL(NativeFormat):
    """The unified schema as JSON Lines, written by ``llmtraces convert --to jsonl``."""

    name = JSONL_FORMAT
    description = "llmtraces unified JSONL (objects with exactly the unified columns)"
    time = TIME

    def sniff(self, first_line: str) -> bool:
        return first_record_keys(first_line) == set(COLUMN_NAMES)

    def read(self, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        doc = _restore(ctx)
        rows = 0
        last: int | None = None
        for b in iter_jsonl(ctx, KEYS):
            checks = _Rows(ctx, b.line, b.columns)
            _unknown_keys(ctx, b)
            columns = {c.name: _typed(checks, c, b.columns[c.name]) for c in COLUMNS}
            _ids(checks, columns["request_id"], rows)
            last = _order(checks, columns["arrival_us"], last)
            rows += b.num_rows
            b.flush()
            yield _batch(columns)
        _check_rows(ctx, doc, rows)


def _unknown_keys(ctx: ReadContext, block: JsonBlock) -> None:
    for i, extra in enumerate(block.extra or []):
        if extra:
            ctx.report.error("unknown-key", ctx.label,
                             f"key(s) {sorted(extra)} are not unified columns; put native "
                             "fields in 'extra'", line=block.line(i), value=show(extra))


FORMATS = (UnifiedCSV(), UnifiedJSONL())


# --- writing: CSV ------------------------------------------------------------------------------


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


def write_csv(stream: TraceStream, dest: Path) -> int:
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


CSV_WRITER = Writer("csv", ".csv", "the unified schema as CSV (every column; lists as JSON "
                    "arrays; metadata in <file>.meta.json)", write_csv)


# --- writing: JSONL ----------------------------------------------------------------------------


def write_jsonl_file(stream: TraceStream, dest: Path) -> int:
    """Write the stream as unified JSONL at ``dest`` (and its metadata sidecar), atomically."""
    rows = 0
    with atomic_path(dest) as tmp:
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            for batch in stream.batches:
                if not batch.num_rows:
                    continue
                columns = batch.select(TRACE_SCHEMA.names).to_pydict()
                lines = [json.dumps({name: columns[name][i] for name in COLUMN_NAMES},
                                    ensure_ascii=False) for i in range(batch.num_rows)]
                fh.write("\n".join(lines) + "\n")
                rows += batch.num_rows
        write_sidecar(Path(dest), JSONL_FORMAT, rows, stream.meta)
    return rows


JSONL_WRITER = Writer("jsonl", ".jsonl", "the unified schema as JSON Lines (every column; "
                      "metadata in <file>.meta.json)", write_jsonl_file)

WRITERS = (CSV_WRITER, JSONL_WRITER)
