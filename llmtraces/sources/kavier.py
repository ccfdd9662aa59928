"""Kavier traces (AtLarge Tracer ``data/surf_traces/raw_{prefill,decode}.csv``): latency sweeps.

Each row is one measured completion on SURF (NVIDIA A10, vLLM 0.9.0, Llama-3-8B), not a request
of a production stream: there are no arrival times, so ``arrival_us`` stays null. Two layouts
share one format and differ in the fifth column:

* prefill sweep, ``requested_response_size``: the size of the prompt sent (despite the name;
  ``response_size`` is always 1 and latency grows with it) -> ``input_tokens``;
  ``response_size`` -> ``output_tokens``.
* decode sweep, ``requested_length``: the response length the prompt asked for ("Generate an
  exactly N word story"); the prompt length is not recorded, so ``input_tokens`` is 0 and the
  requested length stays in ``extra``; ``response_size`` (the measured length) ->
  ``output_tokens``.

``latency_s`` -> ``e2e_latency_us`` exactly (decimal text, never a float); ``llm`` -> ``model``
without the file's leading space. Every other field (and any text the writer would not rebuild
byte for byte: the raw ``llm``, ``7.270``) goes to ``extra`` verbatim.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..registry import TimeSemantics
from ..schema import make_batch, row_index
from . import NativeFormat, ReadContext
from ._csv import CsvBatch, iter_csv, parse_counts, report_rows, split_header
from ._seconds import bad_kinds, differs, format_seconds, parse_seconds
from .vidur import json_objects

COMMON = ("provider", "gpu", "engine", "llm")
PREFILL_SIZE = "requested_response_size"
DECODE_SIZE = "requested_length"
RESPONSE = "response_size"
LATENCY = "latency_s"
THROUGHPUT = "throughput_tokens_per_s"
PREFILL = (*COMMON, PREFILL_SIZE, RESPONSE, LATENCY, THROUGHPUT)
DECODE = (*COMMON, DECODE_SIZE, RESPONSE, LATENCY, THROUGHPUT)
MODEL = "llm"

#: How latency_s is written: ``{"style": "fixed", "digits": n}`` or ``{"style": "float"}``
#: (shortest decimal, ``0.65``); values neither rebuilds are kept raw in ``extra``.
LatencyStyle = dict[str, Any]


def sweep_of(header: list[str]) -> str | None:
    """``"prefill"`` or ``"decode"`` for a Kavier header (by column names), else None."""
    names = set(header)
    if set(PREFILL) <= names and DECODE_SIZE not in names:
        return "prefill"
    if set(DECODE) <= names and PREFILL_SIZE not in names:
        return "decode"
    return None


def format_latency(us: pa.Array, style: LatencyStyle) -> pa.Array:
    """int64 µs as ``latency_s`` text in a file's style."""
    if style.get("style") == "fixed":
        return format_seconds(us, "fixed", int(style.get("digits", 3)), misfit="shortest")
    return format_seconds(us, "float")


def latency_style(raw: pa.Array, us: pa.Array, ok: pa.Array) -> LatencyStyle:
    """The style that rebuilds most valid ``latency_s`` values of one block."""
    raw, us = raw.filter(ok), us.filter(ok)
    if not len(raw):
        return {"style": "float"}
    digits = len(raw[0].as_py().partition(".")[2])
    candidates: list[LatencyStyle] = [{"style": "fixed", "digits": digits}, {"style": "float"}]
    scores = [pc.sum(pc.equal(format_latency(us, s), raw)).as_py() or 0 for s in candidates]
    return candidates[scores.index(max(scores))]


def _counts(ctx: ReadContext, b: CsvBatch, column: str) -> tuple[pa.Array, pa.Array]:
    """A count column as int64 (bad cells reported) and its raw text where ``str(int)`` would
    not rebuild it (``064``), else null."""
    values = parse_counts(ctx, b, column)
    raw = b.columns[column]
    same = pc.equal(pc.cast(values, pa.string()), raw)
    return values, pc.if_else(same, pa.scalar(None, pa.string()), raw)


