"""Streaming CSV reading shared by the CSV formats: header by name, exact line numbers.

pyarrow parses the file in blocks with every column as a string, so bad values can be found
with vector operations and reported with their line. ``newlines_in_values`` stays off, so data
record ``i`` is physical line ``i + 2``; a structurally broken line (wrong field count, blank
line) stops the read and a slow scan finds its exact line number. A record longer than
``ctx.max_line`` (:mod:`llmtraces.text.limits`), bytes that are not UTF-8 and a broken gzip
stream are errors naming the file (and the line where it is known), in bounded memory.
"""

from __future__ import annotations

import csv
import gzip
import zlib
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from ..report import KEEP_PER_CODE, Level
from . import ReadContext, is_gzip, one_line, read_first_line, unreadable
from .limits import line_too_long

_BOM = b"\xef\xbb\xbf"
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


class _Found(Exception):
    """The first problem a slow scan found: its line, code, message and the text shown."""

    def __init__(self, line: int, code: str, message: str, value: str | None = None) -> None:
        super().__init__(message)
        self.line, self.code, self.message, self.value = line, code, message, value


def _text_lines(ctx: ReadContext, seen: list[int], decode: bool = True
                ) -> Generator[str, None, None]:
    """The file's physical lines as text (line ends kept), each read in bounded memory; a line
    over ``ctx.max_line``, bytes that are not UTF-8 (unless not ``decode``) or a broken gzip
    stream raise :class:`_Found`. ``seen[0]`` counts the lines read."""
    gz = is_gzip(ctx.path)
    try:
        with gzip.open(ctx.path, "rb") if gz else ctx.path.open("rb") as fh:
            while raw := fh.readline(ctx.max_line + 3):
                seen[0] += 1
                if len(raw.rstrip(b"\r\n")) > ctx.max_line:
                    raise _Found(seen[0], "line-length", line_too_long(ctx.max_line))
                raw = raw.removeprefix(_BOM) if seen[0] == 1 else raw
                if not decode:
                    yield ""
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    shown = raw.rstrip(b"\r\n").decode("utf-8", "replace")[:SHOW_CHARS]
                    raise _Found(seen[0], "encoding", f"not UTF-8 at byte {exc.start}",
                                 shown) from None
                yield text
    except (EOFError, OSError, zlib.error) as exc:
        raise _Found(seen[0] + 1, "read", unreadable(exc, gz)) from None


def _fields(text: str, line: int) -> list[str]:
    """One physical line as CSV fields (pyarrow reads each line as one record)."""
    try:
        return next(csv.reader([text]), [])
    except csv.Error as exc:  # a bare CR inside the line
        raise _Found(line, "structure", f"not a CSV line: {one_line(exc)}",
                     text.rstrip("\r\n")[:SHOW_CHARS]) from None


def first_record(ctx: ReadContext) -> list[str] | None:
    """The fields of the first data record (line 2), or None where there is none or it
    cannot be read (the read itself then reports why)."""
    csv.field_size_limit(max(csv.field_size_limit(), ctx.max_line + 3))
    seen = [0]
    lines = _text_lines(ctx, seen)
    try:
        next(lines, None)
        second = next(lines, None)
        return None if second is None else _fields(second, 2)
    except _Found:
        return None
    finally:
        lines.close()


def line_ends(ctx: ReadContext) -> dict[str, object]:
    """The file's newline (CRLF or LF) and whether its last line ends with one (None: unknown,
    for gzip, where finding out would mean reading the whole stream)."""
    gz = is_gzip(ctx.path)
    with (gzip.open(ctx.path, "rb") if gz else ctx.path.open("rb")) as fh:
        first = fh.readline(1 << 16)  # read_first_line read it already: no gzip error here
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


