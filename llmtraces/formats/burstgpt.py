"""BurstGPT (github.com/HPMLL/BurstGPT), request logs of a regional Azure OpenAI GPT provider:
the ``burstgpt-csv`` reader and the ``burstgpt`` writer.

Reader: two layouts, both read by header name:

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

Writer: unified trace -> BurstGPT release CSV, in the layout the trace came in. A trace read
from a BurstGPT file is written back with its own header (column order, unknown columns),
number spellings (``5`` / ``5.0``), line ends and final newline, and the raw values its reader
kept in ``extra``, so a release file comes back byte for byte. Any other trace gets the
6-column release order, which vLLM's position-based reader expects, or the 8-column
``BurstGPT_3`` order when it has sessions or latencies. ``Timestamp`` is ``arrival_us / 1e6`` on
the trace's own axis (BurstGPT times are relative), ``Total tokens`` is Request + Response, and
a failed request is written with ``Response tokens`` 0, the only way BurstGPT marks a failure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from ..atomic import atomic_path
from ..errors import InvalidTraceError
from ..report import KEEP_PER_CODE
from ..schema import TraceStream, constant, make_batch, row_index
from ..text import ReadContext
from ..text.csv import CsvBatch, counts_as_written, iter_csv, report_rows, split_header
from ..text.limits import check_json_cells
from ..text.seconds import Seconds, bad_kinds, parse_seconds
from ..text.seconds import differs as _differs
from ..text.seconds import format_seconds as _format_us
from ..timing import TimeSemantics
from . import NativeFormat, Writer

# --- reading -------------------------------------------------------------------------------------

REQUIRED = ("Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type")
OPTIONAL = ("Session ID", "Elapsed time")
#: The release order of each layout; writers use it for traces that did not come from a file.
COLUMNS_6 = REQUIRED
COLUMNS_8 = ("Timestamp", "Session ID", "Elapsed time") + REQUIRED[1:]
LOG_TYPES = {"Conversation log": "conversation", "API log": "api"}
SERVICES = {v: k for k, v in LOG_TYPES.items()}
#: How many leading rows the fabricated-clone check looks at (at least 3 are needed).
FABRICATED_ROWS = 10

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
    digits = pc.subtract(pc.binary_length(values), pc.add(pc.find_substring(values, "."), 1))
    lo, hi = pc.min_max(digits).values()
    if lo == hi and lo.as_py() > 1 and pc.any(pc.ends_with(values, "0")).as_py():
        return {"form": "fixed", "digits": lo.as_py()}
    return {"form": "float"}


def format_seconds(us: pa.Array, form: dict[str, Any]) -> pa.Array:
    """Non-negative µs as seconds text in a recorded ``form`` (see :func:`seconds_form`).

    Null stays null; a value the form cannot hold exactly gets its shortest exact decimal.
    """
    kind = form.get("form", "int")
    if kind == "fixed":
        return _format_us(us, "fixed", int(form["digits"]))
    return _format_us(us, "int" if kind == "int" else "float")


def log_type_of(service: pa.Array) -> pa.Array:
    """The ``Log Type`` text of each service: the inverse of :data:`LOG_TYPES`, other values
    verbatim, null as empty."""
    out = pc.fill_null(service, "")
    for svc, log in SERVICES.items():
        out = pc.if_else(pc.equal(out, svc), log, out)
    return out


@lru_cache(maxsize=1)
def _log_type_arrays() -> tuple[pa.Array, pa.Array]:
    # Built on first use, not at import: pa.array() imports pandas, and every format module is
    # imported whenever the registry is loaded.
    return pa.array(list(LOG_TYPES), pa.string()), pa.array(list(SERVICES), pa.string())


def _blank_to_null(raw: pa.Array) -> pa.Array:
    blank = pc.equal(raw, "")
    if not pc.any(blank).as_py():
        return raw
    return pc.if_else(blank, pa.scalar(None, pa.string()), raw)


def _respelled(raw: pa.Array, t: Seconds, form: dict[str, Any]) -> pa.Array:
    """Valid rows whose text ``format_seconds(t.us, form)`` would not give back, found from
    the text alone (a few cheap string tests instead of formatting every value)."""
    kind = form.get("form")
    if kind not in ("int", "float"):
        return _differs(t.ok, format_seconds(t.us, form), raw)
    lead = pc.and_(pc.starts_with(raw, "0"), pc.invert(pc.or_(pc.starts_with(raw, "0."),
                                                              pc.equal(raw, "0"))))
    if t.spelling == kind:  # every value is `5` (int) or `5.0` (float)
        return lead
    # "decimal": every value is valid and has a point (no search for it then)
    dotted = pa.scalar(True) if t.spelling == "decimal" else pc.match_substring(raw, ".")
    zero_end = pc.and_(dotted, pc.ends_with(raw, "0"))
    if kind == "float":  # shortest decimal, at least one digit: `5.0`, `2.25`
        odd = pc.or_(pc.invert(dotted), pc.and_(zero_end, pc.invert(pc.ends_with(raw, ".0"))))
    else:  # `5` where whole, else the shortest decimal: `2.25`
        odd = zero_end
    return pc.and_(t.ok, pc.or_(pc.or_(lead, odd), t.sub_us))


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
            index = row_index(b.start, b.num_rows)  # one array for both columns
            cols: dict[str, pa.Array] = {"request_id": index, "source_row": index}
            arrival = self._seconds(ctx, b, "Timestamp", "timestamp_form", layout, kept)
            cols["arrival_us"] = arrival
            self._check_order(ctx, b, arrival, state)
            self._check_fabricated(ctx, b, arrival, state, final=False)

            (inputs, outputs, totals), ok = self._counts(ctx, b, REQUIRED[2:5], kept)
            self._check_totals(ctx, b, inputs, outputs, totals, ok)
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
        if not pc.all(t.ok).as_py():
            empty, negative, other = bad_kinds(raw, t.ok)
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
        kept[col] = _respelled(raw, t, layout.get(form_key, {"form": "int"}))
        if t.spelling is not None:
            return t.us
        return pc.if_else(t.ok, t.us, pa.scalar(None, pa.int64()))

    @staticmethod
    def _counts(ctx: ReadContext, b: CsvBatch, columns: tuple[str, ...],
                kept: dict[str, pa.Array]) -> tuple[list[pa.Array], dict[str, pa.Array]]:
        """Token count columns as int64, and which rows are valid counts (no entry for a
        column whose every row is); rows written with a leading zero go in ``kept``."""
        values, ok = [], {}
        for col in columns:
            count, valid, zero = counts_as_written(ctx, b, col)
            values.append(count)
            if valid is not None:
                ok[col] = valid
            if zero is not None:
                kept[col] = zero
        return values, ok

    @staticmethod
    def _check_totals(ctx: ReadContext, b: CsvBatch, inputs: pa.Array, outputs: pa.Array,
                      totals: pa.Array, ok: dict[str, pa.Array]) -> None:
        """Total tokens must be Request + Response; it is derivable, so it is not stored.
        Rows where a count is not valid (``ok``) are not checked."""
        expected = pc.add(inputs, outputs)
        wrong = pc.not_equal(totals, expected)
        for valid in ok.values():
            wrong = pc.and_(valid, wrong)
        if not pc.any(wrong).as_py():
            return
        idx = pc.indices_nonzero(wrong)
        # Like report_rows: only the problems the report keeps are built, the rest counted.
        room = max(0, KEEP_PER_CODE - ctx.report.counts[("error", "total")])
        raw = b.columns["Total tokens"]
        for i in idx.slice(0, room).to_pylist():
            ctx.report.error("total", ctx.label,
                             f"Total tokens must equal Request tokens + Response tokens "
                             f"= {expected[i].as_py()}", line=b.line(i),
                             column="Total tokens", value=raw[i].as_py())
        ctx.report.counts[("error", "total")] += max(0, len(idx) - room)

    @staticmethod
    def _service(ctx: ReadContext, b: CsvBatch, kept: dict[str, pa.Array]) -> pa.Array:
        """``Log Type`` as a service name; other values kept verbatim and warned about."""
        raw = b.columns["Log Type"]
        names, services = _log_type_arrays()
        service = pc.take(services, pc.index_in(raw, value_set=names))  # null where unknown
        if not service.null_count:
            return service
        known = service.is_valid()
        service = pc.if_else(known, service, raw)
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


# --- writing -------------------------------------------------------------------------------------

NATIVE = "burstgpt-csv"


@dataclass(frozen=True)
class _Plan:
    """What the whole file is written with, decided from the metadata and the first batch."""

    header: tuple[str, ...]
    native: bool  # the trace came from a BurstGPT file: its extra holds raw native values
    newline: str
    final_newline: bool
    #: The native layout; live while a reader streams, as it learns a column's number form
    #: from the first block that has a value.
    layout: dict[str, Any]
    default_forms: tuple[dict[str, Any], dict[str, Any]] = ({"form": "int"}, {"form": "int"})

    @classmethod
    def of(cls, meta: dict[str, Any], batch: pa.RecordBatch | None) -> _Plan:
        layout = meta.get("native_layout") or {}
        if meta.get("native_format") == NATIVE and layout.get("columns"):
            return cls(tuple(layout["columns"]), True, layout.get("newline", "\n"),
                       layout.get("final_newline", True) is not False, layout)
        if batch is not None and _has_v3_fields(batch):  # like BurstGPT_3: 19440110.0, 43
            return cls(COLUMNS_8, False, "\n", True, {}, ({"form": "float"}, {"form": "int"}))
        return cls(COLUMNS_6, False, "\n", True, {})

    def form(self, column: str) -> dict[str, Any]:
        """How the seconds of ``Timestamp`` or ``Elapsed time`` are written."""
        if column == "Timestamp":
            return self.layout.get("timestamp_form") or self.default_forms[0]
        return self.layout.get("elapsed_form") or self.default_forms[1]


def _has_v3_fields(batch: pa.RecordBatch) -> bool:
    n = batch.num_rows
    return (batch.column("session_id").null_count < n
            or batch.column("e2e_latency_us").null_count < n)


def _quote(col: pa.Array) -> pa.Array:
    """CSV-quote the values that need it (BurstGPT's own values never do)."""
    if not _any_byte_of(col, b'",\r\n'):
        return col
    needs = pc.match_substring_regex(col, '[",\r\n]')
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(col, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, col)


def _any_byte_of(col: pa.Array, chars: bytes) -> bool:
    """Whether the string data of ``col`` holds any of ``chars``, by a memchr over one copy of
    its buffer (bytes outside a sliced array can only cause a needless per-row check)."""
    data = col.buffers()[2]
    if data is None or not data.size:
        return False
    raw = data.to_pybytes()
    return any(raw.find(bytes([c])) >= 0 for c in chars)


def _kept(batch: pa.RecordBatch, names: tuple[str, ...]) -> dict[str, pa.Array]:
    """Raw native values kept in ``extra`` by the reader, per column (null where none)."""
    extra = batch.column("extra")
    if extra.null_count == batch.num_rows:
        return {}
    out: dict[str, list[str | None]] = {n: [None] * batch.num_rows for n in names}
    for i in pc.indices_nonzero(check_json_cells(extra, "extra").is_valid()).to_pylist():
        row = json.loads(extra[i].as_py())
        for n in names:
            if n in row:
                out[n][i] = row[n]
    return {n: pa.array(v, pa.string()) for n, v in out.items() if any(x is not None for x in v)}


def _counts(batch: pa.RecordBatch, start: int) -> tuple[pa.Array, pa.Array]:
    """Request and Response tokens; a failed request has Response tokens 0."""
    failed = pc.fill_null(batch.column("failed"), False)
    outputs = batch.column("output_tokens")
    missing = pc.and_(pc.invert(failed), outputs.is_null())
    if pc.any(missing).as_py():
        i = pc.indices_nonzero(missing)[0].as_py()
        raise InvalidTraceError(f"a BurstGPT CSV needs Response tokens for every request that "
                                f"did not fail; request_id {start + i} has output_tokens null")
    return batch.column("input_tokens"), pc.if_else(failed, 0, outputs)


def _arrivals(batch: pa.RecordBatch, start: int) -> pa.Array:
    arrival = batch.column("arrival_us")
    bad = pc.fill_null(pc.less(arrival, 0), True)
    if pc.any(bad).as_py():
        i = pc.indices_nonzero(bad)[0].as_py()
        raise InvalidTraceError(
            f"a BurstGPT CSV needs a non-negative time for every request; request_id "
            f"{start + i} has arrival_us {arrival[i].as_py()}")
    return arrival


def _columns(batch: pa.RecordBatch, plan: _Plan, start: int) -> list[pa.Array]:
    inputs, outputs = _counts(batch, start)
    rebuilt: dict[str, pa.Array] = {
        "Timestamp": format_seconds(_arrivals(batch, start), plan.form("Timestamp")),
        "Session ID": _quote(pc.fill_null(batch.column("session_id"), "")),
        "Elapsed time": pc.fill_null(format_seconds(batch.column("e2e_latency_us"),
                                                    plan.form("Elapsed time")), ""),
        "Model": _quote(pc.fill_null(batch.column("model"), "")),
        "Request tokens": pc.cast(inputs, pa.string()),
        "Response tokens": pc.cast(outputs, pa.string()),
        "Total tokens": pc.cast(pc.add(inputs, outputs), pa.string()),
        "Log Type": _quote(log_type_of(batch.column("service"))),
    }
    kept = _kept(batch, plan.header) if plan.native else {}
    cols = []
    for name in plan.header:
        col = rebuilt.get(name)
        raw = kept.get(name)
        if raw is not None:
            quoted = _quote(pc.fill_null(raw, ""))
            col = quoted if col is None else pc.if_else(raw.is_valid(), quoted, col)
        cols.append(col if col is not None else constant("", batch.num_rows, pa.string()))
    return cols


def _write_lines(fh: BinaryIO, lines: pa.Array) -> None:
    """Write the bytes of a string array, values back to back, without Python strings."""
    if not len(lines):
        return
    offsets = lines.buffers()[1]
    first, last = (int.from_bytes(offsets[4 * k:4 * k + 4], "little", signed=True)
                   for k in (lines.offset, lines.offset + len(lines)))
    fh.write(memoryview(lines.buffers()[2])[first:last])


def write(stream: TraceStream, dest: Path) -> int:
    """Write the stream as a BurstGPT release CSV at ``dest``, atomically."""
    rows = 0
    plan: _Plan | None = None
    with atomic_path(dest) as tmp, tmp.open("wb") as fh:
        for batch in stream.batches:
            if plan is None:
                plan = _Plan.of(stream.meta, batch)
                fh.write(",".join(plan.header).encode())
            elif not plan.native and len(plan.header) == 6 and _has_v3_fields(batch):
                raise InvalidTraceError(
                    "sessions or latencies appear after the first batch, which had none, so the "
                    "6-column layout already chosen cannot hold them")
            cols = _columns(batch, plan, rows)
            cols[0] = pc.binary_join_element_wise("", cols[0], plan.newline)  # newline first
            _write_lines(fh, pc.binary_join_element_wise(*cols, ","))
            rows += batch.num_rows
        if plan is None:
            plan = _Plan.of(stream.meta, None)
            fh.write(",".join(plan.header).encode())
        if plan.final_newline:
            fh.write(plan.newline.encode())
    return rows


WRITER = Writer("burstgpt", ".csv", "BurstGPT release CSV (Timestamp,[Session ID,Elapsed time,]"
                "Model,Request tokens,Response tokens,Total tokens,Log Type), seconds", write)