def _latency(ctx: ReadContext, b: CsvBatch, style: LatencyStyle | None
             ) -> tuple[pa.Array, pa.Array, LatencyStyle]:
    """``latency_s`` as exact µs (null where bad, reported), the raw text the style would not
    rebuild, and the style (chosen on the first block)."""
    raw = b.columns[LATENCY]
    t = parse_seconds(raw)
    if not pc.all(t.ok).as_py():
        empty, negative, other = bad_kinds(raw, t.ok, negative="^-")
        report_rows(ctx, b, empty, LATENCY, "missing", "empty value; expected seconds")
        report_rows(ctx, b, negative, LATENCY, "negative",
                    "negative latency; expected seconds >= 0")
        report_rows(ctx, b, other, LATENCY, "not-number",
                    "expected a decimal number of seconds (e.g. 0.053)")
    report_rows(ctx, b, t.sub_us, LATENCY, "sub-microsecond",
                "digits finer than 1 µs do not fit e2e_latency_us (rounded to the nearest µs); "
                "the raw value is kept in extra", level="warning")
    style = style or latency_style(raw, t.us, t.ok)
    keep = differs(t.ok, format_latency(t.us, style), raw)
    us = pc.if_else(t.ok, t.us, pa.scalar(None, pa.int64()))
    return us, pc.if_else(keep, raw, pa.scalar(None, pa.string())), style


def read_kavier(ctx: ReadContext) -> Iterator[pa.RecordBatch]:
    """Stream a Kavier prefill or decode sweep CSV as unified batches (one row per measurement)."""
    from . import read_first_line

    sweep = sweep_of(split_header(read_first_line(ctx.path)))
    size = DECODE_SIZE if sweep == "decode" else PREFILL_SIZE
    style: LatencyStyle | None = None
    for b in iter_csv(ctx, DECODE if sweep == "decode" else PREFILL):
        ctx.meta["native_layout"]["sweep"] = sweep or "prefill"
        n = b.num_rows
        requested, requested_raw = _counts(ctx, b, size)
        response, response_raw = _counts(ctx, b, RESPONSE)
        latency, latency_raw, style = _latency(ctx, b, style)
        ctx.meta["native_layout"]["latency"] = style
        llm = b.columns[MODEL]
        model = pc.utf8_trim_whitespace(llm)
        cols: dict[str, pa.Array] = {
            "request_id": row_index(b.start, n),
            "source_row": row_index(b.start, n),
            "input_tokens": requested if sweep != "decode" else pa.array([0] * n, pa.int64()),
            "output_tokens": response,
            "model": pc.if_else(pc.equal(model, ""), pa.scalar(None, pa.string()), model),
            "e2e_latency_us": latency,
        }
        if ctx.service:
            cols["service"] = pc.fill_null(pa.nulls(n, pa.string()), ctx.service)
        kept: dict[str, pa.Array] = {
            MODEL: pc.if_else(pc.equal(model, llm), pa.scalar(None, pa.string()), llm),
            # decode: the requested length has no column, so its text is always kept
            size: b.columns[size] if sweep == "decode" else requested_raw,
            RESPONSE: response_raw,
            LATENCY: latency_raw,
        }
        fields = [(name, kept[name] if name in kept else b.columns[name]) for name in b.columns]
        extra = json_objects(fields)
        if extra is not None:
            cols["extra"] = extra
        yield make_batch(n, cols)


class KavierMeasurementsCSV(NativeFormat):
    """Kavier (AtLarge Tracer) prefill or decode latency sweep CSV."""

    name = "kavier-measurements-csv"
    description = ("Kavier/Tracer latency sweep CSV (provider,gpu,engine,llm,"
                   "requested_response_size|requested_length,response_size,latency_s,"
                   "throughput_tokens_per_s), measurements without arrival times")
    time = TimeSemantics(
        kind="none", native_format="no timestamps: latency_s is a duration in decimal seconds",
        resolution="none", origin="none: arrival_us is null")

    def sniff(self, first_line: str) -> bool:
        return sweep_of(split_header(first_line)) is not None

    def read(self, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        return read_kavier(ctx)


FORMATS = (KavierMeasurementsCSV(),)
