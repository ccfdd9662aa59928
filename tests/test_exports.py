"""Every export format: exact bytes against tests/golden/, read back by llmtraces to the same
requests, and the peer-tool facts each format exists for (units, block sizes, positions).

Goldens are rewritten with ``pytest --update-golden`` (or ``LLMTRACES_UPDATE_GOLDEN=1``); a
missing golden fails.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from pathlib import Path

import jsonschema
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import llmtraces
from conftest import FIXTURES, REPO, Cli
from llmtraces.errors import InvalidTraceError
from llmtraces.formats import all_writers, get_writer, sniff
from llmtraces.formats.unified_text import sidecar_path
from llmtraces.pipeline.convert import convert_file
from llmtraces.schema import METADATA_KEY, TRACE_SCHEMA, TraceStream, make_batch

GOLDEN = Path(__file__).parent / "golden"
BUNDLED_CODE = REPO / "llmtraces" / "data" / "azure-llm-2023" / "AzureLLMInferenceTrace_code.csv"
MARCONI = FIXTURES / "marconi" / "lmsys_sps=0.5_nums=2.jsonl"
BINARY = {"parquet", "kavier-parquet"}  # bytes depend on the pyarrow version: no golden
TRACES = ("azure", "sessions")
#: Exports a trace cannot have, and why (the writer must say so and write nothing).
REFUSED = {
    ("azure", "kavier-measurements"): "needs e2e_latency_us",
    ("azure", "marconi"): "needs input token ids",
    ("sessions", "azure"): "needs absolute times",
    ("sessions", "kavier-measurements"): "needs e2e_latency_us",
}
#: How each format keeps arrival_us: exactly, floored to ms, or rebased to the first request.
ARRIVAL = {"mooncake": "ms", "inference-perf": "rebased", "vidur": "rebased",
           "splitwise": "rebased"}
SESSIONS = {"csv", "jsonl", "parquet", "kavier", "kavier-parquet", "marconi", "mooncake",
            "burstgpt", "bailian"}
TURNS = {"csv", "jsonl", "parquet", "kavier", "kavier-parquet", "marconi", "bailian"}


def update_golden(config: pytest.Config) -> bool:
    return bool(config.getoption("--update-golden")) or \
        os.environ.get("LLMTRACES_UPDATE_GOLDEN") == "1"


@pytest.fixture(scope="module")
def unified(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two fixed unified traces: the first 10 requests of the real Azure 2023 code trace
    (absolute times, no sessions) and the Marconi fixture (sessions, turns, token ids)."""
    d = tmp_path_factory.mktemp("unified")
    head = d / "code_head.csv"  # not the published name: converted as an unknown file
    head.write_bytes(b"".join(BUNDLED_CODE.read_bytes().splitlines(keepends=True)[:11]))
    out = {}
    for name, native in (("azure", head), ("sessions", MARCONI)):
        out[name] = d / f"{name}.parquet"
        convert_file(native, out[name])
    return out


def golden_path(trace: str, fmt: str) -> Path:
    name = fmt + get_writer(fmt).suffix
    return GOLDEN / name if trace == "azure" else GOLDEN / trace / name


def cases(binary: bool, refused: bool = True) -> list[tuple[str, str]]:
    return [(t, f) for t in TRACES for f in sorted(all_writers())
            if (binary or f not in BINARY) and (refused or (t, f) not in REFUSED)]


def export(unified: dict[str, Path], trace: str, fmt: str, tmp_path: Path) -> Path:
    out = tmp_path / ("out" + get_writer(fmt).suffix)
    convert_file(unified[trace], out, to=fmt)
    return out


