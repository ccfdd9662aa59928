"""A stateful server on 127.0.0.1 in the shape of Zenodo's (legacy) deposit API, with faults.

It keeps depositions, buckets, files and published records in memory and answers:

- ``POST /api/deposit/depositions``; ``GET/PUT/DELETE /api/deposit/depositions/{id}``;
- ``GET /api/deposit/depositions/{id}/files``, ``GET/DELETE .../files/{file_id}``;
- ``POST .../actions/publish`` (202, mints a 10.5072 DOI, as the sandbox does) and
  ``POST .../actions/newversion`` (201; the new draft inherits the files and drops
  ``publication_date``, its URL in ``links.latest_draft``);
- ``PUT /api/files/{bucket}/{key}`` answering ``{key, size, checksum: "md5:<hex>"}``;
- ``GET /api/records/{id}`` in the shape ``llmtraces.fetching.backends.zenodo`` reads, and
  the file bytes at ``/api/records/{id}/files/{key}/content`` and ``/records/{id}/files/{key}``.

Everything under ``/api/deposit`` and ``/api/files`` needs ``Authorization: Bearer <token>``
(401 otherwise). Faults (:class:`Fault`) answer a status with headers, drop the connection
mid-body, store a wrong md5 or read an upload slowly; each request is logged.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse

#: Fields the legacy API requires before publishing.
REQUIRED = ("upload_type", "title", "creators", "description")


@dataclass
class Fault:
    """A misbehaviour for the next ``times`` requests whose method and path match."""

    method: str
    #: a regular expression the path (without the query) must fully match
    path: str
    #: "status" (answer ``status`` with ``headers``), "drop" (close after ``after`` body
    #: bytes, no answer), "bad_md5" (store the upload with one byte flipped), "slow" (read
    #: the body ``chunk`` bytes at a time, sleeping ``delay`` s between chunks)
    kind: str = "status"
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    after: int = 100
    chunk: int = 1024
    delay: float = 0.05
    times: int = 1


@dataclass
class StoredFile:
    """One file in a bucket."""

    id: str
    key: str
    data: bytes

    @property
    def md5(self) -> str:
        return hashlib.md5(self.data).hexdigest()


@dataclass
class Deposition:
    """One deposition (a draft, or published as a record of the same id)."""

    id: int
    conceptrecid: int
    bucket: str
    metadata: dict[str, Any] = field(default_factory=dict)
    files: list[StoredFile] = field(default_factory=list)
    submitted: bool = False
    doi: str | None = None


@dataclass
class Seen:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ZenodoServer

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def _handle(self) -> None:
        srv = self.server
        path = urlparse(self.path).path
        srv.seen.append(Seen(self.command, self.path, dict(self.headers)))
        fault = srv.take_fault(self.command, path)
        length = int(self.headers.get("Content-Length") or 0)
        if fault is not None and fault.kind == "drop":
            self.rfile.read(min(fault.after, length))
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fault is not None and fault.kind == "slow":
            body = b""
            while len(body) < length:
                body += self.rfile.read(min(fault.chunk, length - len(body)))
                srv.upload_started.set()
                time.sleep(fault.delay)
        else:
            body = self.rfile.read(length) if length else b""
        if fault is not None and fault.kind == "status":
            self._json(fault.status, {"status": fault.status, "message": "fault"},
                       fault.headers)
            return
        public = path.startswith(("/api/records/", "/records/"))
        if not public and self.headers.get("Authorization") != f"Bearer {srv.token}":
            self._json(401, {"status": 401, "message": "The server could not verify that "
                                                       "you are authorized"})
            return
        with srv.lock:
            code, answer, raw = srv.route(self.command, path, body,
                                          bad_md5=fault is not None and fault.kind == "bad_md5")
        if raw is not None:
            self._send(code, raw, "application/octet-stream")
        else:
            self._json(code, answer)

    do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815 (http.server API)

    def _json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if code == 204 else json.dumps(body).encode()
        self._send(code, data, "application/json", headers)

    def _send(self, code: int, data: bytes, ctype: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        # Zenodo's rate-limit headers on every answer (a fault's own ones replace them).
        limits = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "99",
                  "X-RateLimit-Reset": str(int(time.time()) + 60)}
        for name, value in {**limits, **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _err(code: int, message: str, field_name: str | None = None
         ) -> tuple[int, dict[str, Any], None]:
    body: dict[str, Any] = {"status": code, "message": message}
    if field_name:
        body["errors"] = [{"field": field_name, "message": message}]
    return code, body, None


class ZenodoServer(ThreadingHTTPServer):
    """The fake Zenodo: ``url`` is its base (what ``--zenodo-url`` and
    ``$LLMTRACES_ZENODO_URL`` take)."""

    daemon_threads = True

    def __init__(self, token: str = "test-token", max_files: int = 100,
                 quota: int = 50 * 10**9) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.token, self.max_files, self.quota = token, max_files, quota
        self.depositions: dict[int, Deposition] = {}
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self.upload_started = threading.Event()
        self._next_id = 1000
        self._thread = threading.Thread(target=self.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> ZenodoServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request: object, client_address: object) -> None:
        import sys  # clients killed or hanging up mid-upload are expected here

        if not isinstance(sys.exc_info()[1], (ConnectionError, ValueError)):
            super().handle_error(request, client_address)  # type: ignore[arg-type]

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first fault matching this request, used up once."""
        with self.lock:
            for fault in self.faults:
                if fault.method == method and re.fullmatch(fault.path, path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    # -- state ------------------------------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def new_deposition(self, concept: int | None = None) -> Deposition:
        concept = concept if concept is not None else self._new_id()
        dep = Deposition(self._new_id(), concept, uuid.uuid4().hex)
        self.depositions[dep.id] = dep
        return dep

    def drafts(self) -> list[Deposition]:
        return [d for d in self.depositions.values() if not d.submitted]

    def rep(self, dep: Deposition) -> dict[str, Any]:
        """A deposition as the legacy API shows it."""
        api = f"{self.url}/api/deposit/depositions/{dep.id}"
        draft = next((d for d in self.drafts() if d.conceptrecid == dep.conceptrecid), None)
        links = {"self": api, "html": f"{self.url}/deposit/{dep.id}",
                 "bucket": f"{self.url}/api/files/{dep.bucket}", "files": f"{api}/files",
                 "publish": f"{api}/actions/publish", "newversion": f"{api}/actions/newversion"}
        if draft is not None:
            links["latest_draft"] = f"{self.url}/api/deposit/depositions/{draft.id}"
        if dep.submitted:
            links["record_html"] = f"{self.url}/records/{dep.id}"
        return {"id": dep.id, "record_id": dep.id, "conceptrecid": str(dep.conceptrecid),
                "state": "done" if dep.submitted else "unsubmitted",
                "submitted": dep.submitted, "doi": dep.doi or "", "title":
                    dep.metadata.get("title", ""),
                "metadata": {**dep.metadata, "prereserve_doi": {
                    "doi": f"10.5281/zenodo.{dep.id}", "recid": dep.id}},
                "files": [self.file_rep(dep, f) for f in dep.files], "links": links}

    def file_rep(self, dep: Deposition, f: StoredFile) -> dict[str, Any]:
        api = f"{self.url}/api/deposit/depositions/{dep.id}/files/{f.id}"
        return {"id": f.id, "filename": f.key, "filesize": len(f.data), "checksum": f.md5,
                "links": {"self": api, "download": f"{self.url}/api/files/{dep.bucket}/{f.key}"}}

    def record(self, dep: Deposition) -> dict[str, Any]:
        """A published record as ``GET /api/records/{id}`` shows it (InvenioRDM shape)."""
        base = f"{self.url}/api/records/{dep.id}"
        return {"id": dep.id, "conceptrecid": str(dep.conceptrecid), "doi": dep.doi,
                "metadata": dep.metadata,
                "links": {"self": base, "self_html": f"{self.url}/records/{dep.id}"},
                "files": [{"key": f.key, "size": len(f.data), "checksum": f"md5:{f.md5}",
                           "links": {"self": f"{base}/files/{f.key}",
                                     "content": f"{base}/files/{f.key}/content"}}
                          for f in dep.files]}

    # -- routes -----------------------------------------------------------------------------

    def route(self, method: str, path: str, body: bytes, bad_md5: bool = False
              ) -> tuple[int, Any, bytes | None]:
        """The answer (status, JSON body, or raw bytes) to one request."""
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[:3] == ["api", "deposit", "depositions"]:
            return self._deposit(method, parts[3:], body)
        if parts[:2] == ["api", "files"] and len(parts) == 4 and method == "PUT":
            return self._put_file(parts[2], parts[3], body, bad_md5)
        if parts[:2] == ["api", "records"] and len(parts) >= 3 and method == "GET":
            dep = self._published(parts[2])
            if dep is None:
                return _err(404, "PID does not exist.")
            if len(parts) == 3:
                return 200, self.record(dep), None
            if len(parts) == 6 and parts[3] == "files" and parts[5] == "content":
                return self._bytes(dep, parts[4])
        if parts[:1] == ["records"] and len(parts) == 4 and parts[2] == "files":
            dep = self._published(parts[1])
            if dep is not None:
                return self._bytes(dep, parts[3])
        return _err(404, "not found")

    def _published(self, ident: str) -> Deposition | None:
        dep = self.depositions.get(int(ident)) if ident.isdigit() else None
        return dep if dep is not None and dep.submitted else None

    def _bytes(self, dep: Deposition, key: str) -> tuple[int, Any, bytes | None]:
        found = next((f for f in dep.files if f.key == key), None)
        return (200, None, found.data) if found else _err(404, "no such file")

    def _deposit(self, method: str, rest: list[str], body: bytes
                 ) -> tuple[int, Any, bytes | None]:
        if not rest:
            if method == "POST":
                return 201, self.rep(self.new_deposition()), None
            if method == "GET":
                return 200, [self.rep(d) for d in self.depositions.values()], None
            return _err(405, "method not allowed")
        dep = self.depositions.get(int(rest[0])) if rest[0].isdigit() else None
        if dep is None:
            return _err(404, "Deposition not found")
        if len(rest) == 1:
            if method == "GET":
                return 200, self.rep(dep), None
            if method == "PUT":
                return self._put_metadata(dep, body)
            if method == "DELETE":
                if dep.submitted:
                    return _err(403, "published depositions cannot be deleted")
                del self.depositions[dep.id]
                return 204, None, None
        if rest[1:2] == ["files"]:
            return self._files(method, dep, rest[2:])
        if rest[1:2] == ["actions"] and len(rest) == 3 and method == "POST":
            if rest[2] == "publish":
                return self._publish(dep)
            if rest[2] == "newversion":
                return self._newversion(dep)
        return _err(405, "method not allowed")

    def _put_metadata(self, dep: Deposition, body: bytes) -> tuple[int, Any, bytes | None]:
        if dep.submitted:
            return _err(400, "Deposition is published: use actions/edit first")
        try:
            meta = json.loads(body)["metadata"]
        except (ValueError, KeyError, TypeError):
            return _err(400, "expected {\"metadata\": {...}}")
        if not isinstance(meta, dict):
            return _err(400, "metadata: expected an object", "metadata")
        for name in REQUIRED:
            if not meta.get(name):
                return _err(400, "Missing data for required field.", f"metadata.{name}")
        if meta.get("upload_type") not in ("dataset", "software", "publication", "other"):
            return _err(400, "Invalid upload type.", "metadata.upload_type")
        if "doi" in meta:
            return _err(400, "DOI prefix not allowed here.", "metadata.doi")
        dep.metadata = meta
        return 200, self.rep(dep), None

    def _files(self, method: str, dep: Deposition, rest: list[str]
               ) -> tuple[int, Any, bytes | None]:
        if not rest and method == "GET":
            return 200, [self.file_rep(dep, f) for f in dep.files], None
        found = next((f for f in dep.files if rest and f.id == rest[0]), None)
        if len(rest) != 1 or found is None:
            return _err(404, "File not found")
        if method == "GET":
            return 200, self.file_rep(dep, found), None
        if method == "DELETE":
            if dep.submitted:
                return _err(403, "files of a published record cannot be deleted")
            dep.files.remove(found)
            return 204, None, None
        return _err(405, "method not allowed")

    def _put_file(self, bucket: str, key: str, data: bytes, bad_md5: bool
                  ) -> tuple[int, Any, bytes | None]:
        dep = next((d for d in self.depositions.values() if d.bucket == bucket), None)
        if dep is None:
            return _err(404, "Bucket does not exist.")
        if dep.submitted:
            return _err(403, "Bucket is locked (the record is published).")
        others = [f for f in dep.files if f.key != key]
        if len(others) >= self.max_files:
            return _err(400, f"Too many files (at most {self.max_files}).")
        if sum(len(f.data) for f in others) + len(data) > self.quota:
            return _err(413, "Bucket quota exceeded.")
        stored = data[:-1] + bytes([data[-1] ^ 1]) if bad_md5 and data else data
        dep.files = others + [StoredFile(uuid.uuid4().hex, key, stored)]
        f = dep.files[-1]
        return 201, {"key": key, "size": len(stored), "checksum": f"md5:{f.md5}",
                     "mimetype": "application/octet-stream",
                     "links": {"self": f"{self.url}/api/files/{bucket}/{key}"}}, None

    def _publish(self, dep: Deposition) -> tuple[int, Any, bytes | None]:
        if dep.submitted:
            return _err(400, "Deposition is already published.")
        if not dep.files:
            return _err(400, "Minimum one file must be provided.")
        if not all(dep.metadata.get(n) for n in REQUIRED):
            return _err(400, "Validation error: metadata is incomplete.")
        dep.submitted = True
        dep.doi = f"10.5072/zenodo.{dep.id}"
        return 202, self.rep(dep), None

    def _newversion(self, dep: Deposition) -> tuple[int, Any, bytes | None]:
        if not dep.submitted:
            return _err(400, "Only published depositions can get a new version.")
        versions = [d for d in self.depositions.values() if d.conceptrecid == dep.conceptrecid]
        if any(d.submitted and d.id > dep.id for d in versions):
            return _err(400, "This is not the latest version.")
        if not any(not d.submitted for d in versions):
            new = self.new_deposition(dep.conceptrecid)
            new.metadata = {k: v for k, v in dep.metadata.items() if k != "publication_date"}
            new.files = [StoredFile(uuid.uuid4().hex, f.key, f.data) for f in dep.files]
        return 201, self.rep(dep), None
