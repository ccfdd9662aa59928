"""Kavier's request files, as its ``InputSpec`` reads them: ``kavier-csv`` and ``kavier-parquet``.

Columns, in Kavier's order: ``session_id,turn_id,ts,num_input_tokens,num_output_tokens,
input_tokens,output_tokens``. Only the two counts are required. The token lists are JSON-array
strings (``"[1, 100, 2]"``, Python's ``json.dumps``), in quoted cells in a CSV.

``kavier-csv``: an empty cell is no value (a null list; Kavier reads it as ``[]``). A header
with a trailing comma (an unnamed 6th column over 5-field rows, as in Kavier's
``input_decode_accuracy.csv``) is accepted and written back as it was.

``kavier-parquet``: the same columns with the Arrow types whoever wrote the file chose (the
Marconi-Kavier ``marconi_full.parquet`` was written by pandas): token lists as JSON strings or
native ``list<int>``, ``ts`` float or integer, ``session_id`` integer or text, counts integer or
whole floats. A text column goes through the CSV logic (null and ``""`` are both empty), a
numeric or list column is read by value. The file's Arrow schema is kept in the trace metadata
(``native_layout``) so the ``kavier-parquet`` writer gives back an equal table.

Mapping (both): ``session_id`` -> ``session_id`` (text), ``turn_id`` -> ``turn``, ``ts`` ->
``arrival_us`` (exact to 1 µs; finer digits are rounded and the raw value kept in ``extra``),
``num_*_tokens`` -> ``input_tokens``/``output_tokens``, the lists -> ``input_token_ids`` /
``output_token_ids`` (int32). A count that differs from its list's length is an error, as is an
id outside ``0..2**31-1``. Other columns are kept in ``extra`` verbatim.

Writer: unified trace -> Kavier input CSV (``session_id,turn_id,ts,num_input_tokens,
num_output_tokens,input_tokens,output_tokens``), the file Kavier's ``InputSpec`` reads.

Token id lists are JSON arrays (``[1, 100, 2]``) in quoted cells; a trace without token ids
gets empty cells there (Kavier reads them as ``[]``), and empty ``session_id``/``turn_id``/``ts``
cells where the trace has none. ``ts`` is the shortest decimal of ``arrival_us`` in seconds
(``2.0``, ``9.333333``). A trace read from a Kavier CSV keeps its header (a trailing comma
included), line ends and any raw text kept in ``extra``, so the file comes back byte for byte.

Writer: unified trace -> Kavier input Parquet, the ``.parquet`` form Kavier's ``InputSpec`` reads.

A trace read from a Kavier Parquet file is written with that file's Arrow schema (kept in
``native_layout``: column order, types such as ``large_string`` or ``list<element: int64>``,
nullability and the pandas metadata) and the raw values kept in ``extra`` (``ts`` floats that
µs do not give back, ``""`` cells, unknown columns), so reading the output gives a table equal
to the input's. Any other trace gets the canonical layout: ``session_id`` int64, ``turn_id``
int64, ``ts`` float64 seconds, ``num_input_tokens`` and ``num_output_tokens`` int64, and the
token id lists as ``json.dumps`` text (``"[1, 100, 2]"``), null where the trace has none.
"""

from __future__ import annotations

import base64
import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..atomic import atomic_path
from ..errors import InvalidTraceError
from ..schema import TraceStream, native_batch, row_index
from ..text import ReadContext, read_first_line
from ..text.csv import (
    SHOW_CHARS,
    CsvBatch,
    check_header,
    check_order,
    line_ends,
    parse_counts,
    report_rows,
    split_header,
    stream_csv,
    text_stream,
)
from ..text.csvwrite import counts, csv_field, kept_values
from ..text.seconds import bad_kinds, differs, float_seconds, format_seconds, parse_seconds
from . import NativeFormat, Writer
from .marconi import INT32_MAX, LISTS, TIME, check_ids
from .parquet import ROW_GROUP_BYTES, ROW_GROUP_ROWS
from .vidur import json_objects

# --- reading -------------------------------------------------------------------------------------

