"""Streaming native text traces (CSV, JSON Lines, decimal seconds, timestamps) with exact
line numbers: the leaf helpers every format module reads and writes with.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidTraceError
from ..report import Report
from ..timing import TimeSemantics

GZIP_MAGIC = b"\x1f\x8b"


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

    def __post_init__(self) -> None:
        self.label = self.label or str(self.path)


def read_first_line(path: Path, limit: int = 1 << 16) -> str:
    """The first line of a (possibly gzip-compressed) text file, without BOM or line end."""
    with path.open("rb") as fh:
        magic = fh.read(2)
    opener: Any = gzip.open if magic == GZIP_MAGIC else open
    with opener(path, "rb") as fh:
        head = fh.readline(limit)
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidTraceError(f"{path}:1: not UTF-8 text; expected a CSV or JSONL trace") \
            from None
    return text.rstrip("\r\n")
