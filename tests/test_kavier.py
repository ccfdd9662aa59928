"""Kavier traces (AtLarge Tracer SURF sweeps): the REAL raw_prefill.csv and raw_decode.csv.

Values, byte-identical round trips, recognition, file:line errors, and a fetch through the
loopback server with the real registry pins (conftest.build_registry; nothing reaches the
internet).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from httpserver import LoopbackServer, Route

import llmtraces
from conftest import FIXTURES, REPO, Cli, build_registry, roundtrip
from llmtraces.pipeline.convert import convert_file
from llmtraces.registry import load_registry

SAMPLES = FIXTURES / "kavier-traces"
PREFILL = SAMPLES / "raw_prefill.csv"
DECODE = SAMPLES / "raw_decode.csv"
#: Stands in for performance_tracing.csv (no real copy is available; see its README).
PERFORMANCE = FIXTURES / "kavier" / "performance_tracing_head.csv"
HEADER = "provider,gpu,engine,llm,requested_response_size,response_size,latency_s," \
         "throughput_tokens_per_s"


def rows(path: Path, tmp_path: Path) -> list[dict]:
    out = tmp_path / (path.stem + ".parquet")
    convert_file(path, out)
    return pq.read_table(out).to_pylist()


def test_registry_pins_match_the_real_files():
    src = load_registry(REPO / "registry")["kavier"]
    assert src.format == "kavier-measurements-csv" and src.time.kind == "none"
    assert src.licence.spdx == "MIT" and "@mastersthesis{" in src.citation.bibtex
    pre, dec = (src.traces[t].file for t in ("surf_prefill", "surf_decode"))
    assert (pre.size, pre.rows, dec.size, dec.rows) == (4826, 90, 5902, 110)
    assert (pre.size, dec.size) == (PREFILL.stat().st_size, DECODE.stat().st_size)
    for f in (pre, dec):
        assert "/Tracer/0b2a15be0abebb529d3545ea3d05abeab3181435/data/surf_traces/" in f.url
        assert f.mirrors[0].endswith(
            "/f417573ca70ed248d3637c2135087f78f2039551/tracer/data/surf_traces/" + f.name)


def test_prefill_values(tmp_path: Path):
    r = rows(PREFILL, tmp_path)
    assert len(r) == 90
    first, last = r[0], r[-1]
    assert (first["request_id"], first["source_row"], last["request_id"], last["source_row"]) \
        == (0, 0, 89, 89)
    assert (first["input_tokens"], first["output_tokens"], first["e2e_latency_us"]) \
        == (64, 1, 53_000)
    assert (last["input_tokens"], last["output_tokens"], last["e2e_latency_us"]) \
        == (16384, 1, 7_330_000)
    for row in (first, last):
        assert row["model"] == "Llama-3-8B" and row["arrival_us"] is None
    assert json.loads(first["extra"]) == {
        "provider": "SURF", "gpu": "A10", "engine": "vLLM 0.9.0", "llm": " Llama-3-8B",
        "throughput_tokens_per_s": "1226.42"}
    assert json.loads(last["extra"])["throughput_tokens_per_s"] == "2235.33"


def test_decode_values(tmp_path: Path):
    r = rows(DECODE, tmp_path)
    assert len(r) == 110
    first, last = r[0], r[-1]
    assert (first["input_tokens"], first["output_tokens"], first["e2e_latency_us"]) \
        == (0, 11, 583_000)
    assert (last["input_tokens"], last["output_tokens"], last["e2e_latency_us"]) \
        == (0, 8, 521_000)
    assert last["request_id"] == last["source_row"] == 109
    assert json.loads(first["extra"]) == {
        "provider": "SURF", "gpu": "A10", "engine": "vLLM 0.9.0", "llm": " Llama-3-8B",
        "requested_length": "16", "throughput_tokens_per_s": "46.31"}
    assert json.loads(last["extra"])["requested_length"] == "16384"
    assert json.loads(last["extra"])["throughput_tokens_per_s"] == "31462.57"
    assert {row["model"] for row in r} == {"Llama-3-8B"}
    # 617.678 s must be exactly 617,678,000 µs (no float drift)
    assert max(row["e2e_latency_us"] for row in r) == 618_313_000


@pytest.mark.parametrize("path", [PREFILL, DECODE], ids=["prefill", "decode"])
def test_round_trip_is_byte_identical(tmp_path: Path, path: Path):
    back = roundtrip(path, tmp_path, "kavier-measurements")
    assert back.read_bytes() == path.read_bytes()


@pytest.mark.parametrize("path,n", [(PREFILL, 90), (DECODE, 110)], ids=["prefill", "decode"])
def test_cli_recognises_the_files(tmp_path: Path, path: Path, n: int, cli: Cli):
    out = tmp_path / "o.parquet"
    result = cli("convert", str(path), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert f"({n} rows)" in result.output
    meta = json.loads(pq.read_metadata(out).metadata[b"llmtraces.trace"])
    assert meta["native_format"] == "kavier-measurements-csv"
    assert meta["source"] == "kavier"  # recognised by name, size and sha256
    assert cli("validate", str(path), "--strict").exit_code == 0


def test_an_unpinned_file_round_trips(tmp_path: Path):
    src = tmp_path / "s.csv"
    src.write_text(f"{HEADER}\nX,G,E,m,10,2,0.5,24.00\n", encoding="utf-8")
    back = roundtrip(src, tmp_path, "kavier-measurements")
    assert back.read_text(encoding="utf-8") == f"{HEADER}\nX,G,E,m,10,2,0.5,24.00\n"


@pytest.mark.parametrize("body,line,column,value,message", [
    ("SURF,A10,vLLM 0.9.0, Llama-3-8B,64,1,0.053,1226.42\n"
     "SURF,A10,vLLM 0.9.0, Llama-3-8B,64,1,fast,1226.42\n", 3, "latency_s", "fast",
     "expected a decimal number"),
    ("SURF,A10,vLLM 0.9.0, Llama-3-8B,-64,1,0.053,1226.42\n", 2, "requested_response_size",
     "-64", "negative token count"),
    ("SURF,A10,vLLM 0.9.0, Llama-3-8B,64,1,0.053,1226.42\n"
     "SURF,A10,vLLM 0.9.0, Llama-3-8B,64,1,0.053\n", 3, None,
     "SURF,A10,vLLM 0.9.0, Llama-3-8B,64,1,0.053", "expected 8 fields"),
])
def test_bad_rows_name_file_and_line(tmp_path: Path, body: str, line: int, column: str | None,
                                     value: str, message: str, cli: Cli):
    p = tmp_path / "bad.csv"
    p.write_text(f"{HEADER}\n{body}", encoding="utf-8")
    out = tmp_path / "bad.parquet"
    result = cli("convert", str(p), "-o", str(out))
    assert result.exit_code == 1
    first = result.output.strip().splitlines()[0]
    assert f"{p}:{line}: error:" in first and message in first
    if column:
        assert f" {column}: " in first
    assert f"(got {value!r})" in first
    assert not out.exists() and list(tmp_path.glob(".*tmp")) == []


def test_decode_negative_size_is_an_error(tmp_path: Path, cli: Cli):
    p = tmp_path / "d.csv"
    p.write_text(DECODE.read_text(encoding="utf-8").splitlines()[0]
                 + "\nSURF,A10,vLLM 0.9.0, Llama-3-8B,16,-11,0.583,46.31", encoding="utf-8")
    result = cli("convert", str(p), "-o", str(tmp_path / "d.parquet"))
    assert result.exit_code == 1
    assert f"{p}:2: error:" in result.output and "response_size" in result.output
    assert not (tmp_path / "d.parquet").exists()


@pytest.fixture()
def kavier_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  server: LoopbackServer) -> LoopbackServer:
    """The real registry pins of the two sweeps, every URL on the loopback server, which
    serves the real bytes as /kavier/<file>; surf_performance is pinned to its fixture, served
    under the real name."""
    data = PERFORMANCE.read_bytes()
    reg = build_registry(tmp_path / "registry", server.url,
                         {("kavier", "surf_performance"): (data, 30)})
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(reg))
    for path in (PREFILL, DECODE):
        server.routes[f"/kavier/{path.name}"] = Route(path.read_bytes())
    server.routes["/kavier/performance_tracing.csv"] = Route(data)
    return server


def test_fetch_every_trace_from_a_mirror(kavier_mirror: LoopbackServer, home: Path, cli: Cli):
    result = cli("fetch", "kavier", "--mirror", kavier_mirror.url)
    assert result.exit_code == 0, result.output
    raw = home / "raw" / "kavier"
    assert (raw / "performance_tracing.csv").read_bytes() == PERFORMANCE.read_bytes()
    assert (raw / "raw_decode.csv").read_bytes() == DECODE.read_bytes()
    result = cli("convert", "kavier")
    assert result.exit_code == 0, result.output
    assert llmtraces.load("kavier", trace="surf_performance").num_rows == 30
    assert llmtraces.load("kavier", trace="surf_decode").column("arrival_us").null_count == 110


def test_fetch_convert_validate_load_from_a_mirror(kavier_mirror: LoopbackServer, home: Path,
                                                   cli: Cli):
    url = kavier_mirror.url
    result = cli("fetch", "kavier", "--trace", "surf_prefill", "--mirror", url)
    assert result.exit_code == 0, result.output
    assert (home / "raw" / "kavier" / "raw_prefill.csv").read_bytes() == PREFILL.read_bytes()
    result = cli("convert", "kavier", "--trace", "surf_prefill")
    assert result.exit_code == 0, result.output
    assert cli("validate", "kavier", "--trace", "surf_prefill").exit_code == 0
    t = llmtraces.load("kavier", trace="surf_prefill")
    assert t.num_rows == 90
    assert t.column("input_tokens").to_pylist()[:9] == [64, 128, 256, 512, 1024, 2048, 4096,
                                                        8192, 16384]
    assert t.column("e2e_latency_us").to_pylist()[:3] == [53_000, 71_000, 137_000]
    assert t.column("e2e_latency_us")[-1].as_py() == 7_330_000
    assert set(t.column("output_tokens").to_pylist()) == {1}
    assert t.column("arrival_us").null_count == 90
    part = home / "parquet" / "source=kavier" / "trace=surf_prefill" / "part-0.parquet"
    meta = json.loads(pq.read_metadata(part).metadata[b"llmtraces.trace"])
    assert meta["time"]["kind"] == "none" and meta["rows"] == 90
