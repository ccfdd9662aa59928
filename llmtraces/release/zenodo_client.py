"""Zenodo's deposit API over HTTP: the base URL and token checks, and one request with the
retries a deposit needs (429 honouring its reset headers, 5xx with backoff, a dropped
connection re-sent from a fresh file handle; a refused token fails at once).

The token travels only in the ``Authorization: Bearer`` header, and only to the base URL's
own host: every message this module makes is passed through :meth:`ZenodoClient.redact`.
Retry counts, timeouts and the longest wait come from ``$LLMTRACES_DL_*``
(:class:`llmtraces.fetching.transfer.Settings`), as for downloads.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

import requests
import requests.auth
from urllib3.exceptions import NewConnectionError

from ..errors import LLMTracesError, OptionError
from ..fetching.transfer import USER_AGENT, Settings

DEFAULT_URL = "https://zenodo.org"
SANDBOX_URL = "https://sandbox.zenodo.org"
#: Hosts that may be spoken to over plain http (a test server on this machine).
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
#: Where a token is made (the sandbox has its own accounts and tokens).
TOKEN_PAGE = "/account/settings/applications/tokens/new/"
Log = Callable[[str], None]


class ZenodoError(LLMTracesError):
    """A Zenodo request that failed: one line naming the request and what the server said."""


class ZenodoAuthError(ZenodoError):
    """Zenodo refused the token (HTTP 401/403): no retry can help."""


def check_base_url(url: str) -> str:
    """``url`` without a trailing slash, if it is https (or http to this machine) with a host
    and nothing else that could carry a secret; else a one-line :class:`OptionError`."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise OptionError(f"--zenodo-url {url!r}: expected an https:// URL such as "
                          f"{DEFAULT_URL}")
    if parsed.username or parsed.password or parsed.query or parsed.fragment:
        raise OptionError(f"--zenodo-url: expected a bare https://host[/path] URL (no user, "
                          f"query or fragment), got {parsed.scheme}://{parsed.hostname}...")
    if parsed.scheme == "http" and parsed.hostname not in LOOPBACK:
        raise OptionError(f"--zenodo-url {url!r}: plain http is allowed only to 127.0.0.1 or "
                          "localhost (tests); use https://")
    return url.rstrip("/")


def token_from_env(base: str) -> str:
    """The token in ``$ZENODO_TOKEN`` (never a flag: argv is visible to every user)."""
    token = os.environ.get("ZENODO_TOKEN", "").strip()
    if not token:
        raise ZenodoError(f"set ZENODO_TOKEN to a personal access token of {base} with the "
                          f"deposit:write and deposit:actions scopes ({base}{TOKEN_PAGE})")
    if not re.fullmatch(r"[\x21-\x7e]+", token):
        raise ZenodoError("ZENODO_TOKEN holds spaces or non-ASCII characters: paste the "
                          "token alone")
    return token


def rate_limit_wait(headers: Any, now: float, settings: Settings, attempt: int
                    ) -> tuple[float, str]:
    """How long a 429 asks to wait, and which header said so: ``Retry-After`` (seconds or an
    HTTP date), else ``X-RateLimit-Reset`` (Unix time, Zenodo's), else the backoff."""
    raw = headers.get("Retry-After")
    if raw is not None:
        if raw.strip().isdigit():
            return float(raw.strip()), "Retry-After"
        with contextlib.suppress(TypeError, ValueError):  # not an HTTP date: try the next
            when = email.utils.parsedate_to_datetime(raw)
            return max(when.timestamp() - now, 0.0), "Retry-After"
    reset = headers.get("X-RateLimit-Reset")
    if reset is not None:
        with contextlib.suppress(ValueError):  # not a number: back off instead
            return max(float(reset) - now, 0.0), "X-RateLimit-Reset"
    return settings.backoff(attempt), "no reset header; backing off"


class BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <token>`` on each request. Given as the session's auth, it
    also keeps requests from putting a ``.netrc`` login in its place; its repr hides it."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(***)"


