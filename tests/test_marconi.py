"""Marconi JSONL and Kavier input CSV: exact values, sniffing, bad lines with file:line, byte-
identical round trips, conversion between the two, and reading out of a tarball."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import llmtraces
from conftest import FIXTURES, Cli, roundtrip
from llmtraces.fetching.archive import iter_members
from llmtraces.formats import sniff
from llmtraces.pipeline.convert import convert_file

DIR = FIXTURES / "marconi"
JSONL = DIR / "lmsys_sps=0.5_nums=2.jsonl"
CSV = DIR / "input_marconi.csv"
HEADER = "session_id,turn_id,ts,num_input_tokens,num_output_tokens,input_tokens,output_tokens"
USER00 = [1, 8853, 29878, 1064, 29908, 29901, 376, 1792, 613]
ASSIST00 = [1, 8853, 29878, 1064, 29908, 29901, 376, 465, 22137]
#: (session, turn, arrival_us, input_tokens, output_tokens) in file order.
ROWS = [("0", 0, 0, 9, 9), ("1", 0, 2_000_000, 11, 12), ("1", 1, 6_666_667, 33, 11),
        ("0", 1, 9_333_333, 29, 11), ("0", 2, 11_333_333, 50, 10), ("1", 2, 20_000_000, 55, 9)]
COMPARED = ["request_id", "arrival_us", "input_tokens", "output_tokens", "session_id", "turn",
            "input_token_ids", "output_token_ids", "source_row"]


def check_values(t: pa.Table) -> None:
    assert [(r["session_id"], r["turn"], r["arrival_us"], r["input_tokens"], r["output_tokens"])
            for r in t.to_pylist()] == ROWS
    assert t.column("request_id").to_pylist() == list(range(6))
    ids = t.column("input_token_ids").to_pylist()
    outs = t.column("output_token_ids").to_pylist()
    assert ids[0] == USER00 and outs[0] == ASSIST00
    assert t.schema.field("input_token_ids").type == pa.list_(pa.int32())
    for i, r in enumerate(t.to_pylist()):
        assert len(ids[i]) == r["input_tokens"] and len(outs[i]) == r["output_tokens"]
        assert ids[i][0] == 1 and outs[i][0] == 1  # every tokenisation starts with BOS
    # Session 0's turn 1 input is its whole history: turn 0's input, output, then the new user
    # message.
    assert ids[3][:18] == USER00 + ASSIST00 and ids[3][18] == 1
    assert ids[4][:29 + 11] == ids[3] + outs[3]


def test_marconi_values():
    t = llmtraces.load(JSONL)
    check_values(t)
    assert t.column("extra").to_pylist()[3] == '{"ts": 9.333333333333334}'
    assert t.column("hash_ids").null_count == 6


def test_kavier_values():
    t = llmtraces.load(CSV)
    check_values(t)
    assert t.column("extra").to_pylist()[3] == '{"ts": "9.333333333333334"}'


@pytest.mark.parametrize(("path", "name"), [(JSONL, "marconi-jsonl"), (CSV, "kavier-csv")])
def test_convert_path_sniffs(path: Path, name: str, tmp_path: Path, cli: Cli):
    out = tmp_path / "t.parquet"
    result = cli("convert", str(path), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "(6 rows)" in result.output
    assert sniff(path).name == name
    t = llmtraces.load(out)
    check_values(t)
    meta = json.loads(pq.read_metadata(out).metadata[b"llmtraces.trace"])
    assert meta["native_format"] == name and meta["time"]["kind"] == "relative"


@pytest.mark.parametrize(("path", "to"), [(JSONL, "marconi"), (CSV, "kavier")])
def test_round_trip_byte_for_byte(path: Path, to: str, tmp_path: Path):
    assert roundtrip(path, tmp_path, to).read_bytes() == path.read_bytes()


def test_marconi_to_kavier_and_back(tmp_path: Path):
    csv = roundtrip(JSONL, tmp_path, "kavier")
    lines = csv.read_text().splitlines()
    assert lines[0] == HEADER
    assert lines[1] == ('0,0,0.0,9,9,"[1, 8853, 29878, 1064, 29908, 29901, 376, 1792, 613]",'
                        '"[1, 8853, 29878, 1064, 29908, 29901, 376, 465, 22137]"')
    assert lines[4].startswith("0,1,9.333333,29,11,")
    a, b = llmtraces.load(JSONL), llmtraces.load(csv)
    assert a.select(COMPARED).equals(b.select(COMPARED))
    # And Kavier CSV -> Marconi JSONL gives the same requests again.
    back = tmp_path / "m.jsonl"
    convert_file(CSV, back, to="marconi")
    assert llmtraces.load(back).select(COMPARED).equals(a.select(COMPARED))
    # ts from another format is written from arrival_us (µs), not Marconi's float noise.
    assert '"ts": 6.666667' in back.read_text()


def test_kavier_writer_without_token_ids(tmp_path: Path):
    p = tmp_path / "counts.csv"
    p.write_text("num_input_tokens,num_output_tokens\n5,2\n7,3\n")
    out = tmp_path / "k.csv"
    convert_file(p, out, to="kavier")
    assert out.read_text() == p.read_text()  # native layout kept
    u = tmp_path / "u.parquet"
    convert_file(p, u)
    t = llmtraces.load(u)
    assert t.column("input_token_ids").null_count == 2 and t.column("arrival_us").null_count == 2
    # A trace from another format: the full header, empty cells where the trace has nothing.
    m = tmp_path / "moon.jsonl"
    m.write_text('{"timestamp": 5, "input_length": 3, "output_length": 2, "hash_ids": [0]}\n')
    convert_file(m, out, to="kavier")
    assert out.read_text() == f"{HEADER}\n,,0.005,3,2,,\n"
    with pytest.raises(llmtraces.errors.LLMTracesError, match="input token ids"):
        convert_file(m, tmp_path / "x.jsonl", to="marconi")
    assert not (tmp_path / "x.jsonl").exists()


def test_kavier_trailing_comma_header(tmp_path: Path):
    text = ("session_id,turn_id,ts,num_input_tokens,num_output_tokens,\n"
            "0,0,0.0,12,4\n0,1,1.5,20,3\n")
    p = tmp_path / "input_decode_accuracy.csv"
    p.write_text(text)
    assert sniff(p).name == "kavier-csv"
    t = llmtraces.load(p)
    assert t.column("input_tokens").to_pylist() == [12, 20]
    assert t.column("arrival_us").to_pylist() == [0, 1_500_000]
    assert t.column("extra").null_count == 2
    assert roundtrip(p, tmp_path, "kavier").read_bytes() == text.encode()


def test_kavier_empty_list_cells_and_compact_lists(tmp_path: Path):
    text = (f"{HEADER}\n0,0,0.5,3,1,\"[1,2,3]\",\n0,1,1,0,0,[],[]\n")
    p = tmp_path / "k.csv"
    p.write_text(text)
    t = llmtraces.load(p)
    assert t.column("input_token_ids").to_pylist() == [[1, 2, 3], []]
    assert t.column("output_token_ids").to_pylist() == [None, []]
    assert roundtrip(p, tmp_path, "kavier").read_bytes() == text.encode()


def _line(i: int) -> str:
    return JSONL.read_text().splitlines()[i]


@pytest.mark.parametrize(("old", "new", "column", "message"), [
    ('"num_input_tokens": 29', '"num_input_tokens": 30', "num_input_tokens",
     "num_input_tokens is 30 but input_tokens holds 29 ids"),
    ('"num_output_tokens": 11', '"num_output_tokens": 10', "num_output_tokens",
     "num_output_tokens is 10 but output_tokens holds 11 ids"),
    ('"input_tokens": [1,', '"input_tokens": [-1,', "input_tokens", "outside 0..2147483647"),
    ('"output_tokens": [1,', '"output_tokens": [2147483648,', "output_tokens",
     "outside 0..2147483647"),
    ('"ts": 9.333333333333334', '"ts": "9.3"', "ts", "expected a number"),
])
def test_bad_marconi_lines_name_file_and_line(tmp_path: Path, old, new, column, message, cli: Cli):
    lines = JSONL.read_text().splitlines()
    assert old in lines[3]
    lines[3] = lines[3].replace(old, new, 1)
    p = tmp_path / "bad.jsonl"
    p.write_text("\n".join(lines) + "\n")
    out = tmp_path / "bad.parquet"
    result = cli("convert", str(p), "-o", str(out))
    assert result.exit_code == 1
    first = result.output.strip().splitlines()[0]
    assert f"{p}:4: error:" in first and message in first and f" {column}: " in first, first
    assert not out.exists()


def test_bad_kavier_lines_name_file_and_line(tmp_path: Path, cli: Cli):
    lines = CSV.read_text().splitlines()
    lines[2] = lines[2].replace(",11,12,", ",11,13,", 1)
    lines[5] = lines[5].replace('"[1, ', '"[x, ', 1)
    p = tmp_path / "bad.csv"
    p.write_text("\n".join(lines) + "\n")
    report = json.loads(cli("validate", str(p), "--json").output)
    got = [(x["line"], x["column"], x["message"]) for x in report["problems"]]
    assert (3, "num_output_tokens", "num_output_tokens is 13 but output_tokens holds 12 ids") \
        in got
    assert (6, "input_tokens", "expected a JSON array of integers") in got


def test_out_of_order_ts_warns(tmp_path: Path, cli: Cli):
    lines = JSONL.read_text().splitlines()
    lines[0], lines[1] = lines[1], lines[0]
    p = tmp_path / "o.jsonl"
    p.write_text("\n".join(lines) + "\n")
    report = json.loads(cli("validate", str(p), "--json").output)
    assert report["errors"] == 0
    assert [(x["line"], x["level"], x["code"]) for x in report["problems"]] == [
        (2, "warning", "order")]


def test_fixture_from_a_tarball(tmp_path: Path, cli: Cli):
    tarball = tmp_path / "traces.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(JSONL, arcname=f"traces/{JSONL.name}")
        tar.add(CSV, arcname="traces/other.csv")
    members = list(iter_members(tarball, "traces/*.jsonl"))
    assert [m for m, _ in members] == [f"traces/{JSONL.name}"]
    for name, fh in iter_members(tarball, "traces/*.jsonl"):
        local = tmp_path / Path(name).name
        local.write_bytes(fh.read())
        out = tmp_path / "t.parquet"
        result = cli("convert", str(local), "-o", str(out))
        assert result.exit_code == 0, result.output
        check_values(llmtraces.load(out))


def test_fast_and_exact_paths_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from llmtraces.formats import get_format
    from llmtraces.report import Report
    from llmtraces.text import ReadContext, jsonl

    fast = llmtraces.load(JSONL)
    monkeypatch.setattr(jsonl, "_fast", lambda *a, **k: None)
    assert llmtraces.load(JSONL).equals(fast)
    # Small blocks: line numbers stay exact across them.
    lines = JSONL.read_text().splitlines()
    lines[4] = lines[4].replace('"num_input_tokens": 50', '"num_input_tokens": 5', 1)
    p = tmp_path / "b.jsonl"
    p.write_text("\n".join(lines) + "\n")
    report = Report()
    ctx = ReadContext(p, report, batch_bytes=256)
    assert sum(b.num_rows for b in get_format("marconi-jsonl").read(ctx)) == 6
    assert [(x.line, x.code, x.column) for x in report.problems] == [
        (5, "length", "num_input_tokens")]
