"""Unified trace -> Marconi trace JSONL (the layout Marconi's ``policy_exploration.py`` replays).

One object per request: ``session_id`` (int where the unified id is a decimal integer, else the
text), ``turn_id`` (``turn``, 0 where null), ``ts`` (float seconds: ``arrival_us / 1e6``, or the
raw value kept in ``extra``), ``num_input_tokens``, ``num_output_tokens``, ``input_tokens`` and
``output_tokens``. The token id lists are required: Marconi simulates prefix caching on them.
A request without a session becomes its own session, numbered by its request_id. A trace read
from a Marconi file keeps its key order, separators, extra keys and final newline, so the file
comes back byte for byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from ..sources._jsonl import write_jsonl
from . import TraceStream, Writer
from .mooncake import extras, record, required

OWN_FORMAT = "marconi-jsonl"
DEFAULT_KEYS = ("session_id", "turn_id", "ts", "num_input_tokens", "num_output_tokens",
                "input_tokens", "output_tokens")


def session_value(session: str | None, request_id: int) -> int | str:
    """Marconi's integer session id from the unified text (the text where it is no integer)."""
    if session is None:
        return request_id
    if session.isascii() and session.isdecimal() and str(int(session)) == session:
        return int(session)
    return session


def write(stream: TraceStream, dest: Path) -> int:
    """Write the stream as Marconi JSONL at ``dest``, atomically."""

    def records(batch: pa.RecordBatch, layout: dict[str, Any]) -> list[dict[str, Any]]:
        own = stream.meta.get("native_format") == OWN_FORMAT
        arrival = required(batch, "arrival_us", "Marconi", "an arrival time")
        kept = extras(batch) if own else [{}] * batch.num_rows
        rid = batch.column("request_id").to_pylist()
        sessions = batch.column("session_id").to_pylist()
        turns = batch.column("turn").to_pylist()
        columns = {
            "num_input_tokens": batch.column("input_tokens").to_pylist(),
            "num_output_tokens": required(batch, "output_tokens", "Marconi", "an output length"),
            "input_tokens": required(batch, "input_token_ids", "Marconi", "input token ids"),
            "output_tokens": required(batch, "output_token_ids", "Marconi", "output token ids"),
        }
        keys = layout["keys"] or DEFAULT_KEYS
        out = []
        for i in range(batch.num_rows):
            extra = dict(kept[i])
            fields: dict[str, Any] = {
                "session_id": session_value(sessions[i], rid[i]),
                "turn_id": turns[i] if turns[i] is not None else 0,
                "ts": extra.pop("ts", arrival[i] / 1_000_000),
                **{k: v[i] for k, v in columns.items()},
            }
            out.append(record(keys, fields, extra))
        return out

    return write_jsonl(stream, dest, OWN_FORMAT, records)


WRITER = Writer("marconi", ".jsonl", "Marconi trace JSONL (session_id, turn_id, ts s, "
                "num_input_tokens, num_output_tokens, input_tokens, output_tokens)", write)
