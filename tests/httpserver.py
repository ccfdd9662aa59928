"""A real HTTP server on 127.0.0.1 for download tests, with injectable faults.

Each route maps a URL path to a :class:`Route`: the bytes to serve and how to misbehave
(status codes, a dropped connection mid-body, ignored Range, a lying Content-Length, gzip
Content-Encoding, a redirect). Every request is logged so tests can assert what was asked.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b""
    #: statuses to answer before serving the body, one per request (e.g. [503, 429]).
    fail_first: list[int] = field(default_factory=list)
    status: int = 200
    retry_after: str | None = None
    #: close the connection after this many body bytes, on the first N full requests.
    drop_after: int | None = None
    drop_times: int = 1
    honour_range: bool = True
    content_length: int | None = None
    #: label the body (already gzip bytes, e.g. a .csv.gz) with Content-Encoding: gzip.
    gzip_encoding: bool = False
    redirect_to: str | None = None
    #: extra response headers (Content-Type, Set-Cookie, ...)
    headers: dict[str, str] = field(default_factory=dict)
    #: answer 401 unless the request carries exactly this Authorization header
    require_auth: str | None = None
    #: send the body in chunks of this many bytes, sleeping ``chunk_delay`` between them.
    chunk: int | None = None
    chunk_delay: float = 0.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        server: LoopbackServer = self.server  # type: ignore[assignment]
        server.log.append((self.path, dict(self.headers)))
        route = server.routes.get(self.path)
        if route is None:
            self._plain(404, b"not found")
            return
        if route.require_auth is not None and self.headers.get("Authorization") != \
                route.require_auth:
            self._plain(401, b"unauthorized")
            return
        if self.command == "HEAD" and not route.redirect_to:
            self.send_response(200)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            return
        if route.redirect_to:
            self.send_response(302)
            self.send_header("Location", route.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if route.fail_first:
            code = route.fail_first.pop(0)
            self.send_response(code)
            if route.retry_after is not None:
                self.send_header("Retry-After", route.retry_after)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if route.status != 200:
            self._plain(route.status, b"<html><body>error</body></html>")
            return
        body = route.body
        start = 0
        rng = self.headers.get("Range")
        if rng and route.honour_range and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
        payload = body[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Accept-Ranges", "bytes")
        if route.gzip_encoding:
            self.send_header("Content-Encoding", "gzip")
        for name, value in route.headers.items():
            self.send_header(name, value)
        length = route.content_length if route.content_length is not None else len(payload)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if route.drop_after is not None and route.drop_times > 0:
            route.drop_times -= 1
            self.wfile.write(payload[: route.drop_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if route.chunk:
            for i in range(0, len(payload), route.chunk):
                self.wfile.write(payload[i:i + route.chunk])
                self.wfile.flush()
                time.sleep(route.chunk_delay)
            return
        self.wfile.write(payload)

    do_HEAD = do_GET  # noqa: N815 (http.server API); the GET path answers HEAD without a body

    def _plain(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Route] = {}
        self.log: list[tuple[str, dict[str, str]]] = []
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that hang up (resume tests, timeouts) are expected here; stay quiet.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
