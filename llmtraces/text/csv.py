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
from . import GZIP_MAGIC, ReadContext, read_first_line

#: Largest CSV block tried for a record longer than the default block (a token-id list).
MAX_BLOCK = 1 << 30
#: Characters of a bad value shown in a report.
SHOW_CHARS = 120


@dataclass(frozen=True)
class CsvBatch:
    """A block of raw columns and the 0-based index of its first data record.

    ``first_line`` is the physical line of record 0: 2 for a CSV (the header is line 1); a
    reader of a headerless layout (Parquet rows) sets 1, so ``line`` is the 1-based record.
    """

    start: int
    columns: dict[str, pa.Array]
    num_rows: int
    first_line: int = 2

    def line(self, i: int) -> int:
        """Physical 1-based line (or record) of row ``i`` of this block."""
        return self.start + i + self.first_line


def split_header(first_line: str) -> list[str]:
    """Header field names of a CSV first line."""
    return next(csv.reader([first_line]))


def _is_gzip(ctx: ReadContext) -> bool:
    with ctx.path.open("rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def text_stream(ctx: ReadContext) -> Any:
    """The file as text (gzip or not), for Python's ``csv`` module (slow paths only)."""
    # Python's csv refuses fields over 128 KiB by default; token-list cells are longer.
    csv.field_size_limit(max(csv.field_size_limit(), (1 << 31) - 1))
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
    # Slow path, only after pyarrow refused the file: the first data record of the wrong width.
    with text_stream(ctx) as fh:
        reader = csv.reader(fh)
        next(reader, None)  # the header
        for record in reader:
            if len(record) != width:
                return reader.line_num, ",".join(record)[:SHOW_CHARS]
    return None


def check_header(ctx: ReadContext, header: list[str], required: Sequence[str],
                 expected: Sequence[str], shown: str | None = None) -> bool:
    """Report a header that lacks a ``required`` column or repeats a name (``shown`` is the
    header as the report prints it, by default the names); True if it is fine."""
    missing = [c for c in required if c not in header]
    dupes = sorted({c for c in header if header.count(c) > 1})
    if missing or dupes:
        what = f"missing column(s) {missing}" if missing else f"duplicate column(s) {dupes}"
        ctx.report.error("header", ctx.label, f"{what}; expected {','.join(expected)}",
                         line=1, value=",".join(header) if shown is None else shown)
        return False
    return True


def stream_csv(ctx: ReadContext, names: list[str], *, empty_is_null: bool = False
               ) -> Iterator[CsvBatch]:
    """The data records after the header line, ``len(names)`` fields each, as string columns
    keyed by ``names``, block by block.

    With ``empty_is_null``, an unquoted empty field reads as null and a quoted one (``""``) as
    the empty string, so a writer can tell the two apart.

    A record longer than a block (token-id lists) makes pyarrow refuse the block; the read
    then goes on from the same record with blocks 4x larger, so memory follows the longest
    record, not the file. A line of the wrong width, or a CSV pyarrow cannot read, is an error
    in ``ctx.report`` and ends the read.
    """
    if ctx.meta.get("native_layout", {}).get("final_newline") is False and _only_header(ctx):
        return  # pyarrow refuses a lone header with no newline; it is an empty trace
    internal = [n or f"_unnamed{i}" for i, n in enumerate(names)]
    block = ctx.batch_bytes
    start = 0
    while True:
        stream = pa.input_stream(ctx.path, compression="gzip" if _is_gzip(ctx) else None)
        options = dict(
            read_options=pcsv.ReadOptions(block_size=block, use_threads=True,
                                          column_names=internal, skip_rows=1,
                                          skip_rows_after_names=start),
            parse_options=pcsv.ParseOptions(newlines_in_values=False, ignore_empty_lines=False),
            convert_options=pcsv.ConvertOptions(
                column_types={name: pa.string() for name in internal},
                strings_can_be_null=empty_is_null, null_values=[""],
                quoted_strings_can_be_null=False),
        )
        reader = None
        try:
            while True:
                # Opening parses the first block, so it can fail like any later read.
                reader = reader or pcsv.open_csv(stream, **options)
                batch = reader.read_next_batch()
                yield CsvBatch(start, {n: batch.column(i) for i, n in enumerate(names)},
                               batch.num_rows)
                start += batch.num_rows
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            if "straddl" in str(exc) and block < MAX_BLOCK:
                block *= 4  # a record longer than the block: again from it, larger blocks
                continue
            found = _locate_bad_line(ctx, len(names))
            if found:
                ctx.report.error("structure", ctx.label,
                                 f"expected {len(names)} fields ({','.join(names)})",
                                 line=found[0], value=found[1])
            else:
                ctx.report.error("structure", ctx.label, f"unreadable CSV: {exc}")
            return
        finally:
            stream.close()


def iter_csv(ctx: ReadContext, required: Sequence[str], optional: Sequence[str] = ()
             ) -> Iterator[CsvBatch]:
    """Stream a CSV as raw string columns, checking the header by name.

    Missing required columns, duplicate names and broken lines are errors in ``ctx.report``
    (the read stops there). Columns outside ``required`` and ``optional`` are passed through,
    so the caller can keep them in ``extra``.
    """
    header = split_header(read_first_line(ctx.path))
    if not check_header(ctx, header, required, required):
        return
    ctx.meta.setdefault("native_layout", {}).update(columns=header, **line_ends(ctx))
    yield from stream_csv(ctx, header)


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
        value = values[i].as_py()
        if value is not None and not isinstance(value, str):  # a typed (Parquet) column
            value = str(value)[:SHOW_CHARS]
        ctx.report.add_problem(level, code, ctx.label, message, line=batch.line(i),
                               column=column, value=value)
    ctx.report.counts[(level, code)] += max(0, len(idx) - room)


def check_order(ctx: ReadContext, batch: CsvBatch, arrival: pa.Array, column: str,
                last: int | None, what: str = "arrives") -> int | None:
    """Warn (``order``) on each row whose ``arrival`` is earlier than the row above it (``last``
    is the previous block's last valid one); returns this block's last valid arrival."""
    n = batch.num_rows
    if not n:
        return last
    prev = pa.concat_arrays([pa.array([last], pa.int64()), arrival.slice(0, n - 1)])
    report_rows(ctx, batch, pc.fill_null(pc.less(arrival, prev), False), column, "order",
                f"{what} before the previous row (row order is kept)", level="warning")
    valid = arrival.drop_null()
    return valid[-1].as_py() if len(valid) else last


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
