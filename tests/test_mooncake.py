"""Mooncake: the real synthetic trace end to end (values, byte-identical round trip, fetch through
a loopback mirror with the real registry pins), every kind of bad line, and the writer's hash
ids for traces from other sources."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from formatcheck import check_format
from httpserver import LoopbackServer, Route

import llmtraces
from conftest import FIXTURES, REPO, Cli, build_registry, roundtrip
from llmtraces.formats import get_format, sniff
from llmtraces.formats.mooncake import BlockIds
from llmtraces.pipeline.convert import convert_file
from llmtraces.registry import load_registry
from llmtraces.report import Report
from llmtraces.text import ReadContext, jsonl

NAME = "synthetic_trace.jsonl"
ROWS = 3993


@pytest.fixture(scope="session")
def synthetic() -> Path:
    """The real FAST'25 synthetic trace (tests/fixtures/mooncake/README.md)."""
    return FIXTURES / "mooncake" / NAME


def head(path: Path, n: int) -> list[str]:
    with path.open(encoding="utf-8") as fh:
        return [next(fh).rstrip("\n") for _ in range(n)]


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode())
    return p


def check_first_and_last(t: pa.Table) -> None:
    assert t.num_rows == ROWS
    first, last = t.slice(0, 1).to_pylist()[0], t.slice(ROWS - 1, 1).to_pylist()[0]
    assert (first["arrival_us"], first["input_tokens"], first["output_tokens"]) == (0, 40160, 6)
    assert first["hash_ids"] == list(range(79)) and first["hash_block_size"] == 512
    assert (last["arrival_us"], last["input_tokens"], last["output_tokens"]) == (
        1_022_025_000, 18440, 83)
    assert len(last["hash_ids"]) == 37 and last["hash_ids"][:3] == [17915, 17916, 17917]
    assert last["hash_ids"][-1] == 43923
    assert (first["request_id"], last["request_id"], last["source_row"]) == (0, ROWS - 1,
                                                                              ROWS - 1)


def test_check_format_on_the_real_synthetic_trace(synthetic: Path):
    check_format(synthetic, rows=ROWS, reader="mooncake-jsonl",
                 first={"arrival_us": 0, "input_tokens": 40160, "output_tokens": 6},
                 last={"arrival_us": 1_022_025_000, "input_tokens": 18440, "output_tokens": 83},
                 roundtrip="mooncake")


def test_registry_facts(synthetic: Path):
    src = load_registry(REPO / "registry")["mooncake"]
    assert src.format == "mooncake-jsonl" and src.licence.spdx == "Apache-2.0"
    assert src.time.kind == "relative" and src.time.resolution == "1ms"
    assert src.time.origin == "start of the trace (timestamp 0)"
    assert "qin2025mooncake" in src.citation.bibtex
    files = {t: tr.file for t, tr in src.traces.items()}
    assert list(files) == ["conversation", "toolagent", "synthetic", "arxiv"]
    conv, tool, syn, arx = files.values()
    assert (conv.size, conv.rows, conv.sha256[:8], conv.git_blob[:8]) == (
        3_029_533, 12_031, "b8cbb061", "5a371794")
    assert (tool.size, tool.sha256, tool.rows, tool.git_blob[:8]) == (
        None, None, 23_608, "b765599d")
    assert (arx.size, arx.sha256, arx.rows, arx.git_blob[:8]) == (None, None, 23_608, "d68d1c6c")
    for f in (conv, tool, syn):
        assert "/3cca71daccf2a7afb8fe3f0295358f70e3a69fdb/FAST25-release/traces/" in f.url
        assert f.mirrors == (f.url.replace("3cca71daccf2a7afb8fe3f0295358f70e3a69fdb", "main"),)
    assert arx.url.endswith("/FAST25-release/arxiv-trace/mooncake_trace.jsonl")
    assert arx.mirrors[0].endswith(
        "/d21da178bae8db9651cf18a76824c084145fc725/mooncake_trace.jsonl")
    # The synthetic pins are the real file's.
    from llmtraces.fetching.checksums import compute

    assert (syn.size, syn.rows) == (synthetic.stat().st_size, ROWS)
    assert compute(synthetic, ("sha256", "md5", "git_blob")) == {
        "sha256": syn.sha256, "md5": syn.md5, "git_blob": syn.git_blob}


def test_real_trace_values(synthetic: Path):
    t = llmtraces.load(synthetic)
    check_first_and_last(t)
    assert t.column("request_id").to_pylist() == list(range(ROWS))
    inputs = t.column("input_tokens").to_pylist()
    lengths = pc.list_value_length(t.column("hash_ids")).to_pylist()
    assert lengths == [math.ceil(n / 512) for n in inputs]  # on every row
    assert set(t.column("hash_block_size").to_pylist()) == {512}
    arrival = t.column("arrival_us").to_pylist()
    assert arrival == sorted(arrival) and all(a % 1000 == 0 for a in arrival)
    assert sum(inputs) == 61_194_628 and pc.sum(t.column("output_tokens")).as_py() == 595_432
    for col in ("service", "session_id", "turn", "parent_request_id", "extra", "model"):
        assert t.column(col).null_count == ROWS, col


