"""native -> unified -> native gives back the same values (and, for Azure, the same bytes)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import llmtraces
from conftest import Cli, roundtrip
from llmtraces.errors import InvalidTraceError
from llmtraces.pipeline.convert import convert_file


def test_azure_2023_real_file_comes_back_byte_for_byte(code_csv: Path, tmp_path: Path):
    back = roundtrip(code_csv, tmp_path, "azure")
    assert back.read_bytes() == code_csv.read_bytes()  # CRLF, 7 digits, no final newline


def test_azure_2023_conv_fixture_byte_for_byte(conv_csv: Path, tmp_path: Path):
    assert roundtrip(conv_csv, tmp_path, "azure").read_bytes() == conv_csv.read_bytes()


@pytest.mark.parametrize("text", [
    # Azure 2024: +00:00, fraction omitted when zero (both forms in one file), LF.
    "TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-10 00:00:00.009930+00:00,2376,1\n"
    "2024-05-10 00:00:01+00:00,10,20\n2024-05-10 00:00:01.037845+00:00,5,6\n",
    # Sub-microsecond digits are kept in extra and written back verbatim.
    "TIMESTAMP,ContextTokens,GeneratedTokens\r\n2023-11-16 18:00:00.0000000,1,2\r\n"
    "2023-11-16 18:00:00.1234567,3,4",
])
def test_azure_layouts_come_back_byte_for_byte(tmp_path: Path, text: str):
    native = tmp_path / "t.csv"
    native.write_bytes(text.encode())
    assert roundtrip(native, tmp_path, "azure").read_bytes() == text.encode()


def test_azure_2025_gzip_values_come_back(tmp_path: Path):
    text = ("TIMESTAMP,NumImages,ContextTokens,GeneratedTokens\n"
            "2024-10-15T12:00:00.269Z,0,1200,30\n2024-10-15T12:00:00.512Z,3,4100,12\n")
    native = tmp_path / "m.csv.gz"
    native.write_bytes(gzip.compress(text.encode()))
    back = roundtrip(native, tmp_path, "azure")
    assert back.read_text() == text  # written uncompressed, same text


def test_export_via_cli_and_overwrite_guard(code_csv: Path, tmp_path: Path, cli: Cli):
    unified = tmp_path / "code.parquet"
    assert cli("convert", str(code_csv), "-o", str(unified)).exit_code == 0
    out = tmp_path / "again.csv"
    result = cli("convert", str(unified), "--to", "azure", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == code_csv.read_bytes()
    result = cli("convert", str(out), "--to", "azure", "-o", str(out))
    assert result.exit_code == 1 and "would overwrite the input" in result.output


def test_trace_without_timing_cannot_be_azure(tmp_path: Path, code_csv: Path):
    t = llmtraces.load(code_csv)
    import pyarrow as pa

    no_time = t.set_column(1, "arrival_us", pa.nulls(t.num_rows, pa.int64()))
    p = tmp_path / "nt.parquet"
    convert_file(code_csv, tmp_path / "with_meta.parquet")
    meta = pq.read_metadata(tmp_path / "with_meta.parquet").metadata
    pq.write_table(no_time.replace_schema_metadata(meta), p)
    with pytest.raises(InvalidTraceError, match="needs a time for every request"):
        convert_file(p, tmp_path / "o.csv", to="azure")
    assert not (tmp_path / "o.csv").exists()
