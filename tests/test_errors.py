"""Errors a new user meets first: each says what is wrong, where, and what to do, in a line."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import llmtraces
from conftest import FIXTURES, SOURCE, Cli
from llmtraces.errors import LLMTracesError, NoSuchFileError, UnknownSourceError
from llmtraces.formats import all_formats, all_writers
from llmtraces.pipeline.convert import source_of
from llmtraces.report import Report

HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"


@pytest.mark.parametrize("target", ["x.csv", "data/trace", "traces/x.jsonl.gz"])
@pytest.mark.parametrize("verb", ["convert", "validate"])
def test_a_missing_path_is_no_such_file(verb: str, target: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch, cli: Cli):
    monkeypatch.chdir(tmp_path)
    result = cli(verb, target)
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: no such file: {target}"


def test_a_name_that_is_no_path_is_still_an_unknown_source(cli: Cli):
    result = cli("convert", "no-such-source")
    assert result.exit_code == 1
    assert "unknown source 'no-such-source'; known sources:" in result.output
    with pytest.raises(UnknownSourceError):
        source_of("no-such-source")
    with pytest.raises(NoSuchFileError, match=r"^no such file: x\.csv$"):
        source_of("x.csv")
    assert source_of(SOURCE).id == SOURCE


def test_load_of_a_missing_path_is_no_such_file(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LLMTracesError, match="no such file") as err:
        llmtraces.load("x.csv")
    assert "known sources" not in str(err.value)


@pytest.mark.parametrize(("text", "seen"), [
    ("a,b\n1,2\n", "unrecognised header or first record 'a,b'"),
    ("", "empty file"),
    ("x" * 5000 + "\n", "unrecognised header or first record 'xxx"),
])
def test_an_unrecognised_file_is_one_short_line(tmp_path: Path, text: str, seen: str, cli: Cli):
    p = tmp_path / "mine.csv"
    p.write_text(text)
    result = cli("convert", str(p), "-o", str(tmp_path / "out.parquet"))
    assert result.exit_code == 1
    (line,) = result.output.splitlines()
    assert len(line) < 300 and str(p) in line and seen in line
    assert "`llmtraces formats`" in line
    assert not (tmp_path / "out.parquet").exists()


def test_validate_of_an_unreadable_file_says_so(tmp_path: Path, cli: Cli):
    p = tmp_path / "mine.csv"
    p.write_text("a,b\n1,2\n")
    result = cli("validate", str(p))
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == \
        "FAILED: 1 file(s) checked, 1 unreadable: 1 error(s), 0 warning(s)"
    assert "unrecognised header or first record 'a,b'" in result.output
    report = json.loads(cli("validate", str(p), "--json").output)
    assert report["unreadable"] == [str(p)] and report["checked"] == [str(p)]


def test_formats_lists_every_reader_and_writer_once(cli: Cli):
    result = cli("formats")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    names = [line.split()[0] for line in lines if line.startswith("  ")]
    assert names == [*sorted(all_formats()), "and",  # "and unified Parquet files (...)"
                     *sorted(w.name for w in all_writers().values())]
    for fmt in all_formats().values():
        assert any(line.split()[0] == fmt.name and line.endswith(fmt.description)
                   for line in lines if line.strip())
    assert "Export (llmtraces convert FILE --to NAME):" in lines


def test_problems_are_reported_in_file_order(tmp_path: Path, cli: Cli):
    # Line 3 has a bad GeneratedTokens and line 4 a bad ContextTokens: the columns are
    # checked one after the other, the report still reads top to bottom.
    p = tmp_path / "t.csv"
    p.write_text(f"{HEADER}\n2023-11-16 18:00:00.0,1,1\n2023-11-16 18:00:01.0,1,x\n"
                 "2023-11-16 18:00:02.0,y,1\n")
    result = cli("validate", str(p))
    assert result.exit_code == 1
    assert [line.split(": ")[0] for line in result.output.splitlines()[:2]] == [f"{p}:3", f"{p}:4"]
    report = json.loads(cli("validate", str(p), "--json").output)
    assert [x["line"] for x in report["problems"]] == [3, 4]
    result = cli("convert", str(p), "-o", str(tmp_path / "t.parquet"))
    assert result.exit_code == 1 and f"Error: {p}:3: error: GeneratedTokens" in result.output


def test_report_keeps_file_order_across_files_and_codes():
    report = Report()
    report.error("range", "b.csv", "bad", line=9)
    report.error("range", "a.csv", "bad", line=7)
    report.warning("order", "b.csv", "late", line=2)
    report.error("checksum", "b.csv", "not the published file")
    report.error("range", "a.csv", "bad", line=3)
    assert [(p.file, p.line) for p in report.problems] == [
        ("b.csv", None), ("b.csv", 2), ("b.csv", 9), ("a.csv", 3), ("a.csv", 7)]


def test_rps_hint_gives_the_real_commands(home: Path, cli: Cli):
    result = cli("convert", SOURCE, "--trace", "code", "--rps", "2", "--head", "10")
    assert result.exit_code == 2
    text = " ".join(result.output.split())  # click wraps usage errors
    part = home / "parquet" / f"source={SOURCE}" / "trace=code" / "part-0.parquet"
    assert "<home>" not in text and "<trace>" not in text
    assert f"`llmtraces convert {SOURCE} --trace code`" in text
    assert f"`llmtraces convert {part} --head 10 --rps 2.0 -o code.parquet`" in text


def test_rps_hint_without_trace_names_a_real_one(home: Path, cli: Cli):
    result = cli("convert", SOURCE, "--rebase", "--no-failed")
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    part = home / "parquet" / f"source={SOURCE}" / "trace=code" / "part-0.parquet"
    assert f"`llmtraces convert {part} --no-failed --rebase -o code.parquet`" in text


def test_marconi_file_by_path_carries_marconis_licence(tmp_path: Path, cli: Cli):
    native = tmp_path / "mine.jsonl"  # renamed: known by its format, not its name
    native.write_bytes((FIXTURES / "marconi" / "lmsys_sps=0.5_nums=2.jsonl").read_bytes())
    out = tmp_path / "mine.mooncake.jsonl"
    result = cli("convert", str(native), "--to", "mooncake", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "licence: mine.jsonl (marconi data) is CC-BY-NC-4.0" in result.output
    sidecar = out.with_name(out.name + ".LICENCE.txt")
    assert "non-commercial use only" in sidecar.read_text()
    parquet = tmp_path / "mine.parquet"
    assert cli("convert", str(native), "-o", str(parquet)).exit_code == 0
    meta = json.loads(pq.read_metadata(parquet).metadata[b"llmtraces.trace"])
    assert meta["source"] is None and meta["licence_source"] == "marconi"
    assert meta["licence"]["spdx"] == "CC-BY-NC-4.0" and meta["licence"]["redistributable"] is False
