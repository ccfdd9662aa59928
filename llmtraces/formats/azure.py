"""Azure public inference traces (github.com/Azure/AzurePublicDataset), one CSV per trace: the
``azure-csv`` reader and the ``azure`` writer.

Reader: ``TIMESTAMP,ContextTokens,GeneratedTokens`` (LLM 2023 and 2024) and
``TIMESTAMP,NumImages,ContextTokens,GeneratedTokens`` (LMM 2025, gzip). Columns are read by
name. TIMESTAMP is an absolute wall-clock instant; the first row's instant is the time origin
(``arrival_us = 0``) and is kept in the trace metadata. Quirks handled here: 7 fractional digits
(100 ns, 2023), ``+00:00`` with the fraction omitted when zero (2024), ``T``/``Z`` (2025), CRLF
and no final newline (2023). Azure marks no failures, models or sessions: those stay null.

Writer: unified trace -> Azure inference trace CSV, in the layout the trace came in. It writes
``TIMESTAMP,ContextTokens,GeneratedTokens`` (plus ``NumImages`` for multimodal traces) with
absolute timestamps rebuilt from ``time_origin + arrival_us``. A trace read from an Azure file
keeps its header, timestamp style (7 digits / ``+00:00`` / ``T…Z``), line ends and final
newline, so the Azure 2023 files come back byte for byte. Timestamps that had digits finer than
a microsecond are written from their raw value in ``extra``. Other traces get the 2023 style.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..atomic import atomic_path
from ..errors import InvalidTraceError
from ..schema import TraceStream, native_batch
from ..text import ReadContext
from ..text.csv import CsvBatch, check_order, iter_csv, parse_counts, split_header
from ..text.limits import check_json_cells
from ..text.timestamps import epoch_us_of, format_timestamps, timestamp_style, wall_clock
from ..timing import TimeSemantics
from . import NativeFormat, Writer

# --- reading -------------------------------------------------------------------------------------

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
                images = parse_counts(ctx, b, "NumImages", most=(1 << 31) - 1)
                cols["num_images"] = pc.cast(images, pa.int32())
            yield native_batch(b.start, b.num_rows, cols, service=ctx.service,
                               extra=_extra(b, w.times.sub_us))


FORMATS = (AzureCSV(),)


# --- writing -------------------------------------------------------------------------------------

COLUMNS = {"TIMESTAMP", "NumImages", "ContextTokens", "GeneratedTokens"}
DEFAULT_STYLE = {"sep": " ", "digits": 7, "zone": "", "omit_zero_fraction": False}


def _header(meta: dict[str, Any], batch: pa.RecordBatch) -> list[str]:
    native = meta.get("native_layout", {}).get("columns")
    if native and meta.get("native_format") == "azure-csv":
        return list(native)
    images = batch.column("num_images").null_count < batch.num_rows
    return ["TIMESTAMP"] + (["NumImages"] if images else []) + ["ContextTokens",
                                                                "GeneratedTokens"]


def _from_extra(batch: pa.RecordBatch, names: list[str]) -> dict[str, list[str | None]]:
    """Values for native columns kept in ``extra`` (raw sub-µs timestamps, unknown columns)."""
    extra = batch.column("extra")
    out: dict[str, list[str | None]] = {n: [None] * batch.num_rows for n in names}
    if extra.null_count == batch.num_rows:
        return out
    check_json_cells(extra, "extra")
    for i, raw in enumerate(extra.to_pylist()):
        if raw:
            row = json.loads(raw)
            for n in names:
                if n in row:
                    out[n][i] = row[n]
    return out


def _column(batch: pa.RecordBatch, name: str, origin: int, style: dict[str, Any],
            kept: dict[str, list[str | None]]) -> pa.Array:
    if name == "TIMESTAMP":
        arrival = batch.column("arrival_us")
        if arrival.null_count:
            raise InvalidTraceError("an Azure CSV needs a time for every request; "
                                    f"{arrival.null_count} rows have none")
        text = format_timestamps(pc.add(arrival, origin), style)
        if all(v is None for v in kept["TIMESTAMP"]):
            return text
        raw = pa.array(kept["TIMESTAMP"], pa.string())  # rare: sub-µs values kept verbatim
        return pc.if_else(raw.is_valid(), raw, text)
    source = {"ContextTokens": "input_tokens", "GeneratedTokens": "output_tokens",
              "NumImages": "num_images"}.get(name)
    if source is not None:
        return pc.fill_null(pc.cast(batch.column(source), pa.string()), "")
    return pa.array([v if v is not None else "" for v in kept[name]], pa.string())


def write(stream: TraceStream, dest: Path) -> int:
    """Write the stream as an Azure CSV at ``dest``, atomically."""
    rows = 0
    with atomic_path(dest) as tmp, tmp.open("w", encoding="utf-8", newline="") as fh:
        header: list[str] = []
        for batch in stream.batches:
            meta = stream.meta
            layout = meta.get("native_layout", {})
            newline = layout.get("newline", "\n")
            if not header:
                header = _header(meta, batch)
                style = layout.get("timestamp") or DEFAULT_STYLE
                if meta.get("time_origin") is None:
                    raise InvalidTraceError("an Azure CSV needs absolute times, and this trace "
                                            "has no time_origin")
                origin = epoch_us_of(meta["time_origin"])
                fh.write(",".join(header))
            kept = _from_extra(batch, [n for n in header if n == "TIMESTAMP" or n not in COLUMNS])
            cols = [_column(batch, n, origin, style, kept) for n in header]
            lines = pc.binary_join_element_wise(*cols, ",").to_pylist()
            if lines:
                fh.write(newline + newline.join(lines))
            rows += batch.num_rows
        if not header:
            fh.write("TIMESTAMP,ContextTokens,GeneratedTokens")
            newline = "\n"
            layout = stream.meta.get("native_layout", {})
        if layout.get("final_newline", True) is not False:
            fh.write(newline)
    return rows


WRITER = Writer("azure", ".csv", "Azure inference trace CSV (TIMESTAMP,ContextTokens,"
                "GeneratedTokens[,NumImages]), absolute timestamps", write)
