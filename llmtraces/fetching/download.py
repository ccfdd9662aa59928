"""The one download stack: candidate URLs, cache, resume, retries, size-then-checksum checks.

Every file of every source goes through :func:`fetch_file`. Bytes land in ``<name>.part`` next
to the final path, are verified against the registry pin, and only then renamed into place, so
the cache never holds an unverified file. A ``file://`` URL (the bundled copy, ``--file``) takes
the same path as an HTTP one. pooch is not used: it has no HTTP Range resume, no size-first
check, no ordered mirror list and no git-blob checksum, which are most of this module. The
bytes of one URL (HTTP session, retries, resume) are moved by :mod:`.transfer`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from filelock import FileLock, Timeout

from ..errors import ChecksumError, DownloadError, LLMTracesError, NotCachedError
from ..paths import bundled_dir, home, lock_path, part_path, raw_dir, rejected_path
from ..registry import FileEntry, Source, get_source
from .backends import backend_for
from .checksums import mismatch, strongest
from .discover import refresh_listing, skipped, with_discovered
from .sniff import sniff
from .stamps import is_cached, write_stamp
from .transfer import (
    DiskError,
    Log,
    Settings,
    Unreachable,
    copy_local,
    download_http,
    env_offline,
    http_session,
)


def quiet_log(_: str) -> None:
    return None


@dataclass(frozen=True)
class Fetched:
    """Where a verified file is and where it came from (``cache`` when already there)."""

    source: str
    trace: str
    path: Path
    origin: str


def candidate_urls(source: Source, entry: FileEntry, mirror: str | None = None) -> list[str]:
    """URLs to try in order: the ``--mirror`` base, the bundled copy, upstream, then mirrors."""
    urls: list[str] = []
    base = mirror or os.environ.get("LLMTRACES_MIRROR")
    if base:
        urls.append(f"{base.rstrip('/')}/{source.id}/{entry.name}")
    if entry.bundled:
        # A copy shipped in the package is verified like any download, and needs no network.
        urls.append((bundled_dir() / source.id / entry.name).as_uri())
    urls.append(entry.url)
    urls.extend(entry.mirrors)
    return list(dict.fromkeys(urls))


def _reject(path: Path) -> Path:
    aside = rejected_path(path)
    os.replace(path, aside)
    return aside


class _Lazy:
    """A candidate whose URL a backend finds only when it is tried (after the mirrors), so an
    unreachable host does not stop a fetch that a mirror can serve."""

    def __init__(self, backend: Any, entry: FileEntry, settings: Settings,
                 headers: dict[str, dict[str, str]]) -> None:
        self.backend, self.entry, self.settings, self.headers = backend, entry, settings, headers

    def __str__(self) -> str:
        return self.entry.url

    def resolve(self) -> str:
        """The URL to download from (its request headers recorded for it)."""
        _, url, extra = self.backend.resolve(self.entry, http_session(self.settings),
                                             self.settings.timeout_s)
        self.headers[url] = extra
        return str(url)


Candidate = str | _Lazy


@contextmanager
def _locked(dest: Path, log: Log) -> Iterator[None]:
    """Hold the fetch lock of ``dest``, saying so in one line when another fetch has it."""
    lock = FileLock(str(lock_path(dest)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log(f"waiting for another fetch of {dest.name} (lock {lock_path(dest)})")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def fetch_file(entry: FileEntry, dest: Path, urls: list[Candidate], *,
               show_progress: bool = False,
               log: Log = quiet_log, settings: Settings | None = None,
               offline: bool = False, headers: dict[str, dict[str, str]] | None = None,
               unreachable: dict[str, str] | None = None) -> str:
    """Make ``dest`` a verified copy of ``entry``, trying ``urls`` in order.

    Returns ``"cache"`` when it already was, else the URL that gave it. Raises
    :class:`DownloadError` listing every URL tried and why each failed (the failures are
    logged only when a later URL gives the file). ``unreachable`` (host -> why) lists hosts
    not to try, and gains those found unreachable here: one fetch asks a dead host once.

    Examples
    --------
    >>> from llmtraces.registry import get_source
    >>> from llmtraces.fetching.download import candidate_urls, fetch_file
    >>> src = get_source("azure-llm-2023"); entry = src.traces["code"].file
    >>> import tempfile, pathlib; dest = pathlib.Path(tempfile.mkdtemp()) / entry.name
    >>> fetch_file(entry, dest, candidate_urls(src, entry)).startswith("file://")
    True
    """
    settings = settings or Settings.from_env()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    with _locked(dest, log):
        if is_cached(dest, entry):
            return "cache"
        if dest.exists():
            log(f"{dest}: cached copy does not match the registry; moved aside to "
                f"{_reject(dest)}")
        # A file dropped by hand beside it under one of its checksums is tried first.
        dropped: list[Candidate] = [
            dest.with_name(d).as_uri() for d in (entry.sha256, entry.git_blob, entry.md5)
            if d and dest.with_name(d).is_file()]
        urls = dropped + [u for u in urls if u not in dropped]
        dead = unreachable if unreachable is not None else {}
        failures: list[_Failure] = []
        bad_bytes = 0  # sources that delivered bytes which failed verification
        for candidate in urls:
            local = isinstance(candidate, str) and candidate.startswith("file://")
            if offline and not local:
                continue
            host = "" if local else urlparse(str(candidate)).netloc
            if host in dead:
                failures.append(_Failure(str(candidate), dead[host], True))
                continue
            try:
                url = candidate.resolve() if isinstance(candidate, _Lazy) else candidate
                if local:
                    copy_local(url, part, entry, show_progress)
                else:
                    download_http(url, part, entry, settings, show_progress, log,
                                   (headers or {}).get(url, {}))
            except Unreachable as exc:
                dead[exc.host] = str(exc)
                failures.append(_Failure(str(candidate), str(exc), True))
                continue
            except DiskError:
                raise  # every other URL would fail the same way
            except DownloadError as exc:
                failures.append(_Failure(str(candidate), str(exc)))
                continue
            why = mismatch(part, entry) or (sniff(part, entry) if strongest(entry) is None
                                            else None)
            if why:
                aside = _reject(part)
                bad_bytes += 1
                failures.append(_Failure(url, f"{why} (kept for inspection at {aside}); "
                                              "upstream may have changed, the transfer may be "
                                              "truncated, or the server sent an error page"))
                continue
            for failure in failures:  # told now that they did not stop the fetch
                log(f"{entry.name}: {failure.url}: {failure.why}")
            if entry.unverified and entry.size is None:
                log(f"warning: {entry.name}: unpinned: no checksum is pinned and no size is "
                    f"known ({entry.unverified}); only its first bytes were checked")
            elif entry.unverified:
                log(f"warning: {entry.name}: no checksum is pinned ({entry.unverified}); "
                    "checked by size only")
            os.replace(part, dest)
            write_stamp(dest, entry)
            return url
    if offline:
        raise NotCachedError(
            f"{entry.name} is not in the cache and offline mode forbids downloading it"
            + (f" (tried {_summary(failures)})" if failures else "")
            + f"; put the file at {dest}"
            + (f" (size {entry.size:,} bytes)" if entry.size is not None else ""))
    cls = ChecksumError if bad_bytes else DownloadError
    raise cls(f"could not fetch {entry.name}: {_summary(failures) or 'no URL to try'}")


@dataclass(frozen=True)
class _Failure:
    """Why one candidate URL gave no verified file; ``host``: its host cannot be reached."""

    url: str
    why: str
    host: bool = False


def _summary(failures: list[_Failure]) -> str:
    """``url: why`` for each failure, but a host that cannot be reached said once, with the
    number of its URLs: ``cannot resolve host name github.com (2 URLs)``."""
    per_host = Counter(f.why for f in failures if f.host)
    parts = [f"{f.url}: {f.why}" if not f.host else f.why if per_host[f.why] == 1
             else f"{f.why} ({per_host[f.why]} URLs)" for f in failures]
    return "; ".join(dict.fromkeys(parts))


def fetch(source_id: str, trace: str | None = None, *, root: Path | None = None,
          mirror: str | None = None, file: Path | None = None, offline: bool | None = None,
          show_progress: bool = False, log: Log = quiet_log,
          registry: Path | None = None) -> list[Fetched]:
    """Download (or import with ``file``) the native files of a source into the cache.

    Parameters
    ----------
    source_id : registry id, e.g. ``"azure-llm-2023"``.
    trace : one trace id; all traces when None (with ``file``: the trace it matches).
    root : cache home; default ``$LLMTRACES_HOME`` or the user cache directory.
    mirror : base URL tried first as ``<mirror>/<source-id>/<file-name>``.
    file : a file the user downloaded by hand, verified like any download.
    offline : never touch the network (default ``$LLMTRACES_OFFLINE``).

    Every file is tried, whatever happened to the ones before; if any could not be fetched,
    the error names each of them (one line a file) and what to try next.
    """
    source = get_source(source_id, registry)
    root = home(root)
    offline = env_offline() if offline is None else offline
    settings = Settings.from_env()
    if source.discover is not None:
        record = source.discover.zenodo
        if not offline:
            refresh_listing(source, root, http_session(settings), settings.timeout_s, trace)
            for name in skipped(source, root):
                log(f"{source.id}: {name} in Zenodo record {record} is not a trace file; "
                    "not fetched")
        source = with_discovered(source, root)
        if not source.traces:
            raise NotCachedError(f"{source.id}: its files are listed by Zenodo record "
                                 f"{record} at fetch time, and no list was "
                                 "saved yet; run `llmtraces fetch` once online")
        if trace is not None:
            source.select(trace)  # an unknown id fails now, naming the ones there are
    if file is not None:
        file = Path(file).expanduser().resolve()
        if not file.is_file():
            raise DownloadError(f"--file {file}: no such file")
        if trace is None:
            size = file.stat().st_size
            matches = [t for t in source.traces if source.download(t).name == file.name
                       or source.download(t).size == size]
            if len({source.download(t).name for t in matches}) == 1:
                matches = matches[:1]  # an archive holding several traces
            if len(matches) != 1:
                raise DownloadError(
                    f"--file {file}: cannot tell which trace of {source.id} it is "
                    f"(traces: {', '.join(source.traces)}); pass --trace")
            trace = matches[0]
    results = []
    headers: dict[str, dict[str, str]] = {}  # per-URL request headers (tokens), never logged
    dead: dict[str, str] = {}  # hosts found unreachable, not asked again for the next files
    done: dict[str, tuple[Path, str]] = {}  # an archive shared by several traces: fetched once
    failed: dict[str, tuple[list[str], LLMTracesError]] = {}  # file name -> traces, error
    for trace_id in source.select(trace):
        entry = source.download(trace_id)
        if entry.name in failed:
            failed[entry.name][0].append(trace_id)
            continue
        dest = raw_dir(source.id, root) / entry.name
        if entry.name not in done:
            try:
                origin = _fetch_one(source, entry, dest, file, mirror, offline, settings,
                                    headers, dead, show_progress, log)
            except (DownloadError, NotCachedError) as exc:
                failed[entry.name] = ([trace_id], exc)
                continue
            done[entry.name] = (dest, origin)
        results.append(Fetched(source.id, trace_id, *done[entry.name]))
    if failed:
        raise _incomplete(source.id, failed, len(done) + len(failed), file is not None,
                          settings)
    return results


def _fetch_one(source: Source, entry: FileEntry, dest: Path, file: Path | None,
               mirror: str | None, offline: bool, settings: Settings,
               headers: dict[str, dict[str, str]], dead: dict[str, str], show_progress: bool,
               log: Log) -> str:
    """Fetch one file of ``source`` (or import ``file`` as it): :func:`fetch_file` with the
    candidate URLs, the host's pins first for a host that gives them."""
    urls: list[Candidate] = [file.as_uri()] if file is not None else \
        list(candidate_urls(source, entry, mirror))
    backend = backend_for(entry)
    if backend is not None and not offline and not is_cached(dest, entry) and \
            (file is None or backend.GIVES_PINS):
        at = urls.index(entry.url) if entry.url in urls else len(urls)
        if backend.GIVES_PINS:
            # The pins verify every candidate, mirrors included: ask the host first.
            entry, api_url, api_headers = backend.resolve(entry, http_session(settings),
                                                          settings.timeout_s)
            urls.insert(at, api_url)
            urls = list(dict.fromkeys(urls))
            headers[api_url] = api_headers
        else:
            # Only a link to find (Drive): ask when its turn comes, after any mirror.
            urls.insert(at, _Lazy(backend, entry, settings, headers))
    return fetch_file(entry, dest, urls, show_progress=show_progress, log=log, offline=offline,
                      settings=settings, headers=headers, unreachable=dead)


