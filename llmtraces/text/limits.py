"""Input limits: the longest line, the deepest JSON nesting, and regular files only.

A hostile or broken input must end in one clear line, never in unbounded memory (one 1 GB
line), a crash (JSON nested 50,000 deep overflows the C stack of ``pyarrow.json``; 1,000 deep
is a ``RecursionError`` in Python's ``json``) or a hang (a FIFO). Both limits have defaults
that no published trace comes near, and an environment variable to change them
(docs/design.md, "Input limits"); a :class:`~llmtraces.text.ReadContext` carries the values
its reader uses.
"""

from __future__ import annotations

import os
import re
import stat
from functools import lru_cache
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InvalidTraceError, LLMTracesError, NoSuchFileError

MAX_LINE_ENV = "LLMTRACES_MAX_LINE_BYTES"
#: Longest line (CSV record or JSON object) read; memory is a few times this.
DEFAULT_MAX_LINE = 16 << 20
LINE_RANGE = (1 << 10, 1 << 30)
MAX_DEPTH_ENV = "LLMTRACES_MAX_JSON_DEPTH"
#: Deepest nesting of arrays and objects in a JSON value (a record, or a JSON cell of a CSV).
DEFAULT_MAX_DEPTH = 64
#: Python's json recurses once per level; past this the interpreter's own limit is near.
DEPTH_RANGE = (2, 512)

MAX_MEMBER_ENV = "LLMTRACES_MAX_MEMBER_BYTES"
#: Largest archive member unpacked (the largest published one, Azure 2024's week of
#: conversations, is under 2 GiB): a zip bomb stops here even under a generous archive budget.
DEFAULT_MAX_MEMBER = 16 << 30
MEMBER_RANGE = (1 << 20, 1 << 40)

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_NOT_OPENERS = bytes(c for c in range(256) if c not in b"[{\n")


def _env_int(name: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise LLMTracesError(f"{name}={raw!r}: expected a whole number from {low:,} to "
                             f"{high:,} (the default is {default:,})")
    return value


def max_line_bytes() -> int:
    """The line-length limit: ``$LLMTRACES_MAX_LINE_BYTES``, else 16 MiB."""
    return _env_int(MAX_LINE_ENV, DEFAULT_MAX_LINE, *LINE_RANGE)


def max_member_bytes() -> int:
    """The per-member unpack limit: ``$LLMTRACES_MAX_MEMBER_BYTES``, else 16 GiB."""
    return _env_int(MAX_MEMBER_ENV, DEFAULT_MAX_MEMBER, *MEMBER_RANGE)


def max_json_depth() -> int:
    """The JSON nesting limit: ``$LLMTRACES_MAX_JSON_DEPTH``, else 64."""
    return _env_int(MAX_DEPTH_ENV, DEFAULT_MAX_DEPTH, *DEPTH_RANGE)


def size_text(n: int) -> str:
    """A byte count as people write limits: ``16 MiB``, ``1,500 bytes``."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n:,} bytes"


def line_too_long(limit: int) -> str:
    """The message for a line over ``limit`` bytes: what, and how to raise the limit."""
    return (f"line longer than {size_text(limit)}; a trace line is far shorter (set "
            f"{MAX_LINE_ENV} to raise the limit)")


def too_deep(limit: int) -> str:
    """The message for JSON nested deeper than ``limit``: what, and how to raise the limit."""
    return (f"JSON nested deeper than {limit} levels (set {MAX_DEPTH_ENV}, at most "
            f"{DEPTH_RANGE[1]}, to raise the limit)")


def json_depth(text: bytes | str) -> int:
    """An upper bound of the nesting a JSON parser reaches in ``text`` (exact for valid JSON):
    the running count of open brackets outside strings, at C speed (no recursion, so any
    depth is safe to measure)."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    codes = pa.Array.from_buffers(pa.uint8(), len(brackets), [None, pa.py_buffer(brackets)])
    # '[' and '{' have bit 1 set, ']' and '}' do not: +1 for an opener, -1 for a closer.
    bit = pc.cast(pc.bit_wise_and(pc.shift_right(codes, 1), 1), pa.int32())
    steps = pc.subtract(pc.multiply(bit, 2), 1)
    return max(0, int(pc.max(pc.cumulative_sum(steps)).as_py()))


def is_too_deep(text: bytes | str, limit: int) -> bool:
    """Whether ``text`` nests JSON deeper than ``limit`` (cheap when it has few brackets)."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    return json_depth(data) > limit


@lru_cache(maxsize=8)
def _opener_run(limit: int) -> re.Pattern[bytes]:
    return re.compile(rb"[\[{]{%d}" % (limit + 1))


def deep_lines(block: bytes, limit: int) -> list[int]:
    """0-based indices of the lines of ``block`` nested deeper than ``limit``.

    A line with at most ``limit`` opening brackets cannot be deeper, and finding the lines
    with more costs one C pass over the block (about 1 ms per MiB); only those are measured.
    """
    openers = block.translate(None, _NOT_OPENERS)  # b"{[\n{[\n": openers, line by line
    run = _opener_run(limit)
    found: list[int] = []
    lines: list[bytes] | None = None
    index = pos = 0
    checked = -1
    for m in run.finditer(openers):
        index += openers.count(b"\n", pos, m.start())
        pos = m.start()
        if index == checked:  # a second run of openers on a line already measured
            continue
        checked = index
        lines = lines if lines is not None else block.split(b"\n")
        if is_too_deep(lines[index], limit):
            found.append(index)
    return found


def require_regular_file(path: Path, label: str | None = None) -> None:
    """Refuse, before opening it, an input that is missing or not a regular file: a FIFO
    would block the read forever, a device or a folder never ends or is no trace."""
    name = label or str(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise NoSuchFileError(f"{name}: no such file") from None
    except OSError as exc:
        raise LLMTracesError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISREG(mode):
        return
    kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    raise InvalidTraceError(f"{name}: {kind}, not a regular file; expected a trace file (save "
                         "a stream to a file first: it is read more than once)")


def deep_cells(values: pa.Array, limit: int) -> list[int]:
    """Indices of the text cells of ``values`` (JSON in a CSV cell, the unified ``extra``)
    nested deeper than ``limit``; counting brackets per cell is vectorised, only cells with
    more than ``limit`` are measured."""
    if values.null_count == len(values):
        return []
    openers = pc.add(pc.count_substring(values, "["), pc.count_substring(values, "{"))
    suspects = pc.indices_nonzero(pc.fill_null(pc.greater(openers, limit), False))
    return [i for i in suspects.to_pylist() if is_too_deep(values[i].as_py(), limit)]


def check_json_cells(values: pa.Array, what: str) -> pa.Array:
    """``values``, once no JSON cell is nested deeper than the limit: a writer parsing the
    unified ``extra`` column (which any Parquet file can fill) checks it before a parser does."""
    limit = max_json_depth()
    deep = deep_cells(values, limit)
    if deep:
        raise InvalidTraceError(f"{what} of row {deep[0] + 1} of a batch: {too_deep(limit)}")
    return values
