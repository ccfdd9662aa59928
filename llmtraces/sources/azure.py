"""Azure public inference traces (github.com/Azure/AzurePublicDataset): one CSV per trace.

``TIMESTAMP,ContextTokens,GeneratedTokens`` (LLM 2023 and 2024) and
``TIMESTAMP,NumImages,ContextTokens,GeneratedTokens`` (LMM 2025, gzip). Columns are read by
name. TIMESTAMP is an absolute wall-clock instant; the first row's instant is the time origin
(``arrival_us = 0``) and is kept in the trace metadata. Quirks handled here: 7 fractional
digits (100 ns, 2023), ``+00:00`` with the fraction omitted when zero (2024), ``T``/``Z`` (2025),
CRLF and no final newline (2023). Azure marks no failures, models or sessions: those stay null.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from ..registry import TimeSemantics
from ..schema import native_batch
from . import NativeFormat, ReadContext
from ._csv import CsvBatch, check_order, iter_csv, parse_counts, split_header
from ._time import timestamp_style, wall_clock

REQUIRED = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
OPTIONAL = ("NumImages",)
TIMESTAMP_FORM = "YYYY-MM-DD HH:MM:SS[.fffffff][Z|+HH:MM]"


def _extra(batch: CsvBatch, sub_us: pa.Array) -> pa.Array | None:
    # Only unknown columns and timestamps finer than 1 µs need to go to `extra`.
    unknown = [c for c in batch.columns if c not in REQUIRED + OPTIONAL]
    has_sub = pc.any(sub_us).as_py()
    if not unknown and not has_sub:
        return None
    sub = sub_us.to_pylist()
    raw_ts = batch.columns["TIMESTAMP"].to_pylist() if has_sub else []
    values = {c: batch.columns[c].to_pylist() for c in unknown}
    out: list[str | None] = []
    for i in range(batch.num_rows):
        row = {c: values[c][i] for c in unknown}
        if sub[i]:
            row["TIMESTAMP"] = raw_ts[i]
        out.append(json.dumps(row, ensure_ascii=False) if row else None)
    return pa.array(out, pa.string())


class AzureCSV(NativeFormat):
    """Azure LLM/LMM inference trace CSV."""

    name = "azure-csv"
    description = "Azure inference trace CSV (TIMESTAMP,[NumImages,]ContextTokens,GeneratedTokens)"
    time = TimeSemantics(
        kind="absolute", native_format=TIMESTAMP_FORM, zone="UTC", zone_assumed=True,
        resolution="as written (100 ns in 2023, 1 us in 2024, 1 ms in 2025)",
        origin="the first row's TIMESTAMP (time_origin in the metadata)")

    def sniff(self, first_line: str) -> bool:
        names = set(split_header(first_line))
        return set(REQUIRED) <= names <= set(REQUIRED + OPTIONAL)

    def read(self, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        origin: int | None = None
        last: int | None = None  # arrival of the previous block's last valid row
        for b in iter_csv(ctx, REQUIRED, OPTIONAL):
            w = wall_clock(ctx, b, "TIMESTAMP", TIMESTAMP_FORM, origin)
            inputs = parse_counts(ctx, b, "ContextTokens")
            outputs = parse_counts(ctx, b, "GeneratedTokens")
            origin = w.origin
            if w.first is not None:
                ctx.meta["native_layout"]["timestamp"] = timestamp_style(
                    b.columns["TIMESTAMP"][w.first].as_py())
            last = check_order(ctx, b, w.arrival, "TIMESTAMP", last)
            cols: dict[str, pa.Array] = {
                "arrival_us": w.arrival,
                "input_tokens": inputs,
                "output_tokens": outputs,
            }
            if "NumImages" in b.columns:
                cols["num_images"] = pc.cast(parse_counts(ctx, b, "NumImages"), pa.int32())
            yield native_batch(b.start, b.num_rows, cols, service=ctx.service,
                               extra=_extra(b, w.times.sub_us))


FORMATS = (AzureCSV(),)
