"""Moving one URL's bytes into a ``.part`` file: the HTTP session (user agent, retries that
skip a host that cannot be reached), resumable download, the copy of a ``file://`` URL, and the
network settings read from the environment. Which URLs to try, and verification, are
:mod:`llmtraces.fetching.download`'s.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import requests
import urllib3
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError
from urllib3.util.retry import Retry

from .._version import __version__
from ..errors import DownloadError, LLMTracesError
from ..registry import FileEntry
from ..text.limits import size_text
from .checksums import CHUNK

USER_AGENT = f"llmtraces/{__version__} (+https://pypi.org/project/llmtraces/)"
Log = Callable[[str], None]


@dataclass(frozen=True)
class Settings:
    """Network knobs, read from the environment so clusters can set them once."""

    tries: int = 5
    timeout_s: float = 60.0
    backoff_s: float = 1.0

    #: Longest wait a ``Retry-After`` header may ask for (``$LLMTRACES_DL_MAX_WAIT``).
    max_wait_s: float = 60.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before try ``attempt + 1``: doubling from ``backoff_s``, at most
        60 s (urllib3's ``backoff_max`` for the retried statuses)."""
        return float(min(self.backoff_s * 2 ** (attempt - 1), 60.0))

    @classmethod
    def from_env(cls) -> Settings:
        """The settings from ``$LLMTRACES_DL_*``; a bad value is one line naming it."""
        return cls(tries=int(_env_num("LLMTRACES_DL_TRIES", cls.tries, 0, 100, "an integer")),
                   timeout_s=_env_num("LLMTRACES_DL_TIMEOUT", cls.timeout_s, 0.0, 86400.0),
                   backoff_s=_env_num("LLMTRACES_DL_BACKOFF", cls.backoff_s, -1.0, 3600.0),
                   max_wait_s=_env_num("LLMTRACES_DL_MAX_WAIT", cls.max_wait_s, -1.0, 86400.0))


def _env_num(name: str, default: float, low: float, high: float,
             kind: str = "a number") -> float:
    """``$name`` as a number in (``low``, ``high``] (``low`` -1: 0 allowed), else one line."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    whole = kind != "an integer" or value.is_integer()
    ok = math.isfinite(value) and whole and (value >= 0 if low < 0 else value > low) \
        and value <= high
    if not ok:
        bound = f"from 0 to {high:g}" if low < 0 else f"over {low:g} and at most {high:g}"
        raise LLMTracesError(f"${name}={raw!r}: expected {kind} {bound}")
    return value


def env_offline() -> bool:
    """Whether ``$LLMTRACES_OFFLINE`` asks never to touch the network."""
    return os.environ.get("LLMTRACES_OFFLINE", "").lower() in ("1", "true", "yes")


class _Retry(Retry):
    """urllib3's retries, less those on a host that cannot be reached at all: an unknown name,
    a refused connection or no route fail the same way on every try (a connect timeout, a
    429/5xx or a reset are still retried)."""

    def increment(self, method: str | None = None, url: str | None = None,
                  response: Any = None, error: Exception | None = None, _pool: Any = None,
                  _stacktrace: TracebackType | None = None) -> Self:
        if isinstance(error, NewConnectionError):  # NameResolutionError is one too
            raise MaxRetryError(_pool, url or "", error) from error
        return super().increment(method, url, response, error, _pool, _stacktrace)

    #: Where a capped ``Retry-After`` wait is told, and the cap (set per session).
    log: Log = staticmethod(lambda _: None)
    max_wait_s: float = 60.0

    def new(self, **kw: Any) -> Self:
        """A copy for the next try, keeping the log and the cap."""
        copy = super().new(**kw)
        copy.log, copy.max_wait_s = self.log, self.max_wait_s
        return copy

    def sleep_for_retry(self, response: Any) -> bool:
        """Sleep as ``Retry-After`` asks, at most ``max_wait_s``, saying so in one line."""
        raw = response.headers.get("Retry-After")
        if raw is None:
            return False
        try:
            asked = self.parse_retry_after(raw)
        except urllib3.exceptions.InvalidHeader:
            return False
        wait = min(asked, self.max_wait_s)
        if wait <= 0:
            return False
        capped = f" (capped from {asked:g} s by LLMTRACES_DL_MAX_WAIT)" if asked > wait else ""
        self.log(f"HTTP {response.status}, asked to retry later; waiting "
                 f"{wait:g} s before the next try{capped}")
        time.sleep(wait)
        return True


def http_session(settings: Settings, log: Log | None = None) -> requests.Session:
    """A session with the user agent, identity encoding and :class:`_Retry` retries (a
    ``Retry-After`` wait capped at ``settings.max_wait_s`` and told to ``log``)."""
    retry = _Retry(total=settings.tries - 1, connect=settings.tries - 1, read=0,
                  status=settings.tries - 1, status_forcelist=(429, 500, 502, 503, 504),
                  backoff_factor=settings.backoff_s, backoff_max=60,
                  respect_retry_after_header=True, raise_on_status=False, allowed_methods=None,
                  retry_after_max=10**9)  # the cap is max_wait_s, said in the log
    if log is not None:
        retry.log = log
    retry.max_wait_s = settings.max_wait_s
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


class DiskError(DownloadError):
    """Writing the downloaded bytes failed (full disk, file size limit): no retry helps."""


def _write(fout: Any, chunk: bytes, part: Path) -> None:
    """Write ``chunk`` to ``part``; an OS error is a :class:`DiskError` naming the file."""
    view = memoryview(chunk)
    try:
        while view:  # an unbuffered write may take part of the chunk (disk nearly full)
            view = view[fout.write(view) or 0:]
    except OSError as exc:
        try:
            kept = part.stat().st_size
        except OSError:
            kept = 0
        keep = (f"; the {size_text(kept)} received stay in it and the next fetch "
                "resumes from there (delete it to free the space instead)" if kept else "")
        raise DiskError(f"cannot write {part}: {exc.strerror or exc} "
                        f"(errno {exc.errno}); free space or raise the file size limit, "
                        f"then fetch again{keep}") from None


def copy_local(url: str, part: Path, entry: FileEntry, show: bool) -> None:
    src = Path(url2pathname(unquote(urlparse(url).path)))
    if not src.is_file():
        raise DownloadError(f"no such file {src}")
    with src.open("rb") as fin, part.open("wb", buffering=0) as fout, \
            _progress(entry.name, entry.size, 0, show) as bar:
        while chunk := fin.read(CHUNK):
            _write(fout, chunk, part)
            bar.update(len(chunk))
            if entry.size is not None and fout.tell() > entry.size:
                fout.close()
                part.unlink(missing_ok=True)
                raise DownloadError(f"{src} is larger than the pinned {entry.size:,} bytes")


class Unreachable(DownloadError):
    """A host that cannot be reached (name, refusal, no route, no answer): the other files
    of a fetch skip it rather than wait for it again."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(message)
        self.host = host