def _incomplete(source_id: str, failed: dict[str, tuple[list[str], LLMTracesError]],
                total: int, imported: bool, settings: Settings
                ) -> DownloadError | NotCachedError:
    """One error for the files a fetch could not get: a line each, then what to try next."""
    errors = [exc for _, exc in failed.values()]
    if len(errors) == 1:
        text = str(errors[0])
    else:
        text = f"could not fetch {len(errors)} of {total} files of {source_id}:" + "".join(
            f"\n  {str(exc).removeprefix('could not fetch ')}" for exc in errors)
    traces = [t for ids, _ in failed.values() for t in ids]
    how = (f"`llmtraces fetch {source_id} --trace {traces[0] if len(traces) == 1 else 'T'} "
           "--file PATH` imports a copy downloaded elsewhere")
    cls: type[DownloadError | NotCachedError] = DownloadError
    if any(isinstance(e, ChecksumError) for e in errors):
        cls = ChecksumError
    elif all(isinstance(e, NotCachedError) for e in errors):
        cls = NotCachedError
    disk = any(isinstance(e, DiskError) for e in errors)  # no network hint applies then
    if not disk and not imported and cls is DownloadError:
        text += (f"\nhint: --mirror BASE fetches from BASE/{source_id}/<file name>; {how}; "
                 "--offline uses only cached and bundled files; LLMTRACES_DL_TRIES sets the "
                 f"tries per URL on timeouts and 5xx (now {settings.tries})")
    elif not disk and not imported:
        text += f"\nhint: {how}"
    error = cls(text)
    error.traces = tuple(traces)
    return error


def cached_path(source: Source, trace_id: str, root: Path) -> Path:
    """Path of a verified cached native file, or :class:`NotCachedError` saying how to get it."""
    trace_id, _ = source.trace(trace_id)
    entry = source.download(trace_id)
    dest = raw_dir(source.id, root) / entry.name
    if not is_cached(dest, entry):
        raise NotCachedError(
            f"{source.id} {trace_id}: {entry.name} is not in the cache at {dest}; run "
            f"`llmtraces fetch {source.id} --trace {trace_id}`")
    return dest
