"""Kavier's input CSV, the file its ``InputSpec`` reads: the ``kavier-csv`` reader and the
``kavier`` writer.

Reader: columns, in Kavier's order, ``session_id,turn_id,ts,num_input_tokens,
num_output_tokens,input_tokens,output_tokens``; only the two counts are required. The token
lists are JSON arrays (``"[1, 100, 2]"``, Python's ``json.dumps``) in quoted cells; an empty
cell is no value (a null list; Kavier reads it as ``[]``). A header with a trailing comma (an
unnamed 6th column over 5-field rows, as in Kavier's ``input_decode_accuracy.csv``) is
accepted and written back as it was. Cells become unified columns by the column logic shared
with ``kavier-parquet`` (:mod:`._kavier`, which gives the mapping and its checks); other
columns are kept in ``extra`` verbatim.

Writer: unified trace -> Kavier input CSV with the same columns. A trace without token ids
gets empty cells there (Kavier reads them as ``[]``), and empty ``session_id``/``turn_id``/``ts``
cells where the trace has none. ``ts`` is the shortest decimal of ``arrival_us`` in seconds
(``2.0``, ``9.333333``). A trace read from a Kavier CSV keeps its header (a trailing comma
included), line ends and any raw text kept in ``extra``, so the file comes back byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..atomic import atomic_path
from ..schema import TraceStream
from ..text import ReadContext, read_first_line
from ..text.csv import (
    CsvBatch,
    check_header,
    first_record,
    line_ends,
    parse_counts,
    split_header,
    stream_csv,
)
from ..text.csvwrite import counts, csv_field, kept_values
from ..text.seconds import format_seconds
from . import NativeFormat, Writer
from ._kavier import (
    COUNTS,
    CSV_COLUMNS,
    CSV_REQUIRED,
    ID_COLUMNS,
    Fields,
    blank_is_null,
    text_lists,
    text_seconds,
    text_turn,
    token_list_texts,
    unified_batch,
)
from .marconi import TIME

# --- reading -------------------------------------------------------------------------------------


def _csv_names(ctx: ReadContext, header: list[str]) -> list[str]:
    """Column names of the data rows: a header with trailing empty names over narrower rows
    (Kavier's trailing-comma quirk) names only the fields the rows have."""
    names = list(header)
    if not names or names[-1] != "":
        return names
    first = first_record(ctx)
    width = len(first) if first is not None else len(names)
    while len(names) > width and names[-1] == "":
        names.pop()
    return names


def text_fields(ctx: ReadContext, b: CsvBatch, names: list[str]) -> Fields:
    """The Kavier columns of a block of text columns (a CSV block)."""
    f = Fields(parse_counts(ctx, b, "num_input_tokens"),
               parse_counts(ctx, b, "num_output_tokens"))
    for name in names:
        if name == "ts":
            f.columns["arrival_us"], f.kept[name] = text_seconds(ctx, b)
        elif name == "session_id":
            f.columns["session_id"] = blank_is_null(b.columns[name])
        elif name == "turn_id":
            f.columns["turn"], f.kept[name] = text_turn(ctx, b)
        elif name in ID_COLUMNS:
            f.ids[name], f.kept[name] = text_lists(ctx, b, name)
        elif name not in COUNTS:  # unknown (or the unnamed trailing column): verbatim
            f.kept[name] = blank_is_null(b.columns[name]) if name == "" else b.columns[name]
    return f


def read_kavier_csv(ctx: ReadContext) -> Iterator[pa.RecordBatch]:
    """Stream a Kavier input CSV as unified batches."""
    header = split_header(read_first_line(ctx.path))
    names = _csv_names(ctx, header)
    if not check_header(ctx, names, CSV_REQUIRED, CSV_COLUMNS, shown=",".join(header)):
        return
    ctx.meta.setdefault("native_layout", {}).update(columns=header, width=len(names),
                                                    **line_ends(ctx))
    last: int | None = None
    for b in stream_csv(ctx, names):
        batch, last = unified_batch(ctx, b, text_fields(ctx, b, names), last)
        yield batch


class KavierCSV(NativeFormat):
    """Kavier input CSV (Marconi-Kavier requests: counts, optional sessions and token ids)."""

    name = "kavier-csv"
    description = ("Kavier input CSV ([session_id,turn_id,ts,]num_input_tokens,"
                   "num_output_tokens[,input_tokens,output_tokens])")
    time = TIME

    def sniff(self, first_line: str) -> bool:
        if first_line.lstrip().startswith("{"):
            return False
        return set(CSV_REQUIRED) <= set(split_header(first_line))

    def read(self, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        return read_kavier_csv(ctx)


FORMATS = (KavierCSV(),)


# --- writing -------------------------------------------------------------------------------------

def _layout(meta: dict[str, Any]) -> tuple[list[str], int, str, bool, bool]:
    """Header, data width, newline, final newline and whether the trace is a native one."""
    layout = meta.get("native_layout") or {}
    if meta.get("native_format") == KavierCSV.name and layout.get("columns"):
        header = list(layout["columns"])
        return (header, int(layout.get("width", len(header))), layout.get("newline", "\n"),
                layout.get("final_newline") is not False, True)
    return list(CSV_COLUMNS), len(CSV_COLUMNS), "\n", True, False


def _text(values: pa.Array) -> pa.Array:
    """Null-safe text: nulls become empty cells."""
    return pc.fill_null(pc.cast(values, pa.string()), "")


def _column(name: str, batch: pa.RecordBatch, kept: dict[str, pa.Array]) -> pa.Array:
    """One column of the output as cell text (kept raw values win)."""
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
