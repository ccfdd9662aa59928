"""BurstGPT (github.com/HPMLL/BurstGPT): request logs of a regional Azure OpenAI GPT provider.

Two layouts, both read by header name:

* 6 columns (``BurstGPT_1/2`` and ``without_fails_1/2``):
  ``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type``
* 8 columns (``BurstGPT_3``, ``without_fails_3``), with ``Session ID`` and ``Elapsed time``
  *inserted* at positions 2-3, so position-based readers (vLLM) break on them:
  ``Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,Total tokens,Log Type``

``Timestamp`` is seconds since 00:00 UTC+8 of an undisclosed day 0, written ``5`` (files 1-2)
or ``19440110.0`` (file 3). It is kept on that axis (``arrival_us = Timestamp x 1e6``, no
rebasing), so the shards of one release share one time line. ``Response tokens == 0`` marks a
failed request (kept, ``failed = true``). ``Total tokens`` must equal Request + Response and is
not stored. Whatever a writer could not rebuild from the unified columns (an unusual spelling
of a number, an unknown ``Log Type``, unknown columns) is kept verbatim in ``extra``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..registry import TimeSemantics
from ..schema import constant, make_batch, row_index
from . import NativeFormat, ReadContext
from ._csv import CsvBatch, iter_csv, parse_counts, report_rows, split_header

REQUIRED = ("Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens",
            "Log Type")
OPTIONAL = ("Session ID", "Elapsed time")
#: The release order of each layout; writers use it for traces that did not come from a file.
COLUMNS_6 = REQUIRED
COLUMNS_8 = ("Timestamp", "Session ID", "Elapsed time") + REQUIRED[1:]
LOG_TYPES = {"Conversation log": "conversation", "API log": "api"}
SERVICES = {v: k for k, v in LOG_TYPES.items()}
#: How many leading rows the fabricated-clone check looks at (at least 3 are needed).
FABRICATED_ROWS = 10

_SECONDS = r"^(?P<int>[0-9]{1,12})(?:\.(?P<frac>[0-9]+))?$"
_INT_SECONDS = r"^[0-9]{1,12}$"
_COUNT = r"^[0-9]{1,18}$"


@dataclass(frozen=True)
class Seconds:
    """Parsed seconds: µs per row (0 where not ``ok``), and which rows had sub-µs digits."""

    us: pa.Array
    ok: pa.Array
    sub_us: pa.Array


def parse_seconds(raw: pa.Array) -> Seconds:
    """Decimal seconds strings (``5``, ``19440110.0``) as exact int64 microseconds.

    The digits are split as text, never through a float, so ``19440110.000001`` is exact.
    Digits finer than 1 µs are rounded half to even, like ``round(Decimal(s) * 10**6)``.
    """
    whole_only = pc.match_substring_regex(raw, _INT_SECONDS)
    if pc.all(whole_only).as_py():  # files 1-2: integers only
        us = pc.multiply(pc.cast(raw, pa.int64()), 1_000_000)
        return Seconds(us, whole_only, pc.invert(whole_only))
    parts = pc.extract_regex(raw, _SECONDS)
    ok = parts.is_valid()
    whole = pc.cast(pc.fill_null(pc.struct_field(parts, "int"), "0"), pa.int64())
    frac = pc.utf8_rpad(pc.fill_null(pc.struct_field(parts, "frac"), ""), 7, "0")
    micro = pc.cast(pc.utf8_slice_codeunits(frac, 0, 6), pa.int64())
    seventh = pc.cast(pc.utf8_slice_codeunits(frac, 6, 7), pa.int64())
    beyond = pc.match_substring_regex(pc.utf8_slice_codeunits(frac, 7), "[1-9]")
    odd = pc.equal(pc.bit_wise_and(micro, 1), 1)
    up = pc.or_(pc.greater(seventh, 5),
                pc.and_(pc.equal(seventh, 5), pc.or_(beyond, odd)))
    us = pc.add(pc.add(pc.multiply(whole, 1_000_000), micro), pc.cast(up, pa.int64()))
    us = pc.if_else(ok, us, 0)
    sub_us = pc.and_(ok, pc.or_(pc.not_equal(seventh, 0), beyond))
    return Seconds(us, ok, sub_us)


def seconds_form(raw: pa.Array, ok: pa.Array) -> dict[str, Any] | None:
    """How a column writes its seconds, from its valid values, so they can be written back.

    ``int``: ``5`` (a non-whole value is then written like ``float``); ``float``: the shortest
    decimal with at least one digit, what Python prints for a float (``19440110.0``, ``2.25``);
    ``fixed``: always ``digits`` fractional digits (``5.000``). None when there is no value.
    """
    values = pc.filter(raw, ok)
    if not len(values):
        return None
    dotted = pc.match_substring(values, ".")
    if not pc.all(dotted).as_py():
        return {"form": "int"}
    digits = pc.subtract(pc.utf8_length(values), pc.add(pc.find_substring(values, "."), 1))
    lo, hi = pc.min_max(digits).values()
    if lo == hi and lo.as_py() > 1 and pc.any(pc.ends_with(values, "0")).as_py():
        return {"form": "fixed", "digits": lo.as_py()}
    return {"form": "float"}


def format_seconds(us: pa.Array, form: dict[str, Any]) -> pa.Array:
    """Non-negative microseconds as seconds text in ``form`` (see :func:`seconds_form`).

    Null stays null. Never loses a microsecond: a value the form cannot hold exactly is
    written in the shortest exact decimal instead.
    """
    secs = pc.divide(us, 1_000_000)  # integer division; us >= 0, so this is the floor
    frac = pc.subtract(us, pc.multiply(secs, 1_000_000))
    whole = pc.cast(secs, pa.string())
    six = pc.utf8_lpad(pc.cast(frac, pa.string()), 6, "0")
    short = pc.utf8_rtrim(six, characters="0")
    short = pc.if_else(pc.equal(short, ""), "0", short)
    digits = short
    kind = form.get("form", "int")
    if kind == "fixed":
        n = int(form["digits"])
        if n >= 6:
            digits = pc.binary_join_element_wise(six, "0" * (n - 6), "")
        else:
            fits = pc.less_equal(pc.utf8_length(short), n)
            digits = pc.if_else(fits, pc.utf8_rpad(short, n, "0"), short)
    text = pc.binary_join_element_wise(whole, digits, ".")
    if kind == "int":
        text = pc.if_else(pc.equal(frac, 0), whole, text)
    return text


def log_type_of(service: pa.Array) -> pa.Array:
    """The ``Log Type`` text of each service: the inverse of :data:`LOG_TYPES`, other values
    verbatim, null as empty."""
    out = pc.fill_null(service, "")
    for svc, log in SERVICES.items():
        out = pc.if_else(pc.equal(out, svc), log, out)
    return out


def _blank_to_null(raw: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(raw, ""), pa.scalar(None, pa.string()), raw)


def _is_count(raw: pa.Array) -> pa.Array:
    return pc.match_substring_regex(raw, _COUNT)


def _differs(ok: pa.Array, rebuilt: pa.Array, raw: pa.Array) -> pa.Array:
    """Rows with a valid value whose text a writer would not rebuild byte for byte."""
    return pc.and_(ok, pc.fill_null(pc.not_equal(rebuilt, raw), True))


def _extra(b: CsvBatch, kept: dict[str, pa.Array], unknown: list[str]) -> pa.Array | None:
    """``extra`` JSON: unknown columns, and raw values of ``kept`` columns where masked."""
    masks = {c: m for c, m in kept.items() if pc.any(m).as_py()}
    if not masks and not unknown:
        return None
    out: list[str | None] = [None] * b.num_rows
    rows: dict[int, dict[str, str]] = {}
    if unknown:
        values = {c: b.columns[c].to_pylist() for c in unknown}
        rows = {i: {c: values[c][i] for c in unknown} for i in range(b.num_rows)}
    for col, mask in masks.items():  # rare: only rows with an unusual spelling
        raw = b.columns[col]
        for i in pc.indices_nonzero(mask).to_pylist():
            rows.setdefault(i, {})[col] = raw[i].as_py()
    for i, row in rows.items():
        out[i] = json.dumps(row, ensure_ascii=False)
    return pa.array(out, pa.string())


@dataclass
class _State:
    """What the read carries from block to block."""

    last: int | None = None  # arrival of the previous valid row, for the order check
    head: list[tuple[int | None, str]] = field(default_factory=list)  # first rows' Timestamps
    head_checked: bool = False


class BurstGPTCSV(NativeFormat):
    """BurstGPT release CSV, 6- or 8-column layout."""

    name = "burstgpt-csv"
    description = ("BurstGPT CSV (Timestamp,[Session ID,Elapsed time,]Model,Request tokens,"
                   "Response tokens,Total tokens,Log Type)")
    time = TimeSemantics(
        kind="relative", native_format="seconds as an integer (files 1-2) or float with .0 "
        "(file 3)", zone="UTC+8", zone_assumed=False, resolution="1s",
        origin="00:00:00 UTC+8 of an undisclosed day 0 (not the first row): arrival_us = "
        "Timestamp x 1e6, so the shards share one time axis")

    def sniff(self, first_line: str) -> bool:
        return set(REQUIRED) <= set(split_header(first_line))

    def read(self, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        ctx.meta["time_origin"] = None  # relative source: day 0 is not published
        state = _State()
        for b in iter_csv(ctx, REQUIRED, OPTIONAL):
            layout: dict[str, Any] = ctx.meta["native_layout"]
            kept: dict[str, pa.Array] = {}
            cols: dict[str, pa.Array] = {
                "request_id": row_index(b.start, b.num_rows),
                "source_row": row_index(b.start, b.num_rows),
            }
            arrival = self._seconds(ctx, b, "Timestamp", "timestamp_form", layout, kept)
            cols["arrival_us"] = arrival
            self._check_order(ctx, b, arrival, state)
            self._check_fabricated(ctx, b, arrival, state, final=False)

            inputs = parse_counts(ctx, b, "Request tokens")
            outputs = parse_counts(ctx, b, "Response tokens")
            totals = parse_counts(ctx, b, "Total tokens")
            self._check_totals(ctx, b, inputs, outputs, totals, kept)
            for col, values in (("Request tokens", inputs), ("Response tokens", outputs)):
                raw = b.columns[col]
                kept[col] = _differs(_is_count(raw), pc.cast(values, pa.string()), raw)
            cols["input_tokens"] = inputs
            cols["output_tokens"] = outputs
            cols["failed"] = pc.equal(outputs, 0)
            cols["model"] = _blank_to_null(b.columns["Model"])
            cols["service"] = self._service(ctx, b, kept)
            if "Session ID" in b.columns:
                cols["session_id"] = _blank_to_null(b.columns["Session ID"])
            if "Elapsed time" in b.columns:
                cols["e2e_latency_us"] = self._seconds(ctx, b, "Elapsed time", "elapsed_form",
                                                       layout, kept, allow_empty=True)
            unknown = [c for c in b.columns if c not in REQUIRED + OPTIONAL]
            extra = _extra(b, kept, unknown)
            if extra is not None:
                cols["extra"] = extra
            yield make_batch(b.num_rows, cols)
        self._check_fabricated(ctx, None, None, state, final=True)

    @staticmethod
    def _seconds(ctx: ReadContext, b: CsvBatch, col: str, form_key: str,
                 layout: dict[str, Any], kept: dict[str, pa.Array], allow_empty: bool = False
                 ) -> pa.Array:
        """A seconds column as µs (null where empty or bad), bad values reported."""
        raw = b.columns[col]
        t = parse_seconds(raw)
        bad = pc.invert(t.ok)
        if pc.any(bad).as_py():
            empty = pc.equal(raw, "")
            negative = pc.and_(bad, pc.match_substring_regex(raw, r"^-[0-9]"))
            other = pc.and_(bad, pc.invert(pc.or_(negative, empty)))
            if not allow_empty:
                report_rows(ctx, b, empty, col, "missing", "empty value; expected seconds")
            report_rows(ctx, b, negative, col, "negative",
                        "negative seconds; expected a non-negative number")
            report_rows(ctx, b, other, col, "not-seconds",
                        "expected non-negative seconds such as 5 or 19440110.0")
        report_rows(ctx, b, t.sub_us, col, "sub-microsecond",
                    "digits finer than 1 µs are rounded; the raw value is kept in extra",
                    level="warning")
        if form_key not in layout:
            form = seconds_form(raw, t.ok)
            if form is not None:
                layout[form_key] = form
        form = layout.get(form_key, {"form": "int"})
        kept[col] = _differs(t.ok, format_seconds(t.us, form), raw)
        return pc.if_else(t.ok, t.us, pa.scalar(None, pa.int64()))

    @staticmethod
    def _check_totals(ctx: ReadContext, b: CsvBatch, inputs: pa.Array, outputs: pa.Array,
                      totals: pa.Array, kept: dict[str, pa.Array]) -> None:
        """Total tokens must be Request + Response; it is derivable, so it is not stored."""
        raw = b.columns["Total tokens"]
        ok_total = _is_count(raw)
        both = pc.and_(_is_count(b.columns["Request tokens"]),
                       _is_count(b.columns["Response tokens"]))
        expected = pc.add(inputs, outputs)
        wrong = pc.and_(pc.and_(both, ok_total), pc.not_equal(totals, expected))
        if pc.any(wrong).as_py():
            for i in pc.indices_nonzero(wrong).to_pylist():
                ctx.report.error("total", ctx.label,
                                 f"Total tokens must equal Request tokens + Response tokens "
                                 f"= {expected[i].as_py()}", line=b.line(i),
                                 column="Total tokens", value=raw[i].as_py())
        kept["Total tokens"] = _differs(ok_total, pc.cast(expected, pa.string()), raw)

    @staticmethod
    def _service(ctx: ReadContext, b: CsvBatch, kept: dict[str, pa.Array]) -> pa.Array:
        """``Log Type`` as a service name; other values kept verbatim and warned about."""
        raw = b.columns["Log Type"]
        known = pc.is_in(raw, value_set=pa.array(list(LOG_TYPES), pa.string()))
        service = raw
        for log, svc in LOG_TYPES.items():
            service = pc.if_else(pc.equal(raw, log), svc, service)
        if pc.all(known).as_py():
            return service
        report_rows(ctx, b, pc.invert(known), "Log Type", "log-type",
                    "expected 'Conversation log' or 'API log'; kept verbatim in service",
                    level="warning")
        # Only an empty Log Type falls back to the registry's service for the trace.
        fallback = constant(ctx.service, b.num_rows, pa.string())
        service = pc.if_else(pc.equal(raw, ""), fallback, service)
        kept["Log Type"] = _differs(pc.invert(known), log_type_of(service), raw)
        return service

    @staticmethod
    def _check_order(ctx: ReadContext, b: CsvBatch, arrival: pa.Array, state: _State) -> None:
        """Warn on each row that arrives before the row above it (row order is kept)."""
        prev = pa.concat_arrays([constant(state.last, 1, pa.int64()),
                                 arrival.slice(0, b.num_rows - 1)])
        earlier = pc.fill_null(pc.less(arrival, prev), False)
        report_rows(ctx, b, earlier, "Timestamp", "order",
                    "arrives before the previous row (row order is kept)", level="warning")
        valid = arrival.drop_null()
        if len(valid):
            state.last = valid[-1].as_py()

    @staticmethod
    def _check_fabricated(ctx: ReadContext, b: CsvBatch | None, arrival: pa.Array | None,
                          state: _State, final: bool) -> None:
        """Reject the known fake 'BurstGPT_1.csv' whose Timestamps go 0, 1, 2, ... (SOURCES.md:
        'Fabricated data warning'); real shards start at 5 s or later, with irregular gaps."""
        if state.head_checked:
            return
        if b is not None and arrival is not None:
            need = FABRICATED_ROWS - len(state.head)
            raw = b.columns["Timestamp"].slice(0, need).to_pylist()
            state.head.extend(zip(arrival.slice(0, need).to_pylist(), raw, strict=True))
        if len(state.head) < FABRICATED_ROWS and not final:
            return
        state.head_checked = True
        if len(state.head) >= 3 and [us for us, _ in state.head] == [
                k * 1_000_000 for k in range(len(state.head))]:
            ctx.report.error(
                "fabricated", ctx.label,
                f"Timestamp goes 0, 1, 2, ... in steps of 1 s over the first {len(state.head)} "
                "rows: the signature of a fabricated 'BurstGPT' file (e.g. H0GUN3/ARL "
                "data/BurstGPT_1.csv), not an HPMLL/BurstGPT release; fetch the real file with "
                "`llmtraces fetch burstgpt`", line=2, column="Timestamp",
                value=",".join(r for _, r in state.head))


FORMATS = (BurstGPTCSV(),)
