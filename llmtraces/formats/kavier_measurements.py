"""Unified trace -> Kavier (AtLarge Tracer) measurement CSV, in the layout it came in.

Two Tracer layouts come back byte for byte (header, line ends, final newline or not, and every
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

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InvalidTraceError
from ..sources._time import epoch_us_of, format_timestamps
from ..sources.kavier import (
    DECODE_SIZE,
    LATENCY,
    MODEL,
    PREFILL,
    PREFILL_SIZE,
    RESPONSE,
    THROUGHPUT,
    TIMESTAMP,
    UTC_OFFSET_MIN,
    format_latency,
)
from . import TraceStream, Writer
from ._csvwrite import Plan, counts, csv_field, write_csv

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
