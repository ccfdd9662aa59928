"""Marconi traces (Pan et al., MLSys'25, ``ruipeterpan/marconi``) and Kavier's input CSV.

``marconi-jsonl``: one request per line, keys in order ``session_id`` (int), ``turn_id`` (int),
``ts`` (float seconds, relative and synthetic), ``num_input_tokens``, ``num_output_tokens``,
``input_tokens`` and ``output_tokens`` (Llama-2 token ids; the input holds the whole history,
each tokenisation starting with BOS 1), written with ``json.dumps``'s default separators.

``kavier-csv``: the same requests as Kavier's input CSV (``session_id,turn_id,ts,
num_input_tokens,num_output_tokens,input_tokens,output_tokens``), token lists as JSON-array
strings in quoted cells (``"[1, 100, 2]"``); an empty cell is a null list. Only the two counts
are required; a header with a trailing comma (an unnamed 6th column over 5-field rows, as in
Kavier's ``input_decode_accuracy.csv``) is accepted and written back as it was.

Mapping: ``session_id`` -> ``session_id`` (text), ``turn_id`` -> ``turn`` (as written), ``ts``
-> ``arrival_us`` (exact to 1 µs; a value with finer digits, e.g. ``9.333333333333334``, is
rounded and its raw value kept in ``extra`` for the writers), ``num_*_tokens`` ->
``input_tokens``/``output_tokens``, the lists -> ``input_token_ids``/``output_token_ids``.
A count that differs from its list's length is an error, as is an id outside ``0..2**31-1``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from ..registry import TimeSemantics
from ..report import Level
from ..schema import constant, make_batch, row_index
from . import GZIP_MAGIC, NativeFormat, ReadContext, read_first_line
from ._csv import CsvBatch, line_ends, parse_counts, split_header, text_stream
from ._csv import report_rows as csv_report_rows
from ._jsonl import (
    JsonBlock,
    Key,
    check_counts,
    check_order,
    first_record_keys,
    iter_jsonl,
)
from ._jsonl import report_rows as json_report_rows
from ._seconds import bad_kinds, differs, format_seconds, parse_seconds
from .vidur import json_objects

#: Marconi's keys, in the order its generator writes them.
KEYS = (Key("session_id", "int"), Key("turn_id", "int"), Key("ts", "number"),
        Key("num_input_tokens", "int"), Key("num_output_tokens", "int"),
        Key("input_tokens", "int_list"), Key("output_tokens", "int_list"))
SNIFF_KEYS = ("session_id", "turn_id", "ts", "num_input_tokens", "num_output_tokens")
#: Kavier's input CSV columns, in the order its files have them.
CSV_COLUMNS = ("session_id", "turn_id", "ts", "num_input_tokens", "num_output_tokens",
               "input_tokens", "output_tokens")
CSV_REQUIRED = ("num_input_tokens", "num_output_tokens")
LISTS = (("input_tokens", "num_input_tokens", "input_token_ids"),
         ("output_tokens", "num_output_tokens", "output_token_ids"))
INT32_MAX = (1 << 31) - 1
_MAX_S = float((1 << 63) // 1_000_000)

TIME = TimeSemantics(
    kind="relative", native_format="float seconds since the start of the trace (synthetic)",
    resolution="as written (float seconds, kept to 1 µs)",
    origin="start of the trace (ts 0.0: session 0's first request)")

Reporter = Callable[[pa.Array, str, str, str], None]


def check_ids(ids: pa.Array, counts: pa.Array, list_key: str, count_key: str,
              report: Reporter, problem: Callable[[int, str, str, str], None]) -> pa.Array:
    """Token id lists as list<int32>: ids outside int32 or negative, and lists whose length is
    not the count, are reported; such rows read as null."""
    flat = pc.list_flatten(ids)
    n = len(ids)
    bad = pa.array([False] * n)
    if len(flat):
        out = pc.or_(pc.less(flat, 0), pc.greater(flat, INT32_MAX))
        if pc.any(out).as_py():
            rows = pc.filter(pc.list_parent_indices(ids), out)
            bad = pc.is_in(pa.array(range(n), pa.int64()), value_set=rows)
            report(bad, list_key, "range", "token id outside 0..2147483647 (int32)")
    length = pc.list_value_length(ids)
    wrong = pc.fill_null(pc.not_equal(pc.cast(length, pa.int64()), counts), False)
    if pc.any(wrong).as_py():
        lengths, values = length.to_pylist(), counts.to_pylist()
        for i in pc.indices_nonzero(wrong).to_pylist():
            problem(i, count_key, f"{count_key} is {values[i]} but {list_key} holds "
                    f"{lengths[i]} ids", str(values[i]))
    drop = pc.or_(bad, wrong)
    cleaned = pc.if_else(drop, pa.scalar(None, ids.type), ids)
    return cleaned.cast(pa.list_(pa.int32()))


# --- marconi-jsonl ------------------------------------------------------------------------------


def _arrival(ctx: ReadContext, b: JsonBlock) -> tuple[pa.Array, pa.Array]:
    """``ts`` (float s) as exact arrival_us, and a mask of values with digits finer than 1 µs
    (rounded; the caller keeps their raw value). See bailian's ``arrival_from_seconds``."""
    s = b.columns["ts"]
    negative = pc.less(s, 0)
    json_report_rows(ctx, b, negative, "ts", "negative", "negative ts")
    huge = pc.greater(s, _MAX_S)
    json_report_rows(ctx, b, huge, "ts", "range", "ts too large for int64 µs")
    s = pc.if_else(pc.fill_null(pc.or_(negative, huge), False), pa.scalar(None, pa.float64()), s)
    us = pc.cast(pc.round(pc.multiply(s, 1e6)), pa.int64())
    back = pc.divide(pc.cast(us, pa.float64()), 1e6)
    return us, pc.fill_null(pc.not_equal(back, s), False)


