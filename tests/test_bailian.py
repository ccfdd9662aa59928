"""Qwen/Bailian: a fixture in the native layout (no real bytes are available offline), exact
values and session links, byte-identical round trips, timestamps without float drift, bad
lines, sniffing, and fetch through a loopback mirror with a re-pinned registry copy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from httpserver import LoopbackServer, Route

import llmtraces
from conftest import FIXTURES, REPO, Cli, build_registry, roundtrip
from llmtraces.formats import get_format, sniff
from llmtraces.pipeline.convert import convert_file
from llmtraces.registry import load_registry

FIXTURE = FIXTURES / "qwen-bailian" / "bailian_layout.jsonl"
KEYS = ("chat_id", "parent_chat_id", "timestamp", "input_length", "output_length", "type",
        "turn", "hash_ids")


def record(chat: int, parent: int, ts: float, n: int, turn: int = 1, kind: str = "text",
           out: int = 3, ids: list[int] | None = None) -> str:
    ids = list(range(chat * 100, chat * 100 + math.ceil(n / 16))) if ids is None else ids
    return json.dumps(dict(zip(KEYS, (chat, parent, ts, n, out, kind, turn, ids), strict=True)))


def write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    p = tmp_path / name
    p.write_bytes(("\n".join(lines) + "\n").encode())
    return p


def check_fixture_values(t) -> None:
    assert t.num_rows == 7
    col = lambda name: t.column(name).to_pylist()  # noqa: E731
    assert col("request_id") == col("source_row") == list(range(7))
    assert col("arrival_us") == [0, 0, 4_250_000, 12_500_000, 61_114_000, 3_600_500_000,
                                 7_199_970_000]
    assert col("input_tokens") == [40, 100, 33, 70, 120, 16, 130]
    assert col("output_tokens") == [12, 30, 5, 20, 8, 1, 44]
    assert col("service") == ["text", "search", "image", "text", "text", "file", "search"]
    # Chains: 1001 -> 1003 -> 1005 and 1002 -> 1007; roots have parent_chat_id -1.
    assert col("parent_request_id") == [None, None, None, 0, 3, None, 1]
    assert col("session_id") == ["1001", "1002", "1004", "1001", "1001", "1006", "1002"]
    assert col("turn") == [0, 0, 0, 1, 2, 0, 1]  # native 1, 1, 1, 2, 3, 1, 2
    assert col("hash_block_size") == [16] * 7
    assert col("hash_ids")[4] == [0, 1, 13, 14, 16, 17, 18, 19]
    assert [json.loads(e) for e in col("extra")] == [
        {"chat_id": c, "parent_chat_id": p} for c, p in
        [(1001, -1), (1002, -1), (1004, -1), (1003, 1001), (1005, 1003), (1006, -1),
         (1007, 1002)]]


def test_registry_facts():
    src = load_registry(REPO / "registry")["qwen-bailian"]
    assert src.format == "bailian-jsonl" and src.licence.spdx == "Apache-2.0"
    assert src.time.kind == "relative" and "trace" in src.time.origin
    assert src.citation.bibtex.startswith("@inproceedings{llmtraces:wang2025kvcache,")
    assert "USENIX ATC 25" in src.citation.bibtex
    files = {t: tr.file for t, tr in src.traces.items()}
    assert list(files) == ["traceA", "traceB", "coder", "thinking"]
    a, b, coder, thinking = files.values()
    assert (a.size, a.sha256, a.git_blob, a.rows) == (None, None, None, None)
    assert a.unverified and "traceA" in a.unverified
    assert (b.size, b.rows, b.sha256[:8]) == (96_209_982, 172_800, "68e3f98e")
    assert (coder.size, coder.sha256[:8]) == (132_054_902, "3d74974c")
    assert (thinking.size, thinking.sha256[:8]) == (27_901_454, "41ac36d9")
    for f in files.values():
        assert f.name.endswith("_blksz_16.jsonl") and "/main/" in f.url
        assert "alibaba-edu/qwen-bailian-usagetraces-anon" in f.url
    for f in (coder, thinking):  # Git LFS: raw.githubusercontent.com serves the pointer
        assert f.url.startswith("https://media.githubusercontent.com/media/")


def test_fixture_values_and_links():
    check_fixture_values(llmtraces.load(FIXTURE))


def test_fast_and_exact_paths_agree(monkeypatch):
    from llmtraces.text import jsonl as _jsonl

    fast = llmtraces.load(FIXTURE)
    monkeypatch.setattr(_jsonl, "_fast", lambda *a, **k: None)
    assert llmtraces.load(FIXTURE).equals(fast)


def test_fixture_round_trips_byte_for_byte(tmp_path: Path, cli: Cli):
    assert roundtrip(FIXTURE, tmp_path, "bailian").read_bytes() == FIXTURE.read_bytes()
    out = tmp_path / "cli.jsonl"
    result = cli("convert", str(tmp_path / "u.parquet"), "--to", "bailian", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == FIXTURE.read_bytes()


@pytest.mark.parametrize("text", [
    # Turns counted from 0, compact separators, CRLF, no final newline.
    '{"chat_id":5,"parent_chat_id":-1,"timestamp":0.0,"input_length":16,"output_length":1,'
    '"type":"text","turn":0,"hash_ids":[0]}\r\n'
    '{"chat_id":6,"parent_chat_id":5,"timestamp":0.5,"input_length":17,"output_length":1,'
    '"type":"text","turn":1,"hash_ids":[0,1]}',
    # An unknown key, a timestamp with sub-µs digits, and a turn below the file's base.
    record(1, -1, 0.0, 16) + "\n" + record(2, 1, 0.1234567, 20, turn=2)[:-1]
    + ', "region": "cn"}\n' + record(3, 1, 2.5, 5, turn=0) + "\n",
])
def test_other_layouts_round_trip(tmp_path: Path, text: str):
    p = tmp_path / "t.jsonl"
    p.write_bytes(text.encode())
    assert roundtrip(p, tmp_path, "bailian").read_bytes() == text.encode()


def test_turn_base_comes_from_the_roots(tmp_path: Path, cli: Cli):
    zero = write(tmp_path, "z.jsonl", [record(1, -1, 0.0, 5, turn=0),
                                       record(2, 1, 1.0, 9, turn=1)])
    assert llmtraces.load(zero).column("turn").to_pylist() == [0, 1]
    odd = write(tmp_path, "o.jsonl", [record(1, -1, 0.0, 5, turn=1),
                                      record(2, 1, 1.0, 9, turn=0)])
    t = llmtraces.load(odd)
    assert t.column("turn").to_pylist() == [0, None]
    assert json.loads(t.column("extra")[1].as_py())["turn"] == 0
    result = cli("validate", str(odd))
    assert result.exit_code == 0 and "o.jsonl:2: warning: turn: below 1" in result.output


def test_timestamps_convert_without_float_drift(tmp_path: Path):
    stamps = [0.0, 0.1, 0.3, 1.000001, 61.114, 86399.999999, 7199.97, 1e-06, 123456.789012]
    lines = [record(i + 1, -1, ts, 16) for i, ts in enumerate(stamps)]
    t = llmtraces.load(write(tmp_path, "ts.jsonl", lines))
    assert t.column("arrival_us").to_pylist() == [
        0, 100_000, 300_000, 1_000_001, 61_114_000, 86_399_999_999, 7_199_970_000, 1,
        123_456_789_012]


def test_sub_microsecond_timestamp_is_reported_and_kept(tmp_path: Path):
    p = write(tmp_path, "s.jsonl", [record(1, -1, 0.0, 16), record(2, -1, 0.1234567, 16)])
    out = tmp_path / "s.parquet"
    _, report = convert_file(p, out)
    (w,) = report.problems
    assert (w.level, w.line, w.column, w.code, w.value) == (
        "warning", 2, "timestamp", "sub-microsecond", "0.1234567")
    t = pq.read_table(out)
    assert t.column("arrival_us").to_pylist() == [0, 123_457]
    assert json.loads(t.column("extra")[1].as_py())["timestamp"] == 0.1234567


def test_unseen_parent_and_duplicate_chat_id_warn(tmp_path: Path, cli: Cli):
    p = write(tmp_path, "w.jsonl", [
        record(10, -1, 0.0, 16),
        record(11, 99, 1.0, 16, turn=2),     # parent 99 never appears before
        record(12, 11, 2.0, 16, turn=3),     # child of the orphan: same session
        record(10, -1, 3.0, 16),             # chat_id 10 again
        record(13, 10, 4.0, 16, turn=2),     # links to the first 10
        record(14, 14, 5.0, 16, turn=2),     # its own parent: not seen earlier either
    ])
    t = llmtraces.load(p)
    assert t.column("parent_request_id").to_pylist() == [None, None, 1, None, 0, None]
    assert t.column("session_id").to_pylist() == ["10", "11", "11", "10", "10", "14"]
    assert json.loads(t.column("extra")[1].as_py()) == {"chat_id": 11, "parent_chat_id": 99}
    result = cli("validate", str(p))
    assert result.exit_code == 0, result.output
    assert "w.jsonl:2: warning: parent_chat_id: parent_chat_id not seen earlier" in result.output
    assert "(got '99')" in result.output
    assert "w.jsonl:4: warning: chat_id: chat_id already used" in result.output
    assert "w.jsonl:6: warning: parent_chat_id:" in result.output
    assert cli("validate", str(p), "--strict").exit_code == 1


def test_hash_count_and_unknown_type_only_warn(tmp_path: Path, cli: Cli):
    p = write(tmp_path, "h.jsonl", [record(1, -1, 0.0, 40, ids=[0, 1]),
                                    record(2, -1, 1.0, 16, kind="video")])
    result = cli("validate", str(p))
    assert result.exit_code == 0, result.output
    assert ("h.jsonl:1: warning: hash_ids: 2 block ids for input_length 40; expected "
            "ceil(40/16) = 3") in result.output
    assert "h.jsonl:2: warning: type: not one of the documented request types" in result.output
    assert """(got '"video"')""" in result.output
    assert llmtraces.load(p).column("service").to_pylist() == ["text", "video"]


@pytest.mark.parametrize(("bad", "column", "value", "message"), [
    (record(3, -1, 2.0, 16)[:40], None, record(3, -1, 2.0, 16)[:40], "not JSON"),
    (record(3, -1, 2.0, 16).replace('"turn": 1, ', ""), "turn", None, "missing key"),
    (record(3, -1, 2.0, 16).replace('"turn": 1', '"turn": "1"'), "turn", '"1"',
     "expected an integer"),
    (record(3, -1, 2.0, 16).replace('"timestamp": 2.0', '"timestamp": "2.0"'), "timestamp",
     '"2.0"', "expected a number"),
    (record(3, -1, 2.0, 16).replace('"timestamp": 2.0', '"timestamp": NaN'), "timestamp",
     "NaN", "expected a number"),
    (record(3, -1, 2.0, 16).replace('"timestamp": 2.0', '"timestamp": -2.0'), "timestamp",
     "-2.0", "negative timestamp"),
    (record(3, -1, 2.0, 16).replace('"input_length": 16', '"input_length": -16'),
     "input_length", "-16", "negative token count"),
    (record(3, -1, 2.0, 16).replace('"chat_id": 3', '"chat_id": 3.0'), "chat_id", "3.0",
     "expected an integer"),
    (record(3, -1, 2.0, 16).replace('"parent_chat_id": -1', '"parent_chat_id": -7'),
     "parent_chat_id", "-7", "must be a chat_id or -1"),
    (record(3, -1, 2.0, 16).replace('"type": "text"', '"type": 4'), "type", "4",
     "expected a string"),
    (record(3, -1, 2.0, 16).replace('"chat_id": 3', '"chat_id": 3, "chat_id": 4'), None, None,
     "key 'chat_id' appears twice"),
    (record(3, -1, 2.0, 16, ids=[300, None]), "hash_ids", "[300, null]",
     "expected a list of integers"),
    ("   ", None, "   ", "blank line"),
])
def test_bad_lines_name_file_line_and_value(tmp_path: Path, bad, column, value, message, cli: Cli):
    p = write(tmp_path, "bad.jsonl", [record(1, -1, 0.0, 16), record(2, 1, 1.0, 16, turn=2),
                                      bad, record(4, -1, 3.0, 16)])
    out = tmp_path / "bad.parquet"
    result = cli("convert", str(p), "-o", str(out))
    assert result.exit_code == 1
    first = result.output.strip().splitlines()[0]
    assert f"{p}:3: error:" in first and message in first, first
    if column:
        assert f" {column}: " in first
    if value is not None:
        assert f"(got {value!r})" in first
    assert not out.exists() and list(tmp_path.glob(".*tmp")) == []


def test_sniffing(tmp_path: Path):
    assert sniff(FIXTURE).name == "bailian-jsonl"
    fmt = get_format("bailian-jsonl")
    first = FIXTURE.read_text().splitlines()[0]
    assert fmt.sniff(first)
    assert not fmt.sniff(first.replace('"turn": 1, ', ""))  # not every Bailian key
    assert not get_format("mooncake-jsonl").sniff(first)
    # A record too long for the first-line limit (64 KiB) is still recognised.
    long = record(1, -1, 0.0, 16 * 12_000)
    assert len(long) > 1 << 16
    assert sniff(write(tmp_path, "long.jsonl", [long])).name == "bailian-jsonl"


@pytest.fixture()
def bailian_mirror(tmp_path: Path, monkeypatch, server: LoopbackServer) -> LoopbackServer:
    """The registry with traceB pinned to the fixture (7 rows) and every URL on loopback;
    traceA stays unpinned (`unverified`)."""
    reg = build_registry(tmp_path / "registry", server.url,
                         {("qwen-bailian", "traceB"): (FIXTURE.read_bytes(), 7)})
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(reg))
    server.routes["/upstream/qwen_traceB_blksz_16.jsonl"] = Route(FIXTURE.read_bytes())
    return server


def test_fetch_convert_validate_load_through_loopback(bailian_mirror, home: Path, cli: Cli):
    result = cli("convert", "qwen-bailian", "--trace", "traceB")
    assert result.exit_code == 0, result.output
    assert [p for p, _ in bailian_mirror.log] == ["/upstream/qwen_traceB_blksz_16.jsonl"]
    result = cli("validate", "qwen-bailian", "--trace", "traceB")
    assert result.exit_code == 0 and "0 error(s), 0 warning(s)" in result.output
    t = llmtraces.load("qwen-bailian", trace="traceB")
    check_fixture_values(t)
    part = home / "parquet" / "source=qwen-bailian" / "trace=traceB" / "part-0.parquet"
    meta = json.loads(pq.read_metadata(part).metadata[b"llmtraces.trace"])
    assert (meta["source"], meta["trace"], meta["native_verified"], meta["rows"]) == (
        "qwen-bailian", "traceB", True, 7)
    assert meta["native_layout"]["turn_base"] == 1


def test_unverified_trace_fetches_with_a_warning(bailian_mirror, home: Path, cli: Cli):
    bailian_mirror.routes["/upstream/qwen_traceA_blksz_16.jsonl"] = Route(FIXTURE.read_bytes())
    result = cli("fetch", "qwen-bailian", "--trace", "traceA")
    assert result.exit_code == 0, result.output
    assert "no checksum is pinned" in result.output
    assert llmtraces.load("qwen-bailian", trace="traceA").num_rows == 7


def test_lfs_pointer_in_the_cache_fails_on_read(tmp_path: Path, monkeypatch,
                                               server: LoopbackServer, cli: Cli):
    reg = build_registry(tmp_path / "registry", server.url, {})
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(reg))
    pointer = (b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64
               + b"\nsize 123\n")
    server.routes["/upstream/qwen_traceA_blksz_16.jsonl"] = Route(pointer)
    # Nothing pinned: the first bytes are checked at fetch time (issue 17 F11).
    result = cli("fetch", "qwen-bailian", "--trace", "traceA")
    assert result.exit_code == 1
    assert "Git LFS pointer" in result.output


def test_export_to_mooncake_keeps_shared_prefixes(tmp_path: Path):
    root = list(range(69))                              # 1,100 tokens in 16-token blocks
    child = list(range(64)) + list(range(500, 530))     # shares the first 1,024 tokens
    p = write(tmp_path, "c.jsonl", [record(1, -1, 0.0, 1100, ids=root),
                                    record(2, 1, 1.5, 1500, turn=2, ids=child)])
    out = tmp_path / "m.jsonl"
    convert_file(p, out, to="mooncake")
    a, b = (json.loads(line) for line in out.read_text().splitlines())
    assert a == {"timestamp": 0, "input_length": 1100, "output_length": 3,
                 "hash_ids": [0, 1, 2], "session_id": "1"}
    assert b["hash_ids"][:2] == [0, 1] and b["hash_ids"][2] == 3 and b["timestamp"] == 1500
    assert b["session_id"] == "1"


def test_export_from_mooncake_synthesises_chats(tmp_path: Path, cli: Cli):
    synthetic = FIXTURES / "mooncake" / "synthetic_trace.jsonl"
    out = tmp_path / "b.jsonl"
    rows, _ = convert_file(synthetic, out, to="bailian")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == len(records) == 3993
    assert list(records[0]) == list(KEYS)
    assert [r["chat_id"] for r in records] == list(range(3993))
    assert {r["parent_chat_id"] for r in records} == {-1} and {r["turn"] for r in records} == {1}
    assert {r["type"] for r in records} == {"text"}
    assert records[-1]["timestamp"] == 1022.025
    assert all(len(r["hash_ids"]) == math.ceil(r["input_length"] / 16) for r in records)
    # The result reads back as a clean Bailian trace.
    result = cli("validate", str(out))
    assert result.exit_code == 0 and "0 warning(s)" in result.output, result.output
