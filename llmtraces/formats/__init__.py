"""Trace formats: one module per format family, holding its reader and its writer.

A module exports ``FORMATS`` (native readers: :class:`NativeFormat`, recognised from a file's
first line or Parquet schema) and/or ``WRITER`` / ``WRITERS`` (export formats:
:class:`Writer`). Modules are discovered at run time (``_``-prefixed ones are helpers), so
adding a format is adding a module.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from .._plugins import lookup, modules
from ..errors import InvalidTraceError, LLMTracesError, RegistryError, UnknownSourceError
from ..registry import AUTO_FORMAT, Source
from ..schema import METADATA_KEY, TRACE_SCHEMA, TraceStream
from ..text import GZIP_MAGIC, ReadContext, label_of, one_line, read_first_line  # noqa: F401
from ..text.limits import require_regular_file
from ..timing import TimeSemantics

PARQUET_MAGIC = b"PAR1"


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


def check_formats(source: Source) -> None:
    """Fail, naming the registry field, if ``source`` names a reader that does not exist.

    The registry is models only (it sits below the formats), so this check runs where a
    source is read: convert and validate.
    """
    named = [("format", source.format)] + [(f"traces.{tid}.format", tr.format)
                                           for tid, tr in source.traces.items() if tr.format]
    for where, name in named:
        if name == AUTO_FORMAT:
            continue
        try:
            get_format(name)
        except UnknownSourceError as exc:
            raise RegistryError(f"registry entry {source.id}: {where}: {exc}") from None


def get_format(name: str) -> NativeFormat:
    """The native format called ``name``."""
    formats = all_formats()
    try:
        return formats[name]
    except KeyError:
        raise UnknownSourceError(lookup(formats, name, "native format")) from None


def sniff(path: Path) -> NativeFormat:
    """The native format of ``path``, recognised from its first line (or Parquet schema)."""
    label = label_of(path)
    if not path.exists():
        raise InvalidTraceError(f"{label}: no such file")
    require_regular_file(path, label)  # a FIFO would block the read below forever
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic == PARQUET_MAGIC:
        import pyarrow.parquet as pq

        try:
            schema = pq.read_schema(path)
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise InvalidTraceError(f"{label}: not a readable Parquet file: {one_line(exc)}") \
                from None
        first = f"Parquet columns {schema.names}"
        matches = [f for f in all_formats().values() if f.sniff_parquet(schema)]
    else:
        first = read_first_line(path)
        matches = [f for f in all_formats().values() if f.sniff(first)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        if path.stat().st_size == 0:
            raise InvalidTraceError(f"{label}: empty file; expected a trace (`llmtraces formats` "
                                    "lists the formats it reads)")
        seen = repr(first[:100]) + ("..." if len(first) > 100 else "")
        raise InvalidTraceError(f"{label}:1: unrecognised header or first record {seen}; "
                                "`llmtraces formats` lists the formats it reads")
    raise InvalidTraceError(
        f"{label}:1: ambiguous: the first line fits {', '.join(f.name for f in matches)}")


@dataclass(frozen=True)
class Writer:
    """An export format: its name, file suffix and the function that writes a stream."""

    name: str
    suffix: str
    description: str
    write_stream: Callable[[TraceStream, Path], int]

    def write(self, trace: TraceStream | pa.Table, dest: str | os.PathLike[str]) -> int:
        """Write ``trace`` (a stream, a TraceView, or a pyarrow Table in the unified schema
        whose trace metadata is its schema's ``llmtraces.trace`` entry) to ``dest``
        atomically; returns the rows written. Paths and registry ids: ``llmtraces.export``."""
        if isinstance(trace, pa.Table):
            missing = [n for n in TRACE_SCHEMA.names if n not in trace.schema.names]
            if missing:
                raise InvalidTraceError(f"not a unified trace table: no columns {missing}")
            raw = (trace.schema.metadata or {}).get(METADATA_KEY.encode())
            meta = {**(json.loads(raw) if raw else {}), "rows": trace.num_rows}
            table = trace.select(TRACE_SCHEMA.names).cast(TRACE_SCHEMA)
            trace = TraceStream(iter(table.to_batches(max_chunksize=1 << 17)), meta)
        elif not isinstance(trace, TraceStream):
            raise TypeError(f"the {self.name} writer takes a TraceStream, a TraceView or a "
                            f"pyarrow Table, not a {type(trace).__name__}; for a path or a "
                            f"registry id use llmtraces.export(trace, path, to={self.name!r})")
        return self.write_stream(trace, Path(dest))


@lru_cache(maxsize=1)
def all_writers() -> dict[str, Writer]:
    """Every export format in this package, keyed by name."""
    found: dict[str, Writer] = {}
    for module in modules(__name__, __path__):
        # WRITER, or WRITERS for a family with several export formats
        single = getattr(module, "WRITER", None)
        for writer in getattr(module, "WRITERS", (single,) if single else ()):
            found[writer.name] = writer
    return found


def get_writer(name: str) -> Writer:
    """The export format called ``name``; a mistyped name gets the closest ones suggested."""
    writers = all_writers()
    try:
        return writers[name]
    except KeyError:
        raise LLMTracesError(lookup(writers, name, "output format")) from None
