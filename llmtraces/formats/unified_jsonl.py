"""Unified trace -> JSON Lines with every column of the unified schema, one object per request.

Each line is an object with every column as a key, in schema order (``json.dumps`` default
separators, UTF-8 kept as is), nulls as ``null``, lists as arrays, ``extra`` as the JSON text it
holds; every line validates against ``schemas/trace.schema.json``. The trace metadata goes to
``<file>.meta.json`` (see :mod:`._unified`); the ``llmtraces-jsonl`` reader reads both back.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_path
from ..schema import COLUMN_NAMES, TRACE_SCHEMA
from . import TraceStream, Writer
from ._unified import JSONL_FORMAT, write_sidecar


def write(stream: TraceStream, dest: Path) -> int:
    """Write the stream as unified JSONL at ``dest`` (and its metadata sidecar), atomically."""
    rows = 0
    with atomic_path(dest) as tmp:
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            for batch in stream.batches:
                if not batch.num_rows:
                    continue
                columns = batch.select(TRACE_SCHEMA.names).to_pydict()
                lines = [json.dumps({name: columns[name][i] for name in COLUMN_NAMES},
                                    ensure_ascii=False) for i in range(batch.num_rows)]
                fh.write("\n".join(lines) + "\n")
                rows += batch.num_rows
        write_sidecar(Path(dest), JSONL_FORMAT, rows, stream.meta)
    return rows


WRITER = Writer("jsonl", ".jsonl", "the unified schema as JSON Lines (every column; metadata in "
                "<file>.meta.json)", write)
