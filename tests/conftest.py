"""Shared fixtures: an isolated cache home, real sample files, a loopback HTTP server, a test
registry whose conv entry pins the conv fixture (the full conv file is not available), the
``cli`` runner, and the :func:`roundtrip` helper of the format tests."""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from httpserver import LoopbackServer, Route

from llmtraces.cli import main
from llmtraces.formats import get_writer
from llmtraces.pipeline.convert import convert_file

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SOURCE = "azure-llm-2023"
CODE_NAME = "AzureLLMInferenceTrace_code.csv"
CONV_NAME = "AzureLLMInferenceTrace_conv.csv"

#: The ``cli`` fixture's type: ``cli("convert", path, "-o", out, input=None)``.
Cli = Callable[..., Result]


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


@pytest.fixture(scope="session")
def code_csv() -> Path:
    """The real Azure 2023 code trace: the verified copy shipped in the package."""
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
    """Pin one ``[traces.X.file]`` table of registry TOML text to ``data``: its size, sha256
    and row count; other checksums are dropped (they described the real file)."""
    head, sep, rest = text.partition(f"[{table}]")
    assert sep, f"no [{table}] table"
    body, nxt, tail = rest.partition("\n[")
    body = re.sub(r"(?m)^(size|sha256|md5|git_blob|rows|unverified) = .*\n?", "", body)
    pins = (f"size = {len(data)}\nsha256 = \"{hashlib.sha256(data).hexdigest()}\"\n"
            f"rows = {rows}\n")
    body = re.sub(r"(?m)^(name = .*\n)", lambda m: m.group(1) + pins, body, count=1)
    return head + sep + body + nxt + tail


def _loopback_urls(text: str, base: str) -> str:
    """Point every file URL of registry TOML text at the loopback server: ``url`` at
    ``/upstream/<name>``, each mirror at ``/mirror<k>/<name>``; nothing can reach the internet."""
    starts = [i for i in (text.find("\n[archives"), text.find("\n[traces")) if i >= 0]
    cut = min(starts, default=len(text))
    head, sep, traces = text[:cut], "", text[cut:]
    traces = re.sub(r'(?m)^url = "[^"]*/([^/"]+)"$', rf'url = "{base}/upstream/\1"', traces)

    def mirrors(m: re.Match[str]) -> str:
        names = re.findall(r'"[^"]*/([^/"]+)"', m.group(1))
        return "mirrors = [" + ", ".join(
            f'"{base}/mirror{k}/{n}"' for k, n in enumerate(names, 1)) + "]"

    traces = re.sub(r"(?m)^mirrors = \[(.*)\]$", mirrors, traces)
    assert "https://" not in traces
    return head + sep + traces


def build_registry(dest: Path, base_url: str,
                   pins: dict[tuple[str, str], tuple[bytes, int]]) -> Path:
    """A copy of the shipped registry at ``dest`` with file URLs on the loopback server and
    the given ``(source, trace) -> (bytes, rows)`` pins (for fixtures standing in for real
    files that are not available offline)."""
    shutil.copytree(REPO / "registry", dest)
    for toml in dest.glob("*.toml"):
        text = toml.read_text(encoding="utf-8")
        for (source, trace), (data, rows) in pins.items():
            if toml.stem == source:
                text = _pin(text, f"traces.{trace}.file", data, rows)
        toml.write_text(_loopback_urls(text, base_url), encoding="utf-8")
    return dest


@pytest.fixture()
def test_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, conv_csv: Path,
                  server: LoopbackServer) -> Path:
    """The shipped registry with the Azure 2023 conv file pinned to the conv fixture and every
    URL on the loopback server, set as ``$LLMTRACES_REGISTRY``."""
    reg = build_registry(tmp_path / "registry", server.url,
                         {(SOURCE, "conv"): (conv_csv.read_bytes(), 9)})
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(reg))
    return reg


@pytest.fixture()
def mirror(server: LoopbackServer, code_csv: Path, conv_csv: Path) -> LoopbackServer:
    """The loopback server holding both Azure 2023 files as ``/<source-id>/<file-name>``."""
    server.routes[f"/{SOURCE}/{CODE_NAME}"] = Route(code_csv.read_bytes())
    server.routes[f"/{SOURCE}/{CONV_NAME}"] = Route(conv_csv.read_bytes())
    return server


@pytest.fixture()
def cli() -> Cli:
    """``llmtraces ARGS`` run in-process as a user runs it; an exception is caught into the
    result (``result.exception``), as click's runner does by default."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(main, list(args), input=input)

    return invoke


def roundtrip(native: Path, tmp_path: Path, to: str) -> Path:
    """``native`` -> unified Parquet (``tmp_path/u.parquet``) -> export format ``to``: the file
    written back, ``tmp_path/back`` with the writer's suffix."""
    unified = tmp_path / "u.parquet"
    convert_file(native, unified)
    back = tmp_path / f"back{get_writer(to).suffix}"
    convert_file(unified, back, to=to)
    return back
