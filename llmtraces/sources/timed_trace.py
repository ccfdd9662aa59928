"""Seconds-based request JSONL of the replay tools: vLLM ``timed_trace`` and GuideLLM
``trace_synthetic`` (what ``--to vllm-timed-trace`` and ``--to guidellm`` write).

Both are one object per request with ``timestamp``, ``input_length`` and ``output_length``;
vLLM's also has ``hash_ids``. A first record whose ``timestamp`` is written as a float
(``0.0``) is read as **seconds**, as vLLM reads it with its default
``--timed-trace-sec-multiplier 1`` and GuideLLM always does; one with an integer timestamp is
Mooncake's milliseconds (``mooncake-jsonl``), and one without ``hash_ids`` and with an integer
timestamp is left unrecognised rather than guessed. ``hash_ids`` of a vLLM file are taken to be
over vLLM's default 16-token chunks (``--timed-trace-chunk-hash-size``); a row whose id count is
not ``ceil(input_length / 16)`` gets a warning. Other keys are kept in ``extra``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from ..registry import TimeSemantics
from ..schema import constant, native_batch
from . import NativeFormat, ReadContext
from ._jsonl import (
    Key,
    check_block_count,
    check_counts,
    check_hash_ids,
    check_order,
    extra_json,
    first_record_keys,
    iter_jsonl,
    timestamp_is_float,
)
from .bailian import arrival_from_seconds

VLLM_BLOCK_TOKENS = 16
BASE = ("timestamp", "input_length", "output_length")
SECONDS = TimeSemantics(
    kind="relative", native_format="float seconds (timestamp), the trace's own axis",
    resolution="1us", origin="the trace's own origin (timestamp 0)")


def _fits(first_line: str, hash_ids: bool) -> bool:
    keys = first_record_keys(first_line)
    return (keys is not None and set(BASE) <= keys and ("hash_ids" in keys) == hash_ids
            and "chat_id" not in keys and timestamp_is_float(first_line))


def _read(ctx: ReadContext, keys: tuple[Key, ...], block_size: int | None
          ) -> Iterator[pa.RecordBatch]:
    last: int | None = None
    for b in iter_jsonl(ctx, keys):
        arrival, sub_us = arrival_from_seconds(ctx, b)
        extras = b.extra or [None] * b.num_rows
        if pc.any(sub_us).as_py():  # finer digits than µs: keep the raw value
            raw = b.columns["timestamp"].to_pylist()
            extras = [dict(e or {}, timestamp=raw[i]) if sub_us[i].as_py() else e
                      for i, e in enumerate(extras)]
        inputs = check_counts(ctx, b, "input_length", "token count")
        columns: dict[str, pa.Array] = {
            "arrival_us": arrival, "input_tokens": inputs,
            "output_tokens": check_counts(ctx, b, "output_length", "token count")}
        if block_size is not None:
            check_hash_ids(ctx, b)
            check_block_count(ctx, b, inputs, block_size, "warning")
            columns["hash_ids"] = b.columns["hash_ids"]
            columns["hash_block_size"] = constant(block_size, b.num_rows, pa.int32())
        last = check_order(ctx, b, arrival, "timestamp", last)
        b.flush()
        yield native_batch(b.start, b.num_rows, columns, service=ctx.service,
                           extra=extra_json(extras) if any(extras) else None)


class VllmTimedTraceJSONL(NativeFormat):
    """vLLM ``timed_trace`` JSONL: float seconds, lengths and 16-token hash ids."""

    name = "vllm-timed-trace-jsonl"
    description = ("vLLM timed_trace JSONL (timestamp as float seconds, input_length, "
                   "output_length, hash_ids over 16-token chunks)")
    time = SECONDS

    def sniff(self, first_line: str) -> bool:
        return _fits(first_line, hash_ids=True)

    def read(self, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        keys = (Key("timestamp", "number"), Key("input_length", "int"),
                Key("output_length", "int"), Key("hash_ids", "int_list"))
        return _read(ctx, keys, VLLM_BLOCK_TOKENS)


class GuideLLMTraceJSONL(NativeFormat):
    """GuideLLM ``trace_synthetic`` JSONL: float seconds and lengths."""

    name = "guidellm-trace-jsonl"
    description = ("GuideLLM trace_synthetic JSONL (timestamp as float seconds, input_length, "
                   "output_length)")
    time = SECONDS

    def sniff(self, first_line: str) -> bool:
        return _fits(first_line, hash_ids=False)

    def read(self, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        keys = (Key("timestamp", "number"), Key("input_length", "int"),
                Key("output_length", "int"))
        return _read(ctx, keys, None)


FORMATS = (VllmTimedTraceJSONL(), GuideLLMTraceJSONL())
