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
from typing import Any

import requests

from ..atomic import atomic_path
from ..errors import LLMTracesError
from ..paths import listing_path, raw_dir
from ..registry import FileEntry, Member, Source, Trace, ZenodoRef
from .archive import is_archive, list_members
from .backends import zenodo
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


def refresh_listing(source: Source, root: Path, session: requests.Session,
                    timeout: float) -> list[dict[str, Any]]:
    """Ask the host for the source's file list and keep it in the cache (atomically)."""
    assert source.discover is not None
    files = zenodo.record_files(session, source.discover.zenodo, timeout)
    path = listing_path(source.id, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"zenodo": source.discover.zenodo, "files": files},
                                  indent=1), encoding="utf-8")
    return files


def saved_listing(source: Source, root: Path) -> list[dict[str, Any]] | None:
    """The file list saved by the last online fetch, or None."""
    try:
        data = json.loads(listing_path(source.id, root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if source.discover is None or data.get("zenodo") != source.discover.zenodo:
        return None  # the registry now points at another record version
    files: list[dict[str, Any]] = data.get("files") or []
    return files


def _entry(record: str, f: dict[str, Any]) -> FileEntry:
    key = str(f.get("key"))
    if "/" in key or "\\" in key or not key:
        raise LLMTracesError(f"Zenodo record {record}: file key {key!r} is not a plain name")
    algo, _, digest = str(f.get("checksum", "")).partition(":")
    links = f.get("links") or {}
    url = links.get("content") or links.get("self") or \
        f"{zenodo.DEFAULT_BASE}/records/{record}/files/{key}?download=1"
    size = f.get("size")
    return FileEntry(name=key, url=str(url), size=size if isinstance(size, int) else None,
                     md5=digest if algo == "md5" and re.fullmatch(r"[0-9a-f]{32}", digest)
                     else None, zenodo=ZenodoRef(record=record, key=key),
                     unverified=None if algo == "md5" else "the record gives no md5")


def skipped(source: Source, root: Path) -> list[str]:
    """Record files that are not traces (documentation, papers), for ``info`` and ``fetch``."""
    files = saved_listing(source, root) or []
    return [str(f.get("key")) for f in files
            if not str(f.get("key", "")).lower().endswith(DATA_SUFFIXES + ARCHIVE_SUFFIXES)]


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
        key = str(f.get("key", ""))
        low = key.lower()
        if key in pinned or not low.endswith(DATA_SUFFIXES + ARCHIVE_SUFFIXES):
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