@pytest.mark.parametrize(("trace", "fmt"), cases(binary=False))
def test_writer_output_equals_golden(unified: dict[str, Path], trace: str, fmt: str,
                                     tmp_path: Path, request: pytest.FixtureRequest):
    if (trace, fmt) in REFUSED:
        with pytest.raises(InvalidTraceError, match=REFUSED[trace, fmt]):
            export(unified, trace, fmt, tmp_path)
        assert not list(tmp_path.glob("out*")) and not list(tmp_path.glob(".*tmp"))
        return
    out = export(unified, trace, fmt, tmp_path)
    golden = golden_path(trace, fmt)
    if update_golden(request.config):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_bytes(out.read_bytes())
    assert golden.is_file(), f"no golden file {golden}; run `pytest --update-golden` once"
    assert out.read_bytes() == golden.read_bytes(), f"{fmt} output differs from {golden}"


def test_every_golden_belongs_to_a_case():
    expected = {golden_path(t, f) for t, f in cases(binary=False) if (t, f) not in REFUSED}
    found = {p for p in GOLDEN.rglob("*") if p.is_file()}
    assert found == expected


@pytest.mark.parametrize(("trace", "fmt"), cases(binary=True, refused=False))
def test_export_reads_back_to_the_same_requests(unified: dict[str, Path], trace: str, fmt: str,
                                                tmp_path: Path):
    out = export(unified, trace, fmt, tmp_path)
    back = tmp_path / "back.parquet"
    convert_file(out, back)  # recognised from its first line (or schema), like the CLI does
    a, b = llmtraces.load(unified[trace]), llmtraces.load(back)
    assert b.num_rows == a.num_rows
    for col in ("input_tokens", "output_tokens"):
        assert b.column(col).to_pylist() == a.column(col).to_pylist(), col
    want = a.column("arrival_us").to_pylist()
    rule = ARRIVAL.get(fmt, "exact")
    if rule == "ms":
        want = [us // 1000 * 1000 for us in want]
    elif rule == "rebased":
        want = [us - want[0] for us in want]
    assert b.column("arrival_us").to_pylist() == want
    if fmt in SESSIONS:
        assert partition(b) == partition(a)
    if fmt in TURNS:  # where the trace has them (a Bailian file always numbers turns)
        had = a.column("turn").to_pylist()
        assert [t for t, h in zip(b.column("turn").to_pylist(), had, strict=True)
                if h is not None] == [h for h in had if h is not None]


def partition(t: pa.Table) -> set[tuple[int, ...]]:
    """The sessions of a trace as sets of row positions (ids may be renamed by a format)."""
    groups: dict[object, list[int]] = {}
    for i, s in enumerate(t.column("session_id").to_pylist()):
        groups.setdefault(s if s is not None else ("row", i), []).append(i)
    return {tuple(v) for v in groups.values()}


# --- csv / jsonl: the unified schema as text ----------------------------------------------------

def trace_meta(path: Path) -> dict:
    return json.loads(pq.read_metadata(path).metadata[METADATA_KEY.encode()])


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_unified_text_keeps_every_column_and_the_metadata(unified: dict[str, Path], fmt: str,
                                                          tmp_path: Path, cli: Cli):
    for trace in TRACES:
        out = export(unified, trace, fmt, tmp_path)
        assert sniff(out).name == f"llmtraces-{fmt}"
        side = json.loads(sidecar_path(out).read_text())
        assert (side["format"], side["file"], side["rows"]) == (f"llmtraces-{fmt}", out.name,
                                                                llmtraces.load(out).num_rows)
        back = tmp_path / f"{trace}.parquet"
        result = cli("convert", str(out), "-o", str(back))
        assert result.exit_code == 0, result.output
        assert llmtraces.load(back).equals(llmtraces.load(unified[trace]))  # every column
        before, after = trace_meta(unified[trace]), trace_meta(back)
        for key in ("source", "trace", "time", "time_origin", "licence", "citation",
                    "tokenizer", "rows", "schema_version", "licence_source"):
            assert after.get(key) == before.get(key), key
        assert after["native_format"] == f"llmtraces-{fmt}" and after["native_file"] == out.name
        assert after["derived_from"]["native_file"] == before["native_file"]
        assert after["derived_from"]["native_format"] == before["native_format"]
    # The Azure trace keeps its absolute origin, so it can still be written as an Azure CSV.
    azure_back = tmp_path / "azure.parquet"
    convert_file(azure_back, tmp_path / "again.csv", to="azure")
    assert (tmp_path / "again.csv").read_text().splitlines()[1] == \
        BUNDLED_CODE.read_text().splitlines()[1]


def test_without_sidecar_the_rows_still_read(unified: dict[str, Path], tmp_path: Path):
    out = export(unified, "azure", "csv", tmp_path)
    sidecar_path(out).unlink()
    t = llmtraces.load(out)
    assert t.equals(llmtraces.load(unified["azure"]))


def test_a_stale_sidecar_is_reported(unified: dict[str, Path], tmp_path: Path, cli: Cli):
    out = export(unified, "azure", "jsonl", tmp_path)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:4]))
    result = cli("validate", str(out))
    assert "warning: the metadata sidecar describes 10 rows, the file has 4" in result.output


