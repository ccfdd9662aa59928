"""Seconds-based request JSONL of the replay tools, vLLM ``timed_trace`` and GuideLLM
``trace_synthetic``: the ``vllm-timed-trace-jsonl`` and ``guidellm-trace-jsonl`` readers and the
``vllm-timed-trace`` and ``guidellm`` writers.

Readers: both layouts are one object per request with ``timestamp``, ``input_length`` and
``output_length``; vLLM's also has ``hash_ids``. A first record whose ``timestamp`` is written as
a float (``0.0``) is read as **seconds**, as vLLM reads it with its default
``--timed-trace-sec-multiplier 1`` and GuideLLM always does; one with an integer timestamp is
Mooncake's milliseconds (``mooncake-jsonl``), and one without ``hash_ids`` and with an integer
timestamp is left unrecognised rather than guessed. ``hash_ids`` of a vLLM file are taken to be
over vLLM's default 16-token chunks (``--timed-trace-chunk-hash-size``); a row whose id count is
not ``ceil(input_length / 16)`` gets a warning. Other keys are kept in ``extra``.

Writer ``vllm-timed-trace``: unified trace -> the JSONL that ``vllm bench serve --dataset-name
timed_trace`` replays. One object per request: ``timestamp`` (float seconds on the trace's own
axis, ``arrival_us / 1e6``, the shortest text that gives it back), ``input_length``,
``output_length`` and ``hash_ids`` over 16-token blocks, with ``len(hash_ids) ==
ceil(input_length / 16)``. These are vLLM's defaults (``--timed-trace-sec-multiplier 1``,
``--timed-trace-chunk-hash-size 16``, labels ``timestamp``/``input_length``/``output_length``/
``hash_ids``), so the file replays with no timed-trace option at all. vLLM builds each prompt
from ``chunk`` tokens per hash id and stops when the ids run out, so ids must cover the whole
input; it rebases times to the first row and refuses timestamps that go backwards, so a trace
whose arrivals are not sorted is refused here, with the first offending request named. Hash ids
are kept where the trace has 16-token ids, else made by
:class:`~llmtraces.formats.mooncake.BlockIds` (from 512-token ids, token ids, or unique).

Writer ``guidellm``: unified trace -> the JSONL GuideLLM's ``trace_synthetic`` data kind
replays. One object per request: ``timestamp`` (float seconds on the trace's own axis,
``arrival_us / 1e6``), ``input_length`` and ``output_length``: GuideLLM's default column names
(``timestamp_column``, ``prompt_tokens_column``, ``output_tokens_column``). GuideLLM sorts the
rows by timestamp, replays each at its offset from the earliest, in seconds, and synthesises a
prompt of ``input_length`` tokens; sessions and prefix sharing are not part of this kind (its
optional ``duration`` column is left out, so GuideLLM warns that ``schedule_turn=idle_gap``
treats requests as instantaneous).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InvalidTraceError
from ..schema import TraceStream, constant, native_batch
from ..text import ReadContext
from ..text.jsonl import (
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
from ..text.jsonlwrite import write_jsonl
from ..timing import TimeSemantics
from . import NativeFormat, Writer
from .bailian import arrival_from_seconds
from .mooncake import HashIdColumn, required

# --- reading -------------------------------------------------------------------------------------

#: tokens per hash id: vLLM's default ``--timed-trace-chunk-hash-size`` (read and written).
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


# --- writing: vLLM timed_trace -------------------------------------------------------------------

VLLM_FORMAT = VllmTimedTraceJSONL.name
VLLM_KEYS = ("timestamp", "input_length", "output_length", "hash_ids")


def sorted_arrivals(batch: pa.RecordBatch, last: int | None, fmt: str) -> list[int]:
    """The batch's arrivals, which must never go backwards (``last``: the previous batch's)."""
    arrival = required(batch, "arrival_us", fmt, "an arrival time")
    prev = last
    for i, us in enumerate(arrival):
        if prev is not None and us < prev:
            rid = batch.column("request_id")[i].as_py()
            raise InvalidTraceError(
                f"a {fmt} trace must be sorted by arrival; request_id {rid} arrives at "
                f"{us:,} µs, before the previous request ({prev:,} µs)")
        prev = us
    return arrival


def write_vllm(stream: TraceStream, dest: Path) -> int:
    """Write the stream as vLLM timed_trace JSONL at ``dest``, atomically."""
    hash_ids = HashIdColumn(VLLM_BLOCK_TOKENS, exact_length=True)
    last: list[int | None] = [None]

    def records(batch: pa.RecordBatch, layout: dict[str, Any]) -> list[dict[str, Any]]:
        arrival = sorted_arrivals(batch, last[0], "vLLM timed_trace")
        if arrival:
            last[0] = arrival[-1]
        inputs = batch.column("input_tokens").to_pylist()
        outputs = required(batch, "output_tokens", "vLLM timed_trace", "an output length")
        ids = hash_ids.rows(batch)
        return [dict(zip(VLLM_KEYS, (us / 1_000_000, n, o, h), strict=True))
                for us, n, o, h in zip(arrival, inputs, outputs, ids, strict=True)]

    return write_jsonl(stream, dest, VLLM_FORMAT, records)


VLLM_WRITER = Writer("vllm-timed-trace", ".jsonl", "vLLM bench serve timed_trace JSONL "
                     "(timestamp s, input_length, output_length, 16-token hash_ids)", write_vllm)


# --- writing: GuideLLM trace_synthetic -----------------------------------------------------------

GUIDELLM_FORMAT = GuideLLMTraceJSONL.name
GUIDELLM_KEYS = ("timestamp", "input_length", "output_length")


def write_guidellm(stream: TraceStream, dest: Path) -> int:
    """Write the stream as GuideLLM trace JSONL at ``dest``, atomically."""

    def records(batch: pa.RecordBatch, layout: dict[str, Any]) -> list[dict[str, Any]]:
        arrival = required(batch, "arrival_us", "GuideLLM", "an arrival time")
        inputs = batch.column("input_tokens").to_pylist()
        outputs = required(batch, "output_tokens", "GuideLLM", "an output length")
        return [dict(zip(GUIDELLM_KEYS, (us / 1_000_000, n, o), strict=True))
                for us, n, o in zip(arrival, inputs, outputs, strict=True)]

    return write_jsonl(stream, dest, GUIDELLM_FORMAT, records)


GUIDELLM_WRITER = Writer("guidellm", ".jsonl", "GuideLLM trace_synthetic JSONL (timestamp s, "
                         "input_length, output_length)", write_guidellm)

WRITERS = (VLLM_WRITER, GUIDELLM_WRITER)