def _cannot_connect(exc: requests.RequestException, url: str, settings: Settings
                    ) -> DownloadError:
    """A short reason for a request that got no answer: the host and what stopped it."""
    parsed = urlparse(url)
    host = parsed.netloc
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    if isinstance(reason, NameResolutionError):
        return Unreachable(host, f"cannot resolve host name {parsed.hostname}")
    if isinstance(reason, NewConnectionError):
        why = getattr(reason.__cause__, "strerror", None) or "no connection"
        return Unreachable(host, f"cannot connect to {host}: {why.lower()}")
    if isinstance(exc, requests.ConnectTimeout):
        return Unreachable(host, f"no answer from {host} in {settings.timeout_s:g} s "
                                  f"({settings.tries} tries)")
    return DownloadError(f"cannot connect: {type(exc).__name__}: {exc}")


def download_http(url: str, part: Path, entry: FileEntry, settings: Settings, show: bool,
                   log: Log, extra_headers: dict[str, str] | None = None) -> None:
    session = http_session(settings, lambda line: log(f"{entry.name}: {line}"))
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
            raise _cannot_connect(exc, url, settings) from None
        with resp:
            if resp.status_code == 206 and offset:
                crange = resp.headers.get("Content-Range", "")
                if not crange.startswith(f"bytes {offset}-"):
                    # A wrong range would wedge every later run on this .part: start over.
                    part.unlink(missing_ok=True)
                    raise DownloadError(f"server answered Range {offset}- with {crange!r}; "
                                        "the partial file was removed, the next try starts "
                                        "from zero")
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
                with part.open(mode, buffering=0) as fout, \
                        _progress(entry.name, entry.size, offset, show) as bar:
                    for chunk in resp.raw.stream(CHUNK, decode_content=False):
                        _write(fout, chunk, part)
                        bar.update(len(chunk))
                        if entry.size is not None and fout.tell() > entry.size:
                            fout.close()
                            part.unlink(missing_ok=True)
                            raise DownloadError(
                                f"server sent more than the pinned {entry.size:,} bytes "
                                "(partial file removed)")
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
                time.sleep(settings.backoff(attempt))
    raise DownloadError("no bytes received")
