"""Hostile native inputs end in one line naming the file (and line), never a traceback, a
crash, a hang or unbounded memory (issue 17: F1-F5, F10, F16; docs/design.md "Input limits").

Each case is the probe's reproduction, run as a user runs it: ``llmtraces convert`` (and
``validate``) on a scratch file; the output folder must stay empty.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from httpserver import LoopbackServer, Route

from conftest import FIXTURES, build_registry
from llmtraces.cli import main
from llmtraces.errors import InvalidTraceError, LLMTracesError
from llmtraces.formats import sniff
from llmtraces.formats.parquet import is_unified
from llmtraces.report import Report
from llmtraces.text import ReadContext, label_of, named
from llmtraces.text.csv import iter_csv
from llmtraces.text.jsonl import Key, iter_jsonl
from llmtraces.text.limits import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_LINE,
    deep_lines,
    json_depth,
    max_json_depth,
    max_line_bytes,
)

BURSTGPT = FIXTURES / "burstgpt" / "head_1.csv"
AZURE_2024 = FIXTURES / "azure-llm-2024" / "code_1week_head.csv"
MOONCAKE = FIXTURES / "mooncake" / "synthetic_trace.jsonl"
MARCONI = FIXTURES / "marconi" / "lmsys_sps=0.5_nums=2.jsonl"
KAVIER = FIXTURES / "marconi" / "input_marconi.csv"
RECORD = '{"timestamp": %d, "input_length": 10, "output_length": 2, "hash_ids": [1]%s}'


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(r: Result, *parts: str) -> str:
    """The run failed with exit 1 and one ``Error:`` line holding every part; no traceback."""
    assert r.exit_code == 1, r.output
    assert isinstance(r.exception, SystemExit), r.exception
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in r.output, r.output
    for part in parts:
        assert part in errors[0], errors[0]
    return errors[0]


def refused(path: Path, *parts: str) -> str:
    """``convert`` and ``validate`` both refuse ``path`` naming it; nothing is written."""
    out = path.parent / "out"
    out.mkdir(exist_ok=True)
    line = one_line_error(run("convert", path, "-o", out / "o.parquet"), str(path), *parts)
    assert list(out.iterdir()) == []
    r = run("validate", path)
    assert r.exit_code == 1 and "Traceback" not in r.output and str(path) in r.output, r.output
    return line


# --- F1: CR-only line ends -----------------------------------------------------------------------

@pytest.mark.parametrize("native", [BURSTGPT, AZURE_2024, KAVIER, MOONCAKE, MARCONI])
def test_cr_only_line_ends_are_one_line(tmp_path: Path, native: Path):
    p = tmp_path / ("cr" + native.suffix)
    p.write_bytes(native.read_bytes().replace(b"\n", b"\r"))
    assert refused(p, ":1: carriage return (CR) inside the line", "expected LF or CRLF")


def test_crlf_still_reads(tmp_path: Path):
    p = tmp_path / "crlf.csv"
    p.write_bytes(BURSTGPT.read_bytes().replace(b"\n", b"\r\n"))
    assert run("convert", p, "-o", tmp_path / "o.parquet").exit_code == 0


# --- F2: broken gzip -----------------------------------------------------------------------------

def _gz(native: Path) -> bytes:
    return gzip.compress(native.read_bytes())


@pytest.mark.parametrize("native", [BURSTGPT, AZURE_2024, KAVIER, MOONCAKE, MARCONI])
@pytest.mark.parametrize("damage", ["head-100", "cut-20", "garbage"])
def test_broken_gzip_is_one_line(tmp_path: Path, native: Path, damage: str):
    data = _gz(native)
    data = {"head-100": data[:100], "cut-20": data[:-20], "garbage": data + b"GARBAGE\n"}[damage]
    p = tmp_path / f"t{native.suffix}.gz"
    p.write_bytes(data)
    refused(p, "corrupt or truncated gzip data", "gzip -t")


def test_probe_azure_2024_truncated_is_not_a_bare_abort(tmp_path: Path):
    p = tmp_path / "t.csv.gz"
    p.write_bytes(_gz(AZURE_2024)[:100])
    line = refused(p, "corrupt or truncated gzip data")
    assert "Aborted" not in line


# --- F3: bytes that are not UTF-8 ----------------------------------------------------------------

@pytest.mark.parametrize("native", [BURSTGPT, AZURE_2024, KAVIER,
                                    FIXTURES / "derived" / "splitwise_code_head.csv"])
def test_non_utf8_byte_in_a_cell_names_line_and_byte(tmp_path: Path, native: Path):
    lines = native.read_bytes().split(b"\n")
    lines[2] = lines[2][:5] + b"\xff" + lines[2][5:]
    p = tmp_path / "u.csv"
    p.write_bytes(b"\n".join(lines))
    refused(p, "u.csv:3: error: not UTF-8 at byte 5")


def test_probe_f3_reproduction(tmp_path: Path):
    p = tmp_path / "u.csv"
    p.write_bytes(BURSTGPT.read_bytes().replace(b"1087", b"1\xff87"))
    assert refused(p) == (f"Error: {p}:3: error: not UTF-8 at byte 12 "
                          "(got '45,ChatGPT,1\ufffd87,230,1317,Conversation log')")


# --- F4: deep nesting ----------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [DEFAULT_MAX_DEPTH + 1, 1_000, 10_000, 100_000])
@pytest.mark.parametrize("line", [1, 2])
def test_deep_json_line_is_one_line_before_any_parser(tmp_path: Path, depth: int, line: int):
    deep = ', "zz": ' + "[" * depth + "]" * depth
    records = [RECORD % (0, ""), RECORD % (1, deep), RECORD % (2, "")]
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(records[2 - line:]) + "\n")
    refused(p, f"d.jsonl:{line}: error: JSON nested deeper than {DEFAULT_MAX_DEPTH} levels",
            "LLMTRACES_MAX_JSON_DEPTH")


def test_nesting_at_the_limit_reads_and_the_limit_can_be_raised(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch):
    def trace(depth: int) -> Path:
        # the record is one level, so "zz" adds depth - 1
        p = tmp_path / f"d{depth}.jsonl"
        inner = "[" * (depth - 1) + "]" * (depth - 1)
        p.write_text(RECORD % (0, "") + "\n" + RECORD % (1, f', "zz": {inner}') + "\n")
        return p

    assert run("convert", trace(64), "-o", tmp_path / "a.parquet").exit_code == 0
    refused(trace(65), "d65.jsonl:2: error: JSON nested deeper than 64 levels")
    monkeypatch.setenv("LLMTRACES_MAX_JSON_DEPTH", "500")
    assert run("convert", trace(500), "-o", tmp_path / "b.parquet").exit_code == 0
    monkeypatch.setenv("LLMTRACES_MAX_JSON_DEPTH", "100000")
    one_line_error(run("convert", trace(3), "-o", tmp_path / "c.parquet"),
                   "LLMTRACES_MAX_JSON_DEPTH='100000': expected a whole number from 2 to 512")


def test_deep_json_in_csv_cells_is_one_line(tmp_path: Path):
    # A Kavier token-id cell and a unified CSV list cell are parsed as JSON.
    lines = KAVIER.read_text().splitlines()
    head = lines[1].split('"[')[0]
    p = tmp_path / "k.csv"
    p.write_text("\n".join([lines[0], head + '"' + "[" * 5000 + "]" * 5000 + '","[1]"']) + "\n")
    refused(p, "k.csv:2: error: input_tokens: JSON nested deeper than 64 levels")
    assert run("convert", BURSTGPT, "--to", "csv", "-o", tmp_path / "u.csv").exit_code == 0
    text = (tmp_path / "u.csv").read_text().splitlines()
    cells = text[1].split(",")
    column = text[0].split(",").index("input_token_ids")
    cells[column] = '"' + "[" * 50_000 + "]" * 50_000 + '"'
    text[1] = ",".join(cells)
    (tmp_path / "u.csv").write_text("\n".join(text) + "\n")
    refused(tmp_path / "u.csv", "u.csv:2: error: input_token_ids: JSON nested deeper")


def _unified_with_extra(tmp_path: Path, extra: str) -> Path:
    assert run("convert", BURSTGPT, "-o", tmp_path / "base.parquet").exit_code == 0
    kv = pq.read_metadata(tmp_path / "base.parquet").metadata
    table = pq.read_table(tmp_path / "base.parquet")
    column = pa.array([extra] + [None] * (table.num_rows - 1), pa.string())
    table = table.set_column(table.schema.get_field_index("extra"), "extra", column)
    dest = tmp_path / "deep.parquet"
    with pq.ParquetWriter(dest, table.schema) as writer:
        writer.write_table(table)
        writer.add_key_value_metadata({k: v for k, v in kv.items() if k != b"ARROW:schema"})
    return dest


@pytest.mark.parametrize("to", ["burstgpt", "mooncake", "kavier", "csv"])
def test_writers_refuse_deep_extra_before_parsing_it(tmp_path: Path, to: str):
    deep = _unified_with_extra(tmp_path, '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    out = tmp_path / "out"
    out.mkdir()
    r = run("convert", deep, "--to", to, "-o", out / f"o.{to}")
    if r.exit_code == 0:  # a writer that never parses extra
        return
    one_line_error(r, "extra of row 1 of a batch: JSON nested deeper than 64 levels")
    assert list(out.iterdir()) == []


def test_deep_sidecar_is_one_line(tmp_path: Path):
    assert run("convert", BURSTGPT, "--to", "jsonl", "-o", tmp_path / "u.jsonl").exit_code == 0
    (tmp_path / "u.jsonl.meta.json").write_text("[" * 100_000 + "]" * 100_000)
    refused(tmp_path / "u.jsonl", "unreadable metadata sidecar: JSON nested deeper")


def test_depth_measure_skips_strings_and_never_recurses():
    assert json_depth(b'{"a": "]]]]", "b": [[[1]]]}') == 4
    assert json_depth("[" * 1_000_000) == 1_000_000
    assert json_depth(b'"[[[["') == 0
    block = b'{"a": 1}\n' + b"[" * 100 + b"\n" + b'"' + b"[" * 100 + b'"\n' + b"[" * 70 + b"]" * 70
    assert deep_lines(block, 64) == [1, 3]


# --- F5: one huge line ---------------------------------------------------------------------------

def _long_csv(path: Path, length: int) -> Path:
    header, first = BURSTGPT.read_text().splitlines()[:2]
    tail = ",472,18,490,Conversation log"
    path.write_text(f"{header}\n{first}\n6,{'A' * (length - 2 - len(tail))}{tail}\n{first}\n")
    return path


def _long_jsonl(path: Path, length: int) -> Path:
    pre = '{"timestamp": 1, "input_length": 10, "output_length": 2, "hash_ids": [1], "zz": "'
    line = pre + "A" * (length - len(pre) - 2) + '"}'
    path.write_text(f"{RECORD % (0, '')}\n{line}\n{RECORD % (2, '')}\n")
    return path


@pytest.mark.parametrize(("make", "line"), [(_long_csv, 3), (_long_jsonl, 2)])
def test_line_limit_is_exact_and_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              make, line: int):
    monkeypatch.setenv("LLMTRACES_MAX_LINE_BYTES", "4096")
    ok = make(tmp_path / "ok.txt", 4096)
    assert run("convert", ok, "-o", tmp_path / "ok.parquet").exit_code == 0
    bad = make(tmp_path / "bad.txt", 4097)
    refused(bad, f"bad.txt:{line}: error: line longer than 4 KiB",
            "set LLMTRACES_MAX_LINE_BYTES to raise the limit")
    gz = tmp_path / "bad.gz"
    gz.write_bytes(gzip.compress(bad.read_bytes()))
    refused(gz, f"bad.gz:{line}: error: line longer than 4 KiB")
    monkeypatch.setenv("LLMTRACES_MAX_LINE_BYTES", "8192")
    assert run("convert", bad, "-o", tmp_path / "bad.parquet").exit_code == 0
    monkeypatch.setenv("LLMTRACES_MAX_LINE_BYTES", "lots")
    one_line_error(run("convert", bad, "-o", tmp_path / "x.parquet"),
                   "LLMTRACES_MAX_LINE_BYTES='lots': expected a whole number from 1,024")


def test_read_context_carries_the_limits(tmp_path: Path):
    ctx = ReadContext(BURSTGPT, Report())
    assert (ctx.max_line, ctx.max_depth) == (DEFAULT_MAX_LINE, DEFAULT_MAX_DEPTH)
    assert (max_line_bytes(), max_json_depth()) == (16 << 20, 64)
    p = _long_csv(tmp_path / "l.csv", 3000)
    small = ReadContext(p, Report(), max_line=2048, batch_bytes=512)
    assert sum(b.num_rows for b in iter_csv(small, ["Timestamp"])) == 1
    assert [str(x) for x in small.report.problems] == [
        f"{p}:3: error: line longer than 2 KiB; a trace line is far shorter (set "
        "LLMTRACES_MAX_LINE_BYTES to raise the limit)"]
    j = _long_jsonl(tmp_path / "l.jsonl", 3000)
    small = ReadContext(j, Report(), max_line=2048, batch_bytes=512)
    assert sum(b.num_rows for b in iter_jsonl(small, [Key("timestamp", "int")])) == 1
    assert [p.line for p in small.report.problems] == [2]


MEMORY = """
import resource, sys
from pathlib import Path
from llmtraces.report import Report
from llmtraces.text import ReadContext
from llmtraces.text.csv import iter_csv
from llmtraces.text.jsonl import Key, iter_jsonl
path = Path(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ctx = ReadContext(path, Report())
if path.suffix == ".csv":
    rows = sum(b.num_rows for b in iter_csv(ctx, ["Timestamp"]))
else:
    rows = sum(b.num_rows for b in iter_jsonl(ctx, [Key("timestamp", "int")]))
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(rows, ctx.report.problems[0].line, grew // 1024)
"""


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_line_far_over_the_limit_reads_in_bounded_memory(tmp_path: Path, suffix: str):
    # 96 MiB in one line against a 1 MiB limit: without the limit, memory is several times
    # the line (the probe saw 6-11x); with it, a few MiB.
    make = _long_csv if suffix == ".csv" else _long_jsonl
    p = make(tmp_path / f"big{suffix}", 96 << 20)
    env = {**os.environ, "LLMTRACES_MAX_LINE_BYTES": str(1 << 20)}
    out = subprocess.run([sys.executable, "-c", MEMORY, str(p)], env=env, check=True,
                         capture_output=True, text=True, timeout=120).stdout.split()
    rows, line, grew_mib = map(int, out)
    assert (rows, line) == ((1, 3) if suffix == ".csv" else (1, 2))
    assert grew_mib < 48, f"peak RSS grew by {grew_mib} MiB reading a 96 MiB line"


# --- F10: not a regular file ---------------------------------------------------------------------

def test_fifo_is_refused_before_it_is_opened(tmp_path: Path):
    fifo = tmp_path / "p.csv"
    os.mkfifo(fifo)
    cmd = [sys.executable, "-c", "from llmtraces.cli import main; main()"]
    for verb in (["convert", str(fifo), "-o", str(tmp_path / "x.parquet")],
                 ["validate", str(fifo)]):
        r = subprocess.run(cmd + verb, capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    r = subprocess.run(cmd + ["convert", str(fifo), "-o", str(tmp_path / "x.parquet")],
                       capture_output=True, text=True, timeout=60)
    assert r.stderr.strip() == (f"Error: {fifo}: a FIFO (named pipe), not a regular file; "
                                "expected a trace file (save a stream to a file first: it is "
                                "read more than once)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv"]
    r = subprocess.run(cmd + ["validate", str(fifo)], capture_output=True, text=True, timeout=60)
    assert "a FIFO (named pipe), not a regular file" in r.stdout + r.stderr
    assert "no such file" not in r.stdout + r.stderr
    with pytest.raises(InvalidTraceError, match="a FIFO"):
        sniff(fifo)
    with pytest.raises(InvalidTraceError, match="a FIFO"):
        is_unified(fifo)


@pytest.mark.parametrize(("path", "kind"), [("/dev/null", "a device"), ("/tmp", "a folder")])
def test_devices_and_folders_are_refused(tmp_path: Path, path: str, kind: str):
    one_line_error(run("convert", path, "-o", tmp_path / "x.parquet"),
                   f"{path}: {kind}, not a regular file")


# --- F16: errors inside archive members ----------------------------------------------------------

LMSYS = "traces/lmsys_sps=0.5_nums=100.jsonl"


def _tarball(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_errors_in_a_member_name_the_archive_and_the_member(
        tmp_path: Path, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch, home: Path):
    reg = build_registry(tmp_path / "registry", server.url, {})
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(reg))
    monkeypatch.setenv("LLMTRACES_GDRIVE_URL", server.url)
    bad = MARCONI.read_text().splitlines()[0] + '\n{"garbage": 1}\n'
    server.routes["/marconi/traces.tar.gz"] = Route(_tarball({LMSYS: bad.encode()}))
    assert run("fetch", "marconi", "--trace", "lmsys_sps0.5", "--mirror", server.url
               ).exit_code == 0
    archive = home / "raw" / "marconi" / "traces.tar.gz"
    where = f"{archive}:{LMSYS}:2: error: "
    r = run("convert", "marconi", "--trace", "lmsys_sps0.5")
    assert r.exit_code == 1 and where in r.output and ".members-" not in r.output, r.output
    assert "run `llmtraces validate marconi --trace lmsys_sps0.5` for the list" in r.output
    r = run("validate", "marconi", "--trace", "lmsys_sps0.5")
    assert r.exit_code == 1 and where in r.output and ".members-" not in r.output, r.output


def test_a_member_with_an_unknown_header_names_archive_and_member(tmp_path: Path):
    scratch = tmp_path / "good.jsonl"
    scratch.write_text("nonsense\n")
    with named(scratch, "traces.tar.gz:traces/good.jsonl"):
        assert label_of(scratch) == "traces.tar.gz:traces/good.jsonl"
        assert ReadContext(scratch, Report(), label=str(scratch)).label == label_of(scratch)
        with pytest.raises(LLMTracesError, match=r"^traces\.tar\.gz:traces/good\.jsonl:1: "):
            sniff(scratch)
    assert label_of(scratch) == str(scratch)


def test_a_deep_line_is_reported_alone(tmp_path: Path):
    # A deep record in a block of good ones: that line is the one problem, the others read.
    p = tmp_path / "m.jsonl"
    lines = MOONCAKE.read_text().splitlines()
    lines[5] = json.dumps(json.loads(lines[5]))[:-1] + ', "d": ' + "[" * 99 + "]" * 99 + "}"
    p.write_text("\n".join(lines) + "\n")
    ctx = ReadContext(p, Report())
    rows = sum(b.num_rows for b in iter_jsonl(ctx, [Key("timestamp", "int")]))
    assert rows == len(lines)
    assert [(x.code, x.line) for x in ctx.report.problems] == [("depth", 6)]


# --- F7 (API side): a unified file with bad values, opened without validate or convert ----------

def _unified_copy(tmp_path: Path, name: str, column: str, row: int, value: int) -> Path:
    """The shipped Azure 2023 code trace converted, with one value replaced."""
    import llmtraces
    table = llmtraces.load("azure-llm-2023/code")
    values = table.column(column).to_pylist()
    values[row] = value
    table = table.set_column(table.schema.get_field_index(column), column,
                             pa.array(values, table.schema.field(column).type))
    dest = tmp_path / name
    pq.write_table(table, dest)
    return dest


@pytest.mark.parametrize(("column", "value", "expected"), [
    ("input_tokens", -5, "row 12: input_tokens is -5, expected >= 0"),
    ("request_id", 99, "row 12: request_id is 99, expected 11"),
])
def test_unified_values_are_checked_on_every_read(tmp_path: Path, home: Path, column: str,
                                                  value: int, expected: str):
    import llmtraces
    bad = _unified_copy(tmp_path, "bad.parquet", column, 11, value)
    for read in (lambda: llmtraces.load(bad),
                 lambda: llmtraces.export(bad, tmp_path / "out.csv", to="burstgpt"),
                 lambda: list(llmtraces.iter_requests(bad)),
                 lambda: llmtraces.sample(bad, fraction=0.5).to_table()):
        with pytest.raises(InvalidTraceError) as err:
            read()
        assert f"{bad}: {expected}" in str(err.value)
        assert "\n" not in str(err.value)
    assert not (tmp_path / "out.csv").exists()
