"""Unified trace -> the JSONL that ``vllm bench serve --dataset-name timed_trace`` replays.

One object per request: ``timestamp`` (float seconds on the trace's own axis,
``arrival_us / 1e6``, the shortest text that gives it back), ``input_length``,
``output_length`` and ``hash_ids`` over 16-token blocks, with ``len(hash_ids) ==
ceil(input_length / 16)``. These are vLLM's defaults (``--timed-trace-sec-multiplier 1``,
``--timed-trace-chunk-hash-size 16``, labels ``timestamp``/``input_length``/``output_length``/
``hash_ids``), so the file replays with no timed-trace option at all. vLLM builds each prompt
from ``chunk`` tokens per hash id and stops when the ids run out, so ids must cover the whole
input; it rebases times to the first row and refuses timestamps that go backwards, so a trace
whose arrivals are not sorted is refused here, with the first offending request named.
Hash ids are kept where the trace has 16-token ids, else made by
:class:`~llmtraces.formats.mooncake.BlockIds` (from 512-token ids, token ids, or unique).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import InvalidTraceError
from ..sources._jsonl import write_jsonl
from . import TraceStream, Writer
from .mooncake import HashIdColumn, required

BLOCK_TOKENS = 16
OWN_FORMAT = "vllm-timed-trace-jsonl"
KEYS = ("timestamp", "input_length", "output_length", "hash_ids")


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


def write(stream: TraceStream, dest: Path) -> int:
    """Write the stream as vLLM timed_trace JSONL at ``dest``, atomically."""
    hash_ids = HashIdColumn(BLOCK_TOKENS, exact_length=True)
    last: list[int | None] = [None]

    def records(batch: pa.RecordBatch, layout: dict[str, Any]) -> list[dict[str, Any]]:
        arrival = sorted_arrivals(batch, last[0], "vLLM timed_trace")
        if arrival:
            last[0] = arrival[-1]
        inputs = batch.column("input_tokens").to_pylist()
        outputs = required(batch, "output_tokens", "vLLM timed_trace", "an output length")
        ids = hash_ids.rows(batch)
        return [dict(zip(KEYS, (us / 1_000_000, n, o, h), strict=True))
                for us, n, o, h in zip(arrival, inputs, outputs, ids, strict=True)]

    return write_jsonl(stream, dest, OWN_FORMAT, records)


WRITER = Writer("vllm-timed-trace", ".jsonl", "vLLM bench serve timed_trace JSONL (timestamp s, "
                "input_length, output_length, 16-token hash_ids)", write)
