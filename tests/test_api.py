"""The Python API other benchmarks import: load with columns and filters, iter_requests, the
Request record, and llmtraces.testing (the tiny trace and the pytest fixtures)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import llmtraces
from llmtraces.errors import InvalidTraceError
from llmtraces.pipeline.validate import validate_path
from llmtraces.schema import COLUMN_NAMES
from llmtraces.testing import tiny_trace, write_tiny_trace


def test_load_filters_by_dict_and_expression(code_csv: Path):
    full = llmtraces.load("azure-llm-2023", trace="code")
    outs = full.column("output_tokens").to_pylist()
    got = llmtraces.load("azure-llm-2023", trace="code", filter={"output_tokens": [10, 13]})
    assert got.num_rows == sum(o in (10, 13) for o in outs) == 991
    assert got.column("request_id").to_pylist() == [i for i, o in enumerate(outs)
                                                    if o in (10, 13)]
    long_short = (pc.field("input_tokens") > 4000) & (pc.field("output_tokens") < 20)
    expr = llmtraces.load("azure-llm-2023", trace="code", columns=["input_tokens"],
                          filter=long_short)
    ins = full.column("input_tokens").to_pylist()
    assert expr.num_rows == sum(i > 4000 and o < 20 for i, o in zip(ins, outs, strict=True))
    assert expr.column_names == ["input_tokens"]
    # A native file by path takes the same filters (recognised as the published code file, so
    # service is "code"); None matches null.
    assert llmtraces.load(code_csv, filter={"model": None, "service": "code"}).num_rows == 8819
    assert llmtraces.load(code_csv, filter={"service": "conv"}).num_rows == 0


def test_a_bad_filter_is_a_clear_error():
    with pytest.raises(InvalidTraceError, match="no column 'tokens'.*input_tokens"):
        llmtraces.load("azure-llm-2023", trace="code", filter={"tokens": 3})
    with pytest.raises(TypeError, match="expected a dict"):
        llmtraces.load("azure-llm-2023", trace="code",
                       filter="output_tokens > 3")  # type: ignore[arg-type]


def test_iter_requests_streams_typed_records_in_order(tmp_path: Path):
    path = write_tiny_trace(tmp_path / "tiny.parquet")
    reqs = list(llmtraces.iter_requests(path, batch_rows=5))  # three batches
    table = tiny_trace()
    assert [r.request_id for r in reqs] == list(range(12))
    assert [r.arrival_us for r in reqs] == table.column("arrival_us").to_pylist()
    assert reqs[4].arrival_s == 1.5 and reqs[4].session_id == "s1"
    assert reqs[4].parent_request_id == 0 and reqs[2].failed is True
    assert reqs[9].input_token_ids[:18] == reqs[7].input_token_ids + reqs[7].output_token_ids
    assert reqs[0].extra == {"note": "synthetic"} and reqs[1].extra is None
    only = list(llmtraces.iter_requests(path, filter={"session_id": "s1"}))
    assert [(r.turn, r.request_id) for r in only] == [(0, 0), (1, 4), (2, 10)]


def test_iter_requests_over_a_native_file_leaves_nothing_behind(code_csv: Path, tmp_path,
                                                                monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    it = llmtraces.iter_requests(code_csv)
    first = next(it)
    assert (first.input_tokens, first.output_tokens) == (4808, 10)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("llmtraces-")]
    assert sum(1 for _ in it) == 8818
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("llmtraces-")]


def test_request_fields_are_the_schema_columns():
    assert tuple(f.name for f in dataclasses.fields(llmtraces.Request)) == COLUMN_NAMES


def test_tiny_trace_is_a_valid_unified_trace(tmp_path: Path):
    path = write_tiny_trace(tmp_path / "tiny.parquet")
    report = validate_path(path)
    assert report.errors == 0 and report.warnings == 0, report.lines()
    assert pq.read_table(path).equals(tiny_trace())
    t = tiny_trace()
    for hashes, n in zip(t.column("hash_ids").to_pylist(), t.column("input_tokens").to_pylist(),
                         strict=True):
        assert len(hashes) == -(-n // 512)
    # s1's turns share a prefix: turn 1 reuses turn 0's blocks.
    assert t.column("hash_ids")[4].as_py()[:2] == t.column("hash_ids")[0].as_py()[:2]
    assert write_tiny_trace(tmp_path / "again.parquet").read_bytes() == path.read_bytes()


def test_fixtures_work_in_a_downstream_suite(pytester: pytest.Pytester):
    pytester.makeconftest('pytest_plugins = ["llmtraces.testing"]\n')
    pytester.makepyfile('''
import os
import llmtraces

def test_replays(llmtraces_trace):
    assert llmtraces.load(llmtraces_trace).num_rows == 12
    assert sum(1 for _ in llmtraces.iter_requests(llmtraces_trace)) == 12

def test_home_is_empty_and_offline(llmtraces_home):
    assert os.environ["LLMTRACES_HOME"] == str(llmtraces_home)
    assert os.environ["LLMTRACES_OFFLINE"] == "1"
''')
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_a_registry_trace_can_be_named_source_slash_trace():
    one = llmtraces.load("azure-llm-2023/code", columns=["arrival_us"])
    assert one.equals(llmtraces.load("azure-llm-2023", trace="code", columns=["arrival_us"]))
    assert [r.input_tokens for r in llmtraces.iter_requests("azure-llm-2023/code",
                                                             columns=["input_tokens"])][:2] \
        == [4808, 3180]
    with pytest.raises(InvalidTraceError, match="columns: no column 'tokens'"):
        llmtraces.load("azure-llm-2023/code", columns=["tokens"])
