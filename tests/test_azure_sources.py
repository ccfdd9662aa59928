"""Azure LLM 2024 and Azure LMM 2025: registry entries, fetch through a mirror, values, round trip.

No real bytes of either trace are available offline, so fixtures in the exact native layout stand
in for them, pinned into a copy of the registry (see conftest.build_registry).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from httpserver import LoopbackServer, Route

import llmtraces
from conftest import FIXTURES, REPO, Cli, build_registry, roundtrip
from llmtraces.errors import ChecksumError
from llmtraces.registry import load_registry

CODE24 = FIXTURES / "azure-llm-2024" / "code_1week_head.csv"
MM25 = FIXTURES / "azure-lmm-2025" / "multimodal_head.csv.gz"


@pytest.fixture()
def mirror_2024_2025(tmp_path, monkeypatch, server: LoopbackServer) -> LoopbackServer:
    reg = build_registry(tmp_path / "registry", server.url, {
        ("azure-llm-2024", "code_1week"): (CODE24.read_bytes(), 6),
        ("azure-lmm-2025", "multimodal"): (MM25.read_bytes(), 5),
    })
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(reg))
    server.routes["/azure-llm-2024/AzureLLMInferenceTrace_code_1week.csv"] = Route(
        CODE24.read_bytes())
    server.routes["/azure-lmm-2025/AzureLMMInferenceTrace_multimodal.csv.gz"] = Route(
        MM25.read_bytes())
    return server


def test_registry_facts():
    reg = load_registry(REPO / "registry")
    code, conv = (reg["azure-llm-2024"].traces[t].file for t in ("code_1week", "conv_1week"))
    assert (code.size, code.rows, code.sha256[:8]) == (691_989_454, 16_803_695, "71de5c55")
    assert (conv.size, conv.rows, conv.sha256[:8]) == (1_135_195_393, 27_303_999, "a0cc9b96")
    assert code.url.startswith("https://azurepublicdatasettraces.blob.core.windows.net/")
    assert code.mirrors[0].endswith("/releases/download/dataset-llm-2024/" + code.name)
    mm = reg["azure-lmm-2025"].traces["multimodal"].file
    assert (mm.rows, mm.compression, mm.size, mm.sha256) == (1_000_000, "gzip", None, None)
    assert mm.git_blob == "7e2a6719ff42dc50b990ba55ca941ab75290ffcb"
    assert "e8dc3c4b081e23a641f262d537abffb5375a6e7c" in mm.url


def test_2024_fetch_convert_validate_load(mirror_2024_2025, home: Path, cli: Cli):
    url = mirror_2024_2025.url
    assert cli("fetch", "azure-llm-2024", "--trace", "code_1week", "--mirror", url).exit_code == 0
    result = cli("convert", "azure-llm-2024", "--trace", "code_1week")
    assert result.exit_code == 0, result.output
    assert cli("validate", "azure-llm-2024", "--trace", "code_1week").exit_code == 0
    t = llmtraces.load("azure-llm-2024", trace="code_1week")
    # Both timestamp forms in one file; +00:00 explicit, so nothing is assumed.
    assert t.column("arrival_us").to_pylist() == [0, 27_915, 990_070, 1_240_071, 1_990_070,
                                                  2_990_069]
    assert t.column("output_tokens").to_pylist() == [10, 1, 1, 27, 1, 4]
    assert set(t.column("service").to_pylist()) == {"code"}
    part = home / "parquet" / "source=azure-llm-2024" / "trace=code_1week" / "part-0.parquet"
    meta = json.loads(pq.read_metadata(part).metadata[b"llmtraces.trace"])
    assert meta["time_origin"] == "2024-05-10T00:00:00.009930Z"
    assert meta["time"]["zone_assumed"] is False and meta["rows"] == 6


def test_2025_gzip_fetch_convert_validate_load(mirror_2024_2025, home: Path, cli: Cli):
    url = mirror_2024_2025.url
    result = cli("fetch", "azure-lmm-2025", "--mirror", url)
    assert result.exit_code == 0, result.output
    cached = home / "raw" / "azure-lmm-2025" / "AzureLMMInferenceTrace_multimodal.csv.gz"
    assert cached.read_bytes() == MM25.read_bytes()  # stored compressed, as published
    assert cli("convert", "azure-lmm-2025").exit_code == 0
    assert cli("validate", "azure-lmm-2025", "--strict").exit_code == 0
    t = llmtraces.load("azure-lmm-2025", trace="multimodal")
    assert t.column("arrival_us").to_pylist() == [0, 243_000, 731_000, 738_000, 1_841_000]
    assert t.column("num_images").to_pylist() == [0, 1, 3, 16, 0]
    assert t.column("input_tokens").to_pylist() == [1200, 2931, 6410, 20391, 85]
    assert set(t.column("service").to_pylist()) == {"multimodal"}


def test_2024_round_trip_is_byte_identical(tmp_path: Path):
    back = roundtrip(CODE24, tmp_path, "azure")
    assert back.read_bytes() == CODE24.read_bytes()


def test_2025_round_trip_gives_the_same_text(tmp_path: Path):
    back = roundtrip(MM25, tmp_path, "azure")
    assert back.read_bytes() == gzip.decompress(MM25.read_bytes())


def test_git_blob_pin_catches_wrong_bytes(tmp_path: Path, server: LoopbackServer):
    from llmtraces.fetching.download import fetch_file
    from llmtraces.registry import FileEntry

    data = MM25.read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    entry = FileEntry(name="m.csv.gz", url=f"{server.url}/m.csv.gz", git_blob=blob,
                      compression="gzip")
    server.routes["/m.csv.gz"] = Route(data)
    assert fetch_file(entry, tmp_path / "m.csv.gz", [entry.url]) == entry.url
    server.routes["/m2.csv.gz"] = Route(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ChecksumError, match=rf"git_blob is [0-9a-f]{{40}}, expected {blob}"):
        fetch_file(entry, tmp_path / "m2.csv.gz", [f"{server.url}/m2.csv.gz"])