#: Kavier's input columns, in the order its files have them.
CSV_COLUMNS = ("session_id", "turn_id", "ts", "num_input_tokens", "num_output_tokens",
               "input_tokens", "output_tokens")
CSV_REQUIRED = ("num_input_tokens", "num_output_tokens")
COUNTS = {"num_input_tokens": "input_tokens", "num_output_tokens": "output_tokens"}
ID_COLUMNS = ("input_tokens", "output_tokens")
#: ``json.dumps`` of a list of int64 values: the only text the vector path reads.
CANONICAL_LIST = r"^\[(?:(?:0|-?[1-9][0-9]{0,17})(?:, (?:0|-?[1-9][0-9]{0,17}))*)?\]$"
_INT64_MAX = (1 << 63) - 1
_NULL_TEXT = pa.scalar(None, pa.string())
#: Uncompressed bytes of Parquet data decoded per batch (rows of 10k token ids are ~100 KB).
PARQUET_BATCH_BYTES = 8 << 20


def list_array(lengths: pa.Array, values: pa.Array, mask: pa.Array | None = None) -> pa.Array:
    """A list array of ``values`` cut by per-row ``lengths`` (null where ``mask`` is true)."""
    offsets = pc.cumulative_sum(pc.cast(pc.fill_null(lengths, 0), pa.int64()))
    offsets = pa.concat_arrays([pa.array([0], pa.int64()), offsets]).cast(pa.int32())
    return pa.ListArray.from_arrays(offsets, values, mask=mask)


def token_list_text(ids: list[int] | None) -> str | None:
    """A token id list as Kavier writes it in a cell (``[1, 100, 2]``); None for null."""
    return None if ids is None else json.dumps(ids)


def token_list_texts(ids: pa.Array) -> pa.Array:
    """:func:`token_list_text` of every list of a list<int> array, vectorised (null stays null)."""
    items = list_array(pc.list_value_length(ids), pc.cast(pc.list_flatten(ids), pa.string()))
    joined = pc.binary_join(items, ", ")
    text = pc.binary_join_element_wise("[", joined, "]", "")
    return pc.if_else(ids.is_valid(), text, _NULL_TEXT)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


# --- token lists as text ------------------------------------------------------------------------


