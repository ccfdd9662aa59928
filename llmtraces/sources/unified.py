"""The unified schema written as text by llmtraces (``--to csv`` / ``--to jsonl``), read back.

A file is recognised by its first line: the exact unified header for CSV, a first record whose
keys are exactly the unified columns for JSONL. Every value is checked against the schema
(types, nulls, minimums, int32 ranges) and reported with its line. Columns are taken as they
are, ``request_id`` and ``source_row`` included, since the file is the unified trace itself.
The metadata sidecar ``<file>.meta.json`` is read when present (:mod:`..formats._unified`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from ..formats._unified import CSV_FORMAT, CSV_HEADER, JSONL_FORMAT, read_sidecar, restore
from ..registry import TimeSemantics
from ..schema import COLUMN_NAMES, COLUMNS, TRACE_SCHEMA, Column
from . import NativeFormat, ReadContext
from ._csv import stream_csv
from ._jsonl import JsonBlock, Key, first_record_keys, iter_jsonl, show

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


def _order(rows: _Rows, arrival: pa.Array, last: int | None) -> int | None:
    n = len(arrival)
    if not n:
        return last
    prev = pa.concat_arrays([pa.array([last], pa.int64()), arrival.slice(0, n - 1)])
    rows.report(pc.less(arrival, prev), "arrival_us", "order",
                "arrives before the previous row (row order is kept)", level="warning")
    valid = arrival.drop_null()
    return valid[-1].as_py() if len(valid) else last


# --- CSV ---------------------------------------------------------------------------------------

_INT_TEXT = r"^-?[0-9]{1,18}$"


def _csv_lists(rows: _Rows, name: str, raw: pa.Array) -> pa.Array:
    """JSON-array cells as list<int64>: pyarrow's JSON parser, or json per row on failure."""
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
            last = _order(checks, columns["arrival_us"], last)
            rows += b.num_rows
            yield _batch(columns)
        _check_rows(ctx, doc, rows)


# --- JSONL -------------------------------------------------------------------------------------

def _kind(t: pa.DataType) -> Any:
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


