"""The `llm-trace-archive` source: a Zenodo record whose file list is read at fetch time.

A Zenodo-record-shaped API on 127.0.0.1 lists a Kavier input CSV (the Marconi-Kavier layout),
a zip of the REAL Tracer SURF sweeps, a BurstGPT file head and a README. fetch checks each file
against the record's size and md5 and saves the list; convert recognises each file's reader
from its header (zip members included) and works offline afterwards; `registry update-hashes`
writes every discovered file into the registry as pinned tables.
"""

from __future__ import annotations

import hashlib
import io
import json
import tomllib
import zipfile
from pathlib import Path

import pytest
from httpserver import LoopbackServer, Route

import llmtraces
from conftest import FIXTURES, Cli, build_registry
from llmtraces.errors import ChecksumError
from llmtraces.fetching.repin import update_hashes
from llmtraces.formats.parquet import read_metadata
from llmtraces.registry import load_dir, load_registry

RECORD = "15858418"
KAVIER = FIXTURES / "kavier-traces"


def kavier_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("Kavier Traces/", b"")
        for name in ("raw_prefill.csv", "raw_decode.csv"):
            zf.writestr(f"Kavier Traces/{name}", (KAVIER / name).read_bytes())
    return buf.getvalue()


FILES = {
    "marconi_all_traces.csv": (FIXTURES / "marconi" / "input_marconi.csv").read_bytes(),
    "Kavier_Traces.zip": kavier_zip(),
    "BurstGPT_1.csv": (FIXTURES / "burstgpt" / "head_1.csv").read_bytes(),
    "README.md": b"# LLM Trace Archive\n",
}


def serve_record(server: LoopbackServer, files: dict[str, bytes],
                 md5: dict[str, str] | None = None) -> None:
    entries = []
    for key, data in files.items():
        content = f"/api/records/{RECORD}/files/{key.replace(' ', '%20')}/content"
        server.routes[content] = Route(data)
        entries.append({"key": key, "size": len(data),
                        "checksum": "md5:" + (md5 or {}).get(key, hashlib.md5(data).hexdigest()),
                        "links": {"content": server.url + content}})
    server.routes[f"/api/records/{RECORD}"] = Route(json.dumps({"id": int(RECORD),
                                                                "files": entries}).encode())


@pytest.fixture()
def archive(tmp_path: Path, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch):
    reg = build_registry(tmp_path / "registry", server.url, {})
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(reg))
    monkeypatch.setenv("LLMTRACES_ZENODO_URL", server.url)
    serve_record(server, FILES)
    return server, reg


def test_registry_entry_lists_files_at_fetch_time(cli: Cli):
    src = llmtraces.source("llm-trace-archive")
    assert src.discover is not None and src.discover.zenodo == RECORD
    assert src.traces == {} and src.format == "auto"
    assert not src.licence.redistributable and not src.licence.commercial_use
    r = cli("info", "llm-trace-archive")
    assert r.exit_code == 0
    assert f"listed by Zenodo record {RECORD}" in r.output and "not fetched yet" in r.output
    r = cli("convert", "llm-trace-archive", "--offline")
    assert r.exit_code == 1 and "run `llmtraces fetch` once online" in r.output


