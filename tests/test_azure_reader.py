"""The Azure CSV reader on the real file, on its quirks, and on every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import llmtraces
from conftest import Cli
from llmtraces.errors import InvalidTraceError
from llmtraces.pipeline.convert import convert_file

HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode())
    return p


def convert(path: Path, tmp_path: Path, **kw) -> tuple[Path, object]:
    out = tmp_path / "out.parquet"
    rows, report = convert_file(path, out, **kw)
    return out, report


def test_real_code_file_values(code_csv: Path):
    t = llmtraces.load(code_csv)
    assert t.num_rows == 8819
    assert t.column("request_id").to_pylist() == list(range(8819))
    assert t.column("source_row").to_pylist() == list(range(8819))
    # Second row: 18:17:04.0319600 - 18:17:03.9799600
    assert t.column("arrival_us")[1].as_py() == 52_000
    assert t.column("extra").null_count == 8819  # no sub-µs digits anywhere in the real file
    arr = t.column("arrival_us").to_pylist()
    assert arr == sorted(arr) and len(set(arr)) == 8819  # sorted, no repeated timestamps
    assert sum(t.column("input_tokens").to_pylist()) == 18_059_974


def test_crlf_and_missing_final_newline_read_the_same(tmp_path: Path, code_csv: Path):
    raw = code_csv.read_bytes()
    assert raw.count(b"\r\n") == 8819 and not raw.endswith(b"\n")  # the real file's layout
    lf = tmp_path / "lf.csv"
    lf.write_bytes(raw.replace(b"\r\n", b"\n") + b"\n")
    # The real file is recognised as the published one (service "code"); the copy is not.
    real = llmtraces.load(code_csv)
    assert real.column("service")[0].as_py() == "code"
    assert llmtraces.load(lf).drop_columns(["service"]).equals(real.drop_columns(["service"]))


def test_seventh_digit_is_reported_and_kept(tmp_path: Path):
    p = write(tmp_path, "t.csv", f"{HEADER}\r\n2023-11-16 18:00:00.0000000,1,2\r\n"
                                 f"2023-11-16 18:00:00.1234567,3,4")
    out, report = convert(p, tmp_path)
    assert report.warnings == 1
    (w,) = report.problems
    assert (w.line, w.column, w.value, w.code) == (3, "TIMESTAMP", "2023-11-16 18:00:00.1234567",
                                                   "sub-microsecond")
    t = pq.read_table(out)
    assert t.column("arrival_us").to_pylist() == [0, 123456]
    assert t.column("extra").to_pylist() == [None, json.dumps(
        {"TIMESTAMP": "2023-11-16 18:00:00.1234567"})]
    with pytest.raises(InvalidTraceError, match=r"t.csv:3: warning: TIMESTAMP: digits finer"):
        convert(p, tmp_path / "strict", strict=True)
    assert not (tmp_path / "strict").exists() or not any((tmp_path / "strict").iterdir())


def test_all_azure_timestamp_forms(tmp_path: Path):
    # 2024: +00:00 with the fraction omitted when zero; 2025: T, ms, Z, and NumImages.
    p = write(tmp_path, "t.csv", f"{HEADER}\n2024-05-12 00:00:00+00:00,5,1\n"
                                 "2024-05-12 00:00:00.001163+00:00,6,2\n"
                                 "2024-05-12 02:00:01.5+02:00,7,3\n")
    out, _ = convert(p, tmp_path)
    t = pq.read_table(out)
    assert t.column("arrival_us").to_pylist() == [0, 1163, 1_500_000]
    meta = json.loads(pq.read_metadata(out).metadata[b"llmtraces.trace"])
    assert meta["time"]["zone_assumed"] is False  # every row carried its zone
    m = write(tmp_path, "m.csv", "TIMESTAMP,NumImages,ContextTokens,GeneratedTokens\n"
                                 "2024-10-15T12:00:00.269Z,0,100,10\n"
                                 "2024-10-15T12:00:01.000Z,3,2000,20\n")
    t = llmtraces.load(m)
    assert t.column("arrival_us").to_pylist() == [0, 731_000]
    assert t.column("num_images").to_pylist() == [0, 3]


def test_unknown_columns_go_to_extra(tmp_path: Path):
    p = write(tmp_path, "t.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                 "2023-11-16 18:00:00.0000000,1,2\n")
    assert llmtraces.load(p).column("extra")[0].as_py() is None


@pytest.mark.parametrize(("body", "line", "column", "value", "message"), [
    ("2023-11-16 18:00:00.0,12,3\n2023-11-16 18:00:01.0,-4,3\n", 3, "ContextTokens", "-4",
     "negative token count"),
    ("2023-11-16 18:00:00.0,12,abc\n", 2, "GeneratedTokens", "abc",
     "expected a non-negative integer"),
    ("2023-11-16 18:00:00.0,12,\n", 2, "GeneratedTokens", "", "empty value"),
    ("2023-11-16 18:00:00.0,1,1\n2023-13-16 18:00:00.0,1,1\n", 3, "TIMESTAMP",
     "2023-13-16 18:00:00.0", "expected YYYY-MM-DD"),
    ("2023-11-16 18:00:00.0,1,1\n16/11/2023 18:00,1,1\n", 3, "TIMESTAMP", "16/11/2023 18:00",
     "expected YYYY-MM-DD"),
    ("2023-11-16 18:00:00.0,1,1\n2023-11-16 18:00:01.0,1,1\n2023-11-16 18:0", 4, None,
     "2023-11-16 18:0", "expected 3 fields"),
    ("2023-11-16 18:00:00.0,1,1\n\n2023-11-16 18:00:01.0,1,1\n", 3, "TIMESTAMP", "",
     "expected YYYY-MM-DD"),  # a blank line is a row of empty fields
    ("2023-11-16 18:00:00.0,1,1,9\n", 2, None, "2023-11-16 18:00:00.0,1,1,9",
     "expected 3 fields"),
])
def test_bad_rows_name_file_line_and_value(tmp_path: Path, body, line, column, value, message,
                                           cli: Cli):
    p = write(tmp_path, "bad.csv", f"{HEADER}\n{body}")
    out = tmp_path / "bad.parquet"
    result = cli("convert", str(p), "-o", str(out))
    assert result.exit_code == 1
    first = result.output.strip().splitlines()[0]
    assert f"{p}:{line}: error:" in first and message in first
    if column:
        assert f" {column}: " in first
    assert f"(got {value!r})" in first
    assert not out.exists() and list(tmp_path.glob("*.parquet")) == []
    assert list(tmp_path.glob(".*tmp")) == []
    report = json.loads(cli("validate", str(p), "--json").output)
    assert report["errors"] >= 1 and report["problems"][0]["line"] == line


def test_wrong_header(tmp_path: Path, cli: Cli):
    p = write(tmp_path, "h.csv", "TIMESTAMP,Context,GeneratedTokens\n2023-11-16 18:00:00,1,1\n")
    result = cli("convert", str(p), "-o", str(tmp_path / "o.parquet"))
    assert result.exit_code == 1
    assert f"{p}:1: unrecognised header" in result.output
    assert not (tmp_path / "o.parquet").exists()


def test_every_bad_value_is_counted(tmp_path: Path, cli: Cli):
    rows = "".join(f"2023-11-16 18:00:{i % 60:02d}.0,x{i},1\n" for i in range(50))
    p = write(tmp_path, "many.csv", f"{HEADER}\n{rows}")
    result = cli("validate", str(p))
    assert result.exit_code == 1
    assert "... and 30 more errors of kind not-integer" in result.output
    assert "50 error(s)" in result.output


def test_out_of_order_arrivals_warn_and_keep_row_order(tmp_path: Path, cli: Cli):
    p = write(tmp_path, "o.csv", f"{HEADER}\n2023-11-16 18:00:05.0,1,1\n"
                                 "2023-11-16 18:00:01.0,2,2\n")
    t = llmtraces.load(p)
    assert t.column("arrival_us").to_pylist() == [0, -4_000_000]
    assert t.column("input_tokens").to_pylist() == [1, 2]
    result = cli("validate", str(p))
    assert result.exit_code == 0 and "o.csv:3: warning: TIMESTAMP: arrives before" in result.output
    assert cli("validate", str(p), "--strict").exit_code == 1


def test_truncated_copy_of_published_file_is_refused(tmp_path: Path, code_csv: Path, cli: Cli):
    raw = code_csv.read_bytes()
    cut = raw[: raw.rindex(b"\r\n", 0, 200_000)]  # cut at a row boundary: every row parses
    p = tmp_path / "AzureLLMInferenceTrace_code.csv"
    p.write_bytes(cut)
    out = tmp_path / "o.parquet"
    result = cli("convert", str(p), "-o", str(out))
    assert result.exit_code == 1
    assert "not the published azure-llm-2023 code file" in result.output
    assert "320,117" in result.output and not out.exists()


def test_existing_output_survives_a_failed_conversion(tmp_path: Path, code_csv: Path):
    out = tmp_path / "o.parquet"
    convert_file(code_csv, out)
    before = out.read_bytes()
    bad = write(tmp_path, "bad.csv", f"{HEADER}\n2023-11-16 18:00:00.0,1,1\nnot,a,row\n")
    with pytest.raises(InvalidTraceError):
        convert_file(bad, out)
    assert out.read_bytes() == before


def test_gzip_native_file_streams(tmp_path: Path, code_csv: Path):
    import gzip

    gz = tmp_path / "code.csv.gz"
    gz.write_bytes(gzip.compress(code_csv.read_bytes()))
    t = llmtraces.load(gz)
    assert t.num_rows == 8819 and t.column("output_tokens")[-1].as_py() == 173


def test_fast_and_exact_timestamp_paths_agree(code_csv: Path):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from llmtraces.text.timestamps import _parse_exact, _parse_uniform

    real = pcsv.read_csv(code_csv, convert_options=pcsv.ConvertOptions(
        column_types={"TIMESTAMP": pa.string()})).column("TIMESTAMP").combine_chunks()
    samples = [
        real,
        pa.array(["2024-05-12 00:00:00+00:00", "2024-05-12 00:00:00.001163+00:00",
                  "2024-05-12 02:00:01.5+02:00", "2024-05-11 23:00:00-01:00"]),
        pa.array(["2024-10-15T12:00:00.269Z", "2024-10-15T12:00:01.000Z"]),
        pa.array(["2023-11-16 18:00:00.1234567", "2023-11-16 18:00:00.000000001"]),
    ]
    for raw in samples:
        for offset in (0, 480):
            fast, exact = _parse_uniform(raw, offset), _parse_exact(raw, offset)
            assert fast is not None
            for name in ("epoch_us", "invalid", "sub_us", "naive"):
                assert getattr(fast, name).equals(getattr(exact, name)), name
    # Mixed styles or bad values leave the fast path to the exact one.
    assert _parse_uniform(pa.array(["2024-05-12 00:00:00+00:00", "2023-11-16 18:00:00"]), 0) \
        is None
    assert _parse_uniform(pa.array(["2023-11-16 18:00:00", "2023-11-16"]), 0) is None


def test_header_only_files_are_empty_traces(tmp_path: Path):
    for text in (HEADER, HEADER + "\r\n", HEADER + "\n"):
        p = write(tmp_path, "h.csv", text)
        assert llmtraces.load(p).num_rows == 0
