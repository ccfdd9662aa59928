"""Streaming JSON Lines shared by the JSONL formats: typed keys, exact line numbers, layout.

Reading: the file (plain or gzip) is read in blocks of whole lines (``ctx.batch_bytes``, so
memory is bounded by one block plus the longest line). Each block is parsed by ``pyarrow.json``
against the expected keys and types (the fast path, about 4x Python's ``json``). A block that
pyarrow refuses, or reads differently from its lines (a blank line it skipped, a missing or
unknown key, a null in a list, NaN), is parsed again line by line with Python's ``json`` (the
exact path), which reports every bad line. Every physical line is one record, so row ``i`` of
a block is line ``start + i + 1`` on both paths; a bad line becomes a row of nulls that is
never converted, since the report then fails. A block's problems, from parsing and from the
caller's value checks, reach the report in line order.

Limits (:mod:`llmtraces.text.limits`): a line longer than ``ctx.max_line`` ends the read with
an error naming it, before it is held whole; a line nested deeper than ``ctx.max_depth`` is an
error, found before any parser sees the block (deep nesting crashes parsers).

Writing is :mod:`llmtraces.text.jsonlwrite`, in the layout :func:`describe_layout` records.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from ..report import Level, Problem, Report
from . import ReadContext, is_gzip, unreadable
from .limits import deep_lines, is_too_deep, line_too_long, max_json_depth, too_deep

Kind = Literal["int", "number", "string", "int_list", "bool"]

_ARROW: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "number": pa.float64(),
    "string": pa.string(),
    "int_list": pa.list_(pa.int64()),
    "bool": pa.bool_(),
}
_EXPECT = {
    "int": "expected an integer",
    "number": "expected a number",
    "string": "expected a string",
    "int_list": "expected a list of integers",
    "bool": "expected true or false",
}
_INT64 = (-(1 << 63), (1 << 63) - 1)
_BOM = b"\xef\xbb\xbf"
#: Separator pairs tried, in order, to describe how a file was serialised.
_SEPARATORS = ((", ", ": "), (",", ":"), (",", ": "), (", ", ":"))
_KEY = re.compile(r'"((?:[^"\\]|\\.)*)"\s*:')
SHOW_CHARS = 120
PARSE_CHUNK = 256 << 10


@dataclass(frozen=True)
class Key:
    """One expected key of a record: its name, JSON type and whether every record needs it."""

    name: str
    kind: Kind
    required: bool = True


class LineOrdered(Report):
    """Collects one block's problems, then hands them to the real report sorted by line, so
    the first problem reported is the earliest line, whichever check found it."""

    def __init__(self, target: Report) -> None:
        super().__init__()
        self.target = target

    def add(self, problem: Problem) -> None:
        self.problems.append(problem)

    def flush(self) -> None:
        for problem in sorted(self.problems, key=lambda p: p.line or 0):
            self.target.add(problem)
        self.problems.clear()


@dataclass(frozen=True)
class JsonBlock:
    """One block of records as typed columns (null where a value is absent or bad).

    ``extra`` holds, per row, the keys that are not expected (None when no row has any), so a
    caller can keep them in the unified ``extra`` column.
    """

    start: int
    num_rows: int
    columns: dict[str, pa.Array]
    extra: list[dict[str, Any] | None] | None
    problems: LineOrdered

    def line(self, i: int) -> int:
        """Physical 1-based line of row ``i`` of this block."""
        return self.start + i + 1

    def flush(self) -> None:
        """Hand this block's problems to the report in line order; call it before yielding
        the block's batch, so the report is complete when the batch is judged."""
        self.problems.flush()


def show(value: Any) -> str:
    """A value as the report prints it: its JSON text (so ``"12"`` and ``12`` differ), cut to
    :data:`SHOW_CHARS` characters."""
    return cut(json.dumps(value, ensure_ascii=False))


def cut(text: str) -> str:
    """``text`` cut to :data:`SHOW_CHARS` characters, for whole lines in reports."""
    return text if len(text) <= SHOW_CHARS else text[: SHOW_CHARS - 1] + "…"


def first_record_keys(first_line: str) -> set[str] | None:
    """The keys of a JSONL file's first record, or None if it does not start like an object.

    ``read_first_line`` stops at 64 KiB, and a record with thousands of hash ids can be
    longer; then the keys are read from the text up to the cut (values here hold no ``":``).
    """
    text = first_line.strip()
    if not text.startswith("{"):
        return None
    try:
        if is_too_deep(text, max_json_depth()):
            raise ValueError("too deep to parse")  # the reader reports it with its line
        obj = json.loads(text)
    except ValueError:
        return set(_KEY.findall(text)) or None
    return set(obj) if isinstance(obj, dict) else None


