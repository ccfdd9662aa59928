"""Kavier input files: the Parquet form (``kavier-parquet`` reader and writer), the vectorised
token-list parsing of both forms, and CSV records longer than a read block.

Kavier Parquet files are written here the way the Marconi-Kavier ``marconi_full.parquet`` was:
by pandas (``DataFrame.to_parquet``), from the constructed Marconi fixture.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_marconi import COMPARED, check_values

import llmtraces
from conftest import FIXTURES, Cli, roundtrip
from llmtraces.errors import LLMTracesError
from llmtraces.formats import _kavier as kavier_input  # the column logic of both forms
from llmtraces.formats import get_format, sniff
from llmtraces.pipeline.convert import convert_file
from llmtraces.report import Report
from llmtraces.text import ReadContext

CSV = FIXTURES / "marconi" / "input_marconi.csv"
HEADER = "session_id,turn_id,ts,num_input_tokens,num_output_tokens,input_tokens,output_tokens"


@pytest.fixture()
def marconi_parquet(tmp_path: Path) -> Path:
    """The fixture's requests as pandas writes a Kavier Parquet: int64 ids, float64 ts, JSON
    text lists (large_string), pandas metadata, one row group."""
    path = tmp_path / "marconi_small.parquet"
    pd.read_csv(CSV).to_parquet(path)
    return path


def same_table(a: Path, b: Path) -> None:
    ta, tb = pq.read_table(a), pq.read_table(b)
    assert ta.schema.equals(tb.schema, check_metadata=True), (ta.schema, tb.schema)
    assert ta.equals(tb)


def test_pandas_parquet_is_recognised_and_read(marconi_parquet: Path, tmp_path: Path, cli: Cli):
    schema = pq.read_schema(marconi_parquet)
    assert schema.field("input_tokens").type == pa.large_string()
    assert sniff(marconi_parquet).name == "kavier-parquet"
    out = tmp_path / "t.parquet"
    result = cli("convert", str(marconi_parquet), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "(6 rows)" in result.output
    t = llmtraces.load(out)
    check_values(t)
    assert t.select(COMPARED).equals(llmtraces.load(CSV).select(COMPARED))
    # The float noise of ts 9.333333333333334 is kept (as Arrow's shortest round-trip text).
    assert t.column("extra").to_pylist()[3] == '{"ts": "9.333333333333334"}'
    meta = json.loads(pq.read_metadata(out).metadata[b"llmtraces.trace"])
    assert meta["native_format"] == "kavier-parquet" and meta["time"]["kind"] == "relative"
    assert meta["native_layout"]["columns"] == list(kavier_input.CSV_COLUMNS)
    assert meta["native_layout"]["types"][5] == "large_string"


def test_parquet_round_trip_gives_an_equal_table(marconi_parquet: Path, tmp_path: Path):
    back = roundtrip(marconi_parquet, tmp_path, "kavier-parquet")
    same_table(marconi_parquet, back)
    ids = pq.read_table(back).column("input_tokens").to_pylist()
    assert ids == pq.read_table(marconi_parquet).column("input_tokens").to_pylist()


def test_other_arrow_types_round_trip(tmp_path: Path):
    """Native list<int64> ids, text sessions with a null and a "", integer ts, a null list,
    a categorical column, an unknown float column, sub-µs floats: all come back equal."""
    df = pd.DataFrame({
        "session_id": ["a", None, ""], "turn_id": [0, 1, 2], "ts": [0, 1, 5],
        "num_input_tokens": [3, 0, 1], "num_output_tokens": [1, 0, 2],
        "input_tokens": [[1, 2, 3], [], [7]], "output_tokens": [[5], None, [1, 2]],
        "note": [1.5, None, 2.25], "kind": pd.Categorical(["x", "y", "x"]),
    })
    path = tmp_path / "native.parquet"
    df.to_parquet(path)
    t = llmtraces.load(path)
    assert t.column("session_id").to_pylist() == ["a", None, None]
    assert t.column("arrival_us").to_pylist() == [0, 1_000_000, 5_000_000]
    assert t.column("input_token_ids").to_pylist() == [[1, 2, 3], [], [7]]
    assert t.column("output_token_ids").to_pylist() == [[5], None, [1, 2]]
    assert json.loads(t.column("extra")[2].as_py()) == {"session_id": "", "note": "2.25",
                                                         "kind": "x"}
    same_table(path, roundtrip(path, tmp_path, "kavier-parquet"))

    floats = pd.DataFrame({"ts": [0.0, 0.1, 1 / 3, 2.5e-7], "num_input_tokens": [1, 1, 1, 1],
                           "num_output_tokens": [0, 0, 0, 0], "session_id": [0.0, 1.0, 2.0, 3.0]})
    path = tmp_path / "floats.parquet"
    floats.to_parquet(path)
    assert llmtraces.load(path).column("arrival_us").to_pylist() == [0, 100_000, 333_333, 0]
    same_table(path, roundtrip(path, tmp_path, "kavier-parquet"))


def test_csv_and_parquet_give_the_same_requests(marconi_parquet: Path, tmp_path: Path):
    reference = llmtraces.load(CSV).select(COMPARED)
    # CSV -> kavier-parquet: the canonical layout, readable by pandas as Kavier reads it.
    canonical = tmp_path / "from_csv.parquet"
    convert_file(CSV, canonical, to="kavier-parquet")
    schema = pq.read_schema(canonical)
    assert schema.names == HEADER.split(",")
    assert [str(f.type) for f in schema] == ["int64", "int64", "double", "int64", "int64",
                                             "string", "string"]
    df = pd.read_parquet(canonical)
    assert json.loads(df["input_tokens"][0]) == llmtraces.load(CSV).column(
        "input_token_ids")[0].as_py()
    assert llmtraces.load(canonical).select(COMPARED).equals(reference)
    # Parquet -> kavier CSV -> unified: the same requests again.
    csv_back = tmp_path / "from_parquet.csv"
    convert_file(marconi_parquet, csv_back, to="kavier")
    assert csv_back.read_text().splitlines()[0] == HEADER
    assert llmtraces.load(csv_back).select(COMPARED).equals(reference)


def test_canonical_writer_for_other_traces(tmp_path: Path):
    m = tmp_path / "moon.jsonl"
    m.write_text('{"timestamp": 5, "input_length": 3, "output_length": 2, "hash_ids": [0]}\n')
    out = tmp_path / "k.parquet"
    convert_file(m, out, to="kavier-parquet")
    assert pq.read_table(out).to_pylist() == [{
        "session_id": None, "turn_id": None, "ts": 0.005, "num_input_tokens": 3,
        "num_output_tokens": 2, "input_tokens": None, "output_tokens": None}]
    # An integer session_id column cannot hold a text session id: refused, nothing written.
    b = tmp_path / "chat.jsonl"
    b.write_text('{"timestamp": 0, "input_length": 3, "output_length": 2, "hash_ids": [0], '
                 '"session_id": "chat-7"}\n')
    with pytest.raises(LLMTracesError, match="request_id 0 has 'chat-7'"):
        convert_file(b, tmp_path / "x.parquet", to="kavier-parquet")
    assert not (tmp_path / "x.parquet").exists()


def write_kavier_parquet(tmp_path: Path, **columns: list) -> Path:
    base: dict[str, list] = {"num_input_tokens": [1, 2, 1], "num_output_tokens": [1, 1, 1],
                             "input_tokens": ["[1]", "[1, 2]", "[3]"]}
    base.update(columns)
    path = tmp_path / "bad.parquet"
    pd.DataFrame(base).to_parquet(path)
    return path


@pytest.mark.parametrize(("columns", "line", "column", "message", "value"), [
    ({"num_input_tokens": [1, 3, 1]}, 2, "num_input_tokens",
     "num_input_tokens is 3 but input_tokens holds 2 ids", "3"),
    ({"input_tokens": ["[1]", "[1, 2]", "[x]"]}, 3, "input_tokens",
     "expected a JSON array of integers", "[x]"),
    ({"input_tokens": [[1], [1, 2], [2 ** 31]]}, 3, "input_tokens", "outside 0..2147483647",
     None),
    ({"ts": [0.0, -1.5, 2.0]}, 2, "ts", "negative ts", "-1.5"),
    ({"ts": [0.0, float("inf"), 2.0]}, 2, "ts", "too large", "inf"),
    ({"num_output_tokens": [1.0, 1.5, 1.0]}, 2, "num_output_tokens", "expected a whole number",
     "1.5"),
    ({"num_output_tokens": [1, None, 1]}, 2, "num_output_tokens", "expected a token count",
     None),
    ({"turn_id": [0, -2, 1]}, 2, "turn_id", "negative value", "-2"),
])
def test_bad_parquet_rows_name_file_and_row(tmp_path: Path, columns: dict, line: int,
                                            column: str, message: str, value: str | None, cli: Cli):
    path = write_kavier_parquet(tmp_path, **columns)
    out = tmp_path / "bad.out.parquet"
    result = cli("convert", str(path), "-o", str(out))
    assert result.exit_code == 1, result.output
    first = result.output.strip().splitlines()[0]
    assert f"{path}:{line}: error: {column}: " in first and message in first, first
    if value is not None:
        assert f"(got {value!r})" in first
    assert not out.exists()


def test_bad_parquet_schema(tmp_path: Path, cli: Cli):
    path = write_kavier_parquet(tmp_path, ts=[True, False, True])
    report = json.loads(cli("validate", str(path), "--json").output)
    assert [(p["column"], p["message"]) for p in report["problems"]] == [
        ("ts", "column ts is bool; expected a float (seconds) or integer column")]
    table = pa.table({"num_input_tokens": [1], "x": pa.array([[1]], pa.list_(pa.int8())),
                      "num_output_tokens": [1]})
    pq.write_table(table, tmp_path / "nested.parquet")
    report = json.loads(cli("validate", str(tmp_path / "nested.parquet"), "--json").output)
    assert report["errors"] == 1 and "column x is list<element: int8>; expected a scalar" in \
        report["problems"][0]["message"]
    # An unknown column whose value cannot become text (bytes that are not UTF-8): that row.
    table = pa.table({"num_input_tokens": [1, 1], "num_output_tokens": [1, 1],
                      "blob": pa.array([b"ok", b"\xff"], pa.binary())})
    pq.write_table(table, tmp_path / "blob.parquet")
    report = json.loads(cli("validate", str(tmp_path / "blob.parquet"), "--json").output)
    assert [(p["line"], p["column"], p["code"]) for p in report["problems"]] == [
        (2, "blob", "type")]


def test_parquet_is_read_in_bounded_batches(marconi_parquet: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(kavier_input, "PARQUET_BATCH_BYTES", 1)  # one row per batch
    df = pd.read_parquet(marconi_parquet)
    df.loc[4, "num_output_tokens"] = 11  # row 5 of 6: its list holds 10 ids
    path = tmp_path / "one_group.parquet"
    df.to_parquet(path, row_group_size=len(df))
    report = Report()
    batches = list(get_format("kavier-parquet").read(ReadContext(path, report)))
    assert [b.num_rows for b in batches] == [1] * 6
    assert [(p.line, p.column, p.code) for p in report.problems] == [
        (5, "num_output_tokens", "length")]


def test_vector_and_exact_list_paths_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Cells in json.dumps form take the vector path; sending every cell through json.loads
    instead gives the same trace, extra and problems."""
    cells = ['"[1, 2, 3]"', '"[1,2]"', '" [4]"', "[]", '"[-0]"', '"[0, 9223372036854775807]"',
             '"[01]"', '"[1.0]"', '"[true]"', "", '"[1, 2, ]"', '"[99999999999999999999]"']
    p = tmp_path / "lists.csv"
    p.write_text("input_tokens,num_output_tokens,num_input_tokens\n" + "".join(
        f"{c},0,{n}\n" for c, n in zip(cells, [3, 2, 1, 0, 1, 2, 1, 1, 1, 0, 2, 1],
                                         strict=True)))

    def read() -> tuple[list[pa.RecordBatch], list[tuple[int | None, str, str]]]:
        report = Report()
        batches = list(get_format("kavier-csv").read(ReadContext(p, report)))
        return batches, [(x.line, x.code, x.message) for x in report.problems]

    # json.dumps's own form takes the vector path; anything else is left to json.loads.
    ids, slow = kavier_input._vector_lists(pa.array(["[1, 2]", "[]", "", "[1,2]", "[-0]"]))
    assert ids.to_pylist() == [[1, 2], [], None, None, None]
    assert slow.to_pylist() == [False, False, False, True, True]

    fast, fast_problems = read()
    ids = pa.Table.from_batches(fast).column("input_token_ids").to_pylist()
    assert ids[:6] == [[1, 2, 3], [1, 2], [4], [], [0], None]  # 2**63-1 is outside int32
    assert json.loads(pa.Table.from_batches(fast).column("extra")[1].as_py()) == {
        "input_tokens": "[1,2]"}

    def all_exact(raw: pa.Array) -> tuple[pa.Array, pa.Array]:
        return pa.nulls(len(raw), pa.list_(pa.int64())), pa.compute.not_equal(raw, "")

    monkeypatch.setattr(kavier_input, "_vector_lists", all_exact)
    exact, exact_problems = read()
    assert pa.Table.from_batches(exact).equals(pa.Table.from_batches(fast))
    assert exact_problems == fast_problems
    assert sorted(line for line, _, _ in fast_problems) == [7, 8, 9, 10, 12, 13]


