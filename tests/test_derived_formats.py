"""vidur and splitwise-sim trace files: recognised, read exactly, written back byte for byte.

The vidur fixtures are the heads of vidur's ``splitwise_{code,conv}.csv``, which re-express the
Azure LLM 2023 trace; the real Azure files are read beside them, so every check on arrival
times is a cross-check between two independently published files (see fixtures/derived).
"""

from __future__ import annotations

import csv
import gzip
import json
import random
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import llmtraces
from conftest import Cli, roundtrip
from llmtraces.errors import InvalidTraceError
from llmtraces.pipeline.convert import convert_file
from llmtraces.text.seconds import REPR
from llmtraces.text.seconds import format_styled as format_seconds

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "derived"
VIDUR_CODE = FIXTURES / "splitwise_code_head.csv"  # vidur's first 240 rows
VIDUR_CONV = FIXTURES / "splitwise_conv_head.csv"  # vidur's first 9 rows
VIDUR_LENGTHS = FIXTURES / "arxiv_summarization_stats_head.csv"
SPLITWISE_TOY = FIXTURES / "test_trace.csv"  # splitwise-sim's traces/test_trace.csv
SPLITWISE_GENERATED = FIXTURES / "rr_code_50_head.csv"  # written like generate_trace.py
VIDUR_HEADER = "arrived_at,num_prefill_tokens,num_decode_tokens"
SPLITWISE_HEADER = ("request_id,request_type,application_id,arrival_timestamp,batch_size,"
                    "prompt_size,token_size")
VALUES = ["arrival_us", "input_tokens", "output_tokens"]


def meta_of(parquet: Path) -> dict:
    return json.loads(pq.read_metadata(parquet).metadata[b"llmtraces.trace"])


def values(path: Path, n: int | None = None) -> dict[str, list]:
    t = llmtraces.load(path)
    return {c: t.column(c).to_pylist()[:n] for c in VALUES}


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode())
    return p


# --- reading: exact values, cross-checked against the Azure originals -------------------------


def test_vidur_code_head_reads_like_the_azure_code_trace(code_csv: Path):
    vidur = values(VIDUR_CODE)
    assert len(vidur["arrival_us"]) == 240
    assert vidur == values(code_csv, 240)  # same requests, same µs, from the other publisher
    assert vidur["arrival_us"][:3] == [0, 52_000, 98_189]
    # Line 223 is vidur's one float-noise value in its first 240 rows: 199.96150599999999.
    assert VIDUR_CODE.read_text().splitlines()[222].startswith("199.96150599999999,")
    assert vidur["arrival_us"][221] == 199_961_506
    t = llmtraces.load(VIDUR_CODE)
    assert t.column("extra").null_count == 240  # every value is reproduced by the style
    assert t.column("source_row").to_pylist() == list(range(240))


def test_vidur_conv_head_reads_like_the_azure_conv_head(conv_csv: Path):
    vidur = values(VIDUR_CONV)
    assert vidur == values(conv_csv)
    # SOURCES.md: 4.314579 = 18:15:50.9951690 - 18:15:46.6805900; 5.8926549999999995 is the
    # float64 of 5.892655 s and must not truncate to 5_892_654.
    assert vidur["arrival_us"][:5] == [0, 4_314_579, 4_541_877, 4_710_427, 5_892_655]


def test_vidur_arithmetic_is_reproduced_exactly(code_csv: Path, conv_csv: Path):
    # vidur wrote float(whole seconds) + microseconds / 1e6 with Python's repr: applied to the
    # Azure arrivals, the "repr" style gives vidur's published bytes, noise digits included.
    for azure, vidur, n in ((code_csv, VIDUR_CODE, 240), (conv_csv, VIDUR_CONV, 9)):
        t = llmtraces.load(azure).slice(0, n)
        seconds = format_seconds(t.column("arrival_us").combine_chunks(), REPR).to_pylist()
        rows = zip(seconds, t.column("input_tokens").to_pylist(),
                   t.column("output_tokens").to_pylist(), strict=True)
        text = VIDUR_HEADER + "\n" + "".join(f"{s},{i},{o}\n" for s, i, o in rows)
        assert text.encode() == vidur.read_bytes()


