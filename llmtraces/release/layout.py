"""Names and bytes of a release folder: file keys, canonical JSON and the pinned Parquet
writer that makes a trace's bytes depend on its rows and the library versions only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import atomic_path
from ..formats.parquet import DELTA_COLUMNS, DICTIONARY_COLUMNS, ROW_GROUP_BYTES, ROW_GROUP_ROWS
from ..schema import METADATA_KEY, TRACE_SCHEMA

#: The folder (and bundle) name of release ``version``.
PREFIX = "llmtraces-traces-"
PARQUET_SUFFIX = ".parquet"
MANIFEST = "MANIFEST.json"
DATAPACKAGE = "datapackage.json"
CROISSANT = "croissant.json"
ZENODO = ".zenodo.json"
README = "README.md"
CITATION = "CITATION.cff"
LICENSES = "LICENSES.md"
CHANGELOG = "CHANGELOG.md"
RECIPES = "recipes.json"
SHA256SUMS = "SHA256SUMS"
MD5SUMS = "MD5SUMS"
#: The files the checksum lists cover every file but (they cannot list themselves).
SUM_FILES = (SHA256SUMS, MD5SUMS)

#: Parquet writer options pinned for releases: every option that changes the bytes is set
#: here rather than left to a pyarrow default that may move (zstd's default level differs
#: from 3, and statistics and page indexes change the footer).
PARQUET_OPTIONS: dict[str, Any] = {
    "version": "2.6",
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": DICTIONARY_COLUMNS,
    "column_encoding": DELTA_COLUMNS,
    "write_statistics": True,
    "write_page_index": False,
    "data_page_version": "1.0",
    "data_page_size": 1 << 20,
    "dictionary_pagesize_limit": 1 << 20,
    "write_batch_size": 1024,
    "store_schema": True,
}


def folder_name(version: str) -> str:
    """``llmtraces-traces-1.0.0``."""
    return f"{PREFIX}{version}"


def file_key(source_id: str, trace_id: str) -> str:
    """The flat, stable name of one trace's file in a release: ``<source>__<trace>.parquet``
    (Zenodo has no folders, and a ``/`` in a key breaks its content URLs)."""
    return f"{source_id}__{trace_id}{PARQUET_SUFFIX}"


def canonical_json(data: Any) -> str:
    """JSON as every release file writes it: keys sorted, 2-space indent, UTF-8, final newline."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_text(path: Path, text: str) -> None:
    """Write ``text`` as UTF-8 with LF line ends, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(text.encode("utf-8"))


def write_pinned(source: Path, dest: Path, meta: dict[str, Any]) -> int:
    """Rewrite the unified Parquet file ``source`` into ``dest`` with :data:`PARQUET_OPTIONS`,
    row groups of :data:`ROW_GROUP_ROWS` rows (or :data:`ROW_GROUP_BYTES`), and ``meta`` as
    its trace metadata; returns the rows. Memory: one row group at a time."""
    rows = 0
    # pre_buffer off: with it, pyarrow keeps read-ahead buffers and memory grows with the file
    # (a 10M-row trace peaked at 408 MiB, against ~140 without).
    pf = pq.ParquetFile(source, pre_buffer=False)
    with atomic_path(dest) as tmp:
        with pq.ParquetWriter(tmp, TRACE_SCHEMA, **PARQUET_OPTIONS) as writer:
            pending: list[pa.RecordBatch] = []
            buffered = size = 0
            for batch in pf.iter_batches(batch_size=1 << 16):
                batch = pa.RecordBatch.from_arrays(batch.columns, schema=TRACE_SCHEMA)
                pending.append(batch)
                buffered += batch.num_rows
                size += batch.nbytes
                rows += batch.num_rows
                if buffered >= ROW_GROUP_ROWS or size >= ROW_GROUP_BYTES:
                    table = pa.Table.from_batches(pending, TRACE_SCHEMA)
                    head = table.slice(0, ROW_GROUP_ROWS) if buffered > ROW_GROUP_ROWS \
                        else table
                    writer.write_table(head, row_group_size=ROW_GROUP_ROWS)
                    pa.default_memory_pool().release_unused()
                    rest = table.slice(head.num_rows)
                    pending = rest.to_batches() if rest.num_rows else []
                    buffered, size = rest.num_rows, rest.nbytes
            if pending:
                writer.write_table(pa.Table.from_batches(pending, TRACE_SCHEMA),
                                   row_group_size=ROW_GROUP_ROWS)
            writer.add_key_value_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True)})
    return rows
