"""vidur's processed traces (microsoft/vidur ``data/processed_traces/``), two CSV layouts: the
``vidur-csv`` and ``vidur-lengths-csv`` readers and the ``vidur`` writer.

Readers: ``arrived_at,num_prefill_tokens,num_decode_tokens`` (``splitwise_{code,conv}.csv``) is
the Azure LLM 2023 trace re-expressed: ``arrived_at`` is seconds since the first request,
written by pandas as the float64 ``float(whole seconds) + microseconds / 1e6``, so the text
carries float noise (``5.8926549999999995`` is 5,892,655 µs). Request-length traces
(``arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv``:
``num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio``) have no arrival times: vidur
samples lengths from them and makes up arrivals itself, so ``arrival_us`` stays null.

The reader here (:func:`read_seconds_csv`) and the seconds styles are shared with the
splitwise-sim reader and the two writers: seconds are parsed by :mod:`..text.seconds` from their
decimal text (never through a float) and rounded to the nearest µs, ties half up; a file's way
of writing them is recorded so that a writer gives back the same digits, and any value it would
not give back is kept verbatim in ``extra``.

Writer: unified trace -> vidur processed-trace CSV, in the layout the trace came in. It writes
``arrived_at,num_prefill_tokens,num_decode_tokens``. A trace read from a vidur file keeps its
header, extra columns, line ends and the way it wrote seconds (vidur's float64 repr,
``5.8926549999999995`` included), so the file comes back byte for byte. Any other trace gets
seconds with 6 decimals counted from its first row, as vidur counts them; a trace with no timing
at all (``time.kind == "none"``) gets vidur's request-length layout
``num_prefill_tokens,num_decode_tokens``. The CSV engine (:mod:`..text.csvwrite`) is shared with
the splitwise-sim writer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InvalidTraceError
from ..report import KEEP_PER_CODE, Level
from ..schema import TraceStream, make_batch, row_index
from ..text import ReadContext
from ..text.csv import CsvBatch, iter_csv, parse_counts, report_rows, split_header
from ..text.csvwrite import Plan, counts, csv_field, native_plan, seconds, write_csv
from ..text.seconds import (
    FIXED6,
    Style,
    bad_kinds,
    format_styled,
    parse_seconds,
    seconds_style,
)
from ..timing import TimeSemantics
from . import NativeFormat, Writer

# --- reading -------------------------------------------------------------------------------------

ARRIVAL = "arrived_at"
PREFILL = "num_prefill_tokens"
DECODE = "num_decode_tokens"
REQUIRED = (ARRIVAL, PREFILL, DECODE)
LENGTHS_REQUIRED = (PREFILL, DECODE)




# --- seconds as decimal text <-> int64 microseconds ------------------------------------------


def _report(ctx: ReadContext, b: CsvBatch, mask: pa.Array, column: str, code: str,
            message: str, level: Level = "error") -> None:
    """:func:`report_rows`, but rows past what the report keeps are only counted.

    A splitwise-sim trace warns on every row; building a million problems the report then
    drops would take most of the read.
    """
    n = pc.sum(pc.cast(mask, pa.int64())).as_py() or 0
    if n > KEEP_PER_CODE:
        cut = pc.indices_nonzero(mask)[KEEP_PER_CODE - 1]
        mask = pc.and_(mask, pc.less_equal(row_index(0, len(mask)), cut))
    report_rows(ctx, b, mask, column, code, message, level)
    if n > KEEP_PER_CODE:
        ctx.report.counts[(level, code)] += n - KEEP_PER_CODE


def read_seconds(ctx: ReadContext, b: CsvBatch, column: str) -> pa.Array:
    """A column of non-negative decimal seconds as int64 µs (null where bad, reported).

    Rounds to the nearest µs, ties half up: float text such as ``5.8926549999999995`` sits just
    below the microsecond it stands for, so truncating would be off by one. Digits finer than
    1 µs that are more than float noise (below 1 ns) get a ``sub-microsecond`` warning; the
    caller keeps the raw text in ``extra``.
    """
    raw = b.columns[column]
    t = parse_seconds(raw, rounding="half-up", exponents=True, float_noise=True)
    if not pc.all(t.ok).as_py():
        empty, negative, other = bad_kinds(raw, t.ok, negative="^-")
        _report(ctx, b, empty, column, "missing", "empty value; expected seconds")
        _report(ctx, b, negative, column, "negative", "negative time; expected seconds >= 0")
        _report(ctx, b, other, column, "not-number",
                "expected a decimal number of seconds (e.g. 4.314579)")
    _report(ctx, b, t.sub_us, column, "sub-microsecond",
            "digits finer than 1 µs do not fit arrival_us (rounded to the nearest µs); the raw "
            "value is kept in extra", level="warning")
    if t.spelling is not None:  # a fast path read every value
        return t.us
    return pc.if_else(t.ok, t.us, pa.scalar(None, pa.int64()))






# --- extra as JSON, built column-wise ----------------------------------------------------------


def _json_text(values: pa.Array) -> pa.Array:
    # json.dumps(v, ensure_ascii=False)[1:-1]: only backslash, quote and control characters
    # need escaping; control characters are rare enough to leave to json.dumps.
    special = pc.fill_null(pc.match_substring_regex(values, r'[\\"\x00-\x1f]'), False)
    if not pc.any(special).as_py():
        return values
    text = pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')
    ctrl = pc.fill_null(pc.match_substring_regex(values, r"[\x00-\x1f]"), False)
    if not pc.any(ctrl).as_py():
        return text
    out = text.to_pylist()
    raw = values.to_pylist()
    for i in pc.indices_nonzero(ctrl).to_pylist():
        out[i] = json.dumps(raw[i], ensure_ascii=False)[1:-1]
    return pa.array(out, pa.string())


def json_objects(fields: Sequence[tuple[str, pa.Array]]) -> pa.Array | None:
    """Per row, the JSON object (``json.dumps`` layout) of the fields whose value is not null.

    Rows with no such field get null. None when no row has any.
    """
    frags = []
    for name, values in fields:
        if values.null_count == len(values):
            continue
        key = json.dumps(name, ensure_ascii=False)
        frag = pc.binary_join_element_wise(f"{key}: \"", _json_text(values), '", ', "")
        frags.append(pc.fill_null(frag, ""))
    if not frags:
        return None
    # Each fragment ends with ", " and a value's text ends with a quote, so trimming commas and
    # spaces on the right removes exactly the last separator. (pyarrow's "skip" null handling
    # in binary_join_element_wise would be simpler, but it drops all-null rows.)
    body = pc.utf8_rtrim(pc.binary_join_element_wise(*frags, ""), characters=", ")
    obj = pc.binary_join_element_wise("{", body, "}", "")
    return pc.if_else(pc.equal(body, ""), pa.scalar(None, pa.string()), obj)


# --- the shared reader --------------------------------------------------------------------------


def _check_order(ctx: ReadContext, b: CsvBatch, column: str, arrival: pa.Array,
                 last: int | None) -> int | None:
    """Warn on each row that arrives before the row above it; returns the block's last arrival."""
    prev = pa.concat_arrays([pa.array([last], pa.int64()), arrival.slice(0, b.num_rows - 1)])
    earlier = pc.fill_null(pc.less(arrival, prev), False)
    _report(ctx, b, earlier, column, "order",
            "arrives before the previous row (row order is kept)", level="warning")
    valid = arrival.drop_null()
    return valid[-1].as_py() if len(valid) else last


