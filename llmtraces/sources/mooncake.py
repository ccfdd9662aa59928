"""Mooncake traces (github.com/kvcache-ai/Mooncake, FAST'25 release and the arXiv trace): JSONL.

One object per line, ``{"timestamp": ms, "input_length": n, "output_length": n, "hash_ids":
[...]}`` in that key order with ``json.dumps``'s default separators. ``timestamp`` is integer
milliseconds since the start of the trace; ``hash_ids`` are remapped prefix-block hashes over
512-token blocks, and on every published row ``len(hash_ids) == ceil(input_length / 512)``
(a mismatch is an error here; dynamo's docs write ``input_length // 512``, which is off by one
for partial blocks). An optional ``session_id`` (aiperf's Mooncake reader accepts one) maps to
``session_id``; any other key goes to ``extra``. Mooncake publishes no sessions, models or
failures.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from ..registry import TimeSemantics
from ..schema import constant, native_batch
from . import NativeFormat, ReadContext
from ._jsonl import (
    JsonBlock,
    Key,
    check_block_count,
    check_counts,
    check_hash_ids,
    check_order,
    extra_json,
    first_record_keys,
    iter_jsonl,
    report_rows,
    timestamp_is_float,
)

BLOCK_TOKENS = 512
REQUIRED = ("timestamp", "input_length", "output_length", "hash_ids")
KEYS = (Key("timestamp", "int"), Key("input_length", "int"), Key("output_length", "int"),
        Key("hash_ids", "int_list"), Key("session_id", "string", required=False))
_MAX_MS = (1 << 63) // 1000  # larger ms values overflow int64 microseconds


def arrival_from_ms(ctx: ReadContext, block: JsonBlock) -> pa.Array:
    """``timestamp`` (ms) as arrival_us; negative or overflowing values are reported, null."""
    ms = check_counts(ctx, block, "timestamp", "timestamp")
    huge = pc.greater(ms, _MAX_MS)
    report_rows(ctx, block, huge, "timestamp", "range", "timestamp too large for int64 µs")
    ms = pc.if_else(pc.fill_null(huge, False), pa.scalar(None, pa.int64()), ms)
    return pc.multiply(ms, 1000)


class MooncakeJSONL(NativeFormat):
    """Mooncake trace JSONL (timestamp ms, input_length, output_length, 512-token hash_ids)."""

    name = "mooncake-jsonl"
    description = "Mooncake trace JSONL (timestamp,input_length,output_length,hash_ids)"
    time = TimeSemantics(
        kind="relative", native_format="integer milliseconds since the start of the trace",
        resolution="1ms", origin="start of the trace (timestamp 0)")

    def sniff(self, first_line: str) -> bool:
        keys = first_record_keys(first_line)
        # Float timestamps are seconds (vLLM timed_trace): see sources/timed_trace.py.
        return (keys is not None and set(REQUIRED) <= keys and "chat_id" not in keys
                and not timestamp_is_float(first_line))

    def read(self, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        last: int | None = None
        for b in iter_jsonl(ctx, KEYS):
            n = b.num_rows
            arrival = arrival_from_ms(ctx, b)
            inputs = check_counts(ctx, b, "input_length", "token count")
            outputs = check_counts(ctx, b, "output_length", "token count")
            check_hash_ids(ctx, b)
            check_block_count(ctx, b, inputs, BLOCK_TOKENS, "error")
            last = check_order(ctx, b, arrival, "timestamp", last)
            cols: dict[str, pa.Array] = {
                "arrival_us": arrival,
                "input_tokens": pc.fill_null(inputs, 0),
                "output_tokens": outputs,
                "hash_ids": b.columns["hash_ids"],
                "hash_block_size": constant(BLOCK_TOKENS, n, pa.int32()),
            }
            session = b.columns["session_id"]
            if session.null_count < n:
                cols["session_id"] = session
            extra = extra_json(b.extra) if b.extra is not None else None
            b.flush()
            yield native_batch(b.start, n, cols, service=ctx.service, extra=extra)


FORMATS = (MooncakeJSONL(),)
