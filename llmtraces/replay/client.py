"""One request to an OpenAI-compatible server, streaming (SSE) or not, with its timings and
its error class (sent on :mod:`.http`'s lean client); and the probe that checks the server is
up before a run (on aiohttp). Needs aiohttp and httptools.

Times are ``time.perf_counter()`` seconds. A chunk time is taken when an SSE event with
output text (``choices[0].text``, or ``delta.content`` / ``delta.reasoning_content`` for chat)
has been read and parsed; events without text (the chat role event, ``finish_reason``,
usage) are not chunks. Output tokens come from ``usage`` (the last event or body carrying
it); without usage the chunk count stands in (``usage_source = "chunks"``).
"""

from __future__ import annotations

import asyncio
import errno
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from . import http
from .errors import ReplayError

DETAIL_CHARS = 200


#: Pause before the one retry of a request that got no answer on a reused connection.
RETRY_PAUSE_S = 0.005


@dataclass
class Outcome:
    """What happened to one request."""

    sent: float = 0.0
    status: int | None = None
    first: float | None = None
    chunks: list[float] = field(default_factory=list)
    end: float = 0.0
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    error: str | None = None
    detail: str | None = None
    done: bool = False

    def fail(self, error: str, detail: object = None) -> None:
        """Record the first error class (later ones do not replace it)."""
        if self.error is None:
            self.error = error
            text = str(detail) if detail is not None else None
            self.detail = text[:DETAIL_CHARS] if text else None


def _shown(value: object) -> str:
    try:
        text = json.dumps(value) if not isinstance(value, str) else repr(value)
    except (ValueError, RecursionError):
        text = f"a {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


def _count(value: object) -> bool:
    """A token count as the API gives it: a JSON integer that fits an int64 column."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _bad_usage(usage: object) -> str | None:
    """Why ``usage`` is not the API's usage object (None: it is, or it is absent)."""
    if usage is None:
        return None
    if not isinstance(usage, dict):
        return f"usage is {_shown(usage)}, expected an object"
    details = usage.get("prompt_tokens_details")
    if details is not None and not isinstance(details, dict):
        return f"usage.prompt_tokens_details is {_shown(details)}, expected an object"
    for key, value in (*((k, usage.get(k)) for k in ("prompt_tokens", "completion_tokens",
                                                       "total_tokens")),
                       ("prompt_tokens_details.cached_tokens",
                        (details or {}).get("cached_tokens"))):
        if value is not None and not _count(value):
            return f"usage.{key} is {_shown(value)}, expected a count"
    return None


def _bad_choice(choice: object) -> str | None:
    """Why ``choice`` (``choices[0]``) is not the API's choice object (None: it is)."""
    if not isinstance(choice, dict):
        return f"choices[0] is {_shown(choice)}, expected an object"
    fields = [("finish_reason", choice.get("finish_reason")), ("text", choice.get("text"))]
    for key in ("delta", "message"):
        part = choice.get(key)
        if part is not None and not isinstance(part, dict):
            return f"choices[0].{key} is {_shown(part)}, expected an object"
        fields += [(f"{key}.{k}", (part or {}).get(k)) for k in ("content", "reasoning_content")]
    for key, value in fields:
        if value is not None and not isinstance(value, str):
            return f"choices[0].{key} is {_shown(value)}, expected a string or null"
    return None


def _bad_fields(obj: dict[str, Any]) -> str | None:
    """Why a response body or SSE event carries a field of the wrong type (None: it does
    not). Such a value would otherwise reach ``requests.parquet`` and fail its schema."""
    choices = obj.get("choices")
    if choices is not None and not isinstance(choices, list):
        return f"choices is {_shown(choices)}, expected a list"
    return _bad_usage(obj.get("usage")) or (_bad_choice(choices[0]) if choices else None)


def _text_of(choice: dict[str, Any]) -> str | None:
    if "text" in choice:
        text = choice.get("text")
        return text if isinstance(text, str) else None
    delta = choice.get("delta") or choice.get("message") or {}
    if not isinstance(delta, dict):
        return None
    for key in ("content", "reasoning_content", "reasoning"):
        value = delta.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _event(out: Outcome, data: str) -> None:
    """Apply one SSE event's data to ``out``."""
    if data == "[DONE]":
        out.done = True
        return
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        out.fail("malformed", f"SSE event is not JSON: {data[:80]!r}")
        return
    if not isinstance(obj, dict):
        out.fail("malformed", f"SSE event is not a JSON object: {data[:80]!r}")
        return
    if obj.get("error") is not None:
        err = obj["error"]
        msg = err.get("message") if isinstance(err, dict) else err
        out.fail("stream_error", msg)
        return
    why = _bad_fields(obj)
    if why is not None:
        out.fail("malformed", f"SSE event: {why}")
        return
    usage = obj.get("usage")
    if isinstance(usage, dict):
        out.usage = usage
    choices = obj.get("choices")
    if isinstance(choices, list) and choices:
        text = _text_of(choices[0])
        if text:
            now = time.perf_counter()
            if out.first is None:
                out.first = now
            out.chunks.append(now)
        reason = choices[0].get("finish_reason")
        if reason:
            out.finish_reason = reason[:DETAIL_CHARS]


