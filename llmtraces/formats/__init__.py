"""Output formats of the unified trace: one module per format, each exporting ``WRITER``.

A writer takes a stream of unified record batches and the trace metadata and writes one file
atomically. Modules are discovered at run time, so adding a format is adding a module.
:func:`llmtraces.export` is the public way to use them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa

from .._plugins import lookup, modules
from ..errors import LLMTracesError


@dataclass
class TraceStream:
    """Unified batches and the trace metadata that goes with them.

    ``meta`` is live: a reader fills it as it reads, so it holds ``time_origin`` and
    ``native_layout`` once the first batch is out, and the final ``rows`` once ``batches`` is
    exhausted. A stream read from unified Parquet has it all from the start.
    """

    batches: Iterator[pa.RecordBatch]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Writer:
    """An export format: its name, file suffix and the function that writes a stream."""

    name: str
    suffix: str
    description: str
    write_stream: Callable[[TraceStream, Path], int]

    def write(self, trace: Any, dest: str | os.PathLike[str]) -> int:
        """Write ``trace`` (a stream or TraceView, a pyarrow Table, a path or a registry id)
        to ``dest`` atomically; returns the rows written."""
        if not isinstance(trace, TraceStream):
            from ..transforms import open_trace

            trace = open_trace(trace)
        return self.write_stream(trace, Path(dest))


@lru_cache(maxsize=1)
def all_writers() -> dict[str, Writer]:
    """Every export format in this package, keyed by name."""
    found: dict[str, Writer] = {}
    for module in modules(__name__, __path__):
        writer = getattr(module, "WRITER", None)
        if writer is not None:
            found[writer.name] = writer
    return found


def get_writer(name: str) -> Writer:
    """The export format called ``name``; a mistyped name gets the closest ones suggested."""
    writers = all_writers()
    try:
        return writers[name]
    except KeyError:
        raise LLMTracesError(lookup(writers, name, "output format")) from None