def test_splitwise_generated_trace_values_and_raw_text(tmp_path: Path):
    t = llmtraces.load(SPLITWISE_GENERATED)
    rows = list(csv.DictReader(SPLITWISE_GENERATED.open()))
    expect = [int((Decimal(r["arrival_timestamp"]) * 10**6).to_integral_value(ROUND_HALF_UP))
              for r in rows]
    assert t.column("arrival_us").to_pylist() == expect
    assert expect[0] == 17_064  # 0.017063564378759746 s rounds up
    assert t.column("input_tokens").to_pylist() == [int(r["prompt_size"]) for r in rows]
    assert t.column("output_tokens").to_pylist() == [int(r["token_size"]) for r in rows]
    assert json.loads(t.column("extra")[0].as_py()) == {
        "request_id": "0", "request_type": "2", "application_id": "0",
        "arrival_timestamp": "0.017063564378759746", "batch_size": "1"}
    # Float seconds finer than 1 µs: one warning per row, with line and raw value; strict fails.
    _, report = convert_file(SPLITWISE_GENERATED, tmp_path / "o.parquet")
    assert report.errors == 0 and report.warnings == 20
    first = report.problems[0]
    assert (first.line, first.column, first.code, first.value) == (
        2, "arrival_timestamp", "sub-microsecond", "0.017063564378759746")
    with pytest.raises(InvalidTraceError, match=r"rr_code_50_head.csv:2: warning"):
        convert_file(SPLITWISE_GENERATED, tmp_path / "strict.parquet", strict=True)
    assert not (tmp_path / "strict.parquet").exists()


def test_splitwise_toy_trace():
    t = llmtraces.load(SPLITWISE_TOY)
    assert t.column("arrival_us").to_pylist() == [1_000_000, 3_000_000, 4_000_000]
    assert t.column("input_tokens").to_pylist() == [4096, 2048, 2048]
    assert t.column("output_tokens").to_pylist() == [32, 8, 16]
    assert json.loads(t.column("extra")[2].as_py()) == {
        "request_id": "2", "request_type": "2", "application_id": "0", "batch_size": "1"}


def test_vidur_lengths_file_has_no_arrivals(tmp_path: Path):
    out = tmp_path / "l.parquet"
    convert_file(VIDUR_LENGTHS, out)
    t = pq.read_table(out)
    assert t.column("arrival_us").null_count == 12
    assert t.column("input_tokens").to_pylist()[:2] == [3772, 2015]
    assert t.column("output_tokens").to_pylist()[:2] == [54, 156]
    assert json.loads(t.column("extra")[0].as_py()) == {"num_total_tokens": "3826",
                                                        "pd_ratio": "69.85185185185185"}
    meta = meta_of(out)
    assert meta["native_format"] == "vidur-lengths-csv" and meta["time"]["kind"] == "none"


def test_seconds_parse_exactly_to_the_nearest_microsecond(tmp_path: Path):
    rng = random.Random(7)
    texts = ["0.0", "4.314579", "5.8926549999999995", "138.57600300000001", "0.052000000000000005",
             "5e-05", "1.5e-05", "1e-06", "7", "0.0000005", "0.0000004999", "999999.9999995"]
    texts += [f"{rng.randrange(10**6)}.{rng.randrange(10**12):012d}"[: rng.randrange(3, 20)]
              .rstrip(".") for _ in range(300)]
    body = "".join(f"{s},1,1\n" for s in texts)
    t = llmtraces.load(write(tmp_path, "s.csv", f"{VIDUR_HEADER}\n{body}"))
    expect = [int((Decimal(s) * 10**6).to_integral_value(ROUND_HALF_UP)) for s in texts]
    assert t.column("arrival_us").to_pylist() == expect