class _Sse:
    """An event stream read line by line (lines end with LF; a CR before it is dropped)."""

    def __init__(self, out: Outcome) -> None:
        self.out = out
        self.data: list[str] = []

    def line(self, raw: bytes) -> None:
        """One line: a field, a comment, or the blank line that ends an event."""
        out, line = self.out, raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if self.data:
                _event(out, "\n".join(self.data))
                self.data = []
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        if name == "data":
            self.data.append(value[1:] if value.startswith(" ") else value)
        elif name not in ("event", "id", "retry"):
            out.fail("malformed", f"not an SSE line: {line[:80]!r}")

    def end(self, rest: bytes) -> None:
        """The stream's end: ``rest`` is its unfinished last line."""
        if rest:
            self.line(rest)
        if self.data:
            _event(self.out, "\n".join(self.data))
        if not self.out.done:
            self.out.fail("stream_cut", "the event stream ended without data: [DONE]")


def _body_error(status: int, body: bytes) -> str:
    try:
        obj = json.loads(body)
        err = obj.get("error", obj) if isinstance(obj, dict) else obj
        msg = err.get("message", err) if isinstance(err, dict) else err
        return f"HTTP {status}: {msg}"
    except ValueError:
        return f"HTTP {status}: {body[:DETAIL_CHARS].decode('utf-8', 'replace')}"


def _whole(out: Outcome, body: bytes) -> None:
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        out.fail("malformed", f"response body is not JSON ({len(body)} bytes)")
        return
    if not isinstance(obj, dict):
        out.fail("malformed", "response body is not a JSON object")
        return
    why = _bad_fields(obj)
    if why is not None:
        out.fail("malformed", f"response: {why}")
        return
    if isinstance(obj.get("usage"), dict):
        out.usage = obj["usage"]
    choices = obj.get("choices")
    if not (isinstance(choices, list) and choices):
        out.fail("malformed", "response has no choices")
        return
    reason = choices[0].get("finish_reason")
    out.finish_reason = reason[:DETAIL_CHARS] if reason is not None else None
    out.done = True


class ConnectError(Exception):
    """The connection to the server could not be made (``os_error`` says why)."""

    def __init__(self, os_error: OSError) -> None:
        super().__init__(str(os_error))
        self.os_error = os_error


def _refused(os_err: object) -> bool:
    # a host with several addresses (localhost: ::1 and 127.0.0.1) that all refused gives
    # one OSError without errno, "Multiple exceptions: [Errno 111] ..."
    return isinstance(os_err, ConnectionRefusedError) or \
        getattr(os_err, "errno", None) == errno.ECONNREFUSED or \
        (isinstance(os_err, OSError) and os_err.errno is None
         and str(os_err).startswith("Multiple exceptions")
         and str(os_err).count(f"[Errno {errno.ECONNREFUSED}]") == str(os_err).count("[Errno"))


def classify(exc: BaseException, started: bool) -> tuple[str, str]:
    """The error class of an exception, and a short detail; ``started``: the response's
    status line had arrived (a failure then is a cut stream)."""
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timeout", detail
    if started or isinstance(exc, http.ProtocolError):
        return "stream_cut", detail
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectError):
        return ("connection_refused" if _refused(exc.os_error) else "connect_error"), detail
    if isinstance(exc, aiohttp.ServerDisconnectedError | ConnectionResetError):
        return "connection_reset", detail
    if isinstance(exc, aiohttp.ClientOSError):
        # errno None: aiohttp's "Can not write request body", a connection closed under us
        if exc.errno in (errno.ECONNRESET, errno.EPIPE, None):
            return "connection_reset", detail
        if exc.errno == errno.ECONNREFUSED:
            return "connection_refused", detail
        return "connect_error", detail
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return "stream_cut", detail
    return "client_error", detail


