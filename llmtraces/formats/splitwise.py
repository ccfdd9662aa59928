"""Unified trace -> splitwise-sim request trace CSV, in the layout the trace came in.

Writes ``request_id,request_type,application_id,arrival_timestamp,batch_size,prompt_size,
token_size``. A trace read from a splitwise-sim file gets its id columns back from ``extra``
and its seconds in their own digits, so the file comes back byte for byte. Any other trace
gets ``request_id`` = the unified request_id, ``request_type`` 2 (generative LLM),
``application_id`` 0, ``batch_size`` 1 and ``arrival_us`` as seconds with 6 decimals: the
simulator's clock starts at 0, as the unified arrivals do, so nothing is shifted.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..sources.splitwise import ARRIVAL, COLUMNS, LLM_REQUEST, PROMPT, TOKENS
from ..sources.vidur import FIXED6
from . import TraceStream, Writer
from ._csvwrite import Plan, counts, csv_field, native_plan, seconds, write_csv

DEFAULTS = {"request_type": LLM_REQUEST, "application_id": "0", "batch_size": "1"}


def write(stream: TraceStream, dest: Path) -> int:
    """Write the stream as a splitwise-sim trace CSV at ``dest``, atomically."""

    def plan_for(first: pa.RecordBatch | None) -> Plan:
        return (native_plan(stream.meta, ("splitwise-csv",))
                or Plan(list(COLUMNS), False, dict(FIXED6)))

    def column(name: str, batch: pa.RecordBatch, plan: Plan, kept: dict[str, pa.Array]
               ) -> pa.Array:
        if name == ARRIVAL:
            return seconds(batch, plan, kept, ARRIVAL, "splitwise-sim")
        if name == PROMPT:
            return counts(batch, "input_tokens", "splitwise-sim")
        if name == TOKENS:
            return counts(batch, "output_tokens", "splitwise-sim")
        if name == "request_id":
            default: pa.Array | str = pc.cast(batch.column("request_id"), pa.string())
        else:
            default = DEFAULTS.get(name, "")
        values = kept.get(name)
        if values is None:
            return pc.fill_null(pa.nulls(batch.num_rows, pa.string()), default) \
                if isinstance(default, str) else default
        return csv_field(pc.fill_null(values, default))

    return write_csv(stream, dest, plan_for, column)


WRITER = Writer("splitwise", ".csv", "splitwise-sim trace CSV (request_id,request_type,"
                "application_id,arrival_timestamp,batch_size,prompt_size,token_size), seconds",
                write)
