"""A trace's content hash: the same for any Parquet encoding of the same rows.

Definition (``content_sha256``, recorded in MANIFEST.json and recipes.json): the sha256 of the
Arrow IPC *stream* of the trace's rows, in file order, with

- the unified schema (:data:`llmtraces.schema.TRACE_SCHEMA`) and **no** schema metadata (the
  trace metadata and pyarrow's own keys are left out),
- record batches of exactly :data:`BATCH_ROWS` rows (the last one shorter), so how the file's
  row groups and pages were cut does not matter,
- no IPC body compression, and pyarrow's default IPC write options (metadata V5, 8-byte
  alignment), ending with the end-of-stream marker.

Compression codec and level, dictionary and delta encodings, row-group and page sizes,
statistics and the ``created_by`` string therefore do not change it; only the rows do. The
Arrow IPC format is stable across pyarrow releases (checked: 25.0.1 and 26.0.1 give the
same stream).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..schema import TRACE_SCHEMA

#: Rows per record batch of the canonical stream.
BATCH_ROWS = 1 << 16
#: The schema of the canonical stream: the unified columns, no metadata.
CANONICAL_SCHEMA = TRACE_SCHEMA.remove_metadata()


class _HashSink:
    """A write-only file object that only hashes what it is given."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.closed = False

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        self.digest.update(view)
        return view.nbytes

    def flush(self) -> None:
        """Nothing is buffered."""

    def close(self) -> None:
        self.closed = True


def content_sha256(path: Path) -> tuple[str, int]:
    """The content hash of the unified Parquet file ``path`` and its row count; memory is
    bounded by a few batches of :data:`BATCH_ROWS` rows."""
    sink = _HashSink()
    rows = 0
    pf = pq.ParquetFile(path, pre_buffer=False)  # no read-ahead: memory stays flat
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), CANONICAL_SCHEMA) as writer:
        pending: pa.Table | None = None
        for batch in pf.iter_batches(batch_size=BATCH_ROWS):
            table = pa.Table.from_batches([batch]).cast(CANONICAL_SCHEMA)
            pending = table if pending is None else pa.concat_tables([pending, table])
            while pending.num_rows >= BATCH_ROWS:
                writer.write_batch(pending.slice(0, BATCH_ROWS).combine_chunks().to_batches()[0])
                pending = pending.slice(BATCH_ROWS)
            rows += batch.num_rows
        if pending is not None and pending.num_rows:
            writer.write_batch(pending.combine_chunks().to_batches()[0])
    return sink.digest.hexdigest(), rows


def main(argv: list[str]) -> int:
    """``python -m llmtraces.release.content_hash FILE...``: print each file's content hash
    and rows, to check a locally rebuilt trace against a release's recipes.json."""
    for name in argv:
        digest, rows = content_sha256(Path(name))
        print(f"{digest}  {rows}  {name}")
    return 0


if __name__ == "__main__":
    import sys  # lazy: only the command line needs it

    raise SystemExit(main(sys.argv[1:]))