def _json_extra(b: JsonBlock, sub_us: pa.Array) -> pa.Array | None:
    """Raw ``ts`` of sub-µs rows and unknown keys, as JSON text (null where none)."""
    if b.extra is None and not pc.any(sub_us).as_py():
        return None
    ts, fine = b.columns["ts"].to_pylist(), sub_us.to_pylist()
    out: list[str | None] = []
    for i in range(b.num_rows):
        row: dict[str, Any] = {"ts": ts[i]} if fine[i] else {}
        row.update((b.extra[i] or {}) if b.extra is not None else {})
        out.append(json.dumps(row, ensure_ascii=False) if row else None)
    return pa.array(out, pa.string())


class MarconiJSONL(NativeFormat):
    """Marconi trace JSONL (session_id, turn_id, ts s, counts, Llama-2 token id lists)."""

    name = "marconi-jsonl"
    description = ("Marconi trace JSONL (session_id,turn_id,ts,num_input_tokens,"
                   "num_output_tokens,input_tokens,output_tokens)")
    time = TIME

    def sniff(self, first_line: str) -> bool:
        keys = first_record_keys(first_line)
        return keys is not None and set(SNIFF_KEYS) <= keys

    def read(self, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        last: int | None = None
        for b in iter_jsonl(ctx, KEYS):
            n = b.num_rows

            def report(mask: pa.Array, key: str, code: str, message: str,
                       b: JsonBlock = b) -> None:
                json_report_rows(ctx, b, mask, key, code, message)

            def problem(i: int, key: str, message: str, value: str, b: JsonBlock = b) -> None:
                ctx.report.error("length", ctx.label, message, line=b.line(i), column=key,
                                 value=value)

            arrival, sub_us = _arrival(ctx, b)
            inputs = check_counts(ctx, b, "num_input_tokens", "token count")
            outputs = check_counts(ctx, b, "num_output_tokens", "token count")
            check_counts(ctx, b, "session_id", "session_id")
            turn = check_counts(ctx, b, "turn_id", "turn_id")
            huge = pc.greater(turn, INT32_MAX)
            json_report_rows(ctx, b, huge, "turn_id", "range", "turn_id too large for int32")
            turn = pc.if_else(pc.fill_null(huge, False), pa.scalar(None, pa.int64()), turn)
            ids = {target: check_ids(b.columns[key], b.columns[count], key, count, report,
                                     problem) for key, count, target in LISTS}
            last = check_order(ctx, b, arrival, "ts", last)
            cols: dict[str, pa.Array] = {
                "request_id": row_index(b.start, n),
                "source_row": row_index(b.start, n),
                "arrival_us": arrival,
                "input_tokens": pc.fill_null(inputs, 0),
                "output_tokens": outputs,
                "session_id": pc.cast(b.columns["session_id"], pa.string()),
                "turn": pc.cast(turn, pa.int32()),
                **ids,
            }
            if ctx.service:
                cols["service"] = constant(ctx.service, n, pa.string())
            extra = _json_extra(b, sub_us)
            if extra is not None:
                cols["extra"] = extra
            b.flush()
            yield make_batch(n, cols)


# --- kavier-csv ---------------------------------------------------------------------------------


def token_list_text(ids: list[int] | None) -> str | None:
    """A token id list as Kavier writes it in a cell (``[1, 100, 2]``); None for null."""
    return None if ids is None else json.dumps(ids)


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


def _locate_bad_line(ctx: ReadContext, width: int) -> tuple[int, str] | None:
    """The first data record (after the header) with other than ``width`` fields."""
    with text_stream(ctx) as fh:
        records = csv.reader(fh)
        next(records, None)
        for record in records:
            if len(record) != width:
                return records.line_num, ",".join(record)
    return None


def iter_kavier_csv(ctx: ReadContext) -> Iterator[CsvBatch]:
    """Stream a Kavier input CSV as raw string columns (a header quirk tolerated)."""
    header = split_header(read_first_line(ctx.path))
    missing = [c for c in CSV_REQUIRED if c not in header]
    named = [c for c in header if c]
    dupes = sorted({c for c in named if named.count(c) > 1})
    if missing or dupes:
        what = f"missing column(s) {missing}" if missing else f"duplicate column(s) {dupes}"
        ctx.report.error("header", ctx.label, f"{what}; expected {','.join(CSV_COLUMNS)}",
                         line=1, value=",".join(header))
        return
    names = _csv_names(ctx, header)
    ctx.meta.setdefault("native_layout", {}).update(columns=header, width=len(names),
                                                    **line_ends(ctx))
    with ctx.path.open("rb") as fh:
        gz = fh.read(2) == GZIP_MAGIC
    internal = [n or f"_unnamed{i}" for i, n in enumerate(names)]
    stream = pa.input_stream(ctx.path, compression="gzip" if gz else None)
    options = dict(
        read_options=pcsv.ReadOptions(block_size=ctx.batch_bytes, use_threads=True,
                                      column_names=internal, skip_rows=1),
        parse_options=pcsv.ParseOptions(newlines_in_values=False, ignore_empty_lines=False),
        convert_options=pcsv.ConvertOptions(
            column_types={name: pa.string() for name in internal},
            strings_can_be_null=False, quoted_strings_can_be_null=False),
    )
    start = 0
    reader = None
    while True:
        try:
            reader = reader or pcsv.open_csv(stream, **options)
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            found = _locate_bad_line(ctx, len(names))
            if found:
                ctx.report.error("structure", ctx.label,
                                 f"expected {len(names)} fields ({','.join(names)})",
                                 line=found[0], value=found[1])
            else:
                ctx.report.error("structure", ctx.label, f"unreadable CSV: {exc}")
            return
        yield CsvBatch(start, {n: batch.column(i) for i, n in enumerate(names) if n},
                       batch.num_rows)
        start += batch.num_rows


def _lists(ctx: ReadContext, b: CsvBatch, column: str) -> tuple[pa.Array, pa.Array]:
    """A token-list column parsed (empty cell -> null; bad cells reported, null), and the raw
    text where :func:`token_list_text` would not rebuild it."""
    raw = b.columns[column].to_pylist()
    values: list[list[int] | None] = []
    keep: list[str | None] = []
    for i, text in enumerate(raw):
        ids: Any = None
        if text:
            try:
                ids = json.loads(text)
            except ValueError:
                ids = text
            if type(ids) is not list or not all(type(v) is int for v in ids):
                ctx.report.error("type", ctx.label, "expected a JSON array of integers",
                                 line=b.line(i), column=column, value=text[:120])
                ids = None
            elif any(not -(1 << 63) <= v < 1 << 63 for v in ids):
                ctx.report.error("range", ctx.label, "token id too large", line=b.line(i),
                                 column=column, value=text[:120])
                ids = None
        values.append(ids)
        keep.append(text if ids is not None and token_list_text(ids) != text else None)
    return pa.array(values, pa.list_(pa.int64())), pa.array(keep, pa.string())


def _csv_seconds(ctx: ReadContext, b: CsvBatch) -> tuple[pa.Array, pa.Array]:
    """``ts`` as exact µs (empty -> null), and the raw text the writer would not rebuild."""
    raw = b.columns["ts"]
    empty = pc.equal(raw, "")
    t = parse_seconds(pc.if_else(empty, "0", raw), exponents=True)
    if not pc.all(t.ok).as_py():
        _, negative, other = bad_kinds(raw, t.ok, negative="^-")
        csv_report_rows(ctx, b, negative, "ts", "negative", "negative ts; expected seconds >= 0")
        csv_report_rows(ctx, b, other, "ts", "not-number",
                        "expected a decimal number of seconds (e.g. 2.5)")
    us = pc.if_else(pc.and_(t.ok, pc.invert(empty)), t.us, pa.scalar(None, pa.int64()))
    keep = differs(pc.and_(t.ok, pc.invert(empty)), format_seconds(us, "float"), raw)
    return us, pc.if_else(keep, raw, pa.scalar(None, pa.string()))


def _csv_turn(ctx: ReadContext, b: CsvBatch) -> tuple[pa.Array, pa.Array]:
    """``turn_id`` (``3``, or pandas' ``3.0``) as int32 (empty -> null), and raw text that
    ``str(int)`` would not rebuild."""
    raw = b.columns["turn_id"]
    digits = pc.replace_substring_regex(raw, r"\.0$", "")
    ok = pc.and_(pc.ascii_is_decimal(digits), pc.less_equal(pc.binary_length(digits), 9))
    empty = pc.equal(raw, "")
    bad = pc.and_(pc.invert(ok), pc.invert(empty))
    csv_report_rows(ctx, b, bad, "turn_id", "not-integer",
                    "expected a non-negative integer below 10**9")
    turn = pc.cast(pc.if_else(ok, digits, pa.scalar(None, pa.string())), pa.int32())
    same = pc.fill_null(pc.equal(pc.cast(turn, pa.string()), raw), True)
    return turn, pc.if_else(same, pa.scalar(None, pa.string()), raw)


def read_kavier_csv(ctx: ReadContext) -> Iterator[pa.RecordBatch]:
    """Stream a Kavier input CSV as unified batches."""
    last: int | None = None
    known = set(CSV_COLUMNS)
    for b in iter_kavier_csv(ctx):
        n = b.num_rows

        def report(mask: pa.Array, key: str, code: str, message: str,
                   b: CsvBatch = b, level: Level = "error") -> None:
            csv_report_rows(ctx, b, mask, key, code, message, level)

        def problem(i: int, key: str, message: str, value: str, b: CsvBatch = b) -> None:
            ctx.report.error("length", ctx.label, message, line=b.line(i), column=key,
                             value=value)

        inputs = parse_counts(ctx, b, "num_input_tokens")
        outputs = parse_counts(ctx, b, "num_output_tokens")
        cols: dict[str, pa.Array] = {
            "request_id": row_index(b.start, n),
            "source_row": row_index(b.start, n),
            "input_tokens": inputs,
            "output_tokens": outputs,
        }
        kept: list[tuple[str, pa.Array]] = []
        if "ts" in b.columns:
            arrival, raw_ts = _csv_seconds(ctx, b)
            cols["arrival_us"] = arrival
            kept.append(("ts", raw_ts))
            prev = pa.concat_arrays([pa.array([last], pa.int64()), arrival.slice(0, n - 1)])
            report(pc.fill_null(pc.less(arrival, prev), False), "ts", "order",
                   "arrives before the previous row (row order is kept)", level="warning")
            valid = arrival.drop_null()
            last = valid[-1].as_py() if len(valid) else last
        if "session_id" in b.columns:
            sid = b.columns["session_id"]
            cols["session_id"] = pc.if_else(pc.equal(sid, ""), pa.scalar(None, pa.string()), sid)
        if "turn_id" in b.columns:
            cols["turn"], raw_turn = _csv_turn(ctx, b)
            kept.append(("turn_id", raw_turn))
        for key, count, target in LISTS:
            if key in b.columns:
                ids, raw_ids = _lists(ctx, b, key)
                cols[target] = check_ids(ids, inputs if count == "num_input_tokens" else outputs,
                                         key, count, report, problem)
                kept.append((key, raw_ids))
        if ctx.service:
            cols["service"] = constant(ctx.service, n, pa.string())
        kept.extend((name, b.columns[name]) for name in b.columns if name not in known)
        extra = json_objects(kept)
        if extra is not None:
            cols["extra"] = extra
        yield make_batch(n, cols)


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


FORMATS = (MarconiJSONL(), KavierCSV())
