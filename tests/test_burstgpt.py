"""BurstGPT: registry entry, reader (both layouts), writer, round trip, bad input, fetch.

No real BurstGPT bytes are available offline; the fixtures are written in the exact native
layouts, with the real first rows that SOURCES.md quotes (see fixtures/burstgpt/README.md).
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from httpserver import LoopbackServer, Route
from hypothesis import example, given, settings
from hypothesis import strategies as st

import llmtraces
from conftest import FIXTURES, REPO, Cli, build_registry, roundtrip
from llmtraces.errors import InvalidTraceError
from llmtraces.formats import get_format, get_writer, sniff
from llmtraces.formats.burstgpt import format_seconds, parse_seconds
from llmtraces.pipeline.convert import convert_file
from llmtraces.registry import load_registry
from llmtraces.report import Report
from llmtraces.schema import TraceStream, make_batch
from llmtraces.text import ReadContext

HEAD1 = FIXTURES / "burstgpt" / "head_1.csv"
HEAD3 = FIXTURES / "burstgpt" / "head_3.csv"
H6 = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"
H8 = ("Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,Total tokens,"
      "Log Type")
S1 = "1722ac82-0a46-4bf0-aa08-89794e7a2b3f"
S2 = "d5983bf9-4b48-497b-892b-a58995247443"


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode())
    return p


def meta_of(parquet: Path) -> dict:
    return json.loads(pq.read_metadata(parquet).metadata[b"llmtraces.trace"])


# --- registry ---------------------------------------------------------------------------


def test_registry_entry_pins_every_release_file():
    src = load_registry(REPO / "registry")["burstgpt"]
    assert src.format == "burstgpt-csv" and get_format(src.format).name == "burstgpt-csv"
    files = {tid: t.file for tid, t in src.traces.items()}
    assert {tid: (f.name, f.size, f.sha256, f.rows) for tid, f in files.items()} == {
        "1": ("BurstGPT_1.csv", 52_283_111,
              "4bb3783693d0a435686fbfc885615d2349bd067239079fa4b749f2e679e12122", None),
        "2": ("BurstGPT_2.csv", 144_819_209,
              "44bf5942b03fca42c01a226a545ad3a750ec62688faecd67b6831c56a8928bf7", None),
        "3": ("BurstGPT_3.csv", 231_682_327,
              "2299986a07388aa303ec2c41d1131e756db650a39ed6ef9dfe7cc3d7f9a43b8f", 5_344_021),
        "without_fails_1": ("BurstGPT_without_fails_1.csv", 51_429_517,
                            "a4d068a7113ec0290e74063a1b3447dc6001a30e4298eb313581b71006dda1f4",
                            None),
        "without_fails_2": ("BurstGPT_without_fails_2.csv", 142_376_815,
                            "56193aa9b2bb26128ded43d2d29a960df6bf5af062bcfc9b005f3fcaa4e6e501",
                            3_784_213),
        "without_fails_3": ("BurstGPT_without_fails_3.csv", 217_312_026, None, 4_956_058),
    }
    base = "https://github.com/HPMLL/BurstGPT/releases/download/"
    for tid, f in files.items():
        assert f.url == f"{base}v2.0/{f.name}"
        # v1.1 only ever had files 1 and 2 (and their without_fails variants).
        assert f.mirrors == ((f"{base}v1.1/{f.name}",) if tid[-1] in "12" else ())
        assert f.md5 is None and f.git_blob is None and not f.bundled
        assert (f.unverified is not None) == (tid == "without_fails_3")
    assert all(t.service is None for t in src.traces.values())  # Log Type says it per row
    assert (src.licence.spdx, src.licence.redistributable, src.licence.commercial_use) == (
        "CC-BY-4.0", True, True)
    assert src.citation.doi == "10.1145/3711896.3737413"
    assert src.citation.bibtex.startswith("@inproceedings{BurstGPT,")
    assert "KDD '25" in src.citation.bibtex
    t = src.time
    assert (t.kind, t.zone, t.zone_assumed, t.resolution) == ("relative", "UTC+8", False, "1s")
    assert "day 0" in t.origin and "not the first row" in t.origin
    text = " ".join(src.quirks)
    for word in ("inserted", "row[2]", "Response tokens = 0", "fabricated", "empty", "Total"):
        assert word in text


# --- reader -------------------------------------------------------------------------------


def test_six_column_file_values(tmp_path: Path):
    out = tmp_path / "h1.parquet"
    rows, report = convert_file(HEAD1, out)
    assert rows == 8 and report.errors == 0 and report.warnings == 0
    t = pq.read_table(out)
    assert t.column("request_id").to_pylist() == list(range(8))
    assert t.column("source_row").to_pylist() == list(range(8))
    # Seconds since day 0 as written, not rebased: the first request is at 5 s.
    assert t.column("arrival_us").to_pylist() == [
        5_000_000, 45_000_000, 118_000_000, 130_000_000, 130_000_000, 187_000_000, 201_000_000,
        256_000_000]
    assert t.column("model").to_pylist() == ["ChatGPT", "ChatGPT", "GPT-4", "ChatGPT",
                                             "ChatGPT", "GPT-4", "ChatGPT", "ChatGPT"]
    assert t.column("input_tokens").to_pylist() == [472, 1087, 417, 1203, 88, 2950, 615, 34]
    assert t.column("output_tokens").to_pylist() == [18, 230, 276, 0, 312, 402, 0, 57]
    assert t.column("failed").to_pylist() == [False, False, False, True, False, False, True,
                                              False]
    assert t.column("service").to_pylist() == [
        "conversation", "conversation", "conversation", "conversation", "api", "api", "api",
        "conversation"]
    for col in ("session_id", "e2e_latency_us", "extra", "turn", "num_images", "hash_ids"):
        assert t.column(col).null_count == 8, col
    meta = meta_of(out)
    assert meta["native_format"] == "burstgpt-csv" and meta["time_origin"] is None
    assert meta["source"] is None  # not a published file name: converted as an unknown file
    assert meta["time"]["kind"] == "relative" and meta["time"]["zone"] == "UTC+8"
    assert meta["native_layout"] == {"columns": H6.split(","), "newline": "\n",
                                     "final_newline": True, "timestamp_form": {"form": "int"}}


def test_eight_column_file_values(tmp_path: Path):
    out = tmp_path / "h3.parquet"
    rows, report = convert_file(HEAD3, out)
    assert rows == 6 and report.errors == 0 and report.warnings == 0
    t = pq.read_table(out)
    assert t.column("arrival_us").to_pylist() == [
        19_440_110_000_000, 19_440_161_000_000, 19_440_161_000_000, 19_440_175_000_000,
        19_440_190_000_000, 19_440_203_000_000]
    assert t.column("session_id").to_pylist() == [S1, S2, None, None, S1, None]
    assert t.column("e2e_latency_us").to_pylist() == [
        43_000_000, 2_000_000, 8_000_000, 3_000_000, 17_000_000, 5_000_000]
    assert t.column("model").to_pylist() == ["GPT-4", "ChatGPT", "ChatGPT", "ChatGPT", "GPT-4",
                                             "GPT-4"]
    assert t.column("input_tokens").to_pylist() == [906, 36, 1520, 612, 1402, 95]
    assert t.column("output_tokens").to_pylist() == [446, 29, 210, 0, 388, 140]
    assert t.column("failed").to_pylist() == [False, False, False, True, False, False]
    assert t.column("service").to_pylist() == ["conversation", "conversation", "api", "api",
                                               "conversation", "api"]
    # Session ID is empty exactly on the API-log rows.
    api = [s == "api" for s in t.column("service").to_pylist()]
    assert [s is None for s in t.column("session_id").to_pylist()] == api
    assert t.column("extra").null_count == 6
    layout = meta_of(out)["native_layout"]
    assert layout["columns"] == H8.split(",")
    assert layout["timestamp_form"] == {"form": "float"}  # 19440110.0
    assert layout["elapsed_form"] == {"form": "int"}  # 43


def test_columns_are_found_by_name_not_position(tmp_path: Path):
    rows = list(csv.reader(io.StringIO(HEAD3.read_text())))
    order = [7, 3, 0, 6, 5, 4, 2, 1]  # every column moved
    moved = write(tmp_path, "moved.csv",
                  "".join(",".join(r[i] for i in order) + "\n" for r in rows))
    assert moved.read_text().startswith("Log Type,Model,Timestamp,Total tokens,")
    assert llmtraces.load(moved).equals(llmtraces.load(HEAD3))
    # the file's own order comes back
    assert roundtrip(moved, tmp_path, "burstgpt").read_bytes() == moved.read_bytes()


def test_unknown_columns_go_to_extra_and_come_back(tmp_path: Path):
    text = f"{H6},Region\n5,ChatGPT,472,18,490,Conversation log,HK\n45,GPT-4,1,2,3,API log,\n"
    p = write(tmp_path, "x.csv", text)
    t = llmtraces.load(p)
    assert t.column("extra").to_pylist() == [json.dumps({"Region": "HK"}),
                                             json.dumps({"Region": ""})]
    assert t.column("input_tokens").to_pylist() == [472, 1]
    assert roundtrip(p, tmp_path, "burstgpt").read_bytes() == text.encode()


def test_decimal_seconds_are_exact():
    raw = pa.array(["0", "5", "19440110.0", "19440110.000001", "0.1234565", "0.1234575",
                    "1.0000005000001", "999999999999.999999", "2.5"])
    s = parse_seconds(raw)
    assert s.us.to_pylist() == [0, 5_000_000, 19_440_110_000_000, 19_440_110_000_001,
                                123_456, 123_458, 1_000_001, 999_999_999_999_999_999,
                                2_500_000]  # sub-µs digits: round half to even
    assert s.sub_us.to_pylist() == [False] * 4 + [True] * 3 + [False] * 2
    assert s.ok.to_pylist() == [True] * 9
    assert parse_seconds(pa.array(["-5", "5s", "", "1e3", ".5", "5."])).ok.to_pylist() == [
        False] * 6
    us = pa.array([0, 5_000_000, 2_500_000, 19_440_110_000_001], pa.int64())
    assert format_seconds(us, {"form": "int"}).to_pylist() == [
        "0", "5", "2.5", "19440110.000001"]
    assert format_seconds(us, {"form": "float"}).to_pylist() == [
        "0.0", "5.0", "2.5", "19440110.000001"]
    assert format_seconds(us, {"form": "fixed", "digits": 3}).to_pylist() == [
        "0.000", "5.000", "2.500", "19440110.000001"]


SPELLINGS = ["0", "5", "05", "00", "10", "123456789012", "1234567890123", "0.0", "5.0", "5.00",
             "5.5", "5.50", "05.5", "0.5", "00.5", "19440110.0", "19440110.25", "2.125",
             "2.1250", "1.000001", "10.0", "100.10", "7.000", "x", "", "-1", ".5", "5.", "1e3",
             "1.2.3", " 5", "٣"]
FINE = ["1.1234567", "1.1234560", "0.0000005", "0.0000015", "1.00000050001", "2.9999995"]


@pytest.mark.parametrize("samples", [
    ["5", "45", "118"], ["05", "0", "7"],  # the `5` fast path
    ["19440110.0", "0.0", "05.0"],  # the `5.0` fast path
    ["0.496", "1.21", "19440110.25", "000000000001.5", "7.000", "5.0"],  # the float64 path
    SPELLINGS,  # the general decimal path
    SPELLINGS + FINE,  # the exact path (digits finer than 1 µs)
], ids=["int", "int-lead", "point-zero", "float", "general", "exact"])
def test_every_parse_path_is_exact_and_knows_what_it_cannot_rebuild(samples: list[str]):
    from decimal import ROUND_HALF_EVEN, Decimal

    from llmtraces.formats.burstgpt import _differs, _respelled

    raw = pa.array(samples, pa.string())
    t = parse_seconds(raw)
    for text, us, ok in zip(samples, t.us.to_pylist(), t.ok.to_pylist(), strict=True):
        assert ok == (re.fullmatch(r"[0-9]{1,12}(\.[0-9]+)?", text, re.ASCII) is not None), text
        if ok:
            exact = (Decimal(text) * 10**6).to_integral_value(ROUND_HALF_EVEN)
            assert us == int(exact), text
    for form in ({"form": "int"}, {"form": "float"}, {"form": "fixed", "digits": 3}):
        truth = _differs(t.ok, format_seconds(t.us, form), raw)
        assert _respelled(raw, t, form).to_pylist() == truth.to_pylist(), form


def _reference_us(text: str) -> int | None:
    """µs of a plain decimal by Decimal, ties half to even; None where it is no such value."""
    from decimal import ROUND_HALF_EVEN, Decimal

    if re.fullmatch(r"[0-9]{1,12}(\.[0-9]+)?", text, re.ASCII) is None:
        return None
    return int((Decimal(text) * 10**6).to_integral_value(ROUND_HALF_EVEN))


#: Decimals the float64 path may take: 1-12 whole digits (leading zeros too), 1-6 decimals.
_PLAIN = st.builds(lambda w, f: f"{w}.{f}", st.text("0123456789", min_size=1, max_size=12),
                   st.text("0123456789", min_size=1, max_size=6))
#: Anything else a seconds cell may hold: integers, many digits, exponents, signs, spaces,
#: a lone point, empty.
_ODD = st.one_of(
    st.sampled_from(["", ".", ".5", "5.", "0.", "inf", "nan", "1/2", "1_0", "\u0663.5"]),
    st.builds(lambda w, f: f"{w}.{f}", st.text("0123456789", min_size=0, max_size=14),
              st.text("0123456789", min_size=0, max_size=12)),
    st.text("0123456789", min_size=0, max_size=14),
    st.builds(lambda m, e: f"{m}e{e}", _PLAIN, st.integers(-8, 12)),
    st.builds(lambda sign, v: sign + v, st.sampled_from(["-", "+", " "]), _PLAIN),
    st.builds(lambda v: v + " ", _PLAIN))
_SEEDS = settings(derandomize=True, database=None, deadline=None, max_examples=300)


@_SEEDS
@example(values=["1.5"], odd=".5", at=0, start=1)  # the edges each check stands for
@example(values=["1.5"], odd="5.", at=1, start=0)
@example(values=["1.5"], odd="1.1234567", at=0, start=0)
@example(values=["1.5"], odd="1.1234565", at=0, start=0)
@example(values=["1.5"], odd="1000000000.5", at=0, start=0)
@example(values=["1.5"], odd="0000000000001.5", at=0, start=0)
@example(values=["1.5"], odd="+1.5", at=0, start=0)
@given(values=st.lists(_PLAIN, min_size=1, max_size=30),
       odd=st.one_of(st.none(), _ODD, st.tuples(_ODD, _ODD)), at=st.integers(0, 30),
       start=st.integers(0, 3))
def test_the_float_path_gives_what_the_exact_path_gives(values: list[str],
                                                        odd: str | tuple[str, str] | None,
                                                        at: int, start: int):
    from llmtraces.text.seconds import _parse_float, expand_exponents, parse_exact

    if odd is not None:  # one odd value (or two) among plain ones: the whole block is judged
        values[at % len(values):at % len(values)] = [odd] if isinstance(odd, str) else odd
    raw = pa.array(["0.5"] * start + values, pa.string()).slice(start)  # offsets not at 0
    exact = parse_exact(raw)
    truth = [_reference_us(v) for v in values]
    assert exact.ok.to_pylist() == [us is not None for us in truth]
    assert [us if ok else None for us, ok in zip(exact.us.to_pylist(), exact.ok.to_pylist(),
                                                 strict=True)] == truth
    fast = _parse_float(raw)
    if fast is not None:  # taken only when every value is one it reads exactly
        assert fast.to_pylist() == exact.us.to_pylist()
        assert all(exact.ok.to_pylist()) and not any(exact.sub_us.to_pylist())
    got = parse_seconds(raw)
    for name in ("us", "ok", "sub_us"):
        assert getattr(got, name).to_pylist() == getattr(exact, name).to_pylist(), name
    expanded = parse_seconds(raw, exponents=True)
    again = parse_exact(expand_exponents(raw))
    for name in ("us", "ok", "sub_us"):
        assert getattr(expanded, name).to_pylist() == getattr(again, name).to_pylist(), name


@pytest.mark.parametrize(("values", "taken"), [
    (["0.496", "1.21", "4.068"], True),
    (["999999999.999999", "000000000001.5", "0.000001"], True),
    (["1000000000.5"], False),  # 1e9 s and up: past what float64 holds to the µs
    (["999999999999.999999"], False),
    (["1.1234567"], False),  # digits finer than 1 µs: rounded by the exact path
    (["5.5", "6"], False), ([".5"], False), (["5."], False), ([" 1.5"], False),
    (["-1.5"], False), (["1e3"], False), (["", ""], False), (["1.5", None], False),
])
def test_the_float_path_declines_what_it_cannot_read_exactly(values: list[str | None],
                                                             taken: bool):
    from llmtraces.text.seconds import _parse_float, parse_exact

    raw = pa.array(values, pa.string())
    fast = _parse_float(raw)
    assert (fast is not None) == taken
    if fast is not None:
        assert fast.to_pylist() == parse_exact(raw).us.to_pylist()


def test_sub_microsecond_digits_warn_and_are_kept(tmp_path: Path, cli: Cli):
    text = (f"{H6}\n0.1234565,ChatGPT,1,2,3,API log\n0.1234575,ChatGPT,1,2,3,API log\n"
            "7.25,GPT-4,4,5,9,API log\n")
    p = write(tmp_path, "sub.csv", text)
    out = tmp_path / "sub.parquet"
    _, report = convert_file(p, out)
    assert [(w.code, w.line, w.value) for w in report.problems] == [
        ("sub-microsecond", 2, "0.1234565"), ("sub-microsecond", 3, "0.1234575")]
    t = pq.read_table(out)
    assert t.column("arrival_us").to_pylist() == [123_456, 123_458, 7_250_000]
    assert t.column("extra").to_pylist() == [json.dumps({"Timestamp": "0.1234565"}),
                                             json.dumps({"Timestamp": "0.1234575"}), None]
    assert roundtrip(p, tmp_path, "burstgpt").read_bytes() == text.encode()
    assert cli("validate", str(p), "--strict").exit_code == 1


def test_unknown_log_type_is_kept_verbatim_with_a_warning(tmp_path: Path, cli: Cli):
    text = (f"{H6}\n5,ChatGPT,1,2,3,Batch log\n6,ChatGPT,1,2,3,conversation\n"
            "7,ChatGPT,1,2,3,API log\n")
    p = write(tmp_path, "lt.csv", text)
    t = llmtraces.load(p)
    assert t.column("service").to_pylist() == ["Batch log", "conversation", "api"]
    # "conversation" as written would come back as "Conversation log": the raw value is kept.
    assert t.column("extra").to_pylist() == [None, json.dumps({"Log Type": "conversation"}),
                                             None]
    result = cli("validate", str(p))
    assert result.exit_code == 0, result.output
    assert f"{p}:2: warning: Log Type: expected 'Conversation log' or 'API log'" in \
        result.output and "(got 'Batch log')" in result.output
    assert f"{p}:3: warning: Log Type:" in result.output
    assert cli("validate", str(p), "--strict").exit_code == 1
    assert roundtrip(p, tmp_path, "burstgpt").read_bytes() == text.encode()


# --- round trip ---------------------------------------------------------------------------


def _variants() -> list[tuple[str, bytes]]:
    out = []
    for fixture in (HEAD1, HEAD3):
        lf = fixture.read_bytes()
        crlf = lf.replace(b"\n", b"\r\n")
        out += [(f"{fixture.stem}-lf", lf), (f"{fixture.stem}-crlf", crlf),
                (f"{fixture.stem}-lf-no-final-newline", lf[:-1]),
                (f"{fixture.stem}-crlf-no-final-newline", crlf[:-2])]
    quirky = (  # spellings the reader must keep to write the file back exactly
        f"{H8}\r\n"
        "5.000,,0.500,ChatGPT,007,0,7,API log\r\n"  # fixed 3 digits, leading zeros
        "6.250,s-1,12.125,GPT-4,1,2,3,Conversation log\r\n"
        "7.5,s-1,,GPT-4,1,2,03,Conversation log\r\n"  # 1 digit in a 3-digit file; no latency
        "8,,1,,4,4,8,API log")  # no fraction; no model
    out.append(("quirky-spellings", quirky.encode()))
    return out


@pytest.mark.parametrize(("name", "data"), _variants(), ids=[n for n, _ in _variants()])
def test_round_trip_is_byte_identical(tmp_path: Path, name: str, data: bytes):
    native = tmp_path / "native.csv"
    native.write_bytes(data)
    assert roundtrip(native, tmp_path, "burstgpt").read_bytes() == data
    direct = tmp_path / "direct.csv"  # native -> native, no Parquet in between
    convert_file(native, direct, to="burstgpt")
    assert direct.read_bytes() == data


def test_crlf_and_final_newline_read_the_same(tmp_path: Path):
    lf = llmtraces.load(HEAD3)
    data = HEAD3.read_bytes()
    for i, variant in enumerate((data.replace(b"\n", b"\r\n"), data[:-1])):
        p = tmp_path / f"v{i}.csv"
        p.write_bytes(variant)
        assert llmtraces.load(p).equals(lf)


# --- bad input ----------------------------------------------------------------------------


GOOD6 = "5,ChatGPT,472,18,490,Conversation log\n"
GOOD8 = f"19440110.0,{S1},43,GPT-4,906,446,1352,Conversation log\n"


@pytest.mark.parametrize(("header", "body", "line", "column", "value", "message"), [
    (H6, GOOD6 + "45,ChatGPT,1087,230,1318,Conversation log\n", 3, "Total tokens", "1318",
     "Total tokens must equal Request tokens + Response tokens = 1317"),
    (H6, GOOD6 + "45,ChatGPT,-1087,230,1317,Conversation log\n", 3, "Request tokens", "-1087",
     "negative token count"),
    (H6, GOOD6 + "45,ChatGPT,1087,many,1317,Conversation log\n", 3, "Response tokens", "many",
     "expected a non-negative integer"),
    (H6, GOOD6 + "45,ChatGPT,1087,230,,Conversation log\n", 3, "Total tokens", "",
     "empty value"),
    (H6, GOOD6 + "45s,ChatGPT,1087,230,1317,Conversation log\n", 3, "Timestamp", "45s",
     "expected non-negative seconds"),
    (H6, GOOD6 + "-45,ChatGPT,1087,230,1317,Conversation log\n", 3, "Timestamp", "-45",
     "negative seconds"),
    (H6, GOOD6 + ",ChatGPT,1087,230,1317,Conversation log\n", 3, "Timestamp", "",
     "empty value; expected seconds"),
    (H8, GOOD8 + f"19440161.0,{S2},2s,ChatGPT,36,29,65,Conversation log\n", 3, "Elapsed time",
     "2s", "expected non-negative seconds"),
    (H8, GOOD8 + f"19440161.0,{S2},2,ChatGPT,36,29,66,Conversation log\n", 3, "Total tokens",
     "66", "= 65"),
    (H6, GOOD6 + "45,ChatGPT,1087,230,1317\n", 3, None, "45,ChatGPT,1087,230,1317",
     "expected 6 fields"),
])
def test_bad_rows_name_file_line_and_value(tmp_path: Path, header, body, line, column, value,
                                           message, cli: Cli):
    p = write(tmp_path, "bad.csv", f"{header}\n{body}")
    out = tmp_path / "bad.parquet"
    result = cli("convert", str(p), "-o", str(out))
    assert result.exit_code == 1
    first = result.output.strip().splitlines()[0]
    assert f"{p}:{line}: error:" in first and message in first, first
    if column:
        assert f" {column}: " in first
    assert f"(got {value!r})" in first
    assert not out.exists() and list(tmp_path.glob(".*tmp")) == []
    report = json.loads(cli("validate", str(p), "--json").output)
    assert report["errors"] == 1 and report["problems"][0]["line"] == line


def test_failed_export_leaves_no_file(tmp_path: Path, cli: Cli):
    p = write(tmp_path, "bad.csv", f"{H6}\n{GOOD6}45,ChatGPT,1,1,3,API log\n")
    out = tmp_path / "o.csv"
    result = cli("convert", str(p), "--to", "burstgpt", "-o", str(out))
    assert result.exit_code == 1 and "= 2" in result.output
    assert not out.exists() and list(tmp_path.glob(".*tmp")) == []


def test_lines_are_exact_across_blocks(tmp_path: Path):
    rows = [f"{10 + i},ChatGPT,{i},1,{i + 1},API log\n" for i in range(200)]
    rows[150] = "160,ChatGPT,150,1,999,API log\n"
    p = write(tmp_path, "many.csv", H6 + "\n" + "".join(rows))
    fmt = get_format("burstgpt-csv")
    small = ReadContext(p, Report(), batch_bytes=512)  # many blocks of ~20 rows
    batches = list(fmt.read(small))
    assert len(batches) > 5
    assert [(e.line, e.value) for e in small.report.problems] == [(152, "999")]
    big = ReadContext(p, Report())
    assert pa.Table.from_batches(batches).equals(pa.Table.from_batches(list(fmt.read(big))))


def test_direct_export_follows_forms_learnt_in_later_blocks(tmp_path: Path):
    # The first blocks have no Elapsed time at all; its spelling (1.0, 1.5) shows up later.
    rows = [f"{100 + i}.0,,,ChatGPT,1,1,2,API log\n" for i in range(60)]
    rows += [f"{200 + i}.0,s{i},{i // 2}.{5 * (i % 2)},GPT-4,3,0,3,Conversation log\n"
             for i in range(60)]
    text = H8 + "\n" + "".join(rows)
    p = write(tmp_path, "late.csv", text)
    ctx = ReadContext(p, Report(), batch_bytes=512, meta={"native_format": "burstgpt-csv"})
    out = tmp_path / "out.csv"
    # As `convert_file(native, out, to="burstgpt")` does: the writer sees the live metadata.
    rows_written = get_writer("burstgpt").write(
        TraceStream(get_format("burstgpt-csv").read(ctx), ctx.meta), out)
    assert rows_written == 120 and ctx.report.problems == []
    assert ctx.meta["native_layout"]["elapsed_form"] == {"form": "float"}
    assert out.read_bytes() == text.encode()


def test_fabricated_clone_is_rejected(tmp_path: Path, cli: Cli):
    # The fake: Timestamp 0,1,2,..., ChatGPT/GPT-4 alternating, every count below 100.
    rows = "".join(f"{i},{'ChatGPT' if i % 2 == 0 else 'GPT-4'},{20 + i},{30 + i},{50 + 2 * i},"
                   "Conversation log\n" for i in range(12))
    p = write(tmp_path, "BurstGPT_fake.csv", f"{H6}\n{rows}")
    out = tmp_path / "fake.parquet"
    result = cli("convert", str(p), "-o", str(out))
    assert result.exit_code == 1 and not out.exists()
    first = result.output.strip().splitlines()[0]
    assert f"{p}:2: error: Timestamp:" in first and "fabricated" in first
    assert "(got '0,1,2,3,4,5,6,7,8,9')" in first
    short = write(tmp_path, "short.csv", f"{H6}\n0,GPT-4,1,1,2,API log\n1,GPT-4,1,1,2,API log\n"
                                         "2,GPT-4,1,1,2,API log\n")
    assert "fabricated" in cli("validate", str(short)).output
    # Starting at 0 is not enough: a real-looking start with gaps is fine.
    ok = write(tmp_path, "ok.csv", f"{H6}\n0,GPT-4,1,1,2,API log\n1,GPT-4,1,1,2,API log\n"
                                   "3,GPT-4,1,1,2,API log\n")
    assert cli("validate", str(ok)).exit_code == 0


# --- conversion by path and export ---------------------------------------------------------


def test_convert_by_path_recognises_both_layouts(tmp_path: Path, cli: Cli):
    for fixture, rows in ((HEAD1, 8), (HEAD3, 6)):
        assert sniff(fixture).name == "burstgpt-csv"
        out = tmp_path / f"{fixture.stem}.parquet"
        result = cli("convert", str(fixture), "-o", str(out))
        assert result.exit_code == 0, result.output
        assert f"({rows:,} rows)" in result.output
        meta = meta_of(out)
        assert meta["native_format"] == "burstgpt-csv" and meta["rows"] == rows
        assert cli("validate", str(out)).exit_code == 0


def test_export_of_another_source_is_readable_by_position(tmp_path: Path, code_csv: Path, cli: Cli):
    unified = tmp_path / "code.parquet"
    convert_file(code_csv, unified)
    out = tmp_path / "code_burstgpt.csv"
    result = cli("convert", str(unified), "--to", "burstgpt", "-o", str(out))
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(out.open(newline="")))
    assert rows[0] == H6.split(",") and len(rows) == 8820
    # vLLM's BurstGPTDataset: input_len = int(row[2]), output_len = int(row[3]).
    assert (int(rows[1][2]), int(rows[1][3])) == (4808, 10)
    assert (int(rows[-1][2]), int(rows[-1][3])) == (549, 173)
    assert rows[1][0] == "0" and rows[2][0] == "0.052"  # relative seconds, exact
    assert rows[1][4] == "4818" and rows[1][5] == "code"  # Total; service verbatim
    assert rows[1][1] == ""  # Azure names no model
    t = llmtraces.load(out)  # and it reads back (with warnings for the Log Type "code")
    assert t.column("input_tokens").equals(pq.read_table(unified).column("input_tokens"))


def test_export_with_sessions_uses_the_eight_column_layout(tmp_path: Path):
    batch = make_batch(3, {
        "request_id": [0, 1, 2], "source_row": [0, 1, 2],
        "arrival_us": [1_500_000, 2_000_000, 2_000_001],
        "input_tokens": [10, 20, 30], "output_tokens": [5, 7, None],
        "failed": [False, True, True], "model": ["m,1", None, "GPT-4"],
        "service": ["conversation", "api", None], "session_id": ["a", None, None],
        "e2e_latency_us": [250_000, None, 3_000_000],
    })
    out = tmp_path / "s.csv"
    rows = get_writer("burstgpt").write(TraceStream(iter([batch]), {}), out)
    assert rows == 3
    assert out.read_text() == (
        f"{H8}\n"
        '1.5,a,0.25,"m,1",10,5,15,Conversation log\n'
        "2.0,,,,20,0,20,API log\n"  # failed: Response tokens 0, Total = Request
        "2.000001,,3,GPT-4,30,0,30,\n")
    t = llmtraces.load(out)
    assert t.column("model").to_pylist() == ["m,1", None, "GPT-4"]
    assert t.column("failed").to_pylist() == [False, True, True]


def test_export_refuses_what_burstgpt_cannot_hold(tmp_path: Path):
    base = {"request_id": [0], "source_row": [0], "input_tokens": [1]}
    for cols, message in (({"arrival_us": [None], "output_tokens": [1]}, "non-negative time"),
                          ({"arrival_us": [-1], "output_tokens": [1]}, "arrival_us -1"),
                          ({"arrival_us": [0], "output_tokens": [None]}, "Response tokens")):
        batch = make_batch(1, {**base, **cols})
        out = tmp_path / "x.csv"
        with pytest.raises(InvalidTraceError, match=message):
            get_writer("burstgpt").write(TraceStream(iter([batch]), {}), out)
        assert not out.exists()


# --- fetch through a mirror ---------------------------------------------------------------


@pytest.fixture()
def burstgpt_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    server: LoopbackServer) -> LoopbackServer:
    """The shipped registry with BurstGPT file 1 pinned to head_1.csv and without_fails_3
    (still unverified) sized to head_3.csv minus its failure; every URL on the loopback server."""
    reg = build_registry(tmp_path / "registry", server.url,
                         {("burstgpt", "1"): (HEAD1.read_bytes(), 8)})
    toml = reg / "burstgpt.toml"
    wf3 = without_fails(HEAD3.read_bytes())
    toml.write_text(toml.read_text().replace("size = 217312026", f"size = {len(wf3)}")
                    .replace("rows = 4956058", "rows = 5"))
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(reg))
    server.routes["/burstgpt/BurstGPT_1.csv"] = Route(HEAD1.read_bytes())
    server.routes["/burstgpt/BurstGPT_without_fails_3.csv"] = Route(wf3)
    return server


def without_fails(data: bytes) -> bytes:
    """An 8-column file without its failed requests (Response tokens 0)."""
    return b"\n".join(ln for ln in data.split(b"\n") if not ln or ln.split(b",")[5] != b"0")


def test_fetch_convert_validate_load_through_mirror(burstgpt_mirror: LoopbackServer,
                                                    home: Path, tmp_path: Path, cli: Cli):
    url = burstgpt_mirror.url
    result = cli("fetch", "burstgpt", "--trace", "1", "--mirror", url)
    assert result.exit_code == 0, result.output
    assert f"verified, from {url}/burstgpt/BurstGPT_1.csv" in result.output
    assert (home / "raw" / "burstgpt" / "BurstGPT_1.csv").read_bytes() == HEAD1.read_bytes()
    result = cli("convert", "burstgpt", "--trace", "1")
    assert result.exit_code == 0, result.output
    part = home / "parquet" / "source=burstgpt" / "trace=1" / "part-0.parquet"
    assert part.is_file()
    result = cli("validate", "burstgpt", "--trace", "1")
    assert result.exit_code == 0 and "0 error(s), 0 warning(s)" in result.output
    t = llmtraces.load("burstgpt", trace="1")
    assert t.num_rows == 8
    assert t.slice(0, 3).select(["arrival_us", "model", "input_tokens", "output_tokens",
                                 "failed", "service"]).to_pylist() == [
        {"arrival_us": 5_000_000, "model": "ChatGPT", "input_tokens": 472,
         "output_tokens": 18, "failed": False, "service": "conversation"},
        {"arrival_us": 45_000_000, "model": "ChatGPT", "input_tokens": 1087,
         "output_tokens": 230, "failed": False, "service": "conversation"},
        {"arrival_us": 118_000_000, "model": "GPT-4", "input_tokens": 417,
         "output_tokens": 276, "failed": False, "service": "conversation"}]
    assert t.column("failed").to_pylist().count(True) == 2
    meta = meta_of(part)
    assert (meta["source"], meta["trace"], meta["rows"], meta["native_verified"]) == (
        "burstgpt", "1", 8, True)
    assert meta["time"]["zone"] == "UTC+8" and meta["time_origin"] is None
    assert meta["citation"]["doi"] == "10.1145/3711896.3737413"
    assert meta["licence"]["spdx"] == "CC-BY-4.0"
    back = tmp_path / "BurstGPT_1_again.csv"
    assert cli("convert", str(part), "--to", "burstgpt", "-o", str(back)).exit_code == 0
    assert back.read_bytes() == HEAD1.read_bytes()


def test_unverified_file_is_fetched_by_size_with_a_warning(burstgpt_mirror: LoopbackServer,
                                                            cli: Cli):
    result = cli("fetch", "burstgpt", "--trace", "without_fails_3", "--mirror",
                 burstgpt_mirror.url)
    assert result.exit_code == 0, result.output
    assert "no checksum is pinned" in result.output
    t = llmtraces.load("burstgpt", trace="without_fails_3")
    assert t.num_rows == 5 and not any(t.column("failed").to_pylist())
    assert t.column("session_id").to_pylist() == [S1, S2, None, S1, None]


def test_every_bad_total_is_counted(tmp_path: Path, cli: Cli):
    rows = "".join(f"{5 + i},ChatGPT,{i},1,{i + 2},API log\n" for i in range(50))
    p = write(tmp_path, "totals.csv", f"{H6}\n{rows}")
    result = cli("validate", str(p))
    assert result.exit_code == 1
    assert "... and 30 more errors of kind total" in result.output
    assert "50 error(s)" in result.output
    # The first 20 are listed (lines 2-21), the rest only counted.
    assert f"{p}:21: error: Total tokens:" in result.output
    assert f"{p}:22: error" not in result.output