def read_seconds_csv(ctx: ReadContext, required: Sequence[str], *, arrival: str | None,
                     inputs: str, outputs: str, verbatim: Sequence[str] = (),
                     check: Callable[[ReadContext, CsvBatch], None] | None = None
                     ) -> Iterator[pa.RecordBatch]:
    """Stream a CSV with a seconds column and two token counts as unified batches.

    ``verbatim`` columns and columns outside ``required`` go to ``extra`` as their exact text;
    the ``arrival`` text goes there only where the file's own style would not reproduce it.
    The style is recorded as ``native_layout["seconds"]`` from the first block.
    """
    last: int | None = None
    style: Style | None = None
    mapped = {arrival, inputs, outputs} - set(verbatim)
    for b in iter_csv(ctx, required):
        if check is not None:
            check(ctx, b)
        cols: dict[str, pa.Array] = {
            "request_id": row_index(b.start, b.num_rows),
            "source_row": row_index(b.start, b.num_rows),
            "input_tokens": parse_counts(ctx, b, inputs),
            "output_tokens": parse_counts(ctx, b, outputs),
        }
        kept: dict[str, pa.Array] = {name: b.columns[name] for name in b.columns
                                     if name not in mapped}
        if arrival is not None:
            raw = b.columns[arrival]
            us = read_seconds(ctx, b, arrival)
            if style is None and us.null_count < len(us):
                style = seconds_style(raw, us)
                ctx.meta.setdefault("native_layout", {})["seconds"] = style
            if style is not None:
                same = pc.fill_null(pc.equal(format_styled(pc.fill_null(us, 0), style), raw),
                                    True)
                kept[arrival] = pc.if_else(same, pa.scalar(None, pa.string()), raw)
            last = _check_order(ctx, b, arrival, us, last)
            cols["arrival_us"] = us
        if ctx.service:
            cols["service"] = pc.fill_null(pa.nulls(b.num_rows, pa.string()), ctx.service)
        extra = json_objects([(n, kept[n]) for n in b.columns if n in kept])
        if extra is not None:
            cols["extra"] = extra
        yield make_batch(b.num_rows, cols)


