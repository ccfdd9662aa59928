"""Unified trace -> the JSONL GuideLLM's ``trace_synthetic`` data kind replays.

One object per request: ``timestamp`` (float seconds on the trace's own axis,
``arrival_us / 1e6``), ``input_length`` and ``output_length``: GuideLLM's default column names
(``timestamp_column``, ``prompt_tokens_column``, ``output_tokens_column``). GuideLLM sorts the
rows by timestamp, replays each at its offset from the earliest, in seconds, and synthesises a
prompt of ``input_length`` tokens; sessions and prefix sharing are not part of this kind (its
optional ``duration`` column is left out, so GuideLLM warns that ``schedule_turn=idle_gap``
treats requests as instantaneous).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from ..sources._jsonl import write_jsonl
from . import TraceStream, Writer
from .mooncake import required

OWN_FORMAT = "guidellm-trace-jsonl"
KEYS = ("timestamp", "input_length", "output_length")


def write(stream: TraceStream, dest: Path) -> int:
    """Write the stream as GuideLLM trace JSONL at ``dest``, atomically."""

    def records(batch: pa.RecordBatch, layout: dict[str, Any]) -> list[dict[str, Any]]:
        arrival = required(batch, "arrival_us", "GuideLLM", "an arrival time")
        inputs = batch.column("input_tokens").to_pylist()
        outputs = required(batch, "output_tokens", "GuideLLM", "an output length")
        return [dict(zip(KEYS, (us / 1_000_000, n, o), strict=True))
                for us, n, o in zip(arrival, inputs, outputs, strict=True)]

    return write_jsonl(stream, dest, OWN_FORMAT, records)


WRITER = Writer("guidellm", ".jsonl", "GuideLLM trace_synthetic JSONL (timestamp s, "
                "input_length, output_length)", write)
