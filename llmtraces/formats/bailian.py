"""Unified trace -> Qwen/Bailian trace JSONL, the layout aiperf's ``bailian_trace`` loader reads.

One object per request: ``chat_id``, ``parent_chat_id`` (-1 for a root), ``timestamp`` (float
seconds since the trace start, the shortest text that gives ``arrival_us / 1e6`` back),
``input_length``, ``output_length``, ``type``, ``turn`` and ``hash_ids`` over 16-token blocks.

A trace read from a Bailian file keeps its chat ids (from ``extra``), raw sub-µs timestamps,
key order, separators and final newline, so the file comes back byte for byte. For a trace
from elsewhere: ``chat_id`` is the request_id and ``parent_chat_id`` the parent_request_id,
or, where the trace has sessions but no links, the request_id of the session's previous
request (so aiperf's ``bailian_trace`` loader sees the conversations), -1 for a root;
``type`` is the service (``text`` when unknown), and hash ids come from
:class:`~llmtraces.formats.mooncake.BlockIds` at 16 tokens per block. ``turn`` is the unified
turn (from 0; a missing one is the position in the parent chain) plus the file's
``turn_base``, or plus 1 for a trace from elsewhere, Bailian numbering roots 1 as far as its
README and aiperf show.
"""

from __future__ import annotations

from array import array
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..sources._jsonl import write_jsonl
from . import TraceStream, Writer
from .mooncake import HashIdColumn, extras, record, required

BLOCK_TOKENS = 16
OWN_FORMAT = "bailian-jsonl"
DEFAULT_KEYS = ("chat_id", "parent_chat_id", "timestamp", "input_length", "output_length",
                "type", "turn", "hash_ids")


def write(stream: TraceStream, dest: Path) -> int:
    """Write the stream as Bailian JSONL at ``dest``, atomically."""
    # Bailian's own last block may not match ceil(input/16) (see the reader), so only the
    # block size decides whether ids are kept.
    hash_ids = HashIdColumn(BLOCK_TOKENS, exact_length=False)
    turns = array("q")  # unified turn of each request_id so far (8 bytes per row)
    last_of: dict[str, int] = {}  # session_id -> its latest request_id (one entry a session)

    def records(batch: pa.RecordBatch, layout: dict[str, Any]) -> list[dict[str, Any]]:
        own = stream.meta.get("native_format") == OWN_FORMAT
        keys = layout["keys"] or DEFAULT_KEYS
        base = int(layout.get("turn_base", 1))
        kept = extras(batch) if own else [{}] * batch.num_rows
        arrival = required(batch, "arrival_us", "Bailian", "an arrival time")
        rid = batch.column("request_id").to_pylist()
        parent = batch.column("parent_request_id").to_pylist()
        service = batch.column("service").to_pylist()
        turn = batch.column("turn").to_pylist()
        values: dict[str, list[Any]] = {
            "chat_id": [],
            "parent_chat_id": [],
            "timestamp": [],
            "input_length": batch.column("input_tokens").to_pylist(),
            "output_length": required(batch, "output_tokens", "Bailian", "an output length"),
            "type": [s if s is not None else "text" for s in service],
            "turn": [],
            "hash_ids": hash_ids.rows(batch),
        }
        session = batch.column("session_id").to_pylist()
        for i in range(batch.num_rows):
            k = kept[i]
            p = parent[i]
            if p is None and session[i] is not None:  # linked through its session
                p = last_of.get(session[i])
            if session[i] is not None:
                last_of[session[i]] = rid[i]
            values["chat_id"].append(k.get("chat_id", rid[i]))
            values["parent_chat_id"].append(k.get("parent_chat_id", -1 if p is None else p))
            values["timestamp"].append(k.get("timestamp", arrival[i] / 1_000_000))
            t = turn[i]
            if t is None:
                t = turns[p] + 1 if p is not None and 0 <= p < len(turns) else 0
            values["turn"].append(k.get("turn", t + base))
            turns.append(t)
        return [record(keys, {k: v[i] for k, v in values.items()}, kept[i])
                for i in range(batch.num_rows)]

    return write_jsonl(stream, dest, OWN_FORMAT, records)


WRITER = Writer("bailian", ".jsonl", "Qwen/Bailian trace JSONL (chat_id, parent_chat_id, "
                "timestamp s, input_length, output_length, type, turn, 16-token hash_ids)",
                write)
