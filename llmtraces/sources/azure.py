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
from ..schema import constant, make_batch, row_index
from . import NativeFormat, ReadContext
from ._csv import CsvBatch, iter_csv, parse_counts, report_rows, split_header
from ._time import iso_utc, parse_timestamps, timestamp_style

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
            t = parse_timestamps(b.columns["TIMESTAMP"])
            report_rows(ctx, b, t.invalid, "TIMESTAMP", "timestamp", f"expected {TIMESTAMP_FORM}")
            report_rows(ctx, b, t.sub_us, "TIMESTAMP", "sub-microsecond",
                        "digits finer than 1 µs do not fit arrival_us; the raw value is kept in "
                        "extra", level="warning")
            if pc.any(t.naive).as_py():
                ctx.meta["naive_timestamps"] = True
            inputs = parse_counts(ctx, b, "ContextTokens")
            outputs = parse_counts(ctx, b, "GeneratedTokens")
            if origin is None:
                valid = pc.indices_nonzero(pc.invert(t.invalid))
                if len(valid):
                    i = valid[0].as_py()
                    origin = t.epoch_us[i].as_py()
                    ctx.meta["time_origin"] = iso_utc(origin)
                    ctx.meta["native_layout"]["timestamp"] = timestamp_style(
                        b.columns["TIMESTAMP"][i].as_py())
            arrival = pc.if_else(t.invalid, pa.scalar(None, pa.int64()),
                                 pc.subtract(t.epoch_us, origin or 0))
            last = self._check_order(ctx, b, arrival, last)
            cols: dict[str, pa.Array] = {
                "request_id": row_index(b.start, b.num_rows),
                "source_row": row_index(b.start, b.num_rows),
                "arrival_us": arrival,
                "input_tokens": inputs,
                "output_tokens": outputs,
            }
            if "NumImages" in b.columns:
                cols["num_images"] = pc.cast(parse_counts(ctx, b, "NumImages"), pa.int32())
            if ctx.service:
                cols["service"] = constant(ctx.service, b.num_rows, pa.string())
            extra = _extra(b, t.sub_us)
            if extra is not None:
                cols["extra"] = extra
            yield make_batch(b.num_rows, cols)

    @staticmethod
    def _check_order(ctx: ReadContext, b: CsvBatch, arrival: pa.Array, last: int | None
                     ) -> int | None:
        """Warn on each row that arrives before the row above it; returns the block's last."""
        prev = pa.concat_arrays([constant(last, 1, pa.int64()), arrival.slice(0, b.num_rows - 1)])
        earlier = pc.fill_null(pc.less(arrival, prev), False)
        report_rows(ctx, b, earlier, "TIMESTAMP", "order",
                    "arrives before the previous row (row order is kept)", level="warning")
        valid = arrival.drop_null()
        return valid[-1].as_py() if len(valid) else last


FORMATS = (AzureCSV(),)
