"""The issue's 'done when': fetch -> validate -> convert -> load, through a loopback mirror."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import llmtraces
from conftest import CODE_NAME, CONV_NAME, SOURCE, Cli
from llmtraces.pipeline.validate import validate_source


def median(table, col: str) -> float:
    return pc.quantile(table.column(col), q=0.5, interpolation="midpoint")[0].as_py()


def test_fetch_convert_load_both_traces_through_mirror(test_registry, mirror, home: Path, cli: Cli):
    result = cli("fetch", SOURCE, "--mirror", mirror.url)
    assert result.exit_code == 0, result.output
    assert f"verified, from {mirror.url}/{SOURCE}/{CODE_NAME}" in result.output
    assert f"verified, from {mirror.url}/{SOURCE}/{CONV_NAME}" in result.output
    assert (home / "raw" / SOURCE / CODE_NAME).stat().st_size == 320117
    assert {p for p, _ in mirror.log} == {f"/{SOURCE}/{CODE_NAME}", f"/{SOURCE}/{CONV_NAME}"}

    result = cli("validate", SOURCE)
    assert result.exit_code == 0, result.output
    assert "0 error(s), 0 warning(s)" in result.output

    result = cli("convert", SOURCE)
    assert result.exit_code == 0, result.output
    code_pq = home / "parquet" / f"source={SOURCE}" / "trace=code" / "part-0.parquet"
    conv_pq = home / "parquet" / f"source={SOURCE}" / "trace=conv" / "part-0.parquet"
    assert code_pq.is_file() and conv_pq.is_file()

    t = llmtraces.load(SOURCE, trace="code")
    assert t.num_rows == 8819
    assert t.schema.names == list(llmtraces.TRACE_SCHEMA.names)
    first, last = t.slice(0, 1).to_pylist()[0], t.slice(8818, 1).to_pylist()[0]
    assert (first["arrival_us"], first["input_tokens"], first["output_tokens"]) == (0, 4808, 10)
    # 19:14:19.9280160 - 18:17:03.9799600 = 3435.948056 s
    assert (last["arrival_us"], last["input_tokens"], last["output_tokens"]) == (
        3_435_948_056, 549, 173)
    assert (first["service"], first["request_id"], last["source_row"]) == ("code", 0, 8818)
    assert median(t, "input_tokens") == 1469 and median(t, "output_tokens") == 13

    c = llmtraces.load(SOURCE, trace="conv")
    assert c.num_rows == 9
    assert c.column("input_tokens").to_pylist() == [374, 396, 879, 91, 91, 381, 1313, 388, 242]
    assert c.column("output_tokens").to_pylist() == [44, 109, 55, 16, 16, 84, 142, 84, 14]
    # 18:15:50.9951690 - 18:15:46.6805900 = 4.314579 s (vidur's first arrived_at)
    assert c.column("arrival_us").to_pylist()[:2] == [0, 4_314_579]
    assert set(c.column("service").to_pylist()) == {"conversation"}

    meta = json.loads(pq.read_metadata(code_pq).metadata[b"llmtraces.trace"])
    assert meta["time_origin"] == "2023-11-16T18:17:03.979960Z"
    assert meta["native_sha256"] == (
        "54e9a6d2a4bd06ba1e060304b900abbc74cbea53de96506e60fe5bb4f2277fb6")
    assert meta["source"] == SOURCE and meta["trace"] == "code" and meta["rows"] == 8819
    assert meta["licence"]["spdx"] == "CC-BY-4.0" and "Splitwise" in meta["citation"]["bibtex"]
    assert meta["time"]["zone"] == "UTC" and meta["time"]["zone_assumed"] is True

    ds = llmtraces.open_dataset()
    counts = ds.to_table(columns=["trace"]).column("trace").value_counts().to_pylist()
    assert {d["values"]: d["counts"] for d in counts} == {"code": 8819, "conv": 9}

    # Converted traces validate too; fetching again downloads nothing.
    result = cli("validate", SOURCE, "--json")
    report = json.loads(result.output)
    assert result.exit_code == 0 and report["errors"] == 0 and len(report["checked"]) == 4
    n = len(mirror.log)
    result = cli("fetch", SOURCE, "--mirror", mirror.url)
    assert result.exit_code == 0 and result.output.count("already cached and valid") == 2 \
        and len(mirror.log) == n


def test_load_fetches_and_converts_on_first_use(test_registry, mirror, home: Path):
    t = llmtraces.load(SOURCE, trace="conv", mirror=mirror.url)
    assert t.num_rows == 9
    assert (home / "raw" / SOURCE / CONV_NAME).is_file()
    df = t.to_pandas()
    assert list(df["input_tokens"][:3]) == [374, 396, 879]


def test_load_requires_a_trace_when_a_source_has_several():
    import pytest

    with pytest.raises(llmtraces.errors.UnknownSourceError, match="code, conv"):
        llmtraces.load(SOURCE)


def test_convert_native_path_recognises_format(code_csv: Path, tmp_path: Path, cli: Cli):
    out = tmp_path / "out" / "code.parquet"
    result = cli("convert", str(code_csv), "--to", "parquet", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "8,819 rows" in result.output
    t = pq.read_table(out)
    assert t.num_rows == 8819 and t.column("input_tokens")[0].as_py() == 4808
    meta = json.loads(pq.read_metadata(out).metadata[b"llmtraces.trace"])
    # Recognised by name and checksum as the published file, so the registry facts come along.
    assert meta["source"] == SOURCE and meta["native_verified"] is True
    assert meta["native_format"] == "azure-csv"
    assert pq.ParquetFile(out).metadata.row_group(0).column(0).compression == "ZSTD"
    assert llmtraces.load(out).equals(t)


def test_load_native_path_directly(conv_csv: Path):
    t = llmtraces.load(conv_csv)
    assert t.num_rows == 9 and t.column("output_tokens")[-1].as_py() == 14
    assert t.column("service").null_count == 9  # unknown file: no registry service


def test_list_info_cite(cli: Cli):
    result = cli("list")
    assert result.exit_code == 0 and SOURCE in result.output
    assert "code,conv" in result.output and "28,185" in result.output
    result = cli("list", "--json")
    assert {"id": SOURCE, "rows": 28185, "bytes": 1039305} == {
        k: v for k, v in json.loads(result.output)[0].items() if k in ("id", "rows", "bytes")}
    result = cli("info", SOURCE)
    assert result.exit_code == 0
    assert "CC-BY-4.0" in result.output and "8,819 rows" in result.output \
        and "19,366 rows" in result.output
    assert "zone UTC (assumed)" in result.output and "7 fractional digits" in result.output
    result = cli("info", SOURCE, "--json")
    assert json.loads(result.output)["traces"]["code"]["file"]["sha256"].startswith("54e9a6d2")
    result = cli("cite", SOURCE)
    assert result.exit_code == 0 and result.output.startswith("@inproceedings{patel2024splitwise")
    assert SOURCE in [s.id for s in llmtraces.sources()]


def test_demo_runs_offline_from_the_bundled_copy(home: Path, monkeypatch, cli: Cli):
    monkeypatch.setenv("LLMTRACES_OFFLINE", "1")
    result = cli("demo")
    assert result.exit_code == 0, result.output
    assert "bundled copy" in result.output and "8,819 requests" in result.output
    assert "median input 1469 tokens, median output 13 tokens" in result.output
    assert (home / "parquet" / f"source={SOURCE}" / "trace=code" / "part-0.parquet").is_file()
    result = cli("demo")
    assert result.exit_code == 0 and "already cached" in result.output


def test_default_output_never_overwrites_the_input(tmp_path: Path, code_csv: Path,
                                                   monkeypatch: pytest.MonkeyPatch, cli: Cli):
    monkeypatch.chdir(tmp_path)
    result = cli("convert", str(code_csv), "-o", "code.parquet")
    assert result.exit_code == 0, result.output
    result = cli("convert", "code.parquet")  # Parquet to Parquet, no -o
    assert result.exit_code == 0, result.output
    assert (tmp_path / "code.llmtraces.parquet").is_file()
    assert pq.read_table(tmp_path / "code.llmtraces.parquet").num_rows == 8819


def test_default_output_names_say_the_format(tmp_path: Path, code_csv: Path,
                                             monkeypatch: pytest.MonkeyPatch, cli: Cli):
    monkeypatch.chdir(tmp_path)
    for to in ("mooncake", "vllm-timed-trace", "jsonl", "csv", "azure"):
        result = cli("convert", str(code_csv), "--to", to)
        assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".meta.json"))
    assert names == ["AzureLLMInferenceTrace_code.azure.csv", "AzureLLMInferenceTrace_code.csv",
                     "AzureLLMInferenceTrace_code.jsonl",
                     "AzureLLMInferenceTrace_code.mooncake.jsonl",
                     "AzureLLMInferenceTrace_code.vllm-timed-trace.jsonl"]


def test_convert_source_converts_what_is_cached_and_names_the_rest(test_registry, server,
                                                                    home: Path, cli: Cli):
    # conv is on no server (404 everywhere); code comes from the copy in the package.
    result = cli("convert", SOURCE)
    assert result.exit_code == 1
    code_pq = home / "parquet" / f"source={SOURCE}" / "trace=code" / "part-0.parquet"
    assert f"{SOURCE} code: {code_pq} (8,819 rows)" in result.output
    assert pq.read_metadata(code_pq).num_rows == 8819
    assert f"Error: not converted, not in the cache: {SOURCE} conv (1 of 2 traces)" \
        in result.output
    assert f"could not fetch {CONV_NAME}: {server.url}/upstream/{CONV_NAME}: HTTP 404" \
        in result.output
    assert not (home / "parquet" / f"source={SOURCE}" / "trace=conv").exists()


def test_convert_source_offline_converts_the_cached_trace(test_registry, mirror, home: Path,
                                                          cli: Cli):
    cli("fetch", SOURCE, "--trace", "code")
    result = cli("convert", SOURCE, "--offline")
    assert result.exit_code == 1 and f"{SOURCE} code: " in result.output
    assert f"not converted, not in the cache: {SOURCE} conv (1 of 2 traces)" in result.output
    assert f"`llmtraces fetch {SOURCE} --trace conv --file PATH`" in result.output
    assert mirror.log == []


def test_validate_source_names_unfetched_traces_without_failing(test_registry, home: Path,
                                                                cli: Cli):
    cli("fetch", SOURCE, "--trace", "code")
    result = cli("validate", SOURCE)
    assert result.exit_code == 0, result.output
    conv = home / "raw" / SOURCE / CONV_NAME
    assert (f"notice: {conv}: not fetched, not checked; run "
            f"`llmtraces fetch {SOURCE} --trace conv`") in result.output
    assert result.output.splitlines()[-1] == "OK: 1 file(s) checked: 0 error(s), 0 warning(s)"
    report = json.loads(cli("validate", SOURCE, "--json").output)
    assert report["errors"] == 0 and len(report["notices"]) == 1
    assert not validate_source(SOURCE).failed(strict=True)
