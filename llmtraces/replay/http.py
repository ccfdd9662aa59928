"""The replay's lean HTTP/1.1 client: kept-alive connections as asyncio protocols, answers
parsed by httptools (llhttp, the parser Node.js and aiohttp use), one request head built per
run. A request then costs one ``write`` and the parsing of what comes back, about a quarter
of aiohttp's CPU (``benchmarks/replay_fidelity.py``), so one core keeps a schedule of
thousands of requests a second. Needs httptools (the ``replay`` extra).

Only what the replay sends is supported: POSTs of a JSON body to one URL (http or https), with
fixed headers; proxies, redirects, cookies and compression are not (none is asked for).
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from collections.abc import Callable

import httptools

from .._version import __version__

__all__ = ["Connection", "Exchange", "Pool", "ProtocolError"]
#: an SSE line longer than this (without its end) is refused, as aiohttp's reader does
LINE_LIMIT = 2**17
#: most of a non-200 answer's body that is read (for its error detail)
ERROR_BODY = 64 * 1024


class ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.1 response."""


class Exchange:
    """One request's answer as it arrives. With ``on_line`` (a streamed request), each line of
    an event stream (a 200 answer of type ``text/event-stream``) goes to it as it completes,
    the unfinished line staying in ``body``; any other body is kept (only its first
    ``ERROR_BODY`` bytes when the status is not 200)."""

    def __init__(self, fut: asyncio.Future[None],
                 on_line: Callable[[bytes], None] | None = None) -> None:
        self.fut, self.on_line = fut, on_line
        self.status: int | None = None  # set once the status line and headers have arrived
        self.headers: dict[bytes, bytes] = {}
        self.sse = False
        self.body = bytearray()
        self.complete = False  # the whole response has been read
        self.too_long = False  # an event-stream line over LINE_LIMIT: reading stopped

    def feed(self, data: bytes) -> bool:
        """Take body bytes; False: stop reading (enough of an error, or a line too long)."""
        self.body += data
        if not self.sse:
            return self.status == 200 or len(self.body) < ERROR_BODY
        assert self.on_line is not None
        start = 0
        while (end := self.body.find(b"\n", start)) >= 0:
            if end - start > LINE_LIMIT:
                break
            self.on_line(bytes(self.body[start:end]))
            start = end + 1
        del self.body[:start]
        self.too_long = end >= 0 or len(self.body) > LINE_LIMIT
        return not self.too_long


class Connection(asyncio.Protocol):
    """One kept-alive connection: one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.ex: Exchange | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, data: bytes, ex: Exchange) -> None:
        """Write one request; its answer goes to ``ex``."""
        assert self.transport is not None
        self.ex = ex
        self.transport.write(data)

    def close(self) -> None:
        """Close the connection (it is not reused)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        """Parse what came; a reply to no request, or bytes that are not HTTP, end it."""
        if self.ex is None:
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            self._end(exc.__context__ or exc)
        except httptools.HttpParserError as exc:
            self._end(ProtocolError(f"not an HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        """The server closed: the end of a body that runs to the close, or a cut answer."""
        self.closed = True
        ex = self.ex
        if ex is None:
            return
        if ex.status is not None and self._to_close(ex):
            ex.complete = True
            self._end(None)
        elif ex.status is not None:
            self._end(ConnectionResetError("the server closed the connection mid-answer"))
        else:
            self._end(ConnectionResetError("the server closed the connection before answering"))

    @staticmethod
    def _to_close(ex: Exchange) -> bool:
        """The body has no length and no chunks: it runs until the server closes."""
        return (b"content-length" not in ex.headers
                and b"chunked" not in ex.headers.get(b"transfer-encoding", b"").lower())

    def _end(self, exc: BaseException | None) -> None:
        ex, self.ex = self.ex, None
        if exc is not None or ex is None or not ex.complete:
            self.close()
        if ex is not None and not ex.fut.done():
            if exc is None:
                ex.fut.set_result(None)
            else:
                ex.fut.set_exception(exc)

    # httptools callbacks
    # (an answer nobody waits for any more, after a cut, is parsed and dropped)
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.ex is not None:
            self.ex.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        ex = self.ex
        if ex is None:
            return
        ex.status = self.parser.get_status_code()
        ctype = ex.headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        ex.sse = ex.on_line is not None and ex.status == 200 and ctype == b"text/event-stream"

    def on_body(self, body: bytes) -> None:
        ex = self.ex
        if ex is not None and not ex.feed(body):
            self._end(None)  # the rest is not read: the connection closes

    def on_message_complete(self) -> None:
        ex = self.ex
        if ex is None:
            return
        ex.complete = True
        if not self.parser.should_keep_alive():
            self.closed = True
            self._end(None)
            self.close()
        else:
            self._end(None)


def tls_for(url: str) -> ssl.SSLContext | None:
    """Python's default (verifying) SSL context for an https URL, None for http: made once
    per run, so the probe and the requests trust the same certificates."""
    return ssl.create_default_context() if url.lower().startswith("https:") else None


class Pool:
    """Kept-alive connections to one URL and the head of its requests."""

    def __init__(self, url: str, headers: dict[str, str],
                 tls: ssl.SSLContext | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = tls if tls is not None else tls_for(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default = 443 if parts.scheme == "https" else 80
        host = self.host if ":" not in self.host else f"[{self.host}]"
        if parts.port not in (None, default):
            host += f":{parts.port}"
        lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"User-Agent: llmtraces/{__version__}",
                 "Accept: */*", *(f"{k}: {v}" for k, v in headers.items())]
        self.head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self.idle: list[Connection] = []

    def request(self, body: bytes, request_id: int | None = None) -> bytes:
        """The bytes of one POST of ``body``."""
        rid = b"" if request_id is None else b"X-Request-Id: %d\r\n" % request_id
        return self.head + rid + b"Content-Length: %d\r\n\r\n" % len(body) + body

    async def connection(self) -> tuple[Connection, bool]:
        """A connection, and whether it was kept alive from an earlier request."""
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn, True
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            Connection, self.host, self.port, ssl=self.ssl,
            server_hostname=self.host if self.ssl is not None else None)
        return conn, False

    def release(self, conn: Connection) -> None:
        """Keep ``conn`` for the next request, unless it is closed."""
        if not conn.closed and conn.ex is None:
            self.idle.append(conn)

    def close(self) -> None:
        """Close the kept-alive connections."""
        for conn in self.idle:
            conn.close()
        self.idle.clear()
