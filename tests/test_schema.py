"""The unified schema: declared once, mirrored in JSON Schema and docs, and what files carry."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pyarrow as pa

import llmtraces
from conftest import REPO
from llmtraces._generate import column_table, with_table
from llmtraces.schema import COLUMNS, TRACE_SCHEMA, dumps_json_schema, json_schema, make_batch

# The columns of DESIGN.md's unified schema v1, with their types: every one exists from the start.
DESIGN_V1 = {
    "request_id": pa.int64(), "arrival_us": pa.int64(), "input_tokens": pa.int64(),
    "output_tokens": pa.int64(), "failed": pa.bool_(), "model": pa.string(),
    "service": pa.string(), "session_id": pa.string(), "turn": pa.int32(),
    "parent_request_id": pa.int64(), "num_images": pa.int32(), "e2e_latency_us": pa.int64(),
    "input_token_ids": pa.list_(pa.int32()), "output_token_ids": pa.list_(pa.int32()),
    "hash_ids": pa.list_(pa.int64()), "hash_block_size": pa.int32(), "source_row": pa.int64(),
    "extra": pa.string(),
}
NOT_NULL = {"request_id", "input_tokens", "source_row"}


def test_every_design_column_with_its_type():
    assert TRACE_SCHEMA.names == list(DESIGN_V1)
    for name, typ in DESIGN_V1.items():
        field = TRACE_SCHEMA.field(name)
        assert field.type.equals(typ), name
        assert field.nullable == (name not in NOT_NULL), name


def test_json_schema_file_is_in_sync():
    committed = (REPO / "schemas" / "trace.schema.json").read_text(encoding="utf-8")
    assert committed == dumps_json_schema(), "run: python -m llmtraces._generate"
    schema = json.loads(committed)
    assert list(schema["properties"]) == TRACE_SCHEMA.names
    jsonschema.Draft202012Validator.check_schema(schema)


def test_docs_table_is_in_sync():
    doc = (REPO / "docs" / "schema.md").read_text(encoding="utf-8")
    assert with_table(doc) == doc, "run: python -m llmtraces._generate"
    for c in COLUMNS:
        assert f"`{c.name}`" in column_table()


def test_converted_rows_validate_against_the_json_schema(code_csv: Path):
    rows = llmtraces.load(code_csv).slice(0, 50).to_pylist()
    validator = jsonschema.Draft202012Validator(json_schema())
    for row in rows:
        validator.validate(row)
    bad = dict(rows[0], input_tokens=-1)
    assert not validator.is_valid(bad)


def test_make_batch_fills_nulls_and_refuses_unknown_columns():
    b = make_batch(2, {"request_id": [0, 1], "source_row": [0, 1], "input_tokens": [5, 6]})
    assert b.schema.equals(TRACE_SCHEMA) and b.column("model").null_count == 2
    import pytest

    with pytest.raises(ValueError, match="not columns"):
        make_batch(1, {"request_id": [0], "source_row": [0], "input_tokens": [1], "prompt": [1]})
    with pytest.raises(ValueError, match="input_tokens is required"):
        make_batch(1, {"request_id": [0], "source_row": [0]})


def test_absent_columns_share_one_null_array_per_type(tmp_path: Path):
    import pyarrow.parquet as pq

    from llmtraces.schema import nulls

    given = {"request_id", "source_row", "input_tokens"}
    large = make_batch(5000, {n: list(range(5000)) for n in given})
    small = make_batch(3, {n: list(range(3)) for n in given})
    for batch in (small, large):
        for col in COLUMNS:
            if col.name not in given:
                got = batch.column(col.name)
                assert got.type == col.type and got.null_count == len(got) == batch.num_rows
    # turn and num_images are both int32: one buffer behind both, in both batches
    # (the small batch slices what the large one made)
    buffers = {b.column(n).buffers()[1].address for b in (small, large)
               for n in ("turn", "num_images")}
    assert len(buffers) == 1
    huge = nulls(300_000, pa.list_(pa.int64()))  # past the cached length: its own array
    assert len(huge) == huge.null_count == 300_000
    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_batches([small, large]), path)
    back = pq.read_table(path)
    assert back.equals(pa.Table.from_batches([small, large]))
    assert back.column("hash_ids").null_count == 5003