def test_jsonl_rows_validate_against_the_json_schema(unified: dict[str, Path], tmp_path: Path):
    schema = json.loads((REPO / "schemas" / "trace.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for trace in TRACES:
        out = export(unified, trace, "jsonl", tmp_path)
        for line in out.read_text().splitlines():
            validator.validate(json.loads(line))


def tricky_batch() -> pa.RecordBatch:
    """Every column kind, with nulls, empty strings, empty lists, commas and quotes."""
    return make_batch(3, {
        "request_id": [0, 1, 2], "source_row": [0, 1, 2], "arrival_us": [0, None, 7],
        "input_tokens": [3, 0, 5], "output_tokens": [None, 2, 0], "failed": [True, None, False],
        "model": ["a,b", "", None], "service": ['say "hi"', None, "x"],
        "session_id": ["", "s1", None], "turn": [0, None, 1], "parent_request_id": [None, 0, 1],
        "num_images": [None, 2, 0], "e2e_latency_us": [5, None, 9],
        "input_token_ids": [[1, 2, 3], [], None], "output_token_ids": [None, [9, 8], []],
        "hash_ids": [[0], None, [1, 2]], "hash_block_size": [16, None, 16],
        "extra": ['{"k": "v, w"}', None, "{}"]})


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_nulls_empty_strings_and_lists_survive(fmt: str, tmp_path: Path):
    batch = tricky_batch()
    out = tmp_path / ("t." + fmt)
    get_writer(fmt).write(TraceStream(iter([batch]), {"rows": 3}), out)
    t = llmtraces.load(out)
    assert t.to_pylist() == pa.Table.from_batches([batch]).to_pylist()
    if fmt == "csv":
        assert out.read_text().splitlines()[1] == (
            '0,0,3,,true,"a,b","say ""hi""",""' + ",0,,,5,\"[1,2,3]\",,[0],16,0,"
            '"{""k"": ""v, w""}"')


def test_csv_refuses_a_line_break_in_a_cell(tmp_path: Path):
    batch = make_batch(1, {"request_id": [0], "source_row": [0], "input_tokens": [1],
                           "model": ["two\nlines"]})
    with pytest.raises(InvalidTraceError, match="model holds a line break.*--to jsonl"):
        get_writer("csv").write(TraceStream(iter([batch])), tmp_path / "t.csv")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("cell", "column", "message"), [
    ("-3", "input_tokens", "out of range for int64 (minimum 0)"),
    ("x", "arrival_us", "expected an integer"),
    ("", "request_id", "null; this column is required"),
    ("yes", "failed", "expected true or false"),
    ("[1,x]", "hash_ids", "expected a JSON array of integers"),
    ("3000000000", "turn", "out of range for int32"),
])
def test_bad_unified_csv_values_name_line_and_column(unified: dict[str, Path], tmp_path: Path,
                                                     cell: str, column: str, message: str,
                                                     cli: Cli):
    out = export(unified, "azure", "csv", tmp_path)
    lines = out.read_text().splitlines()
    fields = next(csv.reader([lines[3]]))
    fields[TRACE_SCHEMA.names.index(column)] = cell
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(fields)
    lines[3] = buf.getvalue()
    out.write_text("\n".join(lines) + "\n")
    result = cli("convert", str(out), "-o", str(tmp_path / "x.parquet"))
    assert result.exit_code == 1
    first = result.output.strip().splitlines()[0]
    assert f"{out}:4: error: {column}: {message}" in first, first
    assert not (tmp_path / "x.parquet").exists()


# --- peer-tool facts ----------------------------------------------------------------------------

def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(("fmt", "block"), [("mooncake", 512), ("bailian", 16),
                                            ("vllm-timed-trace", 16)])
def test_hash_ids_cover_the_input_at_the_tool_block_size(unified: dict[str, Path], fmt: str,
                                                         block: int, tmp_path: Path):
    for trace in TRACES:
        rows = records(export(unified, trace, fmt, tmp_path))
        for r in rows:
            assert len(r["hash_ids"]) == math.ceil(r["input_length"] / block)


def shared_prefix_trace(tmp_path: Path) -> Path:
    """Two sessions with token ids: a follow-up repeats its history, another request shares
    only a first block with it."""
    a = list(range(1000, 2024))  # 1024 tokens: two whole 512-blocks
    follow = a + list(range(5000, 5600))  # the history, then 600 new tokens
    other = a[:512] + list(range(9000, 9512))  # the first block only
    batch = make_batch(3, {
        "request_id": [0, 1, 2], "source_row": [0, 1, 2], "arrival_us": [0, 1500, 2999],
        "input_tokens": [1024, 1624, 1024], "output_tokens": [1, 1, 1],
        "session_id": ["s", "s", "t"], "turn": [0, 1, 0],
        "input_token_ids": [a, follow, other]})
    path = tmp_path / "prefix.parquet"
    get_writer("parquet").write(TraceStream(iter([batch]), {"rows": 3}), path)
    return path


def test_mooncake_ids_from_token_ids_share_exactly_the_shared_prefix(tmp_path: Path):
    out = tmp_path / "m.jsonl"
    convert_file(shared_prefix_trace(tmp_path), out, to="mooncake")
    first, follow, other = records(out)
    assert [len(r["hash_ids"]) for r in (first, follow, other)] == [2, 4, 2]
    assert follow["hash_ids"][:2] == first["hash_ids"]  # the history comes back
    assert len(set(follow["hash_ids"][2:]) & set(first["hash_ids"])) == 0
    assert other["hash_ids"][0] == first["hash_ids"][0]
    assert other["hash_ids"][1] != first["hash_ids"][1]
    assert [r["timestamp"] for r in (first, follow, other)] == [0, 1, 2]  # ms, floored
    assert [r["session_id"] for r in (first, follow, other)] == ["s", "s", "t"]
    # Same rule at Bailian's and vLLM's 16-token blocks: 64 shared blocks, then new ones.
    for fmt in ("bailian", "vllm-timed-trace"):
        convert_file(shared_prefix_trace(tmp_path), out, to=fmt)
        a, b, c = records(out)
        assert b["hash_ids"][:64] == a["hash_ids"] and c["hash_ids"][:32] == a["hash_ids"][:32]
        assert c["hash_ids"][32] != a["hash_ids"][32]


def test_seconds_and_milliseconds_files_are_told_apart(tmp_path: Path):
    line = '{{"timestamp": {}, "input_length": 600, "output_length": 2, "hash_ids": [0, 1]}}\n'
    p = tmp_path / "t.jsonl"
    p.write_text(line.format("1.5"))
    assert sniff(p).name == "vllm-timed-trace-jsonl"
    assert llmtraces.load(p).column("arrival_us").to_pylist() == [1_500_000]
    p.write_text(line.format("1500"))
    assert sniff(p).name == "mooncake-jsonl"
    assert llmtraces.load(p).column("arrival_us").to_pylist() == [1_500_000]
    p.write_text('{"timestamp": 1.5, "input_length": 20, "output_length": 2}\n')
    assert sniff(p).name == "guidellm-trace-jsonl"
    p.write_text('{"timestamp": 1500, "input_length": 20, "output_length": 2}\n')
    with pytest.raises(InvalidTraceError, match="unrecognised header or first record"):
        sniff(p)


def test_vllm_timed_trace_refuses_unsorted_arrivals(tmp_path: Path):
    batch = make_batch(2, {"request_id": [0, 1], "source_row": [0, 1], "arrival_us": [5, 3],
                           "input_tokens": [1, 1], "output_tokens": [1, 1]})
    src = tmp_path / "u.parquet"
    get_writer("parquet").write(TraceStream(iter([batch]), {"rows": 2}), src)
    with pytest.raises(InvalidTraceError, match="sorted by arrival; request_id 1 arrives at 3 µs"):
        convert_file(src, tmp_path / "v.jsonl", to="vllm-timed-trace")
    convert_file(src, tmp_path / "g.jsonl", to="guidellm")  # GuideLLM sorts by itself
    assert not (tmp_path / "v.jsonl").exists()


def test_formats_without_timing_say_what_is_missing(tmp_path: Path):
    batch = make_batch(1, {"request_id": [0], "source_row": [0], "input_tokens": [1],
                           "output_tokens": [1]})
    src = tmp_path / "u.parquet"
    get_writer("parquet").write(TraceStream(iter([batch]), {"rows": 1}), src)
    for fmt, message in (("vllm-timed-trace", "needs an arrival time for every request"),
                         ("guidellm", "needs an arrival time for every request"),
                         ("inference-perf", "needs a time for every request")):
        with pytest.raises(InvalidTraceError, match=message):
            convert_file(src, tmp_path / "o", to=fmt)


def test_inference_perf_csv_is_what_its_reader_parses(unified: dict[str, Path], tmp_path: Path):
    for trace in TRACES:
        text = export(unified, trace, "inference-perf", tmp_path).read_text()
        assert csv.Sniffer().has_header(text[:2048])  # how inference-perf skips the header
        header, *rows = text.splitlines()
        assert header == "TIMESTAMP,ContextTokens,GeneratedTokens"
        for row in rows:
            ts, inp, out = row.split(",")  # split on ",", tokens by position
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", ts), ts
            assert inp.isdigit() and out.isdigit()
    assert rows[0].startswith("1970-01-01 00:00:00.000000,")  # relative trace: from the epoch


def test_burstgpt_six_columns_keep_vllm_positions(unified: dict[str, Path], tmp_path: Path):
    t = llmtraces.load(unified["azure"])
    header, *rows = list(csv.reader(io.StringIO(export(unified, "azure", "burstgpt",
                                                       tmp_path).read_text())))
    assert header[2:4] == ["Request tokens", "Response tokens"] and len(header) == 6
    assert [int(r[2]) for r in rows] == t.column("input_tokens").to_pylist()
    assert [int(r[3]) for r in rows] == t.column("output_tokens").to_pylist()
    # A trace with sessions gets BurstGPT_3's 8 columns: vLLM's positions do not fit it.
    header8 = export(unified, "sessions", "burstgpt", tmp_path).read_text().splitlines()[0]
    assert header8.split(",")[2:4] == ["Elapsed time", "Model"]


def test_guidellm_rows_are_seconds_and_default_columns(unified: dict[str, Path],
                                                       tmp_path: Path):
    t = llmtraces.load(unified["sessions"])
    rows = records(export(unified, "sessions", "guidellm", tmp_path))
    assert [set(r) for r in rows] == [{"timestamp", "input_length", "output_length"}] * len(rows)
    assert all(isinstance(r["timestamp"], float) for r in rows)
    assert [round(r["timestamp"] * 1e6) for r in rows] == t.column("arrival_us").to_pylist()


def test_the_export_list_is_complete():
    assert {"csv", "jsonl", "mooncake", "bailian", "vllm-timed-trace", "guidellm",
            "inference-perf", "burstgpt", "azure", "kavier", "vidur", "splitwise"} <= \
        set(all_writers())
