"""Tracer's GPU utilisation samples (``performance_tracing.csv``, ``kavier-performance-csv``):
values, time semantics, a byte-identical round trip, bad lines with file:line, and the
registry's ``surf_performance`` trace fetched from a loopback mirror.

The real file is not available offline; the fixture holds 30 of its rows in its exact layout
(CRLF, header, nvidia-smi timestamps; see tests/fixtures/kavier/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from httpserver import LoopbackServer, Route

import llmtraces
from conftest import FIXTURES, REPO, Cli, build_registry
from llmtraces.formats import sniff
from llmtraces.pipeline.convert import convert_file
from llmtraces.registry import load_registry

SAMPLES = FIXTURES / "kavier" / "performance_tracing_head.csv"
HEADER = "timestamp,prompt_id,input_tokens,output_tokens,size,util_gpu,util_mem"


def lines() -> list[str]:
    return SAMPLES.read_bytes().decode().split("\r\n")


def write(tmp_path: Path, rows: list[str], name: str = "samples.csv") -> Path:
    p = tmp_path / name
    p.write_bytes("\r\n".join(rows).encode())
    return p


def test_fixture_layout_is_the_native_one():
    data = SAMPLES.read_bytes()
    assert data.startswith(HEADER.encode() + b"\r\n2025/06/13 18:44:04.479,0,10,236,10,98,100\r\n")
    assert data.endswith(b"\r\n") and data.count(b"\n") == data.count(b"\r\n") == 31
    assert sniff(SAMPLES).name == "kavier-performance-csv"


def test_one_row_per_sample(tmp_path: Path, cli: Cli):
    out = tmp_path / "s.parquet"
    result = cli("convert", str(SAMPLES), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "(30 rows)" in result.output
    t = llmtraces.load(out)
    rows = t.to_pylist()
    assert [r["arrival_us"] for r in rows[:4]] == [0, 119_000, 219_000, 319_000]
    assert (rows[0]["input_tokens"], rows[0]["output_tokens"]) == (10, 236)
    assert rows[-1]["arrival_us"] == 768_998_000  # 18:56:53.477 - 18:44:04.479
    assert (rows[-1]["input_tokens"], rows[-1]["output_tokens"]) == (4736, 0)
    assert json.loads(rows[9]["extra"]) == {"prompt_id": "1", "size": "10", "util_gpu": "64",
                                            "util_mem": "71"}
    for column in ("session_id", "turn", "e2e_latency_us", "model", "input_token_ids"):
        assert t.column(column).null_count == 30
    meta = json.loads(pq.read_metadata(out).metadata[b"llmtraces.trace"])
    assert meta["time_origin"] == "2025-06-13T16:44:04.479000Z"  # read as UTC+02:00
    assert meta["time"]["kind"] == "absolute" and meta["time"]["zone"] == "+02:00"
    assert meta["time"]["zone_assumed"] is True
    assert meta["native_layout"]["newline"] == "\r\n"


def test_round_trip_is_byte_identical(tmp_path: Path, cli: Cli):
    unified = tmp_path / "u.parquet"
    convert_file(SAMPLES, unified)
    back = tmp_path / "back.csv"
    result = cli("convert", str(unified), "--to", "kavier-measurements", "-o", str(back))
    assert result.exit_code == 0, result.output
    assert back.read_bytes() == SAMPLES.read_bytes()


def test_odd_spellings_come_back_too(tmp_path: Path, cli: Cli):
    rows = lines()
    rows[2] = "2025-06-13 18:44:04.598,0,010,236,10,[N/A],100"  # dashes, 010, nvidia-smi N/A
    rows[3] = "2025/06/13 18:44:04.7,0,10,236,10,98,100"  # one fractional digit
    p = write(tmp_path, rows[:5], "odd.csv")  # no final newline
    report = json.loads(cli("validate", str(p), "--json").output)
    assert report["errors"] == 0
    assert [(x["line"], x["code"], x["column"]) for x in report["problems"]] == [
        (3, "percent", "util_gpu")]
    t = llmtraces.load(p)
    assert t.column("arrival_us").to_pylist() == [0, 119_000, 221_000, 319_000]
    assert t.column("input_tokens").to_pylist() == [10, 10, 10, 10]
    assert json.loads(t.column("extra")[1].as_py())["timestamp"] == "2025-06-13 18:44:04.598"
    unified = tmp_path / "u.parquet"
    convert_file(p, unified)
    convert_file(unified, tmp_path / "b.csv", to="kavier-measurements")
    assert (tmp_path / "b.csv").read_bytes() == p.read_bytes()


@pytest.mark.parametrize(("field", "text", "message"), [
    (0, "2025/06/13 18:44:0x.798", "expected YYYY/MM/DD HH:MM:SS.fff"),
    (2, "-10", "negative token count"),
    (3, "", "empty value; expected a token count"),
    (1, "a", "expected a non-negative integer"),
    (4, "1.5", "expected a non-negative integer"),
])
def test_bad_lines_name_file_and_line(tmp_path: Path, field: int, text: str, message: str,
                                      cli: Cli):
    rows = lines()
    cells = rows[4].split(",")
    cells[field] = text
    rows[4] = ",".join(cells)
    p = write(tmp_path, rows)
    out = tmp_path / "o.parquet"
    result = cli("convert", str(p), "-o", str(out))
    assert result.exit_code == 1
    first = result.output.strip().splitlines()[0]
    column = HEADER.split(",")[field]
    assert f"{p}:5: error: {column}: {message}" in first, first
    assert f"(got {text!r})" in first
    assert not out.exists()


def test_samples_out_of_order_warn(tmp_path: Path, cli: Cli):
    rows = lines()
    rows[3], rows[4] = rows[4], rows[3]
    report = json.loads(cli("validate", str(write(tmp_path, rows)), "--json").output)
    assert report["errors"] == 0
    assert [(x["line"], x["code"]) for x in report["problems"]] == [(5, "order")]
    assert cli("validate", str(write(tmp_path, rows)), "--strict").exit_code == 1


def test_registry_entry():
    src = load_registry(REPO / "registry")["kavier"]
    trace = src.traces["surf_performance"]
    assert src.format_of("surf_performance") == "kavier-performance-csv"
    assert src.format_of("surf_prefill") == "kavier-measurements-csv"
    f = trace.file
    assert (f.name, f.size, f.rows, f.sha256) == ("performance_tracing.csv", 338149, 7563, None)
    assert f.unverified and "hash" in f.unverified
    assert f.url.endswith("/Tracer/0b2a15be0abebb529d3545ea3d05abeab3181435/data/surf_traces/"
                          "performance_tracing.csv")
    assert f.mirrors[0].endswith("/On-Simulating-LLM-Ecosystems-under-Inference/"
                                 "f417573ca70ed248d3637c2135087f78f2039551/tracer/data/"
                                 "surf_traces/performance_tracing.csv")


def test_fetch_convert_load_from_a_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          server: LoopbackServer, home: Path, cli: Cli):
    """surf_performance pinned to the fixture, served as /kavier/performance_tracing.csv:
    fetched, converted by its own reader (the trace's `format`), loaded and validated."""
    data = SAMPLES.read_bytes()
    reg = build_registry(tmp_path / "registry", server.url,
                         {("kavier", "surf_performance"): (data, 30)})
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(reg))
    server.routes["/kavier/performance_tracing.csv"] = Route(data)
    result = cli("fetch", "kavier", "--trace", "surf_performance", "--mirror", server.url)
    assert result.exit_code == 0, result.output
    assert (home / "raw" / "kavier" / "performance_tracing.csv").read_bytes() == data
    result = cli("convert", "kavier", "--trace", "surf_performance")
    assert result.exit_code == 0, result.output
    assert cli("validate", "kavier", "--trace", "surf_performance").exit_code == 0
    t = llmtraces.load("kavier", trace="surf_performance")
    assert t.num_rows == 30 and t.column("arrival_us")[1].as_py() == 119_000
    part = home / "parquet" / "source=kavier" / "trace=surf_performance" / "part-0.parquet"
    meta = json.loads(pq.read_metadata(part).metadata[b"llmtraces.trace"])
    assert meta["native_format"] == "kavier-performance-csv" and meta["source"] == "kavier"
    # The source's [time] describes the sweeps (no timing); this trace records its own.
    assert meta["time"]["kind"] == "absolute" and meta["time"]["zone_assumed"] is True
    assert meta["time_origin"] == "2025-06-13T16:44:04.479000Z"