_TIMESTAMP = re.compile(r'"timestamp"\s*:\s*(-?[0-9][0-9.eE+-]*)')


def timestamp_is_float(first_line: str) -> bool:
    """Whether the first record writes ``timestamp`` as a JSON float (``0.0``, ``1e3``), the
    sign by which seconds files (vLLM timed_trace, GuideLLM) are told from Mooncake's integer
    milliseconds. Read from the text, so a record cut at the sniff limit still answers."""
    m = _TIMESTAMP.search(first_line)
    return m is not None and any(c in m.group(1) for c in ".eE")


def describe_layout(line: str) -> dict[str, Any]:
    """How one record was serialised: key order, separators and ASCII escaping.

    ``exact`` says whether ``json.dumps`` with these settings gives the line back byte for
    byte, i.e. whether a writer using them can reproduce the file.
    """
    text = line.rstrip("\r\n")
    try:
        if is_too_deep(text, max_json_depth()):
            raise ValueError("too deep to parse")
        obj = json.loads(text)
    except ValueError:
        return {"keys": [], "separators": list(_SEPARATORS[0]), "ensure_ascii": True,
                "exact": False}
    keys = list(obj) if isinstance(obj, dict) else []
    for seps in _SEPARATORS:
        for ascii_ in (True, False):
            if json.dumps(obj, separators=seps, ensure_ascii=ascii_) == text:
                return {"keys": keys, "separators": list(seps), "ensure_ascii": ascii_,
                        "exact": True}
    return {"keys": keys, "separators": list(_SEPARATORS[0]), "ensure_ascii": True,
            "exact": False}