def _vector_lists(raw: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Lists written exactly as ``json.dumps`` writes them, parsed with Arrow kernels; and the
    mask of the other non-empty cells, left null here for the exact path."""
    canonical = pc.fill_null(pc.match_substring_regex(raw, CANONICAL_LIST), False)
    inner = pc.utf8_slice_codeunits(pc.if_else(canonical, raw, "[]"), 1, -1)
    empty = pc.equal(inner, "")
    parts = pc.split_pattern(pc.if_else(empty, _NULL_TEXT, inner), ", ")
    values = pc.cast(pc.list_flatten(parts), pa.int64())
    ids = list_array(pc.list_value_length(parts), values, pc.invert(canonical))
    slow = pc.and_(pc.invert(canonical), pc.not_equal(raw, ""))
    return ids, slow


def _exact_list(ctx: ReadContext, line: int, column: str, text: str) -> list[int] | None:
    """One cell by ``json.loads``: the ids, or None with the problem reported."""
    try:
        ids: Any = json.loads(text)
    except ValueError:
        ids = text
    if type(ids) is not list or not all(type(v) is int for v in ids):
        ctx.report.error("type", ctx.label, "expected a JSON array of integers", line=line,
                         column=column, value=text[:SHOW_CHARS])
        return None
    if any(not -(1 << 63) <= v <= _INT64_MAX for v in ids):
        ctx.report.error("range", ctx.label, "token id too large", line=line, column=column,
                         value=text[:SHOW_CHARS])
        return None
    return ids


def text_lists(ctx: ReadContext, b: CsvBatch, column: str) -> tuple[pa.Array, pa.Array]:
    """A token-list text column parsed (empty -> null; bad cells reported, null), and the raw
    text where :func:`token_list_text` would not rebuild it.

    Cells in ``json.dumps``'s own form (every cell Kavier and pandas write) take the vector
    path; any other cell is parsed by ``json.loads``, so both give the same ids and errors.
    """
    raw = b.columns[column]
    ids, slow = _vector_lists(raw)
    keep = pa.nulls(len(raw), pa.string())
    if not pc.any(slow).as_py():
        return ids, keep
    rows = pc.indices_nonzero(slow).to_pylist()
    texts = raw.take(pa.array(rows, pa.int64())).to_pylist()
    parsed = [_exact_list(ctx, b.line(i), column, t) for i, t in zip(rows, texts, strict=True)]
    kept = [t if p is not None and token_list_text(p) != t else None
            for p, t in zip(parsed, texts, strict=True)]
    # Row i takes the vector result, or the exact one at position n + j of the concatenation.
    where = list(range(len(raw)))
    for j, i in enumerate(rows):
        where[i] = len(raw) + j
    index = pa.array(where, pa.int64())
    ids = pa.concat_arrays([ids, pa.array(parsed, pa.list_(pa.int64()))]).take(index)
    keep = pa.concat_arrays([keep, pa.array(kept, pa.string())]).take(index)
    return ids, keep


# --- the other text columns ---------------------------------------------------------------------


def text_seconds(ctx: ReadContext, b: CsvBatch) -> tuple[pa.Array, pa.Array]:
    """``ts`` text as exact µs (empty -> null), and the raw text the writer would not rebuild."""
    raw = b.columns["ts"]
    empty = pc.equal(raw, "")
    t = parse_seconds(pc.if_else(empty, "0", raw), exponents=True)
    if not pc.all(t.ok).as_py():
        _, negative, other = bad_kinds(raw, t.ok, negative="^-")
        report_rows(ctx, b, negative, "ts", "negative", "negative ts; expected seconds >= 0")
        report_rows(ctx, b, other, "ts", "not-number",
                    "expected a decimal number of seconds (e.g. 2.5)")
    ok = pc.and_(t.ok, pc.invert(empty))
    us = pc.if_else(ok, t.us, pa.scalar(None, pa.int64()))
    keep = differs(ok, format_seconds(us, "float"), raw)
    return us, pc.if_else(keep, raw, _NULL_TEXT)


def text_turn(ctx: ReadContext, b: CsvBatch) -> tuple[pa.Array, pa.Array]:
    """``turn_id`` text (``3``, or pandas' ``3.0``) as int32 (empty -> null), and raw text that
    ``str(int)`` would not rebuild."""
    raw = b.columns["turn_id"]
    digits = pc.replace_substring_regex(raw, r"\.0$", "")
    ok = pc.and_(pc.ascii_is_decimal(digits), pc.less_equal(pc.binary_length(digits), 9))
    bad = pc.and_(pc.invert(ok), pc.not_equal(raw, ""))
    report_rows(ctx, b, bad, "turn_id", "not-integer",
                "expected a non-negative integer below 10**9")
    turn = pc.cast(pc.if_else(ok, digits, _NULL_TEXT), pa.int32())
    same = pc.fill_null(pc.equal(pc.cast(turn, pa.string()), raw), True)
    return turn, pc.if_else(same, _NULL_TEXT, raw)


def _blank_is_null(values: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(values, ""), _NULL_TEXT, values)


# --- numeric and list columns (Parquet) ---------------------------------------------------------


def _whole(ctx: ReadContext, b: CsvBatch, column: str, what: str) -> pa.Array:
    """An integer or float column as int64, null where null or not a whole number that fits
    int64 (reported)."""
    raw = b.columns[column]
    if pa.types.is_null(raw.type):
        return pa.nulls(len(raw), pa.int64())
    if pa.types.is_floating(raw.type):
        s = pc.cast(raw, pa.float64())
        fits = pc.and_(pc.and_(pc.is_finite(s), pc.equal(pc.floor(s), s)),
                       pc.less(pc.abs(s), 2.0 ** 63))
        report_rows(ctx, b, pc.fill_null(pc.invert(fits), False), column, "not-integer",
                    f"expected a whole number ({what})")
        return pc.cast(pc.if_else(fits, s, pa.scalar(None, pa.float64())), pa.int64())
    if raw.type == pa.uint64():
        big = pc.fill_null(pc.greater(raw, _INT64_MAX), False)
        report_rows(ctx, b, big, column, "range", f"too large for int64 ({what})")
        raw = pc.if_else(big, pa.scalar(None, raw.type), raw)
    return pc.cast(raw, pa.int64())


def numbers(ctx: ReadContext, b: CsvBatch, column: str, what: str) -> pa.Array:
    """An integer or float column as non-negative int64 (null where null or bad, reported)."""
    values = _whole(ctx, b, column, what)
    negative = pc.fill_null(pc.less(values, 0), False)
    report_rows(ctx, b, negative, column, "negative", f"negative value; expected {what} >= 0")
    return pc.if_else(negative, pa.scalar(None, pa.int64()), values)


def number_counts(ctx: ReadContext, b: CsvBatch, column: str) -> pa.Array:
    """A numeric count column as non-null int64 (missing and bad values reported, read as 0)."""
    values = numbers(ctx, b, column, "a token count")
    missing = b.columns[column].is_null()
    report_rows(ctx, b, missing, column, "missing", "no value; expected a token count")
    return pc.fill_null(values, 0)


def number_seconds(ctx: ReadContext, b: CsvBatch) -> tuple[pa.Array, pa.Array]:
    """A numeric ``ts`` as exact µs (null where null or bad), and, for floats whose µs are not
    the same float, the raw value as text (Arrow's shortest round-trip digits)."""
    raw = b.columns["ts"]
    if not pa.types.is_floating(raw.type):
        seconds = numbers(ctx, b, "ts", "seconds")
        huge = pc.fill_null(pc.greater(seconds, int(1 << 63) // 1_000_000), False)
        report_rows(ctx, b, huge, "ts", "range", "ts too large for int64 µs")
        us = pc.multiply(pc.if_else(huge, pa.scalar(None, pa.int64()), seconds), 1_000_000)
        return us, pa.nulls(len(raw), pa.string())
    t = float_seconds(raw)
    report_rows(ctx, b, t.nan, "ts", "not-number", "NaN; expected a number of seconds")
    report_rows(ctx, b, t.negative, "ts", "negative", "negative ts; expected seconds >= 0")
    report_rows(ctx, b, t.huge, "ts", "range", "ts too large for int64 µs")
    return t.us, pc.if_else(t.sub_us, pc.cast(raw, pa.string()), _NULL_TEXT)


def number_turn(ctx: ReadContext, b: CsvBatch) -> pa.Array:
    """A numeric ``turn_id`` as int32 (null where null or bad)."""
    turn = numbers(ctx, b, "turn_id", "a turn")
    huge = pc.fill_null(pc.greater(turn, INT32_MAX), False)
    report_rows(ctx, b, huge, "turn_id", "range", "turn_id too large for int32")
    return pc.cast(pc.if_else(huge, pa.scalar(None, pa.int64()), turn), pa.int32())


def number_session(ctx: ReadContext, b: CsvBatch) -> pa.Array:
    """A numeric ``session_id`` as its decimal text (``7`` or pandas' ``7.0`` -> ``"7"``)."""
    return pc.cast(_whole(ctx, b, "session_id", "a session id"), pa.string())


def native_lists(ctx: ReadContext, b: CsvBatch, column: str) -> pa.Array:
    """A list<integer> column as list<int64> (ids beyond int64 reported; that row null)."""
    raw = b.columns[column]
    if pa.types.is_null(raw.type):
        return pa.nulls(len(raw), pa.list_(pa.int64()))
    flat = pc.list_flatten(raw)
    if raw.type.value_type == pa.uint64() and len(flat):
        big = pc.fill_null(pc.greater(flat, _INT64_MAX), False)
        if pc.any(big).as_py():
            rows = pc.unique(pc.filter(pc.list_parent_indices(raw), big))
            mask = pc.is_in(row_index(0, len(raw)), value_set=rows)
            report_rows(ctx, b, mask, column, "range", "token id too large")
            raw = pc.if_else(mask, pa.scalar(None, raw.type), raw)
    values = pc.cast(pc.list_flatten(raw), pa.int64())
    return list_array(pc.list_value_length(raw), values, raw.is_null())


# --- one block of either format -> unified ------------------------------------------------------


@dataclass
class Fields:
    """One block's Kavier columns in unified types, and the raw values a writer needs back.

    ``columns`` are unified columns (``arrival_us``, ``session_id``, ``turn``); ``ids`` the
    token lists by native column, as list<int64> (checked against the counts later); ``kept``
    the raw text per native column (null where the writer rebuilds the value itself), in
    file order, for ``extra``.
    """

    inputs: pa.Array
    outputs: pa.Array
    columns: dict[str, pa.Array] = field(default_factory=dict)
    ids: dict[str, pa.Array] = field(default_factory=dict)
    kept: dict[str, pa.Array] = field(default_factory=dict)


def text_fields(ctx: ReadContext, b: CsvBatch, names: list[str]) -> Fields:
    """The Kavier columns of a block of text columns (a CSV block)."""
    f = Fields(parse_counts(ctx, b, "num_input_tokens"),
               parse_counts(ctx, b, "num_output_tokens"))
    for name in names:
        if name == "ts":
            f.columns["arrival_us"], f.kept[name] = text_seconds(ctx, b)
        elif name == "session_id":
            f.columns["session_id"] = _blank_is_null(b.columns[name])
        elif name == "turn_id":
            f.columns["turn"], f.kept[name] = text_turn(ctx, b)
        elif name in ID_COLUMNS:
            f.ids[name], f.kept[name] = text_lists(ctx, b, name)
        elif name not in COUNTS:  # unknown (or the unnamed trailing column): verbatim
            f.kept[name] = _blank_is_null(b.columns[name]) if name == "" else b.columns[name]
    return f


def unified_batch(ctx: ReadContext, b: CsvBatch, f: Fields, last: int | None
                  ) -> tuple[pa.RecordBatch, int | None]:
    """The unified batch of one block, and its last arrival (for the next block's order check).

    Token lists are checked against the counts here, and an arrival earlier than the row above
    gets an ``order`` warning, the same for every Kavier layout.
    """
    def report(mask: pa.Array, key: str, code: str, message: str) -> None:
        report_rows(ctx, b, mask, key, code, message)

    def problem(i: int, key: str, message: str, value: str) -> None:
        ctx.report.error("length", ctx.label, message, line=b.line(i), column=key, value=value)

    cols: dict[str, pa.Array] = {"input_tokens": f.inputs, "output_tokens": f.outputs,
                                 **f.columns}
    if "arrival_us" in f.columns:
        last = check_order(ctx, b, f.columns["arrival_us"], "ts", last)
    for key, count, target in LISTS:
        if key in f.ids:
            counts = f.inputs if count == "num_input_tokens" else f.outputs
            cols[target] = check_ids(f.ids[key], counts, key, count, report, problem)
    batch = native_batch(b.start, b.num_rows, cols, service=ctx.service,
                         extra=json_objects(list(f.kept.items())))
    return batch, last


# --- kavier-csv ---------------------------------------------------------------------------------


def _csv_names(ctx: ReadContext, header: list[str]) -> list[str]:
    """Column names of the data rows: a header with trailing empty names over narrower rows
    (Kavier's trailing-comma quirk) names only the fields the rows have."""
    names = list(header)
    if not names or names[-1] != "":
        return names
    with text_stream(ctx) as fh:
        records = csv.reader(fh)
        next(records, None)
        first = next(records, None)
    width = len(first) if first is not None else len(names)
    while len(names) > width and names[-1] == "":
        names.pop()
    return names


def read_kavier_csv(ctx: ReadContext) -> Iterator[pa.RecordBatch]:
    """Stream a Kavier input CSV as unified batches."""
    header = split_header(read_first_line(ctx.path))
    names = _csv_names(ctx, header)
    if not check_header(ctx, names, CSV_REQUIRED, CSV_COLUMNS, shown=",".join(header)):
        return
    ctx.meta.setdefault("native_layout", {}).update(columns=header, width=len(names),
                                                    **line_ends(ctx))
    last: int | None = None
    for b in stream_csv(ctx, names):
        batch, last = unified_batch(ctx, b, text_fields(ctx, b, names), last)
        yield batch


class KavierCSV(NativeFormat):
    """Kavier input CSV (Marconi-Kavier requests: counts, optional sessions and token ids)."""

    name = "kavier-csv"
    description = ("Kavier input CSV ([session_id,turn_id,ts,]num_input_tokens,"
                   "num_output_tokens[,input_tokens,output_tokens])")
    time = TIME

    def sniff(self, first_line: str) -> bool:
        if first_line.lstrip().startswith("{"):
            return False
        return set(CSV_REQUIRED) <= set(split_header(first_line))

    def read(self, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        return read_kavier_csv(ctx)


# --- kavier-parquet -----------------------------------------------------------------------------


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t)


def _id_list(t: pa.DataType) -> bool:
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


def _batch_rows(pf: Any) -> int:
    """Rows per batch so that one batch decodes to about :data:`PARQUET_BATCH_BYTES`."""
    md = pf.metadata
    rows = md.num_rows
    size = sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
    per_row = size / rows if rows else 1
    return int(max(1, min(1 << 16, PARQUET_BATCH_BYTES // max(per_row, 1))))


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
        ctx.report.error("type", ctx.label, f"value cannot be kept in extra as text ({exc})",
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
            f.columns["session_id"] = (_blank_is_null(b.columns[name]) if text
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
    import pyarrow.parquet as pq

    try:
        # Column chunks are read page by page (buffer_size), not whole and ahead of time
        # (pre_buffer), so memory follows the batch, not the row group (a pandas file is
        # often one row group).
        pf = pq.ParquetFile(ctx.path, buffer_size=1 << 20, pre_buffer=False)
    except (OSError, pa.ArrowException) as exc:
        ctx.report.error("structure", ctx.label, f"unreadable Parquet file: {exc}")
        return
    schema = pf.schema_arrow
    if not _check_schema(ctx, schema):
        return
    ctx.meta.setdefault("native_layout", {}).update(parquet_layout(schema))
    start = 0
    last: int | None = None
    batches = pf.iter_batches(batch_size=_batch_rows(pf), use_threads=True)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (OSError, pa.ArrowException) as exc:
            ctx.report.error("structure", ctx.label,
                             f"unreadable Parquet data after row {start:,}: {exc}",
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


FORMATS = (KavierCSV(), KavierParquet())


# --- writing -------------------------------------------------------------------------------------

CSV_FORMAT = "kavier-csv"


def _layout(meta: dict[str, Any]) -> tuple[list[str], int, str, bool, bool]:
    """Header, data width, newline, final newline and whether the trace is a native one."""
    layout = meta.get("native_layout") or {}
    if meta.get("native_format") == CSV_FORMAT and layout.get("columns"):
        header = list(layout["columns"])
        return (header, int(layout.get("width", len(header))), layout.get("newline", "\n"),
                layout.get("final_newline") is not False, True)
    return list(CSV_COLUMNS), len(CSV_COLUMNS), "\n", True, False


def _csv_text(values: pa.Array) -> pa.Array:
    """Null-safe text: nulls become empty cells."""
    return pc.fill_null(pc.cast(values, pa.string()), "")


def _csv_column(name: str, batch: pa.RecordBatch, kept: dict[str, pa.Array]) -> pa.Array:
    n = batch.num_rows
    if name == "num_input_tokens":
        text = counts(batch, "input_tokens", "Kavier")
    elif name == "num_output_tokens":
        text = counts(batch, "output_tokens", "Kavier")
    elif name == "session_id":
        text = csv_field(batch.column("session_id"))
    elif name == "turn_id":
        text = pc.cast(batch.column("turn"), pa.string())
    elif name == "ts":
        text = format_seconds(batch.column("arrival_us"), "float")
    elif name in ("input_tokens", "output_tokens"):
        text = csv_field(token_list_texts(batch.column(name.replace("tokens", "token_ids"))))
    else:
        text = pa.nulls(n, pa.string())
    raw = kept.get(name)
    if raw is not None and raw.null_count < len(raw):
        text = pc.if_else(raw.is_valid(), csv_field(raw), text)
    return _csv_text(text)


def write_kavier_csv(stream: TraceStream, dest: Path) -> int:
    """Write the stream as a Kavier input CSV at ``dest``, atomically."""
    rows = 0
    plan: tuple[list[str], int, str, bool, bool] | None = None
    with atomic_path(dest) as tmp, tmp.open("w", encoding="utf-8", newline="") as fh:
        for batch in stream.batches:
            if plan is None:
                plan = _layout(stream.meta)
                fh.write(",".join(plan[0]))
            header, width, newline, _, native = plan
            names = header[:width]
            kept = kept_values(batch, names) if native else {}
            if batch.num_rows:
                cols = [_csv_column(name, batch, kept) for name in names]
                lines = (pc.binary_join_element_wise(*cols, ",").to_pylist() if len(cols) > 1
                         else cols[0].to_pylist())
                fh.write(newline + newline.join(lines))
            rows += batch.num_rows
        if plan is None:
            plan = _layout(stream.meta)
            fh.write(",".join(plan[0]))
        if plan[3]:
            fh.write(plan[2])
    return rows


CSV_WRITER = Writer("kavier", ".csv", "Kavier input CSV (session_id,turn_id,ts,num_input_tokens,"
                "num_output_tokens,input_tokens,output_tokens as JSON arrays)", write_kavier_csv)


# --- writing -------------------------------------------------------------------------------------

PARQUET_FORMAT = "kavier-parquet"
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
    if meta.get("native_format") == PARQUET_FORMAT and layout.get("arrow_schema"):
        return layout_schema(layout), True
    return CANONICAL, False


def _parquet_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _first_bad(batch: pa.RecordBatch, bad: pa.Array) -> tuple[int, Any]:
    i = pc.indices_nonzero(bad)[0].as_py()
    return batch.column("request_id")[i].as_py(), batch.column("session_id")[i].as_py()


def _sessions(batch: pa.RecordBatch, t: pa.DataType) -> pa.Array:
    """``session_id`` for a column of type ``t``: the text, or its integer value."""
    text = batch.column("session_id")
    if _parquet_text(t) or pa.types.is_null(t):
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
    if _parquet_text(t):
        return format_seconds(us, "float")
    if pa.types.is_floating(t) or pa.types.is_null(t):
        return pc.divide(pc.cast(us, pa.float64()), 1e6)
    whole = pc.fill_null(pc.equal(pc.multiply(pc.divide(us, 1_000_000), 1_000_000), us), True)
    if not pc.all(whole).as_py():
        rid = batch.column("request_id")[pc.indices_nonzero(pc.invert(whole))[0].as_py()]
        raise InvalidTraceError(f"the Kavier Parquet's ts column is {t} (whole seconds), but "
                                f"request_id {rid.as_py()} arrives between two seconds")
    return pc.divide(us, 1_000_000)


def _parquet_column(name: str, t: pa.DataType, batch: pa.RecordBatch, kept: dict[str, pa.Array]
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
        values = token_list_texts(ids) if _parquet_text(base) else ids
    else:
        values = pa.nulls(n, pa.string())  # an unknown column: only what extra kept
    raw = kept.get(name)
    if raw is not None and raw.null_count < len(raw):
        if _parquet_text(base):
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


def write_kavier_parquet(stream: TraceStream, dest: Path) -> int:
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
                    arrays = [_parquet_column(f.name, f.type, part, kept) for f in schema]
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


PARQUET_WRITER = Writer(PARQUET_FORMAT, ".parquet", "Kavier input Parquet (session_id,turn_id,ts,"
                "num_input_tokens,num_output_tokens,input_tokens,output_tokens; a Kavier "
                "Parquet's own schema is kept)", write_kavier_parquet)

WRITERS = (CSV_WRITER, PARQUET_WRITER)
