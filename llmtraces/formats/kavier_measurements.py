"""Kavier traces (AtLarge Tracer ``data/surf_traces/``), latency sweeps and GPU samples: the
``kavier-measurements-csv`` and ``kavier-performance-csv`` readers and the
``kavier-measurements`` writer.

Reader ``kavier-measurements-csv``: ``raw_{prefill,decode}.csv``. Each row is one measured
completion on SURF (NVIDIA A10, vLLM 0.9.0, Llama-3-8B), not a request of a production stream:
there are no arrival times, so ``arrival_us`` stays null. Two layouts share one format and
differ in the fifth column:

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

Reader ``kavier-performance-csv``: ``performance_tracing.csv``, nvidia-smi utilisation samples
(``timestamp,prompt_id,input_tokens,output_tokens,size,util_gpu,util_mem``, CRLF), taken every
~100 ms while Tracer sent prompts one at a time. One unified row per **sample**, not per
request: ``arrival_us`` is the sample's time since the first sample (the timestamps carry no
zone; they are read as UTC+02:00, see :data:`PERFORMANCE_TIME`), ``input_tokens`` and
``output_tokens`` are the counts of the prompt the sample is labelled with, and ``prompt_id``,
``size``, ``util_gpu`` and ``util_mem`` stay in ``extra`` verbatim.

Writer: unified trace -> Kavier (AtLarge Tracer) measurement CSV, in the layout it came in. Two
Tracer layouts come back byte for byte (header, line ends, final newline or not, and every
verbatim value kept in ``extra``):

* a latency sweep (``raw_prefill.csv`` / ``raw_decode.csv``): latency spelling, the ``llm``
  text with its leading space, provider, gpu, engine, throughput;
* the GPU samples (``performance_tracing.csv``): timestamps rebuilt from ``time_origin +
  arrival_us`` on the file's clock (UTC+02:00, ``2025/06/13 18:44:04.479``), the sample
  fields (prompt_id, size, util_gpu, util_mem) from ``extra``.

Any other trace is written as a prefill-style sweep: ``input_tokens`` as
``requested_response_size``, ``output_tokens`` as ``response_size``, ``e2e_latency_us`` as
``latency_s`` (needed on every row), the model as ``llm`` and the throughput recomputed as
Tracer does, ``(requested + response) / latency`` with 2 decimals.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InvalidTraceError
from ..schema import TraceStream, native_batch
from ..text import ReadContext, read_first_line
from ..text.csv import (
    CsvBatch,
    check_order,
    is_count,
    iter_csv,
    parse_counts,
    report_rows,
    split_header,
)
from ..text.csvwrite import Plan, counts, csv_field, write_csv
from ..text.seconds import bad_kinds, differs, format_seconds, parse_seconds
from ..text.timestamps import epoch_us_of, format_timestamps, timestamp_style, wall_clock
from ..timing import TimeSemantics
from . import NativeFormat, Writer
from .vidur import json_objects

# --- reading -------------------------------------------------------------------------------------

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
            "input_tokens": requested if sweep != "decode" else pa.array([0] * n, pa.int64()),
            "output_tokens": response,
            "model": pc.if_else(pc.equal(model, ""), pa.scalar(None, pa.string()), model),
            "e2e_latency_us": latency,
        }
        kept: dict[str, pa.Array] = {
            MODEL: pc.if_else(pc.equal(model, llm), pa.scalar(None, pa.string()), llm),
            # decode: the requested length has no column, so its text is always kept
            size: b.columns[size] if sweep == "decode" else requested_raw,
            RESPONSE: response_raw,
            LATENCY: latency_raw,
        }
        fields = [(name, kept[name] if name in kept else b.columns[name]) for name in b.columns]
        yield native_batch(b.start, n, cols, service=ctx.service, extra=json_objects(fields))


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


# --- kavier-performance-csv --------------------------------------------------------------------

PERFORMANCE = ("timestamp", "prompt_id", "input_tokens", "output_tokens", "size", "util_gpu",
               "util_mem")
TIMESTAMP = "timestamp"
#: What every sample keeps verbatim: the columns with no unified counterpart.
SAMPLE_FIELDS = ("prompt_id", "size", "util_gpu", "util_mem")
SAMPLE_FORM = "YYYY/MM/DD HH:MM:SS.fff"
#: The zone the zone-less nvidia-smi clock is read in: UTC+02:00 (CEST). Tracer's own sample
#: outputs log nvidia-smi's clock beside ``datetime.utcnow()`` 2 h earlier, and SURF is in the
#: Netherlands, whose summer time (June 2025) is +02:00.
UTC_OFFSET_MIN = 120
PERFORMANCE_TIME = TimeSemantics(
    kind="absolute",
    native_format=f"{SAMPLE_FORM}: nvidia-smi's clock on the GPU host, no zone, sampled every "
                  "~100 ms",
    zone="+02:00", zone_assumed=True, resolution="1ms",
    origin="the first sample's timestamp (time_origin in the metadata)")
#: nvidia-smi ``utilization.gpu`` / ``utilization.memory`` with ``nounits``: integer percents.
_PERCENT = r"^(?:[0-9]|[1-9][0-9]|100)$"


def performance_style(example: str) -> dict[str, object]:
    """How the file writes its timestamps (``2025/06/13 18:44:04.479``), for the writer."""
    return {**timestamp_style(_dashed_date(pa.array([example]))[0].as_py()),
            "date_sep": "/" if example[4:5] == "/" else "-"}


def _dashed_date(raw: pa.Array) -> pa.Array:
    """``2025/06/13 …`` as ``2025-06-13 …``, the form the timestamp parser reads."""
    return pc.replace_substring_regex(raw, r"^([0-9]{4})/([0-9]{2})/([0-9]{2}) ", r"\1-\2-\3 ")


def sample_times(ctx: ReadContext, b: CsvBatch, origin: int | None
                 ) -> tuple[pa.Array, pa.Array, int | None]:
    """Sample times as µs since ``origin`` (the first valid sample, set from this block when
    None; null where bad, reported), the raw text the writer would not rebuild, and the origin.
    """
    raw = b.columns[TIMESTAMP]
    w = wall_clock(ctx, b, TIMESTAMP, f"{SAMPLE_FORM} (nvidia-smi's timestamp)", origin,
                   parse_as=_dashed_date(raw), naive_offset_min=UTC_OFFSET_MIN)
    layout = ctx.meta["native_layout"]
    if w.first is not None:
        layout.update(timestamp=performance_style(raw[w.first].as_py()),
                      utc_offset_min=UTC_OFFSET_MIN)
    keep = pa.nulls(len(raw), pa.string())
    if w.origin is not None:
        local = pc.add(w.times.epoch_us, UTC_OFFSET_MIN * 60_000_000)
        rebuilt = format_timestamps(local, layout["timestamp"])
        keep = pc.if_else(differs(pc.invert(w.times.invalid), rebuilt, raw), raw,
                          pa.scalar(None, pa.string()))
    return w.arrival, keep, w.origin


def _check_samples(ctx: ReadContext, b: CsvBatch) -> None:
    """``prompt_id`` and ``size`` must be non-negative integers (errors); a utilisation that is
    not an integer percent (nvidia-smi writes ``[N/A]`` where it cannot measure) is a warning.
    Their text is kept in ``extra`` either way."""
    for name in ("prompt_id", "size"):
        report_rows(ctx, b, pc.invert(is_count(b.columns[name])), name, "not-integer",
                    "expected a non-negative integer")
    for name in ("util_gpu", "util_mem"):
        odd = pc.invert(pc.match_substring_regex(b.columns[name], _PERCENT))
        report_rows(ctx, b, odd, name, "percent",
                    "expected an integer percent 0..100 (nvidia-smi, nounits); kept verbatim",
                    level="warning")


def read_performance(ctx: ReadContext) -> Iterator[pa.RecordBatch]:
    """Stream a Tracer ``performance_tracing.csv`` as unified batches, one row per sample."""
    origin: int | None = None
    last: int | None = None
    for b in iter_csv(ctx, PERFORMANCE):
        _check_samples(ctx, b)
        arrival, raw_ts, origin = sample_times(ctx, b, origin)
        last = check_order(ctx, b, arrival, TIMESTAMP, last, what="sampled")
        inputs, inputs_raw = _counts(ctx, b, "input_tokens")
        outputs, outputs_raw = _counts(ctx, b, "output_tokens")
        kept = {TIMESTAMP: raw_ts, "input_tokens": inputs_raw, "output_tokens": outputs_raw}
        cols = {"arrival_us": arrival, "input_tokens": inputs, "output_tokens": outputs}
        extra = json_objects([(name, kept.get(name, b.columns[name])) for name in b.columns])
        yield native_batch(b.start, b.num_rows, cols, service=ctx.service, extra=extra)


class KavierPerformanceCSV(NativeFormat):
    """Tracer's nvidia-smi samples taken while prompts ran (``performance_tracing.csv``)."""

    name = "kavier-performance-csv"
    description = ("Kavier/Tracer GPU utilisation samples CSV (timestamp,prompt_id,input_tokens,"
                   "output_tokens,size,util_gpu,util_mem), one row per ~100 ms sample")
    time = PERFORMANCE_TIME

    def sniff(self, first_line: str) -> bool:
        return set(PERFORMANCE) <= set(split_header(first_line))

    def read(self, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        return read_performance(ctx)


FORMATS = (KavierMeasurementsCSV(), KavierPerformanceCSV())


# --- writing -------------------------------------------------------------------------------------

SWEEP = "kavier-measurements-csv"
SAMPLES = "kavier-performance-csv"


def _plan(meta: dict[str, object]) -> Plan:
    layout = meta.get("native_layout") or {}
    assert isinstance(layout, dict)
    fmt = meta.get("native_format")
    if fmt in (SWEEP, SAMPLES) and layout.get("columns"):
        if fmt == SAMPLES:
            # Timestamps are the wall clock of the file's zone: origin + arrival + offset.
            origin = meta.get("time_origin")
            shift = int(layout.get("utc_offset_min", UTC_OFFSET_MIN)) * 60_000_000
            style = {"samples": True, **(layout.get("timestamp") or {})}
            origin_us = (epoch_us_of(origin) if isinstance(origin, str) else 0) + shift
        else:
            style, origin_us = layout.get("latency") or {"style": "float"}, 0
        return Plan(list(layout["columns"]), True, style, layout.get("newline", "\n"),
                    layout.get("final_newline") is not False, origin_us)
    return Plan(list(PREFILL), False, {"style": "fixed", "digits": 3})


def _or_kept(text: pa.Array, kept: dict[str, pa.Array], name: str) -> pa.Array:
    """``text``, except where ``extra`` kept the raw value of ``name``."""
    raw = kept.get(name)
    if raw is None or raw.null_count == len(raw):
        return text
    return pc.if_else(raw.is_valid(), raw, text)


def _throughput(batch: pa.RecordBatch) -> pa.Array:
    """Tracer's ``(requested + response) / latency`` in tokens/s, 2 decimals (empty at 0 s)."""
    total = pc.add(batch.column("input_tokens"), pc.fill_null(batch.column("output_tokens"), 0))
    seconds = pc.divide(pc.cast(batch.column("e2e_latency_us"), pa.float64()), 1e6)
    rate = pc.round(pc.divide(pc.cast(total, pa.float64()), seconds), 2)
    values = [f"{v:.2f}" if v is not None and v == v and v != float("inf") else ""
              for v in rate.to_pylist()]
    return pa.array(values, pa.string())


def _sample_column(name: str, batch: pa.RecordBatch, plan: Plan, kept: dict[str, pa.Array]
                   ) -> pa.Array:
    """One column of a GPU-samples file (``performance_tracing.csv``)."""
    if name == TIMESTAMP:
        arrival = batch.column("arrival_us")
        if arrival.null_count:
            raise InvalidTraceError(f"a Tracer samples CSV needs a time for every sample; "
                                    f"{arrival.null_count:,} rows have none")
        return _or_kept(format_timestamps(pc.add(arrival, plan.origin_us), plan.style), kept,
                        name)
    if name in ("input_tokens", "output_tokens"):
        return _or_kept(counts(batch, name, "Tracer samples"), kept, name)
    return csv_field(pc.fill_null(kept[name], ""))


def write(stream: TraceStream, dest: Path) -> int:
    """Write the stream as a Kavier/Tracer measurement CSV at ``dest``, atomically."""

    def plan_for(first: pa.RecordBatch | None) -> Plan:
        return _plan(stream.meta)

    def column(name: str, batch: pa.RecordBatch, plan: Plan, kept: dict[str, pa.Array]
               ) -> pa.Array:
        if plan.style.get("samples"):
            return _sample_column(name, batch, plan, kept)
        if name == LATENCY:
            us = batch.column("e2e_latency_us")
            if us.null_count and not plan.native:
                raise InvalidTraceError(f"a Kavier sweep CSV needs e2e_latency_us for every "
                                        f"request; {us.null_count:,} rows have none")
            text = pc.fill_null(format_latency(pc.fill_null(us, 0), plan.style), "")
            return _or_kept(pc.if_else(us.is_valid(), text, ""), kept, name)
        if name == PREFILL_SIZE:
            return _or_kept(counts(batch, "input_tokens", "Kavier"), kept, name)
        if name == RESPONSE:
            return _or_kept(counts(batch, "output_tokens", "Kavier"), kept, name)
        if name == MODEL:
            model = pc.fill_null(batch.column("model"), "")
            return csv_field(_or_kept(model, kept, name))
        if name == THROUGHPUT and not plan.native:
            return _throughput(batch)
        if name == DECODE_SIZE and not plan.native:
            return counts(batch, "output_tokens", "Kavier")
        if not plan.native:
            return pa.array([""] * batch.num_rows, pa.string())
        return csv_field(pc.fill_null(kept[name], ""))

    return write_csv(stream, dest, plan_for, column)


WRITER = Writer("kavier-measurements", ".csv",
                "Kavier/Tracer measurement CSV: a latency sweep (provider,gpu,engine,llm,"
                "requested_response_size,response_size,latency_s,throughput_tokens_per_s), or "
                "GPU samples read from one (timestamp,prompt_id,...,util_gpu,util_mem)", write)