def _read_full(fh: Any, size: int) -> bytes:
    """``size`` bytes, or fewer at the end (a pyarrow stream returns at most its buffer)."""
    parts = []
    got = 0
    while got < size:
        part = fh.read(size - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _first_length(buf: bytes) -> int:
    """Bytes of the first line of ``buf`` without its line end (LF or CRLF); without a newline,
    all of ``buf`` but a last CR (its LF may come in the next piece)."""
    end = buf.find(b"\n")
    if end < 0:
        return len(buf) - buf.endswith(b"\r")
    return end - (end > 0 and buf[end - 1] == 13)


def _line_blocks(ctx: ReadContext) -> Iterator[bytes]:
    """The (possibly gzip) file as blocks of whole lines; only the last may lack its newline.

    Reads go in pieces of at most ``ctx.max_line`` bytes, so only the first line of a piece
    plus what came before it can be longer than the limit: that one line is measured, and a
    line over the limit (or a broken gzip stream) is an error that ends the read.
    """
    gz = is_gzip(ctx.path)
    piece = max(1, min(ctx.batch_bytes, ctx.max_line))
    lines = 0
    try:
        with pa.input_stream(ctx.path, compression="gzip" if gz else None) as fh:
            rest = b""
            while True:
                chunk = _read_full(fh, piece)
                if not chunk:
                    if rest and _first_length(rest) > ctx.max_line:
                        ctx.report.error("line-length", ctx.label, line_too_long(ctx.max_line),
                                         line=lines + 1)
                    elif rest:
                        yield rest
                    return
                buf = rest + chunk if rest else chunk
                if _first_length(buf) > ctx.max_line:
                    ctx.report.error("line-length", ctx.label, line_too_long(ctx.max_line),
                                     line=lines + 1)
                    return
                cut = buf.rfind(b"\n")
                if cut < 0:  # a line longer than a block: keep reading
                    rest = buf
                    continue
                lines += buf.count(b"\n", 0, cut + 1)
                yield buf[: cut + 1]
                rest = buf[cut + 1:]
    except (EOFError, OSError, zlib.error) as exc:
        ctx.report.error("read", ctx.label, unreadable(exc, gz), line=lines + 1)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of repeated keys silently; pyarrow refuses them: so do we.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        names = [k for k, _ in pairs]
        dupe = next(k for k in names if names.count(k) > 1)
        raise ValueError(f"key {dupe!r} appears twice")
    return obj


def _valid(kind: Kind, value: Any) -> bool:
    if kind == "int":
        return type(value) is int and _INT64[0] <= value <= _INT64[1]
    if kind == "number":
        return (type(value) is int and _INT64[0] <= value <= _INT64[1]) or (
            type(value) is float and math.isfinite(value))
    if kind == "string":
        return type(value) is str and (value.isascii() or _encodable(value))
    if kind == "bool":
        return type(value) is bool
    return type(value) is list and all(
        type(v) is int and _INT64[0] <= v <= _INT64[1] for v in value)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")  # json.loads lets lone surrogates (\\ud800) through
    except UnicodeEncodeError:
        return False
    return True


def _fast(block: bytes, n_lines: int, keys: Sequence[Key], schema: pa.Schema
          ) -> dict[str, pa.Array] | None:
    """The block through pyarrow, or None if anything needs the exact path to be explained."""
    # 256 KiB parse chunks let pyarrow use its threads (about 2x on 2 cores); a line longer
    # than a chunk makes it refuse ("straddling object"), so it then parses in one piece.
    size = min(len(block), PARSE_CHUNK)
    while True:
        try:
            table = pj.read_json(
                pa.py_buffer(block),
                read_options=pj.ReadOptions(block_size=max(size, 1), use_threads=True),
                parse_options=pj.ParseOptions(explicit_schema=schema,
                                              unexpected_field_behavior="infer"))
            break
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            if "straddl" in str(exc) and size < len(block):
                size = len(block)
                continue
            return None
    # pyarrow skips blank lines silently and accepts two objects on one line: the row count
    # must equal the line count for record i to be line i.
    if table.num_rows != n_lines or len(table.schema) != len(keys):
        return None
    columns = {}
    for key in keys:
        col = table.column(key.name).combine_chunks()
        if key.required and col.null_count:
            return None
        if key.kind == "int_list" and pc.list_flatten(col).null_count:
            return None
        if key.kind == "number" and not pc.all(pc.is_finite(col)).as_py():
            return None  # Infinity or an overflowing literal: the exact path names it
        columns[key.name] = col
    return columns


def _exact(ctx: ReadContext, block: bytes, start: int, keys: Sequence[Key],
           deep: Collection[int] = ()
           ) -> tuple[dict[str, pa.Array], list[dict[str, Any] | None] | None]:
    """The block line by line with Python's json, reporting every bad line; the lines in
    ``deep`` (0-based) are nested too deep to parse and are reported without parsing."""
    names = {k.name for k in keys}
    values: dict[str, list[Any]] = {k.name: [] for k in keys}
    extra: list[dict[str, Any] | None] = []
    lines = block.split(b"\n")
    if block.endswith(b"\n"):
        lines.pop()
    for i, raw in enumerate(lines):
        line = start + i + 1
        obj: Any = None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            ctx.report.error("encoding", ctx.label, f"not UTF-8 at byte {exc.start}", line=line,
                             value=cut(raw.decode("utf-8", "replace")))
            text = None
        if text is not None and i in deep:
            ctx.report.error("depth", ctx.label, too_deep(ctx.max_depth), line=line,
                             value=cut(text))
        elif text is not None:
            if not text.strip():
                ctx.report.error("blank", ctx.label, "blank line; expected a JSON object",
                                 line=line, value=text)
            else:
                obj = _parse_line(ctx, text, line)
        row = obj if isinstance(obj, dict) else {}
        for key in keys:
            value = row.get(key.name)
            if value is None:
                if key.required and obj is not None:
                    absent = key.name not in row
                    ctx.report.error("missing" if absent else "type", ctx.label,
                                     f"missing key; {_EXPECT[key.kind]}" if absent
                                     else _EXPECT[key.kind], line=line, column=key.name,
                                     value=None if absent else "null")
            elif not _valid(key.kind, value):
                ctx.report.error("type", ctx.label, _EXPECT[key.kind], line=line,
                                 column=key.name, value=show(value))
                value = None
            values[key.name].append(value)
        unknown = {k: v for k, v in row.items() if k not in names}
        extra.append(unknown or None)
    columns = {k.name: pa.array(values[k.name], _ARROW[k.kind]) for k in keys}
    return columns, (extra if any(e is not None for e in extra) else None)


def _parse_line(ctx: ReadContext, text: str, line: int) -> dict[str, Any] | None:
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates)
    except ValueError as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        where = f" (column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        hint = ""
        if line == 1 and text.startswith("version https://git-lfs"):
            hint = "; this is a Git LFS pointer, not the data (fetch the LFS media URL)"
        ctx.report.error("json", ctx.label, f"not JSON: {msg}{where}{hint}", line=line,
                         value=cut(text))
        return None
    if not isinstance(obj, dict):
        ctx.report.error("json", ctx.label, "expected a JSON object", line=line,
                         value=cut(text))
        return None
    if "\\u" in text and not _encodable(json.dumps(obj, ensure_ascii=False)):
        ctx.report.error("encoding", ctx.label, "a \\u escape gives a lone surrogate, which is "
                         "not text; expected valid Unicode", line=line, value=cut(text))
        return None
    return obj


