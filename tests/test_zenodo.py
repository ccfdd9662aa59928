"""The Zenodo backend against a Zenodo-API-shaped endpoint served on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from httpserver import LoopbackServer, Route

import llmtraces
from llmtraces.errors import ChecksumError, DownloadError

RECORD = "15858418"


def zenodo_registry(tmp_path: Path, server: LoopbackServer, key: str = "raw_prefill.csv",
                    extra: str = "") -> Path:
    reg = tmp_path / "registry"
    reg.mkdir(parents=True)
    (reg / "zen-test.toml").write_text(f'''
id = "zen-test"
name = "A file in a Zenodo record"
description = "Test source resolved through the record API."
homepage = "{server.url}/records/{RECORD}"
format = "azure-csv"

[licence]
spdx = "MIT"
url = "{server.url}/licence"
redistributable = true
commercial_use = true
attribution = "test"

[citation]
text = "test"
bibtex = "@misc{{t, title={{t}}}}"

[time]
kind = "absolute"
native_format = "ISO"
resolution = "1us"
origin = "first row"

[traces.t]
description = "one file"

[traces.t.file]
name = "{key}"
url = "{server.url}/records/{RECORD}/files/{key}?download=1"
zenodo = {{ record = "{RECORD}", key = "{key}" }}
{extra}
''', encoding="utf-8")
    return reg


@pytest.fixture()
def zenodo(tmp_path, server: LoopbackServer, monkeypatch, code_csv):
    data = code_csv.read_bytes()
    content = f"/api/records/{RECORD}/files/trace.csv/content"
    record = {"id": int(RECORD), "files": [
        {"key": "other.csv", "size": 3, "checksum": "md5:" + "0" * 32,
         "links": {"content": f"{server.url}/api/records/{RECORD}/files/other.csv/content"}},
        {"key": "trace.csv", "size": len(data), "checksum": "md5:" + hashlib.md5(data).hexdigest(),
         "links": {"content": f"{server.url}{content}"}},
    ]}
    server.routes[f"/api/records/{RECORD}"] = Route(json.dumps(record).encode())
    server.routes[content] = Route(data)
    monkeypatch.setenv("LLMTRACES_ZENODO_URL", server.url)
    return server, data


def test_record_api_gives_url_size_and_md5(tmp_path, zenodo, monkeypatch, home):
    server, data = zenodo
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(zenodo_registry(tmp_path, server, "trace.csv")))
    (got,) = llmtraces.fetch("zen-test")
    assert got.path.read_bytes() == data
    assert got.origin == f"{server.url}/api/records/{RECORD}/files/trace.csv/content"
    assert [p for p, _ in server.log] == [f"/api/records/{RECORD}",
                                          f"/api/records/{RECORD}/files/trace.csv/content"]
    n = len(server.log)
    (again,) = llmtraces.fetch("zen-test")  # cached: no API call, no download
    assert again.origin == "cache" and len(server.log) == n
    assert llmtraces.load("zen-test").num_rows == 8819


def test_wrong_bytes_fail_the_record_md5(tmp_path, zenodo, monkeypatch, home):
    server, data = zenodo
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(zenodo_registry(tmp_path, server, "trace.csv")))
    server.routes[f"/api/records/{RECORD}/files/trace.csv/content"] = Route(
        data[:-1] + b"9")
    with pytest.raises(ChecksumError, match="md5 is"):
        llmtraces.fetch("zen-test")


def test_missing_key_and_pin_disagreement(tmp_path, zenodo, monkeypatch):
    server, data = zenodo
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(zenodo_registry(tmp_path, server, "nope.csv")))
    with pytest.raises(DownloadError, match="has no file 'nope.csv'; it has: other.csv, trace"):
        llmtraces.fetch("zen-test")
    reg = zenodo_registry(tmp_path / "b", server, "trace.csv", extra=f"size = {len(data) + 1}")
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(reg))
    with pytest.raises(DownloadError, match="the registry pins"):
        llmtraces.fetch("zen-test")


def test_unpublished_record(tmp_path, server, monkeypatch):
    monkeypatch.setenv("LLMTRACES_ZENODO_URL", server.url)
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(zenodo_registry(tmp_path, server)))
    with pytest.raises(DownloadError, match=rf"Zenodo record {RECORD}: HTTP 404"):
        llmtraces.fetch("zen-test")