def test_fetch_convert_load_every_file_of_the_record(archive, home: Path, cli: Cli):
    server, _ = archive
    r = cli("fetch", "llm-trace-archive")
    assert r.exit_code == 0, r.output
    raw = home / "raw" / "llm-trace-archive"
    for key in ("marconi_all_traces.csv", "Kavier_Traces.zip", "BurstGPT_1.csv"):
        assert (raw / key).read_bytes() == FILES[key]
    assert not (raw / "README.md").exists()  # not a trace: listed as skipped
    info = cli("info", "llm-trace-archive").output
    assert "skipped (not a trace file): README.md" in info
    assert "Kavier_Traces.Kavier_Traces_raw_prefill" in info
    log = len(server.log)
    r = cli("convert", "llm-trace-archive", "--offline")  # no network needed any more
    assert r.exit_code == 0, r.output
    assert len(server.log) == log
    assert "no redistribution, non-commercial" in r.output
    t = llmtraces.load("llm-trace-archive", trace="marconi_all_traces", offline=True)
    assert t.num_rows == 6 and t.column("input_token_ids")[0].as_py()[:2] == [1, 8853]
    pre = llmtraces.load("llm-trace-archive", trace="Kavier_Traces.Kavier_Traces_raw_prefill")
    assert pre.num_rows == 90 and pre.column("e2e_latency_us").to_pylist()[0] == 53_000
    dec = llmtraces.load("llm-trace-archive", trace="Kavier_Traces.Kavier_Traces_raw_decode")
    assert dec.num_rows == 110
    burst = llmtraces.load("llm-trace-archive", trace="BurstGPT_1")
    assert burst.column("model").to_pylist()[:3] == ["ChatGPT", "ChatGPT", "GPT-4"]
    base = home / "parquet" / "source=llm-trace-archive"
    meta = read_metadata(base / "trace=BurstGPT_1" / "part-0.parquet")
    assert meta["native_format"] == "burstgpt-csv"
    assert meta["time"]["zone"] == "UTC+8"  # the recognised format's time semantics
    meta = read_metadata(base / "trace=Kavier_Traces.Kavier_Traces_raw_decode" /
                         "part-0.parquet")
    assert meta["native_archive"]["member"] == "Kavier Traces/raw_decode.csv"
    assert cli("validate", "llm-trace-archive").exit_code == 0
    # --trace with an archive's id selects every trace inside it.
    r = cli("convert", "llm-trace-archive", "--trace", "Kavier_Traces", "--offline")
    assert r.exit_code == 0, r.output
    assert r.output.count("llm-trace-archive Kavier_Traces.") == 2


def test_bytes_that_differ_from_the_record_md5_are_refused(archive, home: Path):
    server, _ = archive
    serve_record(server, FILES, md5={"BurstGPT_1.csv": "0" * 32})
    with pytest.raises(ChecksumError, match="md5"):
        llmtraces.fetch("llm-trace-archive", "BurstGPT_1")
    assert not (home / "raw" / "llm-trace-archive" / "BurstGPT_1.csv").exists()


def test_an_unknown_trace_names_the_ones_there_are(archive, cli: Cli):
    r = cli("fetch", "llm-trace-archive", "--trace", "nope")
    assert r.exit_code == 1
    assert "no trace 'nope'" in r.output and "marconi_all_traces" in r.output


def test_update_hashes_pins_the_discovered_files(archive, home: Path, cli: Cli):
    server, reg = archive
    pins = update_hashes("llm-trace-archive", registry=reg)
    assert {p.trace for p in pins} == {"Kavier_Traces", "Kavier_Traces.Kavier_Traces_raw_prefill",
                                       "Kavier_Traces.Kavier_Traces_raw_decode",
                                       "marconi_all_traces", "BurstGPT_1"}
    text = (reg / "llm-trace-archive.toml").read_text()
    data = tomllib.loads(text)
    burst = data["traces"]["BurstGPT_1"]["file"]
    assert burst["md5"] == hashlib.md5(FILES["BurstGPT_1.csv"]).hexdigest()
    assert burst["sha256"] == hashlib.sha256(FILES["BurstGPT_1.csv"]).hexdigest()
    assert burst["zenodo"] == {"record": RECORD, "key": "BurstGPT_1.csv"}
    member = data["traces"]["Kavier_Traces.Kavier_Traces_raw_prefill"]["member"]
    assert member["path"] == "Kavier Traces/raw_prefill.csv"
    assert member["sha256"] == hashlib.sha256((KAVIER / "raw_prefill.csv").read_bytes()
                                              ).hexdigest()
    load_dir.cache_clear()
    src = load_registry(reg)["llm-trace-archive"]
    assert len(src.traces) == 4 and list(src.archives) == ["Kavier_Traces"]
    # Pinned now: the same record still converts, and nothing is listed twice.
    r = cli("convert", "llm-trace-archive")
    assert r.exit_code == 0, r.output
    assert r.output.count("llm-trace-archive BurstGPT_1:") == 1
