"""A trace written into a file of any export format, atomically, its licence kept with it.

:func:`write_trace` writes a unified stream: a Parquet file carries the licence in its trace
metadata, any other format gets a ``<file>.LICENCE.txt`` beside it when the licence restricts
use. :func:`write_file` reads a native or unified trace file (checked as ``validate`` checks
it) and writes it so. The API's ``export``, ``convert_file`` and the cache's conversions all
write through here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InvalidTraceError
from ..formats import get_writer
from ..formats.parquet import is_unified, read_stream
from ..licensing import notice, write_sidecar
from ..registry import Source
from ..report import Report
from ..schema import TraceStream
from .scan import identify, scan
from .validate import require_valid_unified

#: A hook that gets the unified stream and the input path (None when the input was no file)
#: and returns the stream to write instead (see :class:`llmtraces.transforms.Plan`).
Transform = Callable[[TraceStream, Path | None], TraceStream]


def write_trace(stream: TraceStream, dest: Path, to: str = "parquet",
                report: Report | None = None) -> int:
    """Write ``stream`` to ``dest`` in format ``to`` atomically, with the licence sidecar a
    restricted trace needs; its licence notice goes to ``report``. Returns the rows written."""
    rows = get_writer(to).write(stream, dest)
    line = notice(stream.meta)
    if line is not None:
        if report is not None:
            report.notices.append(line)
        if to != "parquet":  # Parquet carries the licence in its trace metadata
            write_sidecar(dest, stream.meta)
    return rows


def refuse_overwrite(source: Path, dest: Path) -> None:
    """A conversion never writes over its own input."""
    if Path(dest).resolve() == Path(source).resolve():
        raise InvalidTraceError(f"{dest}: the output would overwrite the input; pick another -o")


def write_file(path: Path, dest: Path, *, to: str = "parquet", source: Source | None = None,
               trace: str | None = None, verified: bool = False, strict: bool = False,
               registry: Path | None = None, options: dict[str, Any] | None = None,
               transform: Transform | None = None) -> tuple[int, Report]:
    """Convert one trace file (native, or unified Parquet) into ``dest`` in format ``to``;
    nothing is left at ``dest`` on error. Returns the rows written and the report.

    A native file is recognised from its header (or its registry entry: ``source``,
    ``trace``, ``registry``) and read through its reader and the checks, ``options`` going
    to the reader (e.g. ``{"tokenizer": "o200k_base"}``).
    """
    report = Report()
    path = Path(path)
    refuse_overwrite(path, dest)
    if is_unified(path):
        require_valid_unified(path, report, strict=strict, registry=registry)  # validate's checks
        stream = read_stream(path)
    else:
        ident = identify(path, report, source=source, trace_id=trace, verified=verified,
                         registry=registry)
        stream = scan(ident, report, strict=strict, options=options)
    if transform is not None:
        stream = transform(stream, path)
    return write_trace(stream, Path(dest), to, report), report
