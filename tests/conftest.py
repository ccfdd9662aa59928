"""Shared fixtures: an isolated cache home, real sample files, a loopback HTTP server, and a
test registry whose conv entry pins the conv fixture (the full conv file is not available)."""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpserver import LoopbackServer, Route

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_SAMPLES = REPO.parent / "shared" / "samples"
SOURCE = "azure-llm-2023"
CODE_NAME = "AzureLLMInferenceTrace_code.csv"
CONV_NAME = "AzureLLMInferenceTrace_conv.csv"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty cache; no test ever sees the user's cache or mirror."""
    root = tmp_path / "home"
    monkeypatch.setenv("LLMTRACES_HOME", str(root))
    for var in ("LLMTRACES_MIRROR", "LLMTRACES_OFFLINE", "LLMTRACES_REGISTRY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LLMTRACES_DL_BACKOFF", "0")
    monkeypatch.setenv("LLMTRACES_DL_TIMEOUT", "10")
    return root


@pytest.fixture(autouse=True)
def no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that tries to connect anywhere but the loopback interface."""
    real_connect = socket.socket.connect

    def guarded(sock: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else address
        if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in (
                "127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"test tried to reach the network: {address!r}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="session")
def code_csv() -> Path:
    """The real Azure 2023 code trace (shared samples; the bundled copy is the same bytes)."""
    shared = SHARED_SAMPLES / SOURCE / CODE_NAME
    if shared.is_file():
        return shared
    return REPO / "llmtraces" / "data" / SOURCE / CODE_NAME


@pytest.fixture(scope="session")
def conv_csv() -> Path:
    """The conv fixture: the real first 9 rows in the native layout."""
    return FIXTURES / SOURCE / "conv_head.csv"


@pytest.fixture()
def server() -> Iterator[LoopbackServer]:
    srv = LoopbackServer().start()
    yield srv
    srv.stop()


def _pin(text: str, table: str, data: bytes, rows: int) -> str:
    """Rewrite size, checksums and rows of one [traces.X.file] table in registry TOML text."""
    head, sep, rest = text.partition(f"[{table}]")
    body, nxt, tail = rest.partition("\n[")
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    fields = {
        "size": str(len(data)),
        "sha256": f'"{hashlib.sha256(data).hexdigest()}"',
        "md5": f'"{hashlib.md5(data).hexdigest()}"',
        "git_blob": f'"{blob}"',
        "rows": str(rows),
    }
    for key, value in fields.items():
        body = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", body)
    return head + sep + body + nxt + tail


@pytest.fixture()
def test_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, conv_csv: Path,
                  server: LoopbackServer) -> Path:
    """The real registry, made safe and testable, and set as ``$LLMTRACES_REGISTRY``.

    The conv file is pinned to the conv fixture, and every upstream URL and mirror points at
    the loopback server (``/upstream/<name>``, ``/mirror1/<name>``; unrouted, so 404 unless a
    test adds a route), so a fallback can never reach the internet.
    """
    reg = tmp_path / "registry"
    shutil.copytree(REPO / "registry", reg)
    toml = reg / f"{SOURCE}.toml"
    text = _pin(toml.read_text(encoding="utf-8"), "traces.conv.file", conv_csv.read_bytes(), 9)
    head, sep, traces = text.partition("[traces")
    traces = re.sub(r'(?m)^url = "[^"]*/([^/"]+)"$', rf'url = "{server.url}/upstream/\1"',
                    traces)
    traces = re.sub(r'(?m)^mirrors = \["[^"]*/([^/"]+)"\]$',
                    rf'mirrors = ["{server.url}/mirror1/\1"]', traces)
    assert "https://" not in traces
    text = head + sep + traces
    toml.write_text(text, encoding="utf-8")
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(reg))
    return reg


@pytest.fixture()
def mirror(server: LoopbackServer, code_csv: Path, conv_csv: Path) -> LoopbackServer:
    """The loopback server holding both Azure 2023 files as ``/<source-id>/<file-name>``."""
    server.routes[f"/{SOURCE}/{CODE_NAME}"] = Route(code_csv.read_bytes())
    server.routes[f"/{SOURCE}/{CONV_NAME}"] = Route(conv_csv.read_bytes())
    return server
