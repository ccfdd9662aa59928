"""Unified trace -> Azure inference trace CSV, in the layout the trace came in.

Writes ``TIMESTAMP,ContextTokens,GeneratedTokens`` (plus ``NumImages`` for multimodal traces)
with absolute timestamps rebuilt from ``time_origin + arrival_us``. A trace read from an Azure
file keeps its header, timestamp style (7 digits / ``+00:00`` / ``T…Z``), line ends and final
newline, so the Azure 2023 files come back byte for byte. Timestamps that had digits finer than
a microsecond are written from their raw value in ``extra``. Other traces get the 2023 style.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..atomic import atomic_path
from ..errors import InvalidTraceError
from ..sources._time import epoch_us_of, format_timestamps
from . import TraceStream, Writer

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
