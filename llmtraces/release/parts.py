"""One trace, ready for a release: fetched (or found in the cache), converted and strictly
validated through the ordinary pipeline, then rewritten with the pinned writer and hashed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import InvalidTraceError
from ..fetching.download import fetch
from ..formats.parquet import read_metadata
from ..paths import converted_path
from ..pipeline.convert import convert_source
from ..pipeline.validate import validate_source
from ..registry import Source
from ..schema import SCHEMA_VERSION
from .content_hash import content_sha256
from .layout import write_pinned
from .sums import file_hashes

Log = Callable[[str], None]


@dataclass(frozen=True)
class Fetching:
    """How natives are got: the cache home, the network switch, a mirror, progress."""

    root: Path
    offline: bool
    mirror: str | None
    show_progress: bool
    log: Log


@dataclass(frozen=True)
class Written:
    """A trace's file as written into a release."""

    path: Path
    bytes: int
    sha256: str
    md5: str
    rows: int
    content_sha256: str
    meta: dict[str, Any]


def _reusable(part: Path, source: Source, trace_id: str) -> bool:
    """Whether the cached conversion ``part`` came from the pinned native with this version of
    the converter (anything else is converted again)."""
    if not part.is_file():
        return False
    try:
        meta = read_metadata(part)
    except InvalidTraceError:
        return False
    pinned = source.traces[trace_id].pins.sha256
    return (meta.get("schema_version") == SCHEMA_VERSION
            and meta.get("converter") == f"llmtraces {__version__}"
            and (pinned is None or meta.get("native_sha256") == pinned))


def converted_part(source: Source, trace_id: str, how: Fetching) -> Path:
    """The cache's converted part of one trace, fetched, converted and validated strictly (a
    failure of any step is its error, naming the file)."""
    fetch(source.id, trace_id, root=how.root, mirror=how.mirror, offline=how.offline,
          show_progress=how.show_progress, log=how.log)
    part = converted_path(source.id, trace_id, how.root)
    if not _reusable(part, source, trace_id):
        convert_source(source.id, trace_id, root=how.root, strict=True)
    report = validate_source(source.id, trace_id, root=how.root, strict=True)
    if report.failed(strict=True):
        raise InvalidTraceError(f"{source.id}/{trace_id} did not validate strictly: "
                                + "; ".join(report.lines()[:3]), report)
    return part


def write_part(part: Path, dest: Path) -> Written:
    """Rewrite a converted part into ``dest`` with the pinned writer, and describe it."""
    meta = read_metadata(part)
    rows = write_pinned(part, dest, meta)
    size, sha, md5 = file_hashes(dest)
    content, counted = content_sha256(dest)
    if counted != rows or meta.get("rows") not in (None, rows):
        raise InvalidTraceError(f"{dest}: {counted} rows read back, {rows} written, "
                                f"{meta.get('rows')} in its metadata")
    return Written(dest, size, sha, md5, rows, content, meta)
