"""Unified trace -> vidur processed-trace CSV, in the layout the trace came in.

Writes ``arrived_at,num_prefill_tokens,num_decode_tokens``. A trace read from a vidur file keeps
its header, extra columns, line ends and the way it wrote seconds (vidur's float64 repr,
``5.8926549999999995`` included), so the file comes back byte for byte. Any other trace gets
seconds with 6 decimals counted from its first row, as vidur counts them; a trace with no
timing at all (``time.kind == "none"``) gets vidur's request-length layout
``num_prefill_tokens,num_decode_tokens``. The CSV engine (:mod:`._csvwrite`) is shared with the
splitwise-sim writer.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InvalidTraceError
from ..sources.vidur import ARRIVAL, DECODE, FIXED6, LENGTHS_REQUIRED, PREFILL, REQUIRED
from . import TraceStream, Writer
from ._csvwrite import Plan, counts, csv_field, native_plan, seconds, write_csv

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
