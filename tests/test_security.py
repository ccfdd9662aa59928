"""Hostile registries and host answers: nothing they name lands outside the cache home, and no
local file (``/proc/self/environ``, a user's secrets) is copied into the cache through a URL
the user did not type. Each refusal is one line naming the file (or record) and the field.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from httpserver import LoopbackServer, Route
from hypothesis import given, settings
from hypothesis import strategies as st

import llmtraces
from conftest import FIXTURES, Cli, build_registry
from llmtraces.errors import DownloadError, RegistryError
from llmtraces.registry import file_name_problem, load_registry, load_source_file, name_problem

RECORD = "15858418"
SECRET = b"HF_TOKEN=hf_SECRETVALUE\n"
HEAD = """
id = "{id}"
name = "A hostile test source"
description = "Test source."
homepage = "https://example.org/"
format = "azure-csv"

[licence]
spdx = "MIT"
url = "https://example.org/licence"
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
"""


def registry(tmp_path: Path, body: str, source_id: str = "r") -> Path:
    """A registry folder holding one source ``source_id`` with the given trace tables."""
    reg = tmp_path / "registry"
    reg.mkdir(exist_ok=True)
    (reg / f"{source_id}.toml").write_text(HEAD.format(id=source_id) + body, encoding="utf-8")
    return reg


def trace(tid: str = "a", name: str = "t.csv", url: str = "https://example.org/t.csv",
          extra: str = 'unverified = "test"') -> str:
    return (f'[traces.{json.dumps(tid)}]\ndescription = "x"\n[traces.{json.dumps(tid)}.file]\n'
            f"name = {json.dumps(name)}\nurl = {json.dumps(url)}\n{extra}\n")


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# --- F19: URLs the user did not type are http(s) only ------------------------------------------

@pytest.mark.parametrize(("extra", "field"), [
    ('url = "file:///proc/self/environ"', "traces.a.file.url"),
    ('url = "FILE:///proc/self/environ"', "traces.a.file.url"),
    ('url = "https://example.org/t.csv"\nmirrors = ["https://example.org/m", '
     '"file:///proc/self/environ"]', "traces.a.file.mirrors.1"),
    ('url = "ftp://example.org/t.csv"', "traces.a.file.url"),
    ('url = "https:///no-host"', "traces.a.file.url"),
])
def test_registry_urls_must_be_http(tmp_path, extra, field):
    body = '[traces.a]\ndescription = "x"\n[traces.a.file]\nname = "t.csv"\n' \
           f'unverified = "x"\n{extra}\n'
    path = registry(tmp_path, body) / "r.toml"
    with pytest.raises(RegistryError) as err:
        load_source_file(path)
    line = one_line(str(err.value))
    assert line.startswith(f"{path}: {field}: ") and "not an http:// or https:// URL" in line


def test_a_file_url_in_the_registry_copies_no_secret(tmp_path, monkeypatch, home, cli: Cli):
    secret = tmp_path / "environ"
    secret.write_bytes(SECRET)
    reg = registry(tmp_path, trace(url=secret.as_uri(), extra=f"size = {len(SECRET)}\n"
                                                               'unverified = "x"'))
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(reg))
    monkeypatch.setenv("HF_TOKEN", "hf_SECRETVALUE")
    result = cli("fetch", "r")
    assert result.exit_code == 1
    assert "traces.a.file.url: Value error, 'file://" in one_line(result.output)
    assert not home.exists() or not any(home.rglob("t.csv*"))


def test_the_user_may_still_name_a_local_folder_or_file(tmp_path, monkeypatch, code_csv, home,
                                                         cli: Cli):
    data = code_csv.read_bytes()
    pins = f'size = {len(data)}\nsha256 = "{hashlib.sha256(data).hexdigest()}"'
    # The pinned upstream cannot be reached: only the user's own copies can give the file.
    reg = registry(tmp_path, trace(url="http://127.0.0.1:1/t.csv", extra=pins))
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(reg))
    folder = tmp_path / "local-mirror" / "r"
    folder.mkdir(parents=True)
    (folder / "t.csv").write_bytes(data)
    result = cli("fetch", "r", "--mirror", (tmp_path / "local-mirror").as_uri())
    assert result.exit_code == 0, result.output
    assert "verified, from file://" in result.output
    (home / "raw" / "r" / "t.csv").unlink()
    result = cli("fetch", "r", "--file", str(folder / "t.csv"))
    assert result.exit_code == 0, result.output


def serve_record(server: LoopbackServer, files: list[object]) -> None:
    server.routes[f"/api/records/{RECORD}"] = Route(json.dumps({"files": files}).encode())


@pytest.fixture()
def trace_archive(tmp_path: Path, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
                  ) -> LoopbackServer:
    """The shipped `llm-trace-archive` entry, its record API served on 127.0.0.1."""
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(build_registry(tmp_path / "reg", server.url,
                                                                {})))
    monkeypatch.setenv("LLMTRACES_ZENODO_URL", server.url)
    return server


def secret_entry(tmp_path: Path, key: str = "env.csv") -> dict[str, object]:
    """A record file whose link is a local file with a secret (and its true size and md5)."""
    secret = tmp_path / "environ"
    secret.write_bytes(SECRET)
    return {"key": key, "size": len(SECRET), "checksum": "md5:" + hashlib.md5(SECRET).hexdigest(),
            "links": {"content": secret.as_uri()}}


def test_a_file_link_from_the_record_api_is_refused(tmp_path, trace_archive, monkeypatch,
                                                     home, cli: Cli):
    monkeypatch.setenv("HF_TOKEN", "hf_SECRETVALUE")
    serve_record(trace_archive, [secret_entry(tmp_path)])
    result = cli("fetch", "llm-trace-archive")
    assert result.exit_code == 1
    assert one_line(result.output) == (
        f"Error: Zenodo record {RECORD}: files[0].links.content: "
        f"'{(tmp_path / 'environ').as_uri()}' is not an http:// or https:// URL")
    assert files_under(home) <= {"raw", "raw/llm-trace-archive"}  # no list, no bytes saved


def test_a_file_link_for_a_pinned_zenodo_file_is_refused(tmp_path, server, monkeypatch, home):
    monkeypatch.setenv("LLMTRACES_ZENODO_URL", server.url)
    zen = f'zenodo = {{ record = "{RECORD}", key = "env.csv" }}'
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(registry(tmp_path, trace(name="env.csv",
                                                                           extra=zen))))
    serve_record(server, [secret_entry(tmp_path)])
    with pytest.raises(DownloadError, match=r"files\[0\]\.links\.content: 'file://"):
        llmtraces.fetch("r")
    assert not any(home.rglob("env.csv*"))


def test_a_drive_form_pointing_at_a_local_file_is_refused(tmp_path, server, monkeypatch, home):
    file_id = "1D8f68sBWJHyCfJZdEYCBK2M0iHmSDE6M"
    gd = f'gdrive = {{ id = "{file_id}" }}\nsize = {len(SECRET)}\nunverified = "x"'
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(registry(tmp_path, trace(extra=gd))))
    monkeypatch.setenv("LLMTRACES_GDRIVE_URL", server.url)
    (tmp_path / "environ").write_bytes(SECRET)
    page = f'<form id="download-form" action="{(tmp_path / "environ").as_uri()}"></form>'
    server.routes[f"/uc?export=download&id={file_id}"] = Route(
        page.encode(), headers={"Content-Type": "text/html"})
    with pytest.raises(DownloadError, match="download form's link 'file://.*' is not an http"):
        llmtraces.fetch("r")
    assert {p.name for p in home.rglob("t.csv*")} <= {"t.csv.lock"}  # no bytes, no .part


def test_a_local_hub_endpoint_is_refused(tmp_path, monkeypatch, home):
    hf = 'hf = { repo = "o/d", path = "t.csv", revision = "main" }'
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(registry(tmp_path, trace(extra=hf))))
    monkeypatch.setenv("HF_ENDPOINT", tmp_path.as_uri())
    with pytest.raises(DownloadError, match=r"\$HF_ENDPOINT='file://.*': expected an http"):
        llmtraces.fetch("r")


# --- F24/F25: ids and file names are one plain path component ----------------------------------

@pytest.mark.parametrize(("body", "field", "why"), [
    (trace(tid="../../../../../ESCAPED"), "traces.'../../../../../ESCAPED' (the id)",
     "holds a path separator"),
    (trace(tid="a/b"), "traces.'a/b' (the id)", "holds a path separator"),
    (trace(tid=".."), "traces.'..' (the id)", "is a relative folder"),
    (trace(tid="a\nb"), "traces.'a\\nb' (the id)", "holds a control character"),
    (trace(tid=""), "traces.'' (the id)", "is empty"),
    (trace(name=".."), "traces.a.file.name", "is a relative folder"),
    (trace(name="."), "traces.a.file.name", "is a relative folder"),
    (trace(name="a\u0000b.csv"), "traces.a.file.name", "holds a control character"),
    (trace(name="a\\b.csv"), "traces.a.file.name", "holds a path separator"),
    (trace(name=".listing.json"), "traces.a.file.name", "starts with '.'"),
    (trace(name="x" * 201), "traces.a.file.name", "is longer than 200 bytes"),
    ('[archives."../x"]\nname = "x.tar"\nurl = "https://example.org/x.tar"\n'
     'unverified = "x"\n' + trace(), "archives.'../x' (the id)", "holds a path separator"),
])
def test_ids_and_file_names_are_plain_names(tmp_path, body, field, why):
    path = registry(tmp_path, body) / "r.toml"
    with pytest.raises(RegistryError) as err:
        load_source_file(path)
    line = one_line(str(err.value))
    assert line.startswith(f"{path}: {field}: Value error, ") and why in line


def test_a_hostile_trace_id_writes_nothing_outside_the_cache(tmp_path, monkeypatch, home,
                                                            cli: Cli):
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(registry(tmp_path, trace(
        tid="../../../../../ESCAPED"))))
    before = files_under(tmp_path)
    result = cli("convert", "r")
    assert result.exit_code == 1 and "traces.'../../../../../ESCAPED' (the id)" in result.output
    one_line(result.output)
    assert files_under(tmp_path) == before


@pytest.mark.parametrize(("content", "why"), [
    (b'id = "r"\n# caf\xff\n', "not valid TOML: byte 14 is not UTF-8 text"),
    (b"x = " + b"[" * 100_000 + b"\n", "not valid TOML: arrays or tables nested too deeply"),
    (b"x = " + b"{a = " * 100_000 + b"\n", "not valid TOML: arrays or tables nested too deeply"),
])
def test_unreadable_toml_is_one_line_naming_the_file(tmp_path, monkeypatch, content, why,
                                                     cli: Cli):
    reg = tmp_path / "registry"
    reg.mkdir()
    (reg / "r.toml").write_bytes(content)
    with pytest.raises(RegistryError) as err:
        load_registry(reg)
    assert one_line(str(err.value)) == f"{reg / 'r.toml'}: {why}"
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(reg))
    result = cli("list")
    assert result.exit_code == 1 and one_line(result.output) == f"Error: {reg / 'r.toml'}: {why}"


@settings(max_examples=300, database=None, deadline=None)
@given(st.text(min_size=0, max_size=40))
def test_an_accepted_name_is_one_component_inside_its_folder(name: str):
    root = Path("/cache/raw/r")
    if name_problem(name) is None:
        assert (root / name).parent == root and (root / name).name == name
        assert "\x00" not in name and name not in (".", "..")
    if file_name_problem(name) is None:
        assert name_problem(name) is None and not name.startswith(".")


# --- F26: a record listing is checked field by field -------------------------------------------

GOOD = {"key": "small.csv", "size": 3, "checksum": "md5:" + "0" * 32, "links": {}}


@pytest.mark.parametrize(("files", "field"), [
    ([{**GOOD, "key": "bad\u0000name.csv"}], "files[0].key: 'bad\\x00name.csv' holds a control"),
    ([GOOD, {**GOOD, "key": "big.csv", "size": "huge", "checksum": 5, "links": "nope"}],
     "files[1].size: expected a number of bytes, got 'huge'"),
    ([{**GOOD, "checksum": 5}], "files[0].checksum: expected '<algorithm>:<hex digest>', got 5"),
    ([{**GOOD, "checksum": "md5:xyz"}], "files[0].checksum: 'md5:xyz' is not an md5 hex digest"),
    ([{**GOOD, "links": "nope"}], "files[0].links: expected an object, got 'nope'"),
    ([{**GOOD, "links": {"content": 7}}], "files[0].links.content: 7 is not an http"),
    ([{**GOOD, "key": "../x.csv"}], "files[0].key: '../x.csv' holds a path separator"),
    ([{**GOOD, "key": ["x"]}], "files[0].key: expected a file name, got ['x']"),
    (["nope"], "files[0]: expected an object, got 'nope'"),
    ({"a": 1}, "files: expected a list, got {'a': 1}"),
])
def test_a_malformed_record_is_one_line_naming_the_field(trace_archive, home, files, field,
                                                         cli: Cli):
    trace_archive.routes[f"/api/records/{RECORD}"] = Route(json.dumps({"files": files}).encode())
    result = cli("fetch", "llm-trace-archive")
    assert result.exit_code == 1
    assert one_line(result.output).startswith(f"Error: Zenodo record {RECORD}: {field}")
    assert not (home / "raw" / "llm-trace-archive" / ".listing.json").exists()


def test_a_hidden_record_file_is_skipped_not_cached(trace_archive, home, cli: Cli):
    data = (FIXTURES / "burstgpt" / "head_1.csv").read_bytes()
    entries = []
    for key in ("small.csv", ".listing.json.csv"):
        trace_archive.routes[f"/c/{key}"] = Route(data)
        entries.append({"key": key, "size": len(data),
                        "checksum": "md5:" + hashlib.md5(data).hexdigest(),
                        "links": {"content": f"{trace_archive.url}/c/{key}"}})
    serve_record(trace_archive, entries)
    result = cli("fetch", "llm-trace-archive")
    assert result.exit_code == 0, result.output
    assert ".listing.json.csv in Zenodo record" in result.output  # said, not silently dropped
    assert not (home / "raw" / "llm-trace-archive" / ".listing.json.csv").exists()


# --- F27: a cached discovered trace converts from the saved list, without the API --------------

def test_a_cached_discovered_trace_converts_with_the_api_down(trace_archive, home, monkeypatch,
                                                             cli: Cli):
    data = (FIXTURES / "burstgpt" / "head_1.csv").read_bytes()
    trace_archive.routes["/c/small.csv"] = Route(data)
    serve_record(trace_archive, [{"key": "small.csv", "size": len(data),
                                  "checksum": "md5:" + hashlib.md5(data).hexdigest(),
                                  "links": {"content": f"{trace_archive.url}/c/small.csv"}}])
    assert cli("fetch", "llm-trace-archive").exit_code == 0
    asked = len(trace_archive.log)
    monkeypatch.setenv("LLMTRACES_ZENODO_URL", "http://127.0.0.1:1")
    for args in (("--trace", "small"), ()):
        result = cli("convert", "llm-trace-archive", *args)
        assert result.exit_code == 0, result.output
        assert "llm-trace-archive small:" in result.output
    assert cli("fetch", "llm-trace-archive", "--trace", "small").exit_code == 0
    assert len(trace_archive.log) == asked
    # A saved list that is not a valid record listing is asked for again, not trusted.
    monkeypatch.setenv("LLMTRACES_ZENODO_URL", trace_archive.url)
    listing = home / "raw" / "llm-trace-archive" / ".listing.json"
    listing.write_text(json.dumps({"zenodo": RECORD, "files": [{"key": "../x.csv"}]}))
    assert cli("fetch", "llm-trace-archive", "--trace", "small").exit_code == 0
    assert len(trace_archive.log) == asked + 1
    assert json.loads(listing.read_text())["files"][0]["key"] == "small.csv"