class HashingReader:
    """A file read for an upload: hashes (md5) and counts what was sent, and moves a
    progress callback, so the bytes on the wire are checked, not a second read."""

    def __init__(self, handle: BinaryIO, size: int, progress: Callable[[int], None]) -> None:
        self._handle, self._size, self._progress = handle, size, progress
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sent = 0

    def __len__(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        """The next bytes of the file, hashed on the way."""
        chunk = self._handle.read(n)
        self.md5.update(chunk)
        self.sent += len(chunk)
        self._progress(len(chunk))
        return chunk


def _error_detail(resp: requests.Response) -> str:
    """What a Zenodo error answer says (``message`` and each field error), on one line."""
    try:
        body = resp.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    parts = [str(body.get("message") or "")]
    for err in body.get("errors") or []:
        if isinstance(err, dict):
            parts.append(f"{err.get('field', '?')}: {err.get('message', '?')}")
    text = "; ".join(p for p in parts if p)
    text = " ".join(text.split())
    return f" ({text[:300]})" if text else ""


class ZenodoClient:
    """One Zenodo server and token: requests with the deposit's retries and one-line errors."""

    def __init__(self, base: str, token: str, settings: Settings, log: Log) -> None:
        self.base = check_base_url(base)
        self._token = token
        self.settings = settings
        self._log = log
        self.session = requests.Session()  # no transport retries: this class retries
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json",
                                     "Accept-Encoding": "identity"})
        self.session.auth = BearerAuth(token)

    def redact(self, text: str) -> str:
        """``text`` with the token replaced by ``***``."""
        return text.replace(self._token, "***") if self._token else text

    def log(self, line: str) -> None:
        """Tell ``line`` (redacted) to the caller's log."""
        self._log(self.redact(line))

    def fail(self, message: str, auth: bool = False) -> ZenodoError:
        """An error whose text is redacted."""
        return (ZenodoAuthError if auth else ZenodoError)(self.redact(message))

    def url(self, path: str) -> str:
        """``path`` (``/api/...``) on this server."""
        return self.base + path

    def same_origin(self, url: object, what: str) -> str:
        """``url`` if it is on this server's scheme and host: a link a server returns (the
        bucket, a new draft) never gets the token sent elsewhere."""
        mine, theirs = urlparse(self.base), urlparse(url if isinstance(url, str) else "")
        if not isinstance(url, str) or (theirs.scheme, theirs.netloc) != \
                (mine.scheme, mine.netloc):
            where = theirs.netloc or repr(url)[:80]
            raise self.fail(f"Zenodo answered a {what} link on another host ({where}); "
                            "refusing to send the token there")
        return url

    def call(self, method: str, url: str, what: str, *, json: Any = None,
             upload: tuple[Path, int, Callable[[int], None]] | None = None,
             ok: tuple[int, ...] = (200, 201, 202, 204), idempotent: bool = True
             ) -> tuple[requests.Response, HashingReader | None]:
        """Send one request, retrying 429 (as its headers ask, capped), 5xx (backoff) and
        dropped connections; an ``upload`` (path, size, progress) is re-read from a fresh
        handle on each try. A request that is not ``idempotent`` is re-sent only when it
        surely never arrived. Returns the answer and, for an upload, what was sent."""
        tries = self.settings.tries
        for attempt in range(1, tries + 1):
            reader: HashingReader | None = None
            try:
                if upload is None:
                    resp = self.session.request(method, url, json=json,
                                                timeout=self.settings.timeout_s,
                                                allow_redirects=False)
                else:
                    path, size, progress = upload
                    with path.open("rb") as handle:
                        reader = HashingReader(handle, size, progress)
                        resp = self.session.request(
                            method, url, data=reader, timeout=self.settings.timeout_s,
                            allow_redirects=False,
                            headers={"Content-Type": "application/octet-stream",
                                     "Content-Length": str(size)})
            except OSError as exc:
                if not isinstance(exc, requests.RequestException):
                    raise self.fail(f"{what}: cannot read {upload[0] if upload else ''}: "
                                    f"{exc.strerror or exc}") from None
                reason = self._reason(exc)
                unsent = isinstance(exc, requests.ConnectTimeout) or isinstance(
                    getattr(exc.args[0], "reason", None) if exc.args else None,
                    NewConnectionError)
                if attempt == tries or not (idempotent or unsent):
                    raise self.fail(f"{what}: {reason} (after {attempt} "
                                    f"tr{'y' if attempt == 1 else 'ies'})") from None
                wait = self.settings.backoff(attempt)
                self.log(f"{what}: {reason}; sending again from the start in {wait:g} s "
                         f"(try {attempt + 1}/{tries})")
                time.sleep(wait)
                continue
            if resp.status_code in ok:
                return resp, reader
            self._raise_or_wait(resp, what, attempt, tries)
        raise self.fail(f"{what}: no answer after {tries} tries")  # tries >= 1: unreachable

    def _raise_or_wait(self, resp: requests.Response, what: str, attempt: int,
                       tries: int) -> None:
        """Wait before the next try of a 429 or 5xx answer; raise for any other (or the
        last) answer."""
        code = resp.status_code
        detail = _error_detail(resp)
        if code in (401, 403):
            raise self.fail(f"{what}: Zenodo refused the token (HTTP {code}{detail}); check "
                            f"that ZENODO_TOKEN is a token of {self.base} with the "
                            "deposit:write and deposit:actions scopes", auth=True)
        retry = code == 429 or code >= 500
        if not retry or attempt == tries:
            hint = (" (rate limited: wait, then run the same command again; it resumes)"
                    if code == 429 else "")
            raise self.fail(f"{what}: HTTP {code} {resp.reason}{detail}{hint}"
                            + (f" after {attempt} tries" if retry else ""))
        if code == 429:
            asked, why = rate_limit_wait(resp.headers, time.time(), self.settings, attempt)
            wait = min(asked, self.settings.max_wait_s)
            capped = (f", capped from {asked:.0f} s by LLMTRACES_DL_MAX_WAIT"
                      if asked > wait else "")
            self.log(f"{what}: HTTP 429 (rate limited): waiting {wait:.1f} s ({why}{capped}), "
                     f"then try {attempt + 1}/{tries}")
        else:
            wait = self.settings.backoff(attempt)
            self.log(f"{what}: HTTP {code}{detail}; trying again in {wait:g} s "
                     f"(try {attempt + 1}/{tries})")
        time.sleep(wait)

    def _reason(self, exc: requests.RequestException) -> str:
        """A short, redacted reason for a request that got no answer."""
        if isinstance(exc, requests.Timeout):
            return f"no answer in {self.settings.timeout_s:g} s"
        if isinstance(exc, requests.ConnectionError):
            return "connection lost or refused"
        return type(exc).__name__

    def json(self, method: str, path_or_url: str, what: str, **kw: Any) -> dict[str, Any]:
        """:meth:`call`, and the answer's JSON object (a clear error if it is not one)."""
        url = path_or_url if "://" in path_or_url else self.url(path_or_url)
        resp, _ = self.call(method, url, what, **kw)
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise self.fail(f"{what}: {url} did not answer a JSON object "
                            f"(HTTP {resp.status_code})")
        return body
