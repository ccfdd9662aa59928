"""Registry traces and trace files as unified Parquet files: the one way to one.

:func:`convert_source` converts a source's cached native files into the cache's
Hive-partitioned dataset; :func:`registry_path` is the cached unified file of one registry
trace, fetched and converted on first use; :func:`unified_path` is that, or a unified file for
any path (a native file converted into a temporary file).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import InvalidTraceError, NoSuchFileError, UnknownSourceError
from ..formats.parquet import is_unified, read_metadata, read_stream
from ..paths import converted_path, home
from ..registry import Source, get_source, load_registry
from ..report import Report
from ..schema import SCHEMA_VERSION
from .write import write_file

PathLike = str | os.PathLike[str]


def source_of(target: str, registry: Path | None = None) -> Source:
    """The registry source ``target`` names; a target that looks like a path (a suffix or a
    slash) and is no source id is a file that does not exist, and is reported as one."""
    try:
        return get_source(target, registry)
    except UnknownSourceError:
        if Path(target).suffix or "/" in target or os.sep in target:
            raise NoSuchFileError(f"no such file: {target}") from None
        raise


def convert_source(source_id: str, trace: str | None = None, *, root: Path | None = None,
                   dataset: Path | None = None, strict: bool = False,
                   registry: Path | None = None, options: dict[str, Any] | None = None,
                   skip_missing: Callable[[str], None] | None = None
                   ) -> list[tuple[str, Path, int, Report]]:
    """Convert the cached native files of a source into the Hive-partitioned dataset.

    Returns ``(trace_id, output path, rows, report)`` per trace; fetch the files first
    (:func:`llmtraces.fetch`). A trace whose file is not cached raises
    :class:`NotCachedError`, or, given ``skip_missing``, is passed to it and skipped.

    Examples
    --------
    >>> import llmtraces
    >>> _ = llmtraces.fetch("azure-llm-2023", "code")       # from the copy in the package
    >>> [(t, rows) for t, _, rows, _ in convert_source("azure-llm-2023", "code")]
    [('code', 8819)]
    """
    # Converting a file imports this module too: the download stack loads only for sources.
    from ..fetching.discover import resolve  # lazy: requests, urllib3, filelock, tqdm
    from ..fetching.natives import native_files, split_cached  # lazy: as above

    root = home(root)
    source = resolve(get_source(source_id, registry), root, trace)
    wanted = list(source.select(trace))
    if skip_missing is not None:
        wanted, missing = split_cached(source, wanted, root)
        for trace_id in missing:
            skip_missing(trace_id)
    out = []
    for trace_id, native, verified in native_files(source, wanted, root):
        dest = converted_path(source.id, trace_id, root, dataset)
        rows, report = write_file(native, dest, source=source, trace=trace_id,
                                  verified=verified, strict=strict, registry=registry,
                                  options=options)
        out.append((trace_id, dest, rows, report))
    return out


def registry_path(spec: str, trace: str | None = None, *, root: PathLike | None = None,
                  mirror: str | None = None, offline: bool | None = None,
                  tokenizer: str | None = None) -> Path:
    """The cached unified Parquet file of a registry trace, fetched and converted on first use.

    ``spec`` is a source id, or ``source/trace`` when ``trace`` is not given. A name that is
    neither a file nor a known source is an error that suggests the closest source id.

    >>> registry_path("azure-llm-2023/code").name
    'part-0.parquet'
    """
    from ..fetching.discover import with_discovered  # lazy: as in convert_source
    from ..fetching.download import fetch, quiet_log  # lazy: as in convert_source

    src = _source_of(spec, trace)
    if trace is None and spec != src.id:
        trace = spec[len(src.id) + 1:]
    root_dir = home(root)
    if src.discover is not None:
        if trace not in with_discovered(src, root_dir).traces:
            fetch(src.id, trace, root=root_dir, mirror=mirror, offline=offline, log=quiet_log)
        src = with_discovered(src, root_dir)
    trace_id, _ = src.trace(trace)
    dest = converted_path(src.id, trace_id, root_dir)
    if not _is_current(dest) or not _same_tokenizer(dest, tokenizer):
        fetch(src.id, trace_id, root=root_dir, mirror=mirror, offline=offline, log=quiet_log)
        convert_source(src.id, trace_id, root=root_dir, options=reader_options(tokenizer))
    return dest


@contextmanager
def unified_path(source_or_path: PathLike, trace: str | None = None, *,
                 root: PathLike | None = None, mirror: str | None = None,
                 offline: bool | None = None, tokenizer: str | None = None
                 ) -> Iterator[Path]:
    """A unified Parquet file for a registry trace (converted into the cache on first use) or
    for a path (a native file converted into a temporary file, removed on exit)."""
    as_path = Path(os.fspath(source_or_path)).expanduser()
    if as_path.exists() or isinstance(source_or_path, os.PathLike):
        if not as_path.exists():
            raise InvalidTraceError(f"{as_path}: no such file")
        if is_unified(as_path):
            read_stream(as_path)  # refuses Parquet that is not a unified trace (metadata, columns)
            yield as_path
            return
        with tempfile.TemporaryDirectory(prefix="llmtraces-") as tmp:
            out = Path(tmp) / "trace.parquet"
            write_file(as_path, out, options=reader_options(tokenizer))
            yield out
        return
    yield registry_path(str(source_or_path), trace, root=root, mirror=mirror, offline=offline,
                        tokenizer=tokenizer)


def reader_options(tokenizer: str | None) -> dict[str, Any]:
    """Reader options for a tokenizer spec (none: the reader's default)."""
    return {"tokenizer": tokenizer} if tokenizer else {}


def _source_of(spec: str, trace: str | None) -> Source:
    """The registry source that ``spec`` (an id, or ``id/trace``) names."""
    head, sep, _ = spec.partition("/")
    if sep and trace is None and head in load_registry():
        return get_source(head)
    return source_of(spec)  # a path-like name that is no source: "no such file"


def _is_current(path: Path) -> bool:
    """Whether ``path`` is a converted trace in the current schema version."""
    try:
        return path.is_file() and read_metadata(path).get("schema_version") == SCHEMA_VERSION
    except InvalidTraceError:
        return False


def _same_tokenizer(path: Path, tokenizer: str | None) -> bool:
    """Whether the converted trace at ``path`` counted tokens with ``tokenizer`` (True when
    none is asked for)."""
    if tokenizer is None:
        return True
    used = read_metadata(path).get("tokenizer") or {}
    return tokenizer in (used.get("spec"), used.get("name"))
