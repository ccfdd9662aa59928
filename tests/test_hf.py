"""The Hugging Face Hub backend against a Hub-shaped endpoint served on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from httpserver import LoopbackServer, Route

import llmtraces
from llmtraces.errors import DownloadError

REPO = "lmsys/lmsys-chat-1m"
FILE = "data/train-00000-of-00006-4feeb3f83346a0e9.csv"
TOKEN = "hf_secretTOKEN123"


def hub_registry(tmp_path: Path, server: LoopbackServer) -> Path:
    reg = tmp_path / "registry"
    reg.mkdir(parents=True)
    (reg / "hub-test.toml").write_text(f'''
id = "hub-test"
name = "A gated Hub dataset file"
description = "Test source resolved through the Hub tree API."
homepage = "{server.url}/datasets/{REPO}"
format = "azure-csv"

[licence]
spdx = "LicenseRef-LMSYS-Chat-1M"
url = "{server.url}/datasets/{REPO}"
redistributable = false
commercial_use = false
attribution = "test"

[citation]
text = "test"
bibtex = "@misc{{t, title={{t}}}}"

[time]
kind = "none"
native_format = "none"
resolution = "none"
origin = "none"

[traces.t]
description = "one shard"

[traces.t.file]
name = "{FILE.split('/')[-1]}"
url = "{server.url}/datasets/{REPO}/resolve/main/{FILE}"
hf = {{ repo = "{REPO}", path = "{FILE}" }}
''', encoding="utf-8")
    return reg


@pytest.fixture()
def hub(tmp_path, server: LoopbackServer, monkeypatch, code_csv):
    import hashlib

    data = code_csv.read_bytes()
    tree = [{"type": "file", "path": FILE, "size": len(data),
             "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}},
            {"type": "file", "path": "data/other.csv", "size": 3}]
    server.routes[f"/api/datasets/{REPO}/tree/main/data"] = Route(json.dumps(tree).encode())
    port = server.server_address[1]
    # The Hub redirects to a CDN on another host; "localhost" is another host than 127.0.0.1.
    server.routes[f"/datasets/{REPO}/resolve/main/{FILE}"] = Route(
        require_auth=f"Bearer {TOKEN}", redirect_to=f"http://localhost:{port}/cdn/shard")
    server.routes["/cdn/shard"] = Route(data)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(hub_registry(tmp_path, server)))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no saved login
    return server, data


def test_gated_download_with_the_users_token(hub, monkeypatch, home):
    server, data = hub
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    messages: list[str] = []
    from llmtraces.fetching.download import fetch

    (got,) = fetch("hub-test", root=home, log=messages.append)
    assert got.path.read_bytes() == data
    sent = {path: h.get("Authorization") for path, h in server.log}
    assert sent[f"/datasets/{REPO}/resolve/main/{FILE}"] == f"Bearer {TOKEN}"
    assert sent["/cdn/shard"] is None  # the token goes to the Hub only
    for f in home.rglob("*"):  # nor is it written anywhere
        if f.is_file():
            assert TOKEN.encode() not in f.read_bytes()
    assert not any(TOKEN in m for m in messages)


def test_no_token_names_the_page_to_accept(hub, home):
    with pytest.raises(DownloadError) as err:
        llmtraces.fetch("hub-test")
    msg = str(err.value)
    assert f"HTTP 401: it is gated: accept its terms on {hub[0].url}/datasets/{REPO}" in msg
    assert "huggingface-cli login" in msg and "HF_TOKEN" in msg
    assert not (home / "raw" / "hub-test").exists() or not any(
        (home / "raw" / "hub-test").glob("*.csv"))


def test_wrong_token_is_refused_without_echoing_it(hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrongTOKEN")
    with pytest.raises(DownloadError, match="not been granted access") as err:
        llmtraces.fetch("hub-test")
    assert "hf_wrongTOKEN" not in str(err.value)


def test_sha256_from_the_hub_is_enforced(hub, monkeypatch, home):
    server, data = hub
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    server.routes["/cdn/shard"] = Route(data[:-1] + b"0")
    with pytest.raises(DownloadError, match="sha256 is"):
        llmtraces.fetch("hub-test")


@pytest.mark.parametrize(("body", "field"), [
    (b"<html>Rate limit</html>", "not JSON"),
    (b'{"error": "x"}', "JSON dict"),
    (b'[1, "x"]', "item 0 has no string 'path'"),
    (json.dumps([{"path": FILE, "size": -5}]).encode(), "field 'size'"),
    (json.dumps([{"path": FILE, "lfs": {"oid": 7}}]).encode(), "field 'lfs.oid'"),
])
def test_malformed_tree_answer_is_one_line_without_the_token(hub, monkeypatch, home, body,
                                                              field):
    server, _ = hub
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    server.routes[f"/api/datasets/{REPO}/tree/main/data"] = Route(body)
    with pytest.raises(DownloadError) as err:
        llmtraces.fetch("hub-test")
    msg = str(err.value)
    assert field in msg and f"/api/datasets/{REPO}/tree/main/data" in msg
    assert TOKEN not in msg
