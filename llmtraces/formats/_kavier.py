"""What the two Kavier input forms share (``kavier_csv``, ``kavier_parquet``): their column
names, and the column logic that reads a block of either form into unified columns, so both
readers map, check and keep raw values the same way; also the token list text both writers
write, and the size of a Parquet read block.

Mapping: ``session_id`` -> ``session_id`` (text), ``turn_id`` -> ``turn``, ``ts`` ->
``arrival_us`` (exact to 1 µs; finer digits are rounded and the raw value kept in ``extra``),
``num_*_tokens`` -> ``input_tokens``/``output_tokens``, the lists -> ``input_token_ids`` /
``output_token_ids`` (int32). Text columns (every CSV column, a Parquet string column) are
parsed as text, empty meaning no value; numeric and list columns (Parquet) are read by value.
A count that differs from its list's length is an error, as is an id outside ``0..2**31-1``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..schema import native_batch, row_index
from ..text import ReadContext
from ..text.csv import SHOW_CHARS, CsvBatch, check_order, report_rows
from ..text.limits import is_too_deep, too_deep
from ..text.seconds import bad_kinds, differs, float_seconds, format_seconds, parse_seconds
from .marconi import INT32_MAX, LISTS, check_ids
from .vidur import json_objects

# --- columns -----------------------------------------------------------------------------------

#: Kavier's input columns, in the order its files have them.
CSV_COLUMNS = ("session_id", "turn_id", "ts", "num_input_tokens", "num_output_tokens",
               "input_tokens", "output_tokens")
CSV_REQUIRED = ("num_input_tokens", "num_output_tokens")
COUNTS = {"num_input_tokens": "input_tokens", "num_output_tokens": "output_tokens"}
ID_COLUMNS = ("input_tokens", "output_tokens")
#: ``json.dumps`` of a list of int64 values: the only text the vector path reads.
CANONICAL_LIST = r"^\[(?:(?:0|-?[1-9][0-9]{0,17})(?:, (?:0|-?[1-9][0-9]{0,17}))*)?\]$"
INT64_MAX = (1 << 63) - 1
#: a null string scalar, for ``if_else`` on text columns.


@lru_cache(maxsize=1)
def null_text() -> pa.Scalar:
    """A null string scalar, made on first use: a pyarrow scalar built at import time makes
    pyarrow import pandas (when installed), ~0.3 s on every command that lists the formats."""
    return pa.scalar(None, pa.string())


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
    return pc.if_else(ids.is_valid(), text, null_text())


# --- token lists as text ------------------------------------------------------------------------


def _vector_lists(raw: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Lists written exactly as ``json.dumps`` writes them, parsed with Arrow kernels; and the
    mask of the other non-empty cells, left null here for the exact path."""
    canonical = pc.fill_null(pc.match_substring_regex(raw, CANONICAL_LIST), False)
    inner = pc.utf8_slice_codeunits(pc.if_else(canonical, raw, "[]"), 1, -1)
    empty = pc.equal(inner, "")
    parts = pc.split_pattern(pc.if_else(empty, null_text(), inner), ", ")
    values = pc.cast(pc.list_flatten(parts), pa.int64())
    ids = list_array(pc.list_value_length(parts), values, pc.invert(canonical))
    slow = pc.and_(pc.invert(canonical), pc.not_equal(raw, ""))
    return ids, slow


def _exact_list(ctx: ReadContext, line: int, column: str, text: str) -> list[int] | None:
    """One cell by ``json.loads``: the ids, or None with the problem reported."""
    if is_too_deep(text, ctx.max_depth):  # before json.loads recurses into it
        ctx.report.error("depth", ctx.label, too_deep(ctx.max_depth), line=line,
                         column=column, value=text[:SHOW_CHARS])
        return None
    try:
        ids: Any = json.loads(text)
    except ValueError:
        ids = text
    if type(ids) is not list or not all(type(v) is int for v in ids):
        ctx.report.error("type", ctx.label, "expected a JSON array of integers", line=line,
                         column=column, value=text[:SHOW_CHARS])
        return None
    if any(not -(1 << 63) <= v <= INT64_MAX for v in ids):
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
    return us, pc.if_else(keep, raw, null_text())


def text_turn(ctx: ReadContext, b: CsvBatch) -> tuple[pa.Array, pa.Array]:
    """``turn_id`` text (``3``, or pandas' ``3.0``) as int32 (empty -> null), and raw text that
    ``str(int)`` would not rebuild."""
    raw = b.columns["turn_id"]
    digits = pc.replace_substring_regex(raw, r"\.0$", "")
    ok = pc.and_(pc.ascii_is_decimal(digits), pc.less_equal(pc.binary_length(digits), 9))
    bad = pc.and_(pc.invert(ok), pc.not_equal(raw, ""))
    report_rows(ctx, b, bad, "turn_id", "not-integer",
                "expected a non-negative integer below 10**9")
    turn = pc.cast(pc.if_else(ok, digits, null_text()), pa.int32())
    same = pc.fill_null(pc.equal(pc.cast(turn, pa.string()), raw), True)
    return turn, pc.if_else(same, null_text(), raw)


def blank_is_null(values: pa.Array) -> pa.Array:
    """Text with empty cells as null."""
    return pc.if_else(pc.equal(values, ""), null_text(), values)

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
        big = pc.fill_null(pc.greater(raw, INT64_MAX), False)
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
    return t.us, pc.if_else(t.sub_us, pc.cast(raw, pa.string()), null_text())


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
        big = pc.fill_null(pc.greater(flat, INT64_MAX), False)
        if pc.any(big).as_py():
            rows = pc.unique(pc.filter(pc.list_parent_indices(raw), big))
            mask = pc.is_in(row_index(0, len(raw)), value_set=rows)
            report_rows(ctx, b, mask, column, "range", "token id too large")
            raw = pc.if_else(mask, pa.scalar(None, raw.type), raw)
    values = pc.cast(pc.list_flatten(raw), pa.int64())
    return list_array(pc.list_value_length(raw), values, raw.is_null())

# --- one block of either form -> unified --------------------------------------------------------


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


# --- the size of a Parquet block ---------------------------------------------------------------

#: Uncompressed bytes of Parquet data decoded per batch (rows of 10k token ids are ~100 KB); a
#: block's size bounds the memory of the column logic above, so it is set here with it.
PARQUET_BATCH_BYTES = 8 << 20


def batch_rows(pf: Any) -> int:
    """Rows per batch so that one batch decodes to about :data:`PARQUET_BATCH_BYTES`."""
    md = pf.metadata
    rows = md.num_rows
    size = sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
    per_row = size / rows if rows else 1
    return int(max(1, min(1 << 16, PARQUET_BATCH_BYTES // max(per_row, 1))))