# --- recognition through the CLI ----------------------------------------------------------------


@pytest.mark.parametrize(("fixture", "fmt", "rows"), [
    (VIDUR_CODE, "vidur-csv", 240),
    (VIDUR_CONV, "vidur-csv", 9),
    (VIDUR_LENGTHS, "vidur-lengths-csv", 12),
    (SPLITWISE_TOY, "splitwise-csv", 3),
    (SPLITWISE_GENERATED, "splitwise-csv", 20),
])
def test_convert_recognises_the_format(tmp_path: Path, fixture: Path, fmt: str, rows: int,
                                       cli: Cli):
    out = tmp_path / "x.parquet"
    result = cli("convert", str(fixture), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert f"({rows:,} rows)" in result.output
    meta = meta_of(out)
    assert meta["native_format"] == fmt and meta["rows"] == rows
    assert meta["source"] is None  # a derived file, not a registry source


def test_time_semantics_are_recorded(tmp_path: Path):
    convert_file(VIDUR_CODE, tmp_path / "v.parquet")
    convert_file(SPLITWISE_TOY, tmp_path / "s.parquet")
    vidur, splitwise = meta_of(tmp_path / "v.parquet"), meta_of(tmp_path / "s.parquet")
    assert vidur["time"]["kind"] == splitwise["time"]["kind"] == "relative"
    assert "first request" in vidur["time"]["origin"]
    assert "simulation start" in splitwise["time"]["origin"]
    assert vidur["time_origin"] is None
    assert vidur["native_layout"]["seconds"] == {"style": "repr"}
    assert splitwise["native_layout"]["seconds"] == {"style": "fixed", "digits": 0}


# --- native -> unified -> native, byte for byte -------------------------------------------------


@pytest.mark.parametrize(("fixture", "to"), [
    (VIDUR_CODE, "vidur"), (VIDUR_CONV, "vidur"), (VIDUR_LENGTHS, "vidur"),
    (SPLITWISE_TOY, "splitwise"), (SPLITWISE_GENERATED, "splitwise"),
])
def test_fixtures_come_back_byte_for_byte(tmp_path: Path, fixture: Path, to: str):
    assert roundtrip(fixture, tmp_path, to).read_bytes() == fixture.read_bytes()


@pytest.mark.parametrize("text", [
    # "%.6f" seconds, CRLF, no final newline
    f"{VIDUR_HEADER}\r\n0.000000,1,2\r\n0.052000,3,4\r\n1.500000,5,6",
    # Python's exponent form, an extra column with CSV quoting, an empty extra value
    f"{VIDUR_HEADER},note\n0.0,1,2,x\n5e-05,3,4,\"a,b\"\n1.25,5,6,\"say \"\"hi\"\"\"\n2.0,7,8,\n",
    # a value finer than 1 µs (kept verbatim) among repr values
    f"{VIDUR_HEADER}\n0.0,1,2\n0.0000015,3,4\n0.5,5,6\n",
])
def test_vidur_layouts_come_back_byte_for_byte(tmp_path: Path, text: str):
    native = write(tmp_path, "v.csv", text)
    assert roundtrip(native, tmp_path, "vidur").read_bytes() == text.encode()


def test_vidur_extra_columns_and_sub_microsecond_values(tmp_path: Path):
    t = llmtraces.load(write(tmp_path, "n.csv", f"{VIDUR_HEADER},note\n0.0,1,2,x\n"
                                                "5e-05,3,4,\"a,b\"\n0.0000015,5,6,\n"))
    assert t.column("arrival_us").to_pylist() == [0, 50, 2]
    # Native columns in header order; the seconds text only where the style would not give it.
    assert t.column("extra").to_pylist() == [
        '{"note": "x"}', '{"note": "a,b"}', '{"arrived_at": "0.0000015", "note": ""}']


def test_gzip_vidur_file_is_read_and_written_plain(tmp_path: Path):
    gz = tmp_path / "splitwise_conv.csv.gz"
    gz.write_bytes(gzip.compress(VIDUR_CONV.read_bytes()))
    assert values(gz) == values(VIDUR_CONV)
    assert roundtrip(gz, tmp_path, "vidur").read_bytes() == VIDUR_CONV.read_bytes()


# --- exports from other traces -----------------------------------------------------------------


def test_azure_to_vidur_matches_what_vidur_ships(tmp_path: Path, code_csv: Path, cli: Cli):
    unified = tmp_path / "code.parquet"
    assert cli("convert", str(code_csv), "-o", str(unified)).exit_code == 0
    out = tmp_path / "vidur.csv"
    result = cli("convert", str(unified), "--to", "vidur", "-o", str(out))
    assert result.exit_code == 0, result.output
    ours = out.read_text().splitlines()
    shipped = VIDUR_CODE.read_text().splitlines()
    assert len(ours) == 8820 and ours[0] == shipped[0] == VIDUR_HEADER
    micro = Decimal("0.000001")
    for mine, theirs in zip(ours[1:], shipped[1:], strict=False):  # vidur's first 240 rows
        s, rest = mine.split(",", 1)
        v, vrest = theirs.split(",", 1)
        assert rest == vrest
        assert len(s.partition(".")[2]) == 6  # other traces get 6 decimals...
        assert Decimal(s) == Decimal(v).quantize(micro)  # ...of the same relative seconds
    # and the export reads back to the Azure arrivals, all 8,819 of them
    assert values(out) == values(code_csv)


def test_foreign_trace_to_vidur_counts_from_its_first_row(tmp_path: Path):
    # splitwise-sim's clock starts at 0 but its first request arrives at 1 s; vidur starts at 0.
    out = roundtrip(SPLITWISE_TOY, tmp_path, "vidur")
    assert out.read_text() == (f"{VIDUR_HEADER}\n0.000000,4096,32\n2.000000,2048,8\n"
                               "3.000000,2048,16\n")


def test_azure_to_splitwise_uses_the_simulator_defaults(tmp_path: Path, conv_csv: Path):
    out = roundtrip(conv_csv, tmp_path, "splitwise")
    lines = out.read_text().splitlines()
    assert lines[:3] == [SPLITWISE_HEADER, "0,2,0,0.000000,1,374,44", "1,2,0,4.314579,1,396,109"]
    assert len(lines) == 10
    assert values(out) == values(conv_csv)


def test_vidur_to_splitwise_and_back(tmp_path: Path):
    sw = roundtrip(VIDUR_CONV, tmp_path, "splitwise")
    back = tmp_path / "again"
    back.mkdir()
    assert values(roundtrip(sw, back, "vidur")) == values(VIDUR_CONV)


@pytest.mark.parametrize("to", ["vidur", "splitwise"])
def test_writers_refuse_what_the_format_cannot_hold(tmp_path: Path, to: str):
    convert_file(VIDUR_CONV, tmp_path / "u.parquet")
    t = pq.read_table(tmp_path / "u.parquet")
    meta = pq.read_metadata(tmp_path / "u.parquet").metadata
    no_time = t.set_column(1, "arrival_us", pa.nulls(t.num_rows, pa.int64()))
    pq.write_table(no_time.replace_schema_metadata(meta), tmp_path / "nt.parquet")
    with pytest.raises(InvalidTraceError, match="needs a time for every request"):
        convert_file(tmp_path / "nt.parquet", tmp_path / "o.csv", to=to)
    no_out = t.set_column(3, "output_tokens", pa.nulls(t.num_rows, pa.int64()))
    pq.write_table(no_out.replace_schema_metadata(meta), tmp_path / "no.parquet")
    with pytest.raises(InvalidTraceError, match="needs output_tokens for every request"):
        convert_file(tmp_path / "no.parquet", tmp_path / "o.csv", to=to)
    assert not (tmp_path / "o.csv").exists() and list(tmp_path.glob(".*tmp")) == []


def test_vidur_refuses_requests_before_the_first(tmp_path: Path):
    p = write(tmp_path, "a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                 "2023-11-16 18:00:05.0,1,1\n2023-11-16 18:00:01.0,2,2\n")
    convert_file(p, tmp_path / "u.parquet")
    with pytest.raises(InvalidTraceError, match="request_id 1 arrives 4,000,000 µs before"):
        convert_file(tmp_path / "u.parquet", tmp_path / "o.csv", to="vidur")
    assert not (tmp_path / "o.csv").exists()


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "body", "line", "column", "value", "message"), [
    (VIDUR_HEADER, "0.0,1,2\n-0.5,3,4\n", 3, "arrived_at", "-0.5", "negative time"),
    (VIDUR_HEADER, "0.0,1,2\nabc,3,4\n", 3, "arrived_at", "abc", "expected a decimal number"),
    (VIDUR_HEADER, "0.0,1,2\n1.2.3,3,4\n", 3, "arrived_at", "1.2.3", "expected a decimal"),
    (VIDUR_HEADER, "0.0,1,2\n,3,4\n", 3, "arrived_at", "", "empty value"),
    (VIDUR_HEADER, "0.0,1,2\n0.5,-3,4\n", 3, "num_prefill_tokens", "-3", "negative token"),
    (VIDUR_HEADER, "0.0,1,2.5\n", 2, "num_decode_tokens", "2.5", "non-negative integer"),
    (VIDUR_HEADER, "0.0,1,2\n0.5,3\n", 3, None, "0.5,3", "expected 3 fields"),
    (SPLITWISE_HEADER, "0,2,0,1,1,4096,32\n1,2,0,nan,1,2048,8\n", 3, "arrival_timestamp",
     "nan", "expected a decimal number"),
    (SPLITWISE_HEADER, "0,2,0,-1,1,4096,32\n", 2, "arrival_timestamp", "-1", "negative time"),
    (SPLITWISE_HEADER, "0,2,0,1,1,4096,x\n", 2, "token_size", "x", "non-negative integer"),
])
def test_bad_rows_name_file_line_and_value(tmp_path: Path, header, body, line, column, value,
                                           message, cli: Cli):
    p = write(tmp_path, "bad.csv", f"{header}\n{body}")
    out = tmp_path / "bad.parquet"
    result = cli("convert", str(p), "-o", str(out))
    assert result.exit_code == 1
    first = result.output.strip().splitlines()[0]
    assert f"{p}:{line}: error:" in first and message in first
    if column:
        assert f" {column}: " in first
    assert f"(got {value!r})" in first
    assert not out.exists() and list(tmp_path.glob(".*tmp")) == []


def test_warnings_keep_the_row(tmp_path: Path, cli: Cli):
    p = write(tmp_path, "w.csv", f"{SPLITWISE_HEADER}\n0,2,0,2.5,1,10,1\n1,1,0,1.5,1,20,2\n")
    result = cli("validate", str(p))
    assert result.exit_code == 0, result.output
    assert f"{p}:3: warning: request_type: splitwise-sim runs only request_type 2" in result.output
    assert f"{p}:3: warning: arrival_timestamp: arrives before the previous row" in result.output
    assert cli("validate", str(p), "--strict").exit_code == 1
    assert llmtraces.load(p).column("arrival_us").to_pylist() == [2_500_000, 1_500_000]


def test_every_bad_value_is_counted(tmp_path: Path, cli: Cli):
    body = "".join(f"x{i},1,1\n" for i in range(50))
    p = write(tmp_path, "many.csv", f"{VIDUR_HEADER}\n{body}")
    result = cli("validate", str(p))
    assert result.exit_code == 1
    assert "... and 30 more errors of kind not-number" in result.output
    assert "50 error(s)" in result.output
