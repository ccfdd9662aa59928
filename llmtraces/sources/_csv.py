"""Streaming CSV reading shared by the CSV formats: header by name, exact line numbers.

pyarrow parses the file in blocks with every column as a string, so bad values can be found
with vector operations and reported with their line. ``newlines_in_values`` stays off, so data
record ``i`` is physical line ``i + 2``; a structurally broken line (wrong field count, blank
line) stops the read and a slow scan finds its exact line number.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from ..report import KEEP_PER_CODE, Level
from . import GZIP_MAGIC, ReadContext


@dataclass(frozen=True)
class CsvBatch:
    """A block of raw string columns and the 0-based index of its first data record."""

    start: int
    columns: dict[str, pa.Array]
    num_rows: int

    def line(self, i: int) -> int:
        """Physical 1-based line of row ``i`` of this block (the header is line 1)."""
        return self.start + i + 2


def split_header(first_line: str) -> list[str]:
    """Header field names of a CSV first line."""
    return next(csv.reader([first_line]))


def _is_gzip(ctx: ReadContext) -> bool:
    with ctx.path.open("rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def text_stream(ctx: ReadContext) -> Any:
    if _is_gzip(ctx):
        return io.TextIOWrapper(gzip.open(ctx.path, "rb"), encoding="utf-8-sig", newline="")
    return ctx.path.open(encoding="utf-8-sig", newline="")


def line_ends(ctx: ReadContext) -> dict[str, object]:
    """The file's newline (CRLF or LF) and whether its last line ends with one (None: unknown,
    for gzip, where finding out would mean reading the whole stream)."""
    gz = _is_gzip(ctx)
    with (gzip.open(ctx.path, "rb") if gz else ctx.path.open("rb")) as fh:
        first = fh.readline(1 << 16)
    final: bool | None = None
    if not gz:
        with ctx.path.open("rb") as fh:
            fh.seek(0, 2)
            if fh.tell():
                fh.seek(-1, 2)
                final = fh.read(1) == b"\n"
    return {"newline": "\r\n" if first.endswith(b"\r\n") else "\n", "final_newline": final}


def _only_header(ctx: ReadContext) -> bool:
    with ctx.path.open("rb") as fh:
        return b"\n" not in fh.read(1 << 16) and ctx.path.stat().st_size < 1 << 16


def _locate_bad_line(ctx: ReadContext, width: int) -> tuple[int, str] | None:
    # Slow path, only after pyarrow refused the file: find the first record of the wrong width.
    with text_stream(ctx) as fh:
        reader = csv.reader(fh)
        for record in reader:
            if len(record) != width:
                return reader.line_num, ",".join(record)
    return None


def iter_csv(ctx: ReadContext, required: Sequence[str], optional: Sequence[str] = ()
             ) -> Iterator[CsvBatch]:
    """Stream a CSV as raw string columns, checking the header by name.

    Missing required columns, duplicate names and broken lines are errors in ``ctx.report``
    (the read stops there). Columns outside ``required`` and ``optional`` are passed through,
    so the caller can keep them in ``extra``.
    """
    from . import read_first_line

    header = split_header(read_first_line(ctx.path))
    missing = [c for c in required if c not in header]
    dupes = sorted({c for c in header if header.count(c) > 1})
    if missing or dupes:
        what = f"missing column(s) {missing}" if missing else f"duplicate column(s) {dupes}"
        ctx.report.error("header", ctx.label, f"{what}; expected {','.join(required)}",
                         line=1, value=",".join(header))
        return
    ctx.meta.setdefault("native_layout", {}).update(columns=header, **line_ends(ctx))
    if ctx.meta["native_layout"]["final_newline"] is False and _only_header(ctx):
        return  # pyarrow refuses a lone header with no newline; it is an empty trace
    stream = pa.input_stream(ctx.path, compression="gzip" if _is_gzip(ctx) else None)
    options = dict(
        read_options=pcsv.ReadOptions(block_size=ctx.batch_bytes, use_threads=True),
        parse_options=pcsv.ParseOptions(newlines_in_values=False, ignore_empty_lines=False),
        convert_options=pcsv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            strings_can_be_null=False, quoted_strings_can_be_null=False),
    )
    start = 0
    reader = None
    while True:
        try:
            # Opening parses the first block, so it can fail like any later read.
            reader = reader or pcsv.open_csv(stream, **options)
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            found = _locate_bad_line(ctx, len(header))
            if found:
                line, text = found
                ctx.report.error("structure", ctx.label,
                                 f"expected {len(header)} fields ({','.join(header)})",
                                 line=line, value=text)
            else:
                ctx.report.error("structure", ctx.label, f"unreadable CSV: {exc}")
            return
        yield CsvBatch(start, {n: batch.column(i) for i, n in enumerate(batch.schema.names)},
                       batch.num_rows)
        start += batch.num_rows


def report_rows(ctx: ReadContext, batch: CsvBatch, mask: pa.Array, column: str, code: str,
                message: str, level: Level = "error") -> None:
    """Report each row where ``mask`` is true, with its line and raw value of ``column``."""
    if not pc.any(mask).as_py():
        return
    idx = pc.indices_nonzero(mask)
    # Only the problems the report keeps are built; the rest are counted.
    room = max(0, KEEP_PER_CODE - ctx.report.counts[(level, code)])
    values = batch.columns[column]
    for i in idx.slice(0, room).to_pylist():
        ctx.report.add_problem(level, code, ctx.label, message, line=batch.line(i),
                               column=column, value=values[i].as_py())
    ctx.report.counts[(level, code)] += max(0, len(idx) - room)


def is_digits(raw: pa.Array, most: int) -> pa.Array:
    """``^[0-9]{1,most}$`` per row, without a regex pass (several times faster)."""
    return pc.and_(pc.ascii_is_decimal(raw), pc.less_equal(pc.binary_length(raw), most))


def is_count(raw: pa.Array) -> pa.Array:
    """The rows :func:`parse_counts` accepts (``^[0-9]{1,18}$``: always fits int64)."""
    return is_digits(raw, 18)


def parse_counts(ctx: ReadContext, batch: CsvBatch, column: str) -> pa.Array:
    """A column of non-negative integer counts as int64; bad cells are reported (and read as 0)."""
    raw = batch.columns[column]
    ok = is_count(raw)
    if pc.all(ok).as_py():  # the usual case: a plain cast, no masking pass
        return pc.cast(raw, pa.int64())
    bad = pc.invert(ok)  # some row is bad: report each
    empty = pc.equal(raw, "")
    negative = pc.match_substring_regex(raw, r"^-[0-9]+$")
    other = pc.and_(bad, pc.invert(pc.or_(empty, negative)))
    report_rows(ctx, batch, empty, column, "missing", "empty value; expected a token count")
    report_rows(ctx, batch, negative, column, "negative", "negative token count")
    report_rows(ctx, batch, other, column, "not-integer", "expected a non-negative integer")
    return pc.cast(pc.if_else(ok, raw, "0"), pa.int64())
