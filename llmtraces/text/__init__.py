"""Streaming native text traces (CSV, JSON Lines, decimal seconds, timestamps) with exact
line numbers: the leaf helpers every format module reads and writes with.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidTraceError
from ..report import Report
from ..timing import TimeSemantics
from .limits import max_json_depth, max_line_bytes, require_regular_file

GZIP_MAGIC = b"\x1f\x8b"
#: Display names of scratch files that stand for something else, by path (see :func:`named`).
_NAMES: dict[str, str] = {}


@contextmanager
def named(path: Path, name: str) -> Iterator[None]:
    """While the block runs, messages about ``path`` name it ``name``: an archive member
    extracted to a scratch file is reported as ``archive:member``, not as the scratch file."""
    _NAMES[str(path)] = name
    try:
        yield
    finally:
        _NAMES.pop(str(path), None)


def label_of(path: Path) -> str:
    """How messages name ``path``: its :func:`named` name, else the path itself."""
    return _NAMES.get(str(path), str(path))


@dataclass
class ReadContext:
    """What a reader needs besides the bytes: where to report, and what the registry knows."""

    path: Path
    report: Report
    label: str = ""
    time: TimeSemantics | None = None
    service: str | None = None
    batch_bytes: int = 1 << 20  # CSV block: pyarrow reads several ahead, so this bounds RSS
    #: Filled by the reader with what it discovers (e.g. ``time_origin``).
    meta: dict[str, Any] = field(default_factory=dict)
    #: Reader options chosen by the user (e.g. ``tokenizer`` for sources with text only).
    options: dict[str, Any] = field(default_factory=dict)
    #: Longest line read, in bytes (``$LLMTRACES_MAX_LINE_BYTES``, 16 MiB by default).
    max_line: int = field(default_factory=max_line_bytes)
    #: Deepest JSON nesting read (``$LLMTRACES_MAX_JSON_DEPTH``, 64 by default).
    max_depth: int = field(default_factory=max_json_depth)

    def __post_init__(self) -> None:
        if not self.label or self.label == str(self.path):
            self.label = label_of(self.path)


def one_line(exc: BaseException | str, most: int = 200) -> str:
    """An exception's text (pyarrow's span several lines) as one line of at most ``most``
    characters, for a message that must stay one line."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= most else text[: most - 1] + "…"
    return text or type(exc).__name__


def unreadable(exc: BaseException, gz: bool) -> str:
    """What went wrong in a read that failed below the parser: a broken gzip stream, or I/O."""
    if gz:
        return (f"corrupt or truncated gzip data ({one_line(exc).rstrip('.')}); expected a "
                "whole .gz file (fetch it again, or check it with `gzip -t`)")
    return f"cannot read: {one_line(getattr(exc, 'strerror', None) or exc)}"


def is_gzip(path: Path) -> bool:
    """Whether ``path`` starts with the gzip magic bytes."""
    with path.open("rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def read_first_line(path: Path, limit: int = 1 << 16) -> str:
    """The first line of a (possibly gzip-compressed) text file, without BOM or line end.

    A file that cannot be read as text lines (not a regular file, broken gzip, not UTF-8, CR
    line ends) is an :class:`InvalidTraceError` naming it.
    """
    label = label_of(path)
    require_regular_file(path, label)
    gz = is_gzip(path)
    opener: Any = gzip.open if gz else open
    try:
        with opener(path, "rb") as fh:
            head = fh.readline(limit)
    except (EOFError, OSError, zlib.error) as exc:
        raise InvalidTraceError(f"{label}: {unreadable(exc, gz)}") from None
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidTraceError(f"{label}:1: not UTF-8 text; expected a CSV or JSONL trace") \
            from None
    text = text.rstrip("\n").removesuffix("\r")
    if "\r" in text:
        raise InvalidTraceError(f"{label}:1: carriage return (CR) inside the line: CR-only line "
                                "ends (classic Mac) are not read; expected LF or CRLF (convert "
                                "with `tr '\\r' '\\n'`)")
    return text
