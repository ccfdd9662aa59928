"""Errors a new user meets first: each says what is wrong, where, and what to do, in a line."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import llmtraces
from conftest import FIXTURES, SOURCE
from llmtraces.cli import main
from llmtraces.errors import LLMTracesError, NoSuchFileError, UnknownSourceError
from llmtraces.formats import all_formats, all_writers
from llmtraces.pipeline.convert import source_of
from llmtraces.report import Report

HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize("target", ["x.csv", "data/trace", "traces/x.jsonl.gz"])
@pytest.mark.parametrize("verb", ["convert", "validate"])
def test_a_missing_path_is_no_such_file(verb: str, target: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    code, out = run(verb, target)
    assert code == 1
    assert out.strip() == f"Error: no such file: {target}"


def test_a_name_that_is_no_path_is_still_an_unknown_source():
    code, out = run("convert", "no-such-source")
    assert code == 1 and "unknown source 'no-such-source'; known sources:" in out
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
def test_an_unrecognised_file_is_one_short_line(tmp_path: Path, text: str, seen: str):
    p = tmp_path / "mine.csv"
    p.write_text(text)
    code, out = run("convert", str(p), "-o", str(tmp_path / "out.parquet"))
    assert code == 1
    (line,) = out.splitlines()
    assert len(line) < 300 and str(p) in line and seen in line
    assert "`llmtraces formats`" in line
    assert not (tmp_path / "out.parquet").exists()


def test_validate_of_an_unreadable_file_says_so(tmp_path: Path):
    p = tmp_path / "mine.csv"
    p.write_text("a,b\n1,2\n")
    code, out = run("validate", str(p))
    assert code == 1
    assert out.splitlines()[-1] == "FAILED: 1 file(s) checked, 1 unreadable: 1 error(s), " \
                                   "0 warning(s)"
    assert "unrecognised header or first record 'a,b'" in out
    report = json.loads(run("validate", str(p), "--json")[1])
    assert report["unreadable"] == [str(p)] and report["checked"] == [str(p)]


def test_formats_lists_every_reader_and_writer_once():
    code, out = run("formats")
    assert code == 0
    lines = out.splitlines()
    names = [line.split()[0] for line in lines if line.startswith("  ")]
    assert names == [*sorted(all_formats()), "and",  # "and unified Parquet files (...)"
                     *sorted(w.name for w in all_writers().values())]
    for fmt in all_formats().values():
        assert any(line.split()[0] == fmt.name and line.endswith(fmt.description)
                   for line in lines if line.strip())
    assert "Export (llmtraces convert FILE --to NAME):" in lines


def test_problems_are_reported_in_file_order(tmp_path: Path):
    # Line 3 has a bad GeneratedTokens and line 4 a bad ContextTokens: the columns are
    # checked one after the other, the report still reads top to bottom.
    p = tmp_path / "t.csv"
    p.write_text(f"{HEADER}\n2023-11-16 18:00:00.0,1,1\n2023-11-16 18:00:01.0,1,x\n"
                 "2023-11-16 18:00:02.0,y,1\n")
    code, out = run("validate", str(p))
    assert code == 1
    assert [line.split(": ")[0] for line in out.splitlines()[:2]] == [f"{p}:3", f"{p}:4"]
    report = json.loads(run("validate", str(p), "--json")[1])
    assert [x["line"] for x in report["problems"]] == [3, 4]
    code, out = run("convert", str(p), "-o", str(tmp_path / "t.parquet"))
    assert code == 1 and f"Error: {p}:3: error: GeneratedTokens" in out


def test_report_keeps_file_order_across_files_and_codes():
    report = Report()
    report.error("range", "b.csv", "bad", line=9)
    report.error("range", "a.csv", "bad", line=7)
    report.warning("order", "b.csv", "late", line=2)
    report.error("checksum", "b.csv", "not the published file")
    report.error("range", "a.csv", "bad", line=3)
    assert [(p.file, p.line) for p in report.problems] == [
        ("b.csv", None), ("b.csv", 2), ("b.csv", 9), ("a.csv", 3), ("a.csv", 7)]


def test_rps_hint_gives_the_real_commands(home: Path):
    code, out = run("convert", SOURCE, "--trace", "code", "--rps", "2", "--head", "10")
    assert code == 2
    text = " ".join(out.split())  # click wraps usage errors
    part = home / "parquet" / f"source={SOURCE}" / "trace=code" / "part-0.parquet"
    assert "<home>" not in text and "<trace>" not in text
    assert f"`llmtraces convert {SOURCE} --trace code`" in text
    assert f"`llmtraces convert {part} --head 10 --rps 2.0 -o code.parquet`" in text


def test_rps_hint_without_trace_names_a_real_one(home: Path):
    code, out = run("convert", SOURCE, "--rebase", "--no-failed")
    assert code == 2
    text = " ".join(out.split())
    part = home / "parquet" / f"source={SOURCE}" / "trace=code" / "part-0.parquet"
    assert f"`llmtraces convert {part} --no-failed --rebase -o code.parquet`" in text


def test_marconi_file_by_path_carries_marconis_licence(tmp_path: Path):
    native = tmp_path / "mine.jsonl"  # renamed: known by its format, not its name
    native.write_bytes((FIXTURES / "marconi" / "lmsys_sps=0.5_nums=2.jsonl").read_bytes())
    out = tmp_path / "mine.mooncake.jsonl"
    code, text = run("convert", str(native), "--to", "mooncake", "-o", str(out))
    assert code == 0, text
    assert "licence: mine.jsonl (marconi data) is CC-BY-NC-4.0" in text
    sidecar = out.with_name(out.name + ".LICENCE.txt")
    assert "non-commercial use only" in sidecar.read_text()
    parquet = tmp_path / "mine.parquet"
    assert run("convert", str(native), "-o", str(parquet))[0] == 0
    meta = json.loads(pq.read_metadata(parquet).metadata[b"llmtraces.trace"])
    assert meta["source"] is None and meta["licence_source"] == "marconi"
    assert meta["licence"]["spdx"] == "CC-BY-NC-4.0" and meta["licence"]["redistributable"] is False
