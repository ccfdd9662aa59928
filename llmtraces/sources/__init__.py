"""Native trace formats: one module per format family, each exporting ``FORMATS``.

A format knows how to recognise its files from their first line (:meth:`NativeFormat.sniff`)
and how to stream them as unified record batches (:meth:`NativeFormat.read`), reporting every
bad value to the context's :class:`~llmtraces.report.Report`. Modules here are discovered at run
time, so adding a format is adding a module.
"""

from __future__ import annotations

import gzip
import sys
import types
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from .._plugins import lookup, modules
from ..errors import InvalidTraceError, UnknownSourceError
from ..registry import Source, TimeSemantics
from ..report import Report

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"


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


class NativeFormat(ABC):
    """A native file layout that can be recognised and read into the unified schema."""

    name: ClassVar[str]
    description: ClassVar[str]
    #: What the timestamps mean when no registry entry says more (files converted by path).
    time: ClassVar[TimeSemantics]
    #: A format only one publisher uses: the registry source whose licence and citation a
    #: file of this format carries even when converted by path under another name.
    licence_source: ClassVar[str | None] = None

    @abstractmethod
    def sniff(self, first_line: str) -> bool:
        """True if a file whose first line (header or first record) is this has this format."""

    def sniff_parquet(self, schema: pa.Schema) -> bool:
        """True if a (non-llmtraces) Parquet file with this Arrow schema has this format."""
        return False

    @abstractmethod
    def read(self, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        """Stream the file as unified batches, reporting problems to ``ctx.report``."""


@lru_cache(maxsize=1)
def all_formats() -> dict[str, NativeFormat]:
    """Every native format of every module in this package, keyed by name."""
    found: dict[str, NativeFormat] = {}
    for module in modules(__name__, __path__):
        for fmt in getattr(module, "FORMATS", ()):
            found[fmt.name] = fmt
    return found


def get_format(name: str) -> NativeFormat:
    """The native format called ``name``."""
    formats = all_formats()
    try:
        return formats[name]
    except KeyError:
        raise UnknownSourceError(lookup(formats, name, "native format")) from None


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


def sniff(path: Path) -> NativeFormat:
    """The native format of ``path``, recognised from its first line (or Parquet schema)."""
    if not path.is_file():
        raise InvalidTraceError(f"{path}: no such file")
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic == PARQUET_MAGIC:
        import pyarrow.parquet as pq

        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowException) as exc:
            raise InvalidTraceError(f"{path}: not a readable Parquet file: {exc}") from None
        first = f"Parquet columns {schema.names}"
        matches = [f for f in all_formats().values() if f.sniff_parquet(schema)]
    else:
        first = read_first_line(path)
        matches = [f for f in all_formats().values() if f.sniff(first)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        if path.stat().st_size == 0:
            raise InvalidTraceError(f"{path}: empty file; expected a trace (`llmtraces formats` "
                                    "lists the formats it reads)")
        seen = repr(first[:100]) + ("..." if len(first) > 100 else "")
        raise InvalidTraceError(f"{path}:1: unrecognised header or first record {seen}; "
                                "`llmtraces formats` lists the formats it reads")
    raise InvalidTraceError(
        f"{path}:1: ambiguous: the first line fits {', '.join(f.name for f in matches)}")


class _SourcesModule(types.ModuleType):
    """``llmtraces.sources`` is both this package and the documented ``llmtraces.sources()``
    call that lists the registry; a callable module lets both names work without shadowing."""

    def __call__(self, registry: Path | None = None) -> list[Source]:
        from ..api import sources

        return sources(registry)


sys.modules[__name__].__class__ = _SourcesModule