def test_real_trace_round_trips_byte_for_byte(synthetic: Path, tmp_path: Path, cli: Cli):
    back = roundtrip(synthetic, tmp_path, "mooncake")
    assert back.read_bytes() == synthetic.read_bytes()
    # Straight from the native file too, and through the CLI.
    direct = tmp_path / "direct.jsonl"
    convert_file(synthetic, direct, to="mooncake")
    assert direct.read_bytes() == synthetic.read_bytes()
    out = tmp_path / "cli.jsonl"
    result = cli("convert", str(tmp_path / "u.parquet"), "--to", "mooncake", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == synthetic.read_bytes()


def test_convert_path_recognises_the_format(synthetic: Path, tmp_path: Path, cli: Cli):
    out = tmp_path / "s.parquet"
    result = cli("convert", str(synthetic), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert f"({ROWS:,} rows)" in result.output
    meta = json.loads(pq.read_metadata(out).metadata[b"llmtraces.trace"])
    # Recognised by name and checksum as the published file.
    assert (meta["source"], meta["trace"], meta["native_format"]) == (
        "mooncake", "synthetic", "mooncake-jsonl")
    assert meta["native_verified"] is True and meta["rows"] == ROWS
    assert meta["time"]["kind"] == "relative" and meta["time_origin"] is None
    assert meta["native_layout"] == {
        "keys": ["timestamp", "input_length", "output_length", "hash_ids"],
        "separators": [", ", ": "], "ensure_ascii": True, "exact": True, "newline": "\n",
        "bom": False, "final_newline": True}
    # A renamed copy is recognised from its first record alone.
    copy = tmp_path / "renamed.jsonl"
    copy.write_bytes(synthetic.read_bytes())
    assert sniff(copy).name == "mooncake-jsonl"
    assert cli("validate", str(copy)).exit_code == 0


def test_fetch_convert_validate_load_through_loopback(synthetic: Path, tmp_path: Path,
                                                      monkeypatch, server: LoopbackServer,
                                                      home: Path, cli: Cli):
    # The real registry entry: its pins are the real file's, only the URLs move to loopback.
    reg = build_registry(tmp_path / "registry", server.url, {})
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(reg))
    server.routes[f"/upstream/{NAME}"] = Route(synthetic.read_bytes())

    result = cli("convert", "mooncake", "--trace", "synthetic")
    assert result.exit_code == 0, result.output
    assert [p for p, _ in server.log] == [f"/upstream/{NAME}"]
    assert (home / "raw" / "mooncake" / NAME).read_bytes() == synthetic.read_bytes()
    part = home / "parquet" / "source=mooncake" / "trace=synthetic" / "part-0.parquet"
    assert part.is_file()

    result = cli("validate", "mooncake", "--trace", "synthetic")
    assert result.exit_code == 0, result.output
    assert "0 error(s), 0 warning(s)" in result.output

    t = llmtraces.load("mooncake", trace="synthetic")
    check_first_and_last(t)
    assert t.equals(llmtraces.load(synthetic))
    meta = json.loads(pq.read_metadata(part).metadata[b"llmtraces.trace"])
    assert meta["native_verified"] is True and meta["licence"]["spdx"] == "Apache-2.0"
    assert "qin2025mooncake" in meta["citation"]["bibtex"]
    assert len(server.log) == 1  # loading again converted nothing and fetched nothing


GOOD = '{"timestamp": 5, "input_length": 1000, "output_length": 7, "hash_ids": [0, 1]}'


@pytest.mark.parametrize(("bad", "column", "value", "message"), [
    ('{"timestamp": 5, "input_length": 1000, "output_', None,
     '{"timestamp": 5, "input_length": 1000, "output_',
     "not JSON: Unterminated string starting at (column 40)"),
    ('{"timestamp": 5, "input_length": 1000, "output_length": 7, "hash_ids": [0, 1, 2]}',
     "hash_ids", "[0, 1, 2]", "3 block ids for input_length 1000; expected ceil(1000/512) = 2"),
    ('{"timestamp": 5, "input_length": -1000, "output_length": 7, "hash_ids": [0, 1]}',
     "input_length", "-1000", "negative token count"),
    ('{"timestamp": 5, "input_length": 1000, "output_length": 7}', "hash_ids", None,
     "missing key; expected a list of integers"),
    ('{"timestamp": 5, "input_length": "1000", "output_length": 7, "hash_ids": [0, 1]}',
     "input_length", '"1000"', "expected an integer"),
    ('{"timestamp": 5.5, "input_length": 1000, "output_length": 7, "hash_ids": [0, 1]}',
     "timestamp", "5.5", "expected an integer"),
    ('{"timestamp": 5, "input_length": 1000, "output_length": null, "hash_ids": [0, 1]}',
     "output_length", "null", "expected an integer"),
    ('{"timestamp": 5, "input_length": 1000, "output_length": 7, "hash_ids": [0, "x"]}',
     "hash_ids", '[0, "x"]', "expected a list of integers"),
    ('{"timestamp": 5, "input_length": 1000, "output_length": 7, "hash_ids": [0, -1]}',
     "hash_ids", "[0, -1]", "negative hash id"),
    ('[5, 1000, 7, [0, 1]]', None, "[5, 1000, 7, [0, 1]]", "expected a JSON object"),
    ("", None, "", "blank line"),
    ('{"timestamp": 5, "timestamp": 6, "input_length": 1000, "output_length": 7, '
     '"hash_ids": [0, 1]}', None, None, "key 'timestamp' appears twice"),
])
def test_bad_lines_name_file_line_and_value(tmp_path: Path, bad, column, value, message, cli: Cli):
    p = write(tmp_path, "bad.jsonl", f"{GOOD}\n{GOOD}\n{bad}\n{GOOD}\n")
    out = tmp_path / "bad.parquet"
    result = cli("convert", str(p), "-o", str(out))
    assert result.exit_code == 1
    first = result.output.strip().splitlines()[0]
    assert f"{p}:3: error:" in first and message in first, first
    if column:
        assert f" {column}: " in first
    if value is not None:
        assert f"(got {value!r})" in first
    assert not out.exists() and list(tmp_path.glob("*.parquet")) == []
    assert list(tmp_path.glob(".*tmp")) == []
    report = json.loads(cli("validate", str(p), "--json").output)
    assert report["errors"] >= 1 and report["problems"][0]["line"] == 3


def test_problems_come_in_line_order(tmp_path: Path, cli: Cli):
    # The value checks run after the line is parsed, yet line 2 is reported before line 3.
    bad_len = GOOD.replace("[0, 1]", "[0]")
    p = write(tmp_path, "o.jsonl", f"{GOOD}\n{bad_len}\nnot json\n{bad_len}\n")
    result = cli("validate", str(p), "--json")
    assert [x["line"] for x in json.loads(result.output)["problems"]] == [2, 3, 4]


def test_line_numbers_are_exact_across_blocks(synthetic: Path, tmp_path: Path):
    lines = synthetic.read_text().splitlines()
    lines[2999] = lines[2999].replace('"output_length": ', '"output_length": -', 1)
    lines[3499] = "not json"
    p = write(tmp_path, "cut.jsonl", "\n".join(lines) + "\n")
    report = Report()
    ctx = ReadContext(p, report, batch_bytes=64 << 10)  # ~18 blocks; the rest stay fast
    rows = sum(b.num_rows for b in get_format("mooncake-jsonl").read(ctx))
    assert rows == ROWS
    assert [(x.line, x.code, x.column) for x in report.problems] == [
        (3000, "negative", "output_length"), (3500, "json", None)]


def test_fast_and_exact_paths_agree(synthetic: Path, monkeypatch):
    real = jsonl._exact
    with monkeypatch.context() as m:  # the clean real file never needs the exact path
        m.setattr(jsonl, "_exact", lambda *a, **k: pytest.fail("exact path used"))
        fast = llmtraces.load(synthetic)
    calls = []

    def exact_only(*args, **kw):
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(jsonl, "_fast", lambda *a, **k: None)
    monkeypatch.setattr(jsonl, "_exact", exact_only)
    assert llmtraces.load(synthetic).equals(fast) and calls


def test_gzip_input_streams(synthetic: Path, tmp_path: Path):
    gz = tmp_path / "synthetic.jsonl.gz"
    gz.write_bytes(gzip.compress(synthetic.read_bytes()))
    assert sniff(gz).name == "mooncake-jsonl"
    t = llmtraces.load(gz)
    assert t.drop_columns(["extra"]).equals(llmtraces.load(synthetic).drop_columns(["extra"]))
    assert roundtrip(gz, tmp_path, "mooncake").read_bytes() == synthetic.read_bytes()


@pytest.mark.parametrize("text", [
    # Compact separators, CRLF, no final newline.
    '{"timestamp":0,"input_length":600,"output_length":3,"hash_ids":[0,1]}\r\n'
    '{"timestamp":9,"input_length":512,"output_length":1,"hash_ids":[0]}',
    # A different key order, a session_id, and unknown keys (non-ASCII kept as written).
    '{"hash_ids": [0], "timestamp": 0, "session_id": "s-1", "input_length": 1, '
    '"output_length": 2, "note": "café"}\n'
    '{"hash_ids": [1, 2], "timestamp": 1, "session_id": "s-1", "input_length": 513, '
    '"output_length": 2, "note": "naïve"}\n',
])
def test_other_layouts_round_trip(tmp_path: Path, text: str):
    p = write(tmp_path, "t.jsonl", text)
    assert roundtrip(p, tmp_path, "mooncake").read_bytes() == text.encode()


def test_session_id_and_unknown_keys(tmp_path: Path):
    p = write(tmp_path, "t.jsonl", '{"timestamp": 0, "input_length": 1, "output_length": 2, '
                                   '"hash_ids": [0], "session_id": "a", "delay": 5}\n')
    t = llmtraces.load(p)
    assert t.column("session_id").to_pylist() == ["a"]
    assert t.column("extra").to_pylist() == ['{"delay": 5}']


def test_out_of_order_timestamps_warn(tmp_path: Path, cli: Cli):
    p = write(tmp_path, "o.jsonl", GOOD.replace('"timestamp": 5', '"timestamp": 9') + "\n"
              + GOOD + "\n")
    t = llmtraces.load(p)
    assert t.column("arrival_us").to_pylist() == [9000, 5000]
    result = cli("validate", str(p))
    assert result.exit_code == 0 and "o.jsonl:2: warning: timestamp: arrives before" in \
        result.output
    assert cli("validate", str(p), "--strict").exit_code == 1


def test_first_record_longer_than_the_sniff_limit(tmp_path: Path):
    n = 20_000  # about 130 KiB of ids: read_first_line stops at 64 KiB
    big = json.dumps({"timestamp": 0, "input_length": n * 512, "output_length": 1,
                      "hash_ids": list(range(n))})
    p = write(tmp_path, "big.jsonl", big + "\n" + GOOD + "\n")
    assert sniff(p).name == "mooncake-jsonl"
    assert llmtraces.load(p).column("input_tokens").to_pylist() == [n * 512, 1000]


def test_sniff_tells_mooncake_from_bailian(synthetic: Path):
    fmt = get_format("mooncake-jsonl")
    assert fmt.sniff(head(synthetic, 1)[0])
    bailian = (FIXTURES / "qwen-bailian" / "bailian_layout.jsonl").read_text().splitlines()[0]
    assert not fmt.sniff(bailian) and get_format("bailian-jsonl").sniff(bailian)
    assert not fmt.sniff("TIMESTAMP,ContextTokens,GeneratedTokens")


def test_other_sources_get_consistent_hash_ids(code_csv: Path, tmp_path: Path, cli: Cli):
    out = tmp_path / "code.jsonl"
    rows, _ = convert_file(code_csv, out, to="mooncake")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == len(records) == 8819
    azure = llmtraces.load(code_csv)
    assert [r["timestamp"] for r in records] == [
        us // 1000 for us in azure.column("arrival_us").to_pylist()]
    assert all(len(r["hash_ids"]) == math.ceil(r["input_length"] / 512) for r in records)
    ids = [i for r in records for i in r["hash_ids"]]
    assert len(ids) == len(set(ids)) and max(ids) == len(ids) - 1  # unique per request, dense
    assert list(records[0]) == ["timestamp", "input_length", "output_length", "hash_ids"]
    # The result is a valid Mooncake trace.
    assert cli("validate", str(out)).exit_code == 0


def test_block_ids_share_exactly_the_shared_prefixes():
    b = BlockIds(512)
    a = b.ids(list(range(64)), 16, 1024)               # two full 512-token blocks
    same = b.ids(list(range(64)), 16, 1024)
    half = b.ids(list(range(32)) + [900] * 32, 16, 1024)  # shares the first block only
    short = b.ids(list(range(40)), 16, 640)             # first block shared, second partial
    other = b.ids(list(range(100, 164)), 16, 1024)
    fresh = b.ids(None, None, 1500)
    assert a == same == [0, 1]
    assert half[0] == a[0] and half[1] not in a
    assert short[0] == a[0] and short[1] not in a + half and len(short) == 2
    assert set(other).isdisjoint(a + half + short)
    assert len(fresh) == 3 and set(fresh).isdisjoint(a + half + short + other)
    # Source ids that stop short of the input: the rest are new.
    assert len(b.ids([0, 1], 16, 1024)) == 2


def test_block_ids_split_larger_blocks():
    b = BlockIds(16)
    a = b.ids([7, 8], 512, 1024)
    assert a == list(range(64))  # 32 consecutive ids per source block
    c = b.ids([7, 9], 512, 1000)
    assert c[:32] == a[:32] and set(c[32:]).isdisjoint(a) and len(c) == math.ceil(1000 / 16)
    d = b.ids([7], 512, 100)  # a partial block is its own content
    assert len(d) == 7 and set(d).isdisjoint(a + c)