def _first_problem(ctx: ReadContext, names: list[str], lengths_only: bool = False
                   ) -> _Found | None:
    """Slow path, only after pyarrow refused the file: the first line too long, not UTF-8 or
    of the wrong width (``lengths_only``: too long), read line by line in bounded memory."""
    csv.field_size_limit(max(csv.field_size_limit(), ctx.max_line + 3))
    seen = [0]
    lines = _text_lines(ctx, seen, decode=not lengths_only)
    try:
        next(lines, None)  # the header
        for text in lines:
            if lengths_only:
                continue
            record = _fields(text, seen[0])
            if len(record) != len(names):
                return _Found(seen[0], "structure",
                              f"expected {len(names)} fields ({','.join(names)})",
                              ",".join(record)[:SHOW_CHARS])
    except _Found as found:
        return found
    finally:
        lines.close()
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
    block = max(1, min(ctx.batch_bytes, ctx.max_line // 4))
    start = 0
    scanned = False  # whether a scan found no line over the limit
    gz = is_gzip(ctx.path)
    while True:
        stream = pa.input_stream(ctx.path, compression="gzip" if gz else None)
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
            if "straddl" in str(exc) and block < ctx.max_line:
                # A record longer than the block: again from it, with blocks 4x larger, up to
                # the line limit. pyarrow reads a record up to twice the block, so blocks of
                # half the limit or more come after a scan found no line over the limit.
                block = min(block * 4, ctx.max_line)
                if 2 * block >= ctx.max_line and not scanned:
                    scanned = True
                    if _first_problem(ctx, names, lengths_only=True):
                        _report_first_problem(ctx, names, exc)
                        return
                continue
            _report_first_problem(ctx, names, exc)
            return
        except (EOFError, OSError, zlib.error) as exc:  # a broken gzip stream, an I/O error
            ctx.report.error("read", ctx.label, unreadable(exc, gz))
            return
        finally:
            stream.close()


def _report_first_problem(ctx: ReadContext, names: list[str], exc: Exception) -> None:
    found = _first_problem(ctx, names)
    if found is not None:
        ctx.report.error(found.code, ctx.label, found.message, line=found.line,
                         value=found.value)
    else:
        ctx.report.error("structure", ctx.label,
                         f"unreadable CSV: {one_line(exc, SHOW_CHARS)}")


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


def _digit_text(raw: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array] | None:
    """The value starts, lengths and the bytes of a string block whose every value is 1-18
    ASCII digits, seen from its buffers; None if any value is not such."""
    if (not isinstance(raw, pa.Array) or raw.null_count or not len(raw)
            or not pa.types.is_string(raw.type)):
        return None
    offsets, data = raw.buffers()[1:3]
    ends = pa.Array.from_buffers(pa.int32(), len(raw) + 1, [None, offsets], offset=raw.offset)
    starts = ends.slice(0, len(raw))
    lengths = pc.subtract(ends.slice(1), starts)
    lo, hi = pc.min_max(lengths).values()
    if lo.as_py() < 1 or hi.as_py() > 18:
        return None
    first = ends[0].as_py()
    chars = pa.Array.from_buffers(pa.uint8(), ends[-1].as_py() - first, [None, data],
                                  offset=first)
    lo, hi = pc.min_max(chars).values()
    if lo.as_py() < ord("0") or hi.as_py() > ord("9"):
        return None
    return starts, lengths, chars


def plain_counts(raw: pa.Array) -> pa.Array | None:
    """int64 counts of a block whose every value is a count (as :func:`is_count` says), found
    from the min and max of its bytes and lengths (~2x cheaper than the per-value test); None
    if any value is not one (the caller then takes the per-value path and reports it)."""
    if _digit_text(raw) is None:
        return None
    return pc.cast(raw, pa.int64())


def counts_as_written(ctx: ReadContext, batch: CsvBatch, column: str
                      ) -> tuple[pa.Array, pa.Array | None, pa.Array | None]:
    """:func:`parse_counts`, which rows are valid counts (None: every row) and which valid rows
    are written with a leading zero (``007``, which a writer would not give back; None: no
    row), for a reader that keeps such spellings."""
    raw = batch.columns[column]
    found = _digit_text(raw)
    if found is None:  # some value is not a count: the per-value path reports it
        ok = is_count(raw)
        zero = pc.and_(pc.starts_with(raw, "0"), pc.greater(pc.binary_length(raw), 1))
        return parse_counts(ctx, batch, column), ok, pc.and_(ok, zero)
    starts, lengths, chars = found
    if starts[0].as_py():  # chars begins at the first value
        starts = pc.subtract(starts, starts[0])
    heads = pc.take(chars, starts)  # each value's first digit
    zero = None
    if pc.min(heads).as_py() == ord("0"):
        zero = pc.and_(pc.equal(heads, ord("0")), pc.greater(lengths, 1))
        zero = zero if pc.any(zero).as_py() else None
    return pc.cast(raw, pa.int64()), None, zero


def parse_counts(ctx: ReadContext, batch: CsvBatch, column: str, most: int | None = None
                 ) -> pa.Array:
    """A column of non-negative integer counts as int64; bad cells (and, given ``most``, counts
    above it: an int32 column) are reported (and read as 0)."""
    raw = batch.columns[column]
    plain = plain_counts(raw)  # the usual case: a check of the buffers and a cast
    if plain is not None:
        counts = plain
    elif pc.all(ok := is_count(raw)).as_py():  # nulls, no rows, a chunked column
        counts = pc.cast(raw, pa.int64())
    else:
        bad = pc.invert(ok)  # some row is bad: report each
        empty = pc.equal(raw, "")
        negative = pc.match_substring_regex(raw, r"^-[0-9]+$")
        other = pc.and_(bad, pc.invert(pc.or_(empty, negative)))
        report_rows(ctx, batch, empty, column, "missing", "empty value; expected a token count")
        report_rows(ctx, batch, negative, column, "negative", "negative token count")
        report_rows(ctx, batch, other, column, "not-integer", "expected a non-negative integer")
        counts = pc.cast(pc.if_else(ok, raw, "0"), pa.int64())
    if most is None or not pc.any(big := pc.greater(counts, most)).as_py():
        return counts
    report_rows(ctx, batch, big, column, "range", f"larger than {most:,}")
    return pc.if_else(big, 0, counts)
