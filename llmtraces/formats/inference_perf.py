"""Unified trace -> the Azure-style CSV that inference-perf's trace replay reads.

``TIMESTAMP,ContextTokens,GeneratedTokens``, in that order, LF line ends: inference-perf's
``AzurePublicDatasetReader`` (``inference_perf/utils/trace_reader.py``) splits each line on
``,`` and takes the tokens by position (1 and 2), so a ``NumImages`` column is never written.
Timestamps are ``YYYY-MM-DD HH:MM:SS.ffffff`` with no zone: it parses them as UTC with
``%Y-%m-%d %H:%M:%S.%f`` after cutting the fraction to 2 digits, and skips (with a log
warning) a row it cannot parse; a zero fraction is therefore always written. The file keeps
the microseconds (llmtraces reads it back with the ``azure-csv`` reader); inference-perf itself
sees arrivals truncated to 10 ms, rebased to the first row.

Times are ``time_origin + arrival_us``; a trace without an absolute origin (Mooncake,
BurstGPT, vidur) is written from 1970-01-01 00:00:00, which inference-perf's rebasing makes
irrelevant (reading it back puts the first request at 0).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..atomic import atomic_path
from ..errors import InvalidTraceError
from ..schema import TraceStream
from ..text.timestamps import epoch_us_of, format_timestamps
from . import Writer

HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"
STYLE = {"sep": " ", "digits": 6, "zone": "", "omit_zero_fraction": False}


def _times(batch: pa.RecordBatch, origin: int) -> pa.Array:
    arrival = batch.column("arrival_us")
    if arrival.null_count:
        raise InvalidTraceError("an inference-perf trace needs a time for every request; "
                                f"{arrival.null_count:,} rows have none")
    epoch = pc.add(arrival, origin)
    negative = pc.less(epoch, 0)
    if pc.any(negative).as_py():
        i = pc.indices_nonzero(negative)[0].as_py()
        raise InvalidTraceError(
            f"request_id {batch.column('request_id')[i].as_py()} arrives before 1970-01-01 "
            "00:00:00 UTC, which an inference-perf timestamp cannot say")
    return format_timestamps(epoch, STYLE)


def _counts(batch: pa.RecordBatch, column: str) -> pa.Array:
    values = batch.column(column)
    if values.null_count:
        raise InvalidTraceError(f"an inference-perf trace needs {column} for every request; "
                                f"{values.null_count:,} rows have none")
    return pc.cast(values, pa.string())


def write(stream: TraceStream, dest: Path) -> int:
    """Write the stream as an inference-perf (Azure-style) CSV at ``dest``, atomically."""
    rows = 0
    with atomic_path(dest) as tmp, tmp.open("w", encoding="utf-8", newline="") as fh:
        fh.write(HEADER + "\n")
        origin: int | None = None
        for batch in stream.batches:
            if not batch.num_rows:
                continue
            if origin is None:  # the reader has set time_origin by the first batch
                iso = stream.meta.get("time_origin")
                origin = epoch_us_of(iso) if iso else 0
            cols = [_times(batch, origin), _counts(batch, "input_tokens"),
                    _counts(batch, "output_tokens")]
            fh.write("\n".join(pc.binary_join_element_wise(*cols, ",").to_pylist()) + "\n")
            rows += batch.num_rows
    return rows


WRITER = Writer("inference-perf", ".csv", "inference-perf trace-replay CSV (TIMESTAMP,"
                "ContextTokens,GeneratedTokens; UTC, 6 decimals)", write)