def test_csv_records_longer_than_a_block(tmp_path: Path):
    """A row longer than the read block (a long history) is read by growing the block; line
    numbers stay exact, and a bad line after it is still located."""
    ids = list(range(1, 5001))
    row = f'{len(ids)},1,"{json.dumps(ids)}","[1]"\n'
    p = tmp_path / "long.csv"
    p.write_text("num_input_tokens,num_output_tokens,input_tokens,output_tokens\n"
                 + row + '2,1,"[1, 2]","[1]"\n' + row + '3,1,"[1, 2]","[1]"\n')
    report = Report()
    ctx = ReadContext(p, report, batch_bytes=4096)
    t = pa.Table.from_batches(list(get_format("kavier-csv").read(ctx)))
    assert t.column("input_tokens").to_pylist() == [5000, 2, 5000, 3]
    assert t.column("input_token_ids")[2].as_py() == ids
    assert [(x.line, x.column) for x in report.problems] == [(5, "num_input_tokens")]
    # A record of the wrong width after a field over Python csv's 128 KiB default limit.
    big = list(range(100000, 130000))
    p.write_text("num_input_tokens,num_output_tokens,input_tokens\n"
                 f'{len(big)},1,"{json.dumps(big)}"\n1,1\n')
    report = Report()
    list(get_format("kavier-csv").read(ReadContext(p, report)))
    assert [(x.line, x.code) for x in report.problems] == [(3, "structure")]


def test_wide_rows_bound_unified_row_groups_and_batches(marconi_parquet: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    """Row groups of the unified writer, and batches read back from it, are cut by bytes as
    well as rows, so rows of 10k token ids cannot pile up in memory."""
    from llmtraces.formats import parquet as unified

    monkeypatch.setattr(kavier_input, "PARQUET_BATCH_BYTES", 1)  # one row per batch
    monkeypatch.setattr(unified, "ROW_GROUP_BYTES", 1)  # every batch is a row group
    out = tmp_path / "u.parquet"
    convert_file(marconi_parquet, out)
    assert pq.ParquetFile(out).metadata.num_row_groups == 6
    stream = unified.read_stream(out)
    assert [b.num_rows for b in stream.batches] == [1] * 6
    assert llmtraces.load(out).select(COMPARED).equals(llmtraces.load(CSV).select(COMPARED))