class VidurCSV(NativeFormat):
    """vidur processed trace with arrivals (``splitwise_{code,conv}.csv``)."""

    name = "vidur-csv"
    description = "vidur processed trace CSV (arrived_at,num_prefill_tokens,num_decode_tokens)"
    time = TimeSemantics(
        kind="relative",
        native_format="arrived_at: decimal seconds since the first request (pandas float64 "
                      "repr, e.g. 4.314579, 5.8926549999999995)",
        resolution="1us",
        origin="the first request (arrived_at = 0.0)")

    def sniff(self, first_line: str) -> bool:
        return set(REQUIRED) <= set(split_header(first_line))

    def read(self, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        return read_seconds_csv(ctx, REQUIRED, arrival=ARRIVAL, inputs=PREFILL, outputs=DECODE)


class VidurLengthsCSV(NativeFormat):
    """vidur request-length trace: token counts only, no arrival times."""

    name = "vidur-lengths-csv"
    description = ("vidur request-length CSV (num_prefill_tokens,num_decode_tokens[,"
                   "num_total_tokens,pd_ratio]), no arrival times")
    time = TimeSemantics(
        kind="none", native_format="no timestamps (vidur generates arrivals itself)",
        resolution="none", origin="none: arrival_us is null")

    def sniff(self, first_line: str) -> bool:
        names = set(split_header(first_line))
        return set(LENGTHS_REQUIRED) <= names and ARRIVAL not in names

    def read(self, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        return read_seconds_csv(ctx, LENGTHS_REQUIRED, arrival=None, inputs=PREFILL,
                                outputs=DECODE)


FORMATS = (VidurCSV(), VidurLengthsCSV())


# --- writing -------------------------------------------------------------------------------------

NATIVE = ("vidur-csv", "vidur-lengths-csv")


def write(stream: TraceStream, dest: Path) -> int:
    """Write the stream as a vidur processed-trace CSV at ``dest``, atomically."""

    def plan_for(first: pa.RecordBatch | None) -> Plan:
        plan = native_plan(stream.meta, NATIVE)
        if plan is not None:
            return plan
        if (stream.meta.get("time") or {}).get("kind") == "none":
            return Plan(list(LENGTHS_REQUIRED), False, dict(FIXED6))
        origin = first.column("arrival_us")[0].as_py() if first is not None and len(first) else 0
        if origin is None:
            raise InvalidTraceError("a vidur CSV counts seconds from the first request, and the "
                                    "first request has no time")
        return Plan(list(REQUIRED), False, dict(FIXED6), origin_us=origin)

    def column(name: str, batch: pa.RecordBatch, plan: Plan, kept: dict[str, pa.Array]
               ) -> pa.Array:
        if name == ARRIVAL:
            return seconds(batch, plan, kept, ARRIVAL, "vidur")
        if name == PREFILL:
            return counts(batch, "input_tokens", "vidur")
        if name == DECODE:
            return counts(batch, "output_tokens", "vidur")
        return csv_field(pc.fill_null(kept[name], ""))

    return write_csv(stream, dest, plan_for, column)


WRITER = Writer("vidur", ".csv", "vidur processed-trace CSV (arrived_at,num_prefill_tokens,"
                "num_decode_tokens), seconds since the first request", write)