def _answer(out: Outcome, ex: http.Exchange, sse: _Sse) -> None:
    """Read a complete (or deliberately cut) answer into ``out``."""
    status = out.status = ex.status
    assert status is not None
    if status != 200:
        out.fail(f"http_{status}", _body_error(status, bytes(ex.body[:http.ERROR_BODY])))
    elif ex.too_long:
        out.fail("malformed", f"SSE line too long: over {http.LINE_LIMIT} bytes")
    elif ex.sse:
        sse.end(bytes(ex.body))
    else:
        _whole(out, bytes(ex.body))


async def send(pool: http.Pool, body: bytes, *, stream: bool, timeout: float | None,
               out: Outcome | None = None, request_id: int | None = None) -> Outcome:
    """POST ``body`` on a connection of ``pool`` (with ``X-Request-Id`` when given) and read
    the answer into ``out`` (a new one by default); never raises for a failed request.
    Cancelled, it records ``cancelled`` and re-raises."""
    out = Outcome() if out is None else out
    out.sent = time.perf_counter()
    data = pool.request(body, request_id)
    loop = asyncio.get_running_loop()
    for attempt in range(2):
        conn: http.Connection | None = None
        ex: http.Exchange | None = None
        sse = _Sse(out)
        try:
            async with asyncio.timeout(timeout):
                try:
                    conn, _ = await pool.connection()
                except OSError as exc:
                    raise ConnectError(exc) from exc
                ex = http.Exchange(loop.create_future(), sse.line if stream else None)
                conn.send(data, ex)
                await ex.fut
        except asyncio.CancelledError:
            if conn is not None:
                conn.close()
            out.fail("cancelled", "still in flight when the run stopped")
            out.end = time.perf_counter()
            raise
        except Exception as exc:  # every failure is recorded, the run goes on
            if conn is not None:
                conn.close()
            if ex is not None and ex.status is not None:
                out.status = ex.status
            error, detail = classify(exc, ex is not None and ex.status is not None)
            if attempt == 0 and error == "connection_reset":
                # No answer at all: most often a kept-alive connection the server had closed
                # (llama.cpp's server closes one after some streamed answers without saying
                # so), which HTTP clients retry once; a short pause lets the loop see the
                # other closed connections first, so the retry takes a live or fresh one.
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            out.fail(error, detail)
        else:
            assert conn is not None and ex is not None
            pool.release(conn)
            _answer(out, ex, sse)
        break
    out.end = time.perf_counter()
    return out


@dataclass(frozen=True)
class ServerInfo:
    """What ``GET /v1/models`` said (all None when the server has no such route)."""

    model: str | None
    vocab_size: int | None
    max_model_len: int | None
    models: list[str]


def _vocab(entry: dict[str, Any]) -> int | None:
    meta = entry.get("meta")
    for value in (entry.get("vocab_size"), meta.get("n_vocab") if isinstance(meta, dict)
                  else None):
        if isinstance(value, int) and not isinstance(value, bool) and 2 <= value < 2**31:
            return value
    return None


async def probe(session: aiohttp.ClientSession, base: str, headers: dict[str, str],
                timeout: float = 10.0) -> ServerInfo:
    """``GET base/v1/models``; a server that is down, refuses the key or answers something
    that is not HTTP is one clear :class:`ReplayError`."""
    url = base + "/v1/models"
    try:
        async with session.get(url, headers=headers,
                               timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            if resp.status in (401, 403):
                raise ReplayError(f"the server at {base} refused the API key (HTTP "
                                  f"{resp.status}); pass --api-key or set OPENAI_API_KEY")
            if resp.status != 200:
                return ServerInfo(None, None, None, [])
            try:
                obj = await resp.json(content_type=None)
            except ValueError:
                return ServerInfo(None, None, None, [])
    except ReplayError:
        raise
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        kind, _ = classify(exc, False)
        why = {"connection_refused": "connection refused: is the server running on that port?",
               "timeout": f"no answer within {timeout:.0f} s"}.get(kind, f"{type(exc).__name__}:"
                                                                      f" {exc}")
        raise ReplayError(f"cannot reach the server at {base} ({why})") from None
    data = obj.get("data") if isinstance(obj, dict) else None
    entries = [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []
    if not entries:
        return ServerInfo(None, None, None, [])
    first = entries[0]
    mml = first.get("max_model_len")
    return ServerInfo(str(first.get("id")) if first.get("id") is not None else None,
                      _vocab(first), mml if _count(mml) else None,
                      [str(e.get("id")) for e in entries])
