"""Sources whose file list comes from the host at fetch time (a Zenodo record of many traces).

``fetch`` asks the record for its files and saves the answer in the cache
(``raw/<id>/.listing.json``), so ``convert``, ``validate``, ``info`` and ``load`` see the same
traces offline. A record file already pinned in the registry keeps its pins; every other data
file becomes a trace named after it, checked against the record's size and md5. A fetched file
that is an archive (zip, tar) becomes an archive of the source, and each data file inside it a
trace ``<archive-id>.<member>``. Files that are neither (README, PDF) are listed as skipped,
never silently dropped. ``llmtraces registry update-hashes`` writes all of it into the registry.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import requests

from ..atomic import atomic_path
from ..errors import DownloadError, LLMTracesError
from ..paths import listing_path, raw_dir
from ..registry import FileEntry, Member, Source, Trace, ZenodoRef, file_name_problem
from .archive import is_archive, list_members
from .backends import zenodo
from .backends.zenodo import RecordFile
from .stamps import is_cached

#: Files that hold one trace each (compressed forms included).
DATA_SUFFIXES = (".csv", ".csv.gz", ".jsonl", ".jsonl.gz", ".parquet")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


def trace_id_for(name: str) -> str:
    """A trace id for a file or member path: its name without the data suffix, with any
    character that a Hive partition or a shell would trip on replaced by ``_``."""
    base = name
    for suffix in sorted(DATA_SUFFIXES + ARCHIVE_SUFFIXES, key=len, reverse=True):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    return re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "file"


def refresh_listing(source: Source, root: Path, session: requests.Session, timeout: float,
                    trace: str | None = None) -> list[RecordFile]:
    """The source's file list: the one saved in the cache when there is one that knows
    ``trace`` (a record version's files never change, so convert works offline), else the
    host's, checked and saved (atomically)."""
    assert source.discover is not None
    saved = saved_listing(source, root)
    if saved is not None and (trace is None or _knows(with_discovered(source, root), trace)):
        return saved
    record = source.discover.zenodo
    files = zenodo.record_files(session, record, timeout)
    path = listing_path(source.id, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"zenodo": record, "files": files}, indent=1),
                       encoding="utf-8")
    return zenodo.parse_files(record, files)


def _knows(source: Source, trace: str) -> bool:
    """Whether ``trace`` names a trace or an archive of ``source``."""
    return trace in source.traces or trace in source.archives


def saved_listing(source: Source, root: Path) -> list[RecordFile] | None:
    """The file list saved by the last online fetch, or None (also when it is unreadable or
    not a valid record listing: the next online fetch replaces it)."""
    try:
        data = json.loads(listing_path(source.id, root).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if source.discover is None or not isinstance(data, dict) or \
            data.get("zenodo") != source.discover.zenodo:
        return None  # the registry now points at another record version
    try:
        return zenodo.parse_files(source.discover.zenodo, data.get("files") or [])
    except DownloadError:
        return None


def is_trace_file(key: str) -> bool:
    """Whether a record file is a trace or an archive of traces (by its suffix); a hidden
    name (``.x.csv``) is not, as the cache keeps those names for its own files."""
    return key.lower().endswith(DATA_SUFFIXES + ARCHIVE_SUFFIXES) and not file_name_problem(key)


def _entry(record: str, f: RecordFile) -> FileEntry:
    """The registry entry of a listed data file or archive, pinned by the record."""
    return FileEntry(name=f.key, url=f.download_url(record, zenodo.DEFAULT_BASE), size=f.size,
                     md5=f.md5, zenodo=ZenodoRef(record=record, key=f.key),
                     unverified=None if f.md5 else "the record gives no md5")


def skipped(source: Source, root: Path) -> list[str]:
    """Record files that are not traces (documentation, papers), for ``info`` and ``fetch``."""
    files = saved_listing(source, root) or []
    return [f.key for f in files if not is_trace_file(f.key)]


def _unique(tid: str, taken: set[str]) -> str:
    n, out = 2, tid
    while out in taken:
        out, n = f"{tid}_{n}", n + 1
    taken.add(out)
    return out


def with_discovered(source: Source, root: Path) -> Source:
    """``source`` with the traces of its saved host listing added (itself when it has none).

    Archives already in the cache are opened (their member list only) so that each data file
    inside becomes a trace; an archive not yet fetched is a trace of its own until it is.
    """
    if source.discover is None:
        return source
    files = saved_listing(source, root)
    if not files:
        return source
    record = source.discover.zenodo
    pinned = {tr.file.name for tr in source.traces.values() if tr.file is not None}
    pinned |= {a.name for a in source.archives.values()}
    traces, archives = dict(source.traces), dict(source.archives)
    taken = set(traces) | set(archives)
    for f in files:
        key = f.key
        low = key.lower()
        if key in pinned or not is_trace_file(key):
            continue
        entry = _entry(record, f)
        tid = _unique(trace_id_for(key), taken)
        local = raw_dir(source.id, root) / key
        if low.endswith(ARCHIVE_SUFFIXES) and is_cached(local, entry) and is_archive(local):
            archives[tid] = entry
            for name in list_members(local):
                if name.lower().endswith(DATA_SUFFIXES):
                    mid = _unique(f"{tid}.{trace_id_for(name)}", taken)
                    traces[mid] = Trace(description=f"{name} in {key} (Zenodo record {record})",
                                        member=Member(archive=tid, path=name))
            continue
        traces[tid] = Trace(description=f"{key} (Zenodo record {record})", file=entry)
    return source.model_copy(update={"traces": traces, "archives": archives})


def resolve(source: Source, root: Path, trace: str | None = None) -> Source:
    """The source as convert, validate and load see it: with its discovered traces, and a
    clear error when a discover-only source has never been fetched."""
    full = with_discovered(source, root)
    if not full.traces:
        raise LLMTracesError(f"{source.id}: its files are listed by Zenodo record "
                             f"{source.discover.zenodo if source.discover else '?'} at fetch "
                             f"time; run `llmtraces fetch {source.id}` once online")
    if trace is not None:
        full.select(trace)  # an unknown id fails here, with the ids there are
    return full
