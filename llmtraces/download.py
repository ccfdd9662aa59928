"""The one download stack: candidate URLs, cache, resume, retries, size-then-checksum checks.

Every file of every source goes through :func:`fetch_file`. Bytes land in ``<name>.part`` next
to the final path, are verified against the registry pin, and only then renamed into place, so
the cache never holds an unverified file. A ``file://`` URL (the bundled copy, ``--file``) takes
the same path as an HTTP one. pooch is not used: it has no HTTP Range resume, no size-first
check, no ordered mirror list and no git-blob checksum, which are most of this module.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import requests
import urllib3
from filelock import FileLock
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util.retry import Retry

from . import __version__
from .backends import backend_for
from .checksums import CHUNK, mismatch, strongest
from .errors import ChecksumError, DownloadError, LLMTracesError, NotCachedError
from .paths import bundled_dir, home, raw_dir
from .registry import FileEntry, Source, get_source

USER_AGENT = f"llmtraces/{__version__} (+https://pypi.org/project/llmtraces/)"
Log = Callable[[str], None]


def _quiet_log(_: str) -> None:
    return None


@dataclass(frozen=True)
class Settings:
    """Network knobs, read from the environment so clusters can set them once."""

    tries: int = 5
    timeout_s: float = 60.0
    backoff_s: float = 1.0

    @classmethod
    def from_env(cls) -> Settings:
        def num(name: str, default: float) -> float:
            raw = os.environ.get(name)
            if raw is None or raw == "":
                return default
            try:
                return float(raw)
            except ValueError:
                raise LLMTracesError(f"${name}={raw!r}: expected a number") from None

        return cls(tries=max(1, int(num("LLMTRACES_DL_TRIES", cls.tries))),
                   timeout_s=num("LLMTRACES_DL_TIMEOUT", cls.timeout_s),
                   backoff_s=num("LLMTRACES_DL_BACKOFF", cls.backoff_s))


@dataclass(frozen=True)
class Fetched:
    """Where a verified file is and where it came from (``cache`` when already there)."""

    source: str
    trace: str
    path: Path
    origin: str


def env_offline() -> bool:
    """Whether ``$LLMTRACES_OFFLINE`` asks never to touch the network."""
    return os.environ.get("LLMTRACES_OFFLINE", "").lower() in ("1", "true", "yes")


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


def _session(settings: Settings) -> requests.Session:
    retry = Retry(total=settings.tries - 1, connect=settings.tries - 1, read=0,
                  status=settings.tries - 1, status_forcelist=(429, 500, 502, 503, 504),
                  backoff_factor=settings.backoff_s, backoff_max=60,
                  respect_retry_after_header=True, raise_on_status=False, allowed_methods=None)
    s = requests.Session()
    s.headers["User-Agent"] = USER_AGENT
    # Ask for the bytes as stored: a .gz served with Content-Encoding: gzip must hash as the .gz.
    s.headers["Accept-Encoding"] = "identity"
    adapter = HTTPAdapter(max_retries=retry)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


def _progress(name: str, total: int | None, initial: int, show: bool) -> tqdm:
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=name, disable=not show, leave=False, file=sys.stderr)


def _copy_local(url: str, part: Path, entry: FileEntry, show: bool) -> None:
    src = Path(url2pathname(unquote(urlparse(url).path)))
    if not src.is_file():
        raise DownloadError(f"no such file {src}")
    with src.open("rb") as fin, part.open("wb") as fout, \
            _progress(entry.name, entry.size, 0, show) as bar:
        while chunk := fin.read(CHUNK):
            fout.write(chunk)
            bar.update(len(chunk))
            if entry.size is not None and fout.tell() > entry.size:
                raise DownloadError(f"{src} is larger than the pinned {entry.size:,} bytes")


def _download_http(url: str, part: Path, entry: FileEntry, settings: Settings, show: bool,
                   log: Log, extra_headers: dict[str, str] | None = None) -> None:
    session = _session(settings)
    for attempt in range(1, settings.tries + 1):
        offset = part.stat().st_size if part.exists() else 0
        if entry.size is not None and offset > entry.size:
            part.unlink()
            offset = 0
        if offset == entry.size and offset > 0:
            return  # a previous run finished the bytes; verification decides
        headers = dict(extra_headers or {})
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            resp = session.get(url, stream=True, timeout=settings.timeout_s, headers=headers)
        except requests.RequestException as exc:
            raise DownloadError(f"cannot connect: {type(exc).__name__}: {exc}") from None
        with resp:
            if resp.status_code == 206 and offset:
                crange = resp.headers.get("Content-Range", "")
                if not crange.startswith(f"bytes {offset}-"):
                    raise DownloadError(f"server answered Range {offset}- with {crange!r}")
                mode = "ab"
            elif resp.status_code == 200:
                mode, offset = "wb", 0
            else:
                raise DownloadError(f"HTTP {resp.status_code} {resp.reason}")
            announced = resp.headers.get("Content-Length")
            if entry.size is not None and announced is not None and announced.isdigit() and \
                    int(announced) != entry.size - offset:
                raise DownloadError(
                    f"server announces {int(announced) + offset:,} bytes but the registry pins "
                    f"{entry.size:,}: an error page, a changed upstream or a wrong URL")
            try:
                with part.open(mode) as fout, \
                        _progress(entry.name, entry.size, offset, show) as bar:
                    for chunk in resp.raw.stream(CHUNK, decode_content=False):
                        fout.write(chunk)
                        bar.update(len(chunk))
                        if entry.size is not None and fout.tell() > entry.size:
                            raise DownloadError(
                                f"server sent more than the pinned {entry.size:,} bytes")
                return
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                if isinstance(exc, DownloadError):
                    raise
                if attempt == settings.tries:
                    raise DownloadError(
                        f"connection lost after {attempt} tries: {type(exc).__name__}") from None
                got = part.stat().st_size if part.exists() else 0
                log(f"{entry.name}: connection lost at {got:,} bytes; resuming "
                    f"(try {attempt + 1}/{settings.tries})")
                time.sleep(min(settings.backoff_s * 2 ** (attempt - 1), 60))
    raise DownloadError("no bytes received")


def _stamp_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".verified")


def _pin(entry: FileEntry) -> tuple[str, str]:
    return strongest(entry) or ("size-only", str(entry.size))


def _write_stamp(dest: Path, entry: FileEntry) -> None:
    kind, digest = _pin(entry)
    st = dest.stat()
    stamp = _stamp_path(dest)
    tmp = stamp.with_name(stamp.name + ".tmp")
    tmp.write_text(json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                               "kind": kind, "digest": digest}))
    os.replace(tmp, stamp)


def _read_stamp(dest: Path) -> object:
    """The verification stamp beside ``dest``, or None when absent or unreadable."""
    try:
        return json.loads(_stamp_path(dest).read_text())
    except (OSError, ValueError):
        return None


def verified_by(dest: Path) -> str | None:
    """The checksum kind a cached file was verified with when it entered the cache (``sha256``,
    ``git_blob``, ``md5``, including pins the host gave at fetch time); None when it was
    checked by size only or has no stamp."""
    stamp = _read_stamp(dest)
    kind = stamp.get("kind") if isinstance(stamp, dict) else None
    return str(kind) if kind in ("sha256", "git_blob", "md5") else None


def is_cached(dest: Path, entry: FileEntry) -> bool:
    """True if ``dest`` is the pinned file; hashes once, then trusts a stamp of size and mtime."""
    if not dest.is_file() or entry.size not in (None, dest.stat().st_size):
        return False
    kind, digest = _pin(entry)
    st = dest.stat()
    stamp = _read_stamp(dest)
    if stamp == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "kind": kind, "digest": digest}:
        return True
    if (entry.zenodo is not None or entry.hf is not None) and strongest(entry) is None:
        # Pins live with the host (Zenodo, Hub): trust the stamp written when they were checked.
        return isinstance(stamp, dict) and stamp.get("size") == st.st_size and \
            stamp.get("mtime_ns") == st.st_mtime_ns
    if mismatch(dest, entry) is None:
        _write_stamp(dest, entry)
        return True
    return False


def _reject(path: Path) -> Path:
    aside = path.with_name(path.name.removesuffix(".part") + ".rejected")
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
        _, url, extra = self.backend.resolve(self.entry, _session(self.settings),
                                             self.settings.timeout_s)
        self.headers[url] = extra
        return str(url)


Candidate = str | _Lazy


def fetch_file(entry: FileEntry, dest: Path, urls: list[Candidate], *,
               show_progress: bool = False,
               log: Log = _quiet_log, settings: Settings | None = None,
               offline: bool = False, headers: dict[str, dict[str, str]] | None = None) -> str:
    """Make ``dest`` a verified copy of ``entry``, trying ``urls`` in order.

    Returns ``"cache"`` when it already was, else the URL that gave it. Raises
    :class:`DownloadError` listing every URL tried and why each failed.

    Examples
    --------
    >>> from llmtraces.registry import get_source
    >>> from llmtraces.download import candidate_urls, fetch_file
    >>> src = get_source("azure-llm-2023"); entry = src.traces["code"].file
    >>> import tempfile, pathlib; dest = pathlib.Path(tempfile.mkdtemp()) / entry.name
    >>> fetch_file(entry, dest, candidate_urls(src, entry)).startswith("file://")
    True
    """
    settings = settings or Settings.from_env()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with FileLock(str(dest.with_name(dest.name + ".lock"))):
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
        failures: list[str] = []
        bad_bytes = 0  # sources that delivered bytes which failed verification
        for candidate in urls:
            local = isinstance(candidate, str) and candidate.startswith("file://")
            if offline and not local:
                failures.append(f"{candidate}: skipped (offline)")
                continue
            try:
                url = candidate.resolve() if isinstance(candidate, _Lazy) else candidate
            except DownloadError as exc:
                failures.append(f"{candidate}: {exc}")
                log(f"{entry.name}: {exc}")
                continue
            try:
                if local:
                    _copy_local(url, part, entry, show_progress)
                else:
                    _download_http(url, part, entry, settings, show_progress, log,
                                   (headers or {}).get(url, {}))
            except DownloadError as exc:
                failures.append(f"{url}: {exc}")
                log(f"{entry.name}: {url}: {exc}")
                continue
            why = mismatch(part, entry)
            if why:
                aside = _reject(part)
                bad_bytes += 1
                failures.append(f"{url}: {why} (kept for inspection at {aside}); upstream may "
                                "have changed, the transfer may be truncated, or the server sent "
                                "an error page")
                log(f"{entry.name}: {url}: {why}")
                continue
            if entry.unverified:
                log(f"warning: {entry.name}: no checksum is pinned ({entry.unverified}); "
                    "checked by size only")
            os.replace(part, dest)
            _write_stamp(dest, entry)
            return url
    if offline:
        raise NotCachedError(
            f"{entry.name} is not in the cache and offline mode forbids downloading it; "
            f"put the file at {dest}"
            + (f" (size {entry.size:,} bytes)" if entry.size is not None else "")
            + " or run `llmtraces fetch "
            "--file PATH`; tried: " + "; ".join(failures))
    cls = ChecksumError if bad_bytes else DownloadError
    raise cls(f"could not fetch {entry.name}: " + "; ".join(failures))


def fetch(source_id: str, trace: str | None = None, *, root: Path | None = None,
          mirror: str | None = None, file: Path | None = None, offline: bool | None = None,
          show_progress: bool = False, log: Log = _quiet_log,
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
    """
    source = get_source(source_id, registry)
    root = home(root)
    offline = env_offline() if offline is None else offline
    settings = Settings.from_env()
    if source.discover is not None:
        from .discover import refresh_listing, skipped, with_discovered

        record = source.discover.zenodo
        if not offline:
            refresh_listing(source, root, _session(settings), settings.timeout_s)
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
    done: dict[str, tuple[Path, str]] = {}  # an archive shared by several traces: fetched once
    for trace_id in source.select(trace):
        entry = source.download(trace_id)
        if entry.name in done:
            dest, origin = done[entry.name]
            results.append(Fetched(source.id, trace_id, dest, origin))
            continue
        dest = raw_dir(source.id, root) / entry.name
        urls: list[Candidate] = [file.as_uri()] if file is not None else \
            list(candidate_urls(source, entry, mirror))
        backend = backend_for(entry)
        if backend is not None and not offline and not is_cached(dest, entry) and \
                (file is None or backend.GIVES_PINS):
            at = urls.index(entry.url) if entry.url in urls else len(urls)
            if backend.GIVES_PINS:
                # The pins verify every candidate, mirrors included: ask the host first.
                entry, api_url, api_headers = backend.resolve(entry, _session(settings),
                                                              settings.timeout_s)
                urls.insert(at, api_url)
                urls = list(dict.fromkeys(urls))
                headers[api_url] = api_headers
            else:
                # Only a link to find (Drive): ask when its turn comes, after any mirror.
                urls.insert(at, _Lazy(backend, entry, settings, headers))
        origin = fetch_file(entry, dest, urls, show_progress=show_progress, log=log,
                            offline=offline, settings=settings, headers=headers)
        done[entry.name] = (dest, origin)
        results.append(Fetched(source.id, trace_id, dest, origin))
    return results


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
