"""The unified trace schema v1, declared once: one row per request.

Every other representation (``schemas/trace.schema.json``, ``docs/schema.md``) is derived from
:data:`COLUMNS`; a test keeps the committed JSON Schema equal to :func:`json_schema`.
Types are the ones Spark, DuckDB, Polars, Dask and Ray read as they are: signed integers,
microseconds, no unsigned or nanosecond types.
"""

from __future__ import annotations

import array
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

SCHEMA_VERSION = "1.0"
#: Parquet key-value metadata key holding the trace metadata (a JSON object).
METADATA_KEY = "llmtraces.trace"
#: Parquet key-value metadata key holding the schema version on its own, for quick checks.
VERSION_KEY = "llmtraces.schema_version"


@dataclass(frozen=True)
class Column:
    """One column of the unified schema, with what it means and its value constraints."""

    name: str
    type: pa.DataType
    nullable: bool
    description: str
    minimum: int | None = None


COLUMNS: tuple[Column, ...] = (
    Column("request_id", pa.int64(), False,
           "0..n-1 in the order of the native file (arrival order where the source is sorted).", 0),
    Column("arrival_us", pa.int64(), True,
           "Arrival time in microseconds since the trace's time origin; null where the source has "
           "no timing."),
    Column("input_tokens", pa.int64(), False,
           "Prompt length in tokens: the full context the server must process.", 0),
    Column("output_tokens", pa.int64(), True,
           "Generated tokens (0 with failed=true where the source marks failures so).", 0),
    Column("failed", pa.bool_(), True, "The source says the request failed."),
    Column("model", pa.string(), True, "Model named by the source (ChatGPT, GPT-4, ...)."),
    Column("service", pa.string(), True,
           "Workload class: conversation, api, code, multimodal, agent, ..."),
    Column("session_id", pa.string(), True, "Conversation or session key."),
    Column("turn", pa.int32(), True, "Position within the session, from 0.", 0),
    Column("parent_request_id", pa.int64(), True,
           "request_id of the previous request of the same conversation, where the source links "
           "them.", 0),
    Column("num_images", pa.int32(), True, "Images in the request.", 0),
    Column("e2e_latency_us", pa.int64(), True,
           "Measured end-to-end latency in microseconds, where the source recorded it.", 0),
    Column("input_token_ids", pa.list_(pa.int32()), True, "Actual prompt token ids."),
    Column("output_token_ids", pa.list_(pa.int32()), True, "Actual output token ids."),
    Column("hash_ids", pa.list_(pa.int64()), True, "Prefix-block hash ids."),
    Column("hash_block_size", pa.int32(), True, "Tokens per hash block for hash_ids.", 1),
    Column("source_row", pa.int64(), False,
           "0-based index of the record among the native file's data records (header excluded).",
           0),
    Column("extra", pa.string(), True,
           "JSON object of native fields with no column above, so nothing is dropped."),
)

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)

TRACE_SCHEMA: pa.Schema = pa.schema(
    [pa.field(c.name, c.type, nullable=c.nullable) for c in COLUMNS],
    metadata={VERSION_KEY: SCHEMA_VERSION},
)


def empty_table() -> pa.Table:
    """A zero-row table in the unified schema."""
    return TRACE_SCHEMA.empty_table()


def make_batch(n: int, columns: Mapping[str, pa.Array | list[Any]]) -> pa.RecordBatch:
    """Build a unified batch of ``n`` rows from the given columns; every other column is null.

    ``request_id`` and ``source_row`` are required, as the schema makes them non-null.
    """
    unknown = set(columns) - set(COLUMN_NAMES)
    if unknown:
        raise ValueError(f"not columns of the unified schema: {sorted(unknown)}")
    arrays = []
    for col in COLUMNS:
        if col.name in columns:
            value = columns[col.name]
            if isinstance(value, pa.Array | pa.ChunkedArray):
                arrays.append(value if value.type.equals(col.type) else value.cast(col.type))
            else:
                arrays.append(pa.array(value, type=col.type))
        elif col.nullable:
            arrays.append(nulls(n, col.type))
        else:
            raise ValueError(f"column {col.name} is required")
    return pa.RecordBatch.from_arrays(arrays, schema=TRACE_SCHEMA)


