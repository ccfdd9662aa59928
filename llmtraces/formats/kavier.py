"""Unified trace -> Kavier input CSV (``session_id,turn_id,ts,num_input_tokens,
num_output_tokens,input_tokens,output_tokens``), the file Kavier's ``InputSpec`` reads.

Token id lists are JSON arrays (``[1, 100, 2]``) in quoted cells; a trace without token ids
gets empty cells there (Kavier reads them as ``[]``), and empty ``session_id``/``turn_id``/``ts``
cells where the trace has none. ``ts`` is the shortest decimal of ``arrival_us`` in seconds
(``2.0``, ``9.333333``). A trace read from a Kavier CSV keeps its header (a trailing comma
included), line ends and any raw text kept in ``extra``, so the file comes back byte for byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..atomic import atomic_path
from ..sources._seconds import format_seconds
from ..sources.kavier_input import CSV_COLUMNS, token_list_texts
from . import TraceStream, Writer
from ._csvwrite import counts, csv_field, kept_values

OWN_FORMAT = "kavier-csv"


def _layout(meta: dict[str, Any]) -> tuple[list[str], int, str, bool, bool]:
    """Header, data width, newline, final newline and whether the trace is a native one."""
    layout = meta.get("native_layout") or {}
    if meta.get("native_format") == OWN_FORMAT and layout.get("columns"):
        header = list(layout["columns"])
        return (header, int(layout.get("width", len(header))), layout.get("newline", "\n"),
                layout.get("final_newline") is not False, True)
    return list(CSV_COLUMNS), len(CSV_COLUMNS), "\n", True, False


def _text(values: pa.Array) -> pa.Array:
    """Null-safe text: nulls become empty cells."""
    return pc.fill_null(pc.cast(values, pa.string()), "")


def _column(name: str, batch: pa.RecordBatch, kept: dict[str, pa.Array]) -> pa.Array:
    n = batch.num_rows
    if name == "num_input_tokens":
        text = counts(batch, "input_tokens", "Kavier")
    elif name == "num_output_tokens":
        text = counts(batch, "output_tokens", "Kavier")
    elif name == "session_id":
        text = csv_field(batch.column("session_id"))
    elif name == "turn_id":
        text = pc.cast(batch.column("turn"), pa.string())
    elif name == "ts":
        text = format_seconds(batch.column("arrival_us"), "float")
    elif name in ("input_tokens", "output_tokens"):
        text = csv_field(token_list_texts(batch.column(name.replace("tokens", "token_ids"))))
    else:
        text = pa.nulls(n, pa.string())
    raw = kept.get(name)
    if raw is not None and raw.null_count < len(raw):
        text = pc.if_else(raw.is_valid(), csv_field(raw), text)
    return _text(text)


def write(stream: TraceStream, dest: Path) -> int:
    """Write the stream as a Kavier input CSV at ``dest``, atomically."""
    rows = 0
    plan: tuple[list[str], int, str, bool, bool] | None = None
    with atomic_path(dest) as tmp, tmp.open("w", encoding="utf-8", newline="") as fh:
        for batch in stream.batches:
            if plan is None:
                plan = _layout(stream.meta)
                fh.write(",".join(plan[0]))
            header, width, newline, _, native = plan
            names = header[:width]
            kept = kept_values(batch, names) if native else {}
            if batch.num_rows:
                cols = [_column(name, batch, kept) for name in names]
                lines = (pc.binary_join_element_wise(*cols, ",").to_pylist() if len(cols) > 1
                         else cols[0].to_pylist())
                fh.write(newline + newline.join(lines))
            rows += batch.num_rows
        if plan is None:
            plan = _layout(stream.meta)
            fh.write(",".join(plan[0]))
        if plan[3]:
            fh.write(plan[2])
    return rows


WRITER = Writer("kavier", ".csv", "Kavier input CSV (session_id,turn_id,ts,num_input_tokens,"
                "num_output_tokens,input_tokens,output_tokens as JSON arrays)", write)