def iter_jsonl(ctx: ReadContext, keys: Sequence[Key]) -> Iterator[JsonBlock]:
    """Stream a JSONL file as typed blocks, reporting bad lines to ``ctx.report``.

    While a block is out, ``ctx.report`` collects its problems (the caller's checks too) and
    :meth:`JsonBlock.flush` passes them on in line order.

    Fills ``ctx.meta["native_layout"]`` with the first record's layout (see
    :func:`describe_layout`), the newline, whether the file starts with a BOM and, once the
    stream is exhausted, whether the last line ends with a newline.
    """
    schema = pa.schema([pa.field(k.name, _ARROW[k.kind]) for k in keys])
    layout = ctx.meta.setdefault("native_layout", {})
    start = 0
    last = b""
    real = ctx.report
    ordered = ctx.report = LineOrdered(real)  # while the caller checks a block, too
    try:
        for block in _line_blocks(ctx):
            if start == 0:
                bom = block.startswith(_BOM)
                block = block[len(_BOM):] if bom else block
                first = block.split(b"\n", 1)[0]
                layout.update(describe_layout(first.decode("utf-8", "replace")),
                              newline="\r\n" if first.endswith(b"\r") else "\n", bom=bom)
            n_lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
            deep = deep_lines(block, ctx.max_depth)  # before any parser sees them
            columns = None if deep else _fast(block, n_lines, keys, schema)
            extra = None
            if columns is None:
                columns, extra = _exact(ctx, block, start, keys, set(deep))
            yield JsonBlock(start, n_lines, columns, extra, ordered)
            ordered.flush()
            start += n_lines
            last = block
        layout["final_newline"] = last.endswith(b"\n") if start else True
    finally:
        ordered.flush()
        ctx.report = real


def report_rows(ctx: ReadContext, block: JsonBlock, mask: pa.Array, key: str, code: str,
                message: str, level: Level = "error") -> None:
    """Report each row where ``mask`` is true, with its line and the value of ``key``."""
    mask = pc.fill_null(mask, False)
    if not pc.any(mask).as_py():
        return
    values = block.columns[key]
    for i in pc.indices_nonzero(mask).to_pylist():
        ctx.report.add_problem(level, code, ctx.label, message, line=block.line(i), column=key,
                               value=show(values[i].as_py()))


def check_counts(ctx: ReadContext, block: JsonBlock, key: str, what: str) -> pa.Array:
    """A column of non-negative integers: negative values are reported; bad rows read as null."""
    col = block.columns[key]
    negative = pc.less(col, 0)
    report_rows(ctx, block, negative, key, "negative", f"negative {what}")
    return pc.if_else(pc.fill_null(negative, False), pa.scalar(None, pa.int64()), col)


def check_hash_ids(ctx: ReadContext, block: JsonBlock) -> None:
    """Report rows with a negative hash id: upstream remaps ids to integers from 0."""
    ids = block.columns["hash_ids"]
    flat = pc.list_flatten(ids)
    if not len(flat) or pc.min(flat).as_py() >= 0:
        return
    rows = pc.filter(pc.list_parent_indices(ids), pc.less(flat, 0))
    mask = pc.is_in(pa.array(range(block.num_rows), pa.int64()), value_set=rows)
    report_rows(ctx, block, mask, "hash_ids", "negative", "negative hash id")


def check_block_count(ctx: ReadContext, block: JsonBlock, inputs: pa.Array, block_size: int,
                      level: Level) -> None:
    """Report rows whose ``hash_ids`` length is not ``ceil(input_length / block_size)``."""
    ids = block.columns["hash_ids"]
    have = pc.list_value_length(ids)
    want = pc.divide(pc.add(inputs, block_size - 1), block_size)  # integer division
    bad = pc.fill_null(pc.not_equal(have, want), False)
    if not pc.any(bad).as_py():
        return
    have_l, in_l = have.to_pylist(), inputs.to_pylist()
    for i in pc.indices_nonzero(bad).to_pylist():
        n, k = in_l[i], have_l[i]
        ctx.report.add_problem(
            level, "hash-length", ctx.label,
            f"{k} block ids for input_length {n}; expected ceil({n}/{block_size}) = "
            f"{-(-n // block_size)}", line=block.line(i), column="hash_ids",
            value=show(ids[i].as_py()))


def check_order(ctx: ReadContext, block: JsonBlock, arrival: pa.Array, key: str,
                last: int | None) -> int | None:
    """Warn on each row that arrives before the row above it; returns the block's last."""
    n = block.num_rows
    prev = pa.concat_arrays([pa.array([last], pa.int64()), arrival.slice(0, n - 1)])
    report_rows(ctx, block, pc.less(arrival, prev), key, "order",
                "arrives before the previous row (row order is kept)", level="warning")
    valid = arrival.drop_null()
    return valid[-1].as_py() if len(valid) else last


def extra_json(rows: list[dict[str, Any] | None]) -> pa.Array:
    """Per-row dicts as the unified ``extra`` column (JSON text; null for an empty row)."""
    return pa.array([json.dumps(r, ensure_ascii=False) if r else None for r in rows],
                    pa.string())