def native_batch(start: int, n: int, columns: Mapping[str, pa.Array], *,
                 service: str | None = None, extra: pa.Array | None = None) -> pa.RecordBatch:
    """The unified batch of ``n`` native records from record ``start``: ``request_id`` and
    ``source_row`` are the record indices, ``service`` the registry's constant where given,
    ``extra`` where any row has one; ``columns`` are the rest."""
    cols: dict[str, pa.Array] = {"request_id": row_index(start, n),
                                 "source_row": row_index(start, n), **columns}
    if service:
        cols["service"] = constant(service, n, pa.string())
    if extra is not None:
        cols["extra"] = extra
    return make_batch(n, cols)


# 0..n-1 built once from a buffer (pa.array(range(n)) costs ~0.1 s per million rows), then
# sliced and offset for every batch.
_IOTA: list[pa.Array] = [pa.nulls(0, pa.int64())]


def row_index(start: int, n: int) -> pa.Array:
    """int64 indices ``start .. start+n-1``, for request_id and source_row."""
    if len(_IOTA[0]) < n:  # built once per process, then sliced
        size = max(n, 1 << 16)
        data = pa.py_buffer(array.array("q", range(size)))
        _IOTA[0] = pa.Array.from_buffers(pa.int64(), size, [None, data])
    return pc.add(_IOTA[0].slice(0, n), pa.scalar(start, pa.int64()))


def constant(value: Any, n: int, type: pa.DataType) -> pa.Array:
    """An array of ``n`` copies of ``value`` (null when ``value`` is None)."""
    none = nulls(n, type)
    return none if value is None else pc.fill_null(none, pa.scalar(value, type))


# One all-null array per type, sliced for every batch that lacks the column: a unified batch
# has up to 13 absent columns, and a fresh pa.nulls allocates and zeroes their buffers each time
# (10-14 MiB of peak RSS in a conversion). Sharing is safe: Arrow arrays are immutable.
_NULLS: dict[pa.DataType, pa.Array] = {}
#: Longer arrays are allocated each time, so the cache holds at most ~4 MiB.
_NULLS_MAX_ROWS = 1 << 17


def nulls(n: int, type: pa.DataType) -> pa.Array:
    """``n`` nulls of ``type``, a slice of one cached array (up to 128Ki rows)."""
    if n > _NULLS_MAX_ROWS:
        return pa.nulls(n, type)
    cached = _NULLS.get(type)
    if cached is None or len(cached) < n:
        size = min(_NULLS_MAX_ROWS, max(1 << 10, 1 << (n - 1).bit_length()))
        cached = _NULLS[type] = pa.nulls(size, type)
    return cached.slice(0, n)


def type_name(t: pa.DataType) -> str:
    """Short type name as the docs write it: ``int64``, ``list<int32>``."""
    return f"list<{t.value_type}>" if pa.types.is_list(t) else str(t)


def _json_type(t: pa.DataType) -> dict[str, Any]:
    if pa.types.is_integer(t):
        return {"type": "integer"}
    if pa.types.is_boolean(t):
        return {"type": "boolean"}
    if pa.types.is_string(t):
        return {"type": "string"}
    if pa.types.is_list(t):
        return {"type": "array", "items": _json_type(t.value_type)}
    raise TypeError(f"no JSON Schema mapping for {t}")


def json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of one unified row, as the JSONL export writes it."""
    props: dict[str, Any] = {}
    for col in COLUMNS:
        prop = _json_type(col.type)
        if col.nullable:
            prop["type"] = [prop["type"], "null"]
        if col.minimum is not None:
            prop["minimum"] = col.minimum
        prop["description"] = col.description
        prop["x-arrow-type"] = type_name(col.type)
        props[col.name] = prop
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://llmtraces.org/schemas/trace.schema.json",
        "title": f"llmtraces unified trace row, schema v{SCHEMA_VERSION}",
        "type": "object",
        "properties": props,
        "required": [c.name for c in COLUMNS],
        "additionalProperties": False,
    }


def dumps_json_schema() -> str:
    """The exact text of ``schemas/trace.schema.json``."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"




@dataclass
class TraceStream:
    """Unified batches and the trace metadata that goes with them.

    ``meta`` is live: a reader fills it as it reads, so it holds ``time_origin`` and
    ``native_layout`` once the first batch is out, and the final ``rows`` once ``batches`` is
    exhausted. A stream read from unified Parquet has it all from the start.
    """

    batches: Iterator[pa.RecordBatch]
    meta: dict[str, Any] = field(default_factory=dict)
