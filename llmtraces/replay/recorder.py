"""``requests.parquet``: one row per request, written incrementally so that a crash or Ctrl-C
keeps every finished request.

Finished rows are buffered and handed, every ``flush_rows`` rows or ``flush_s`` seconds, to a
writer thread that writes them as one complete Parquet file in ``requests.parts/`` (each
part written to a temporary name and renamed, so every part on disk is readable). When the
run ends, :func:`finalize` concatenates the parts, in order and one at a time, into
``requests.parquet`` (again via a temporary file and a rename) and removes the folder. After a
hard kill (SIGKILL, power loss) the parts are still there: :func:`finalize` of the output
folder (``llmtraces replay --recover DIR``) builds ``requests.parquet`` from them.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import atomic_path

REQUESTS = "requests.parquet"
PARTS = "requests.parts"

#: Columns of ``requests.parquet``. Times are seconds since the run's start (t0, a monotonic
#: clock; ``summary.json`` gives t0's wall-clock instant).
REQUEST_SCHEMA = pa.schema([
    ("request_id", pa.int64()),          # the trace's request_id (after the replay's selection)
    ("source_row", pa.int64()),
    ("session_id", pa.string()),
    ("turn", pa.int64()),
    ("parent_request_id", pa.int64()),
    ("scheduled_s", pa.float64()),       # when the schedule said to send it
    ("ready_s", pa.float64()),           # when it could be sent: scheduled, or a free slot
    ("sent_s", pa.float64()),            # handed to the HTTP client
    ("first_token_s", pa.float64()),     # first SSE event with output text
    ("end_s", pa.float64()),             # response complete (or failed)
    ("chunk_times_s", pa.list_(pa.float64())),  # every SSE event with output text
    ("queue_s", pa.float64()),           # ready - scheduled: client queue (--max-concurrency)
    ("lateness_s", pa.float64()),        # sent - ready: dispatcher lateness
    ("ttft_s", pa.float64()),
    ("e2e_s", pa.float64()),
    ("tpot_s", pa.float64()),
    ("input_tokens", pa.int64()),        # prompt length asked (built to this count)
    ("prompt_tokens", pa.int64()),       # usage.prompt_tokens
    ("cached_tokens", pa.int64()),       # usage.prompt_tokens_details.cached_tokens
    ("output_tokens_asked", pa.int64()),  # max_tokens sent
    ("output_tokens", pa.int64()),       # got: usage.completion_tokens (else chunk count)
    ("usage_source", pa.string()),       # "usage", "chunks" (no usage), or null
    ("short_output", pa.bool_()),        # got fewer output tokens than asked
    ("chunks", pa.int64()),              # SSE events with output text
    ("finish_reason", pa.string()),
    ("status", pa.int64()),              # HTTP status (null: no response)
    ("ok", pa.bool_()),
    ("error", pa.string()),              # error class (errors.ERROR_CLASSES, http_<status>)
    ("error_detail", pa.string()),
])


def empty_row() -> dict[str, Any]:
    """A row with every column null."""
    return dict.fromkeys(REQUEST_SCHEMA.names)


def rows_table(rows: Sequence[Mapping[str, Any]], yield_gil: bool = False) -> pa.Table:
    """Rows (dicts keyed by column) as a table of :data:`REQUEST_SCHEMA`.

    One short C conversion per column (``pa.table`` of a dict of lists is ~100x slower); with
    ``yield_gil`` the thread gives the GIL away between columns and every 256 rows, so the
    dispatcher on the loop thread never waits long for it.
    """
    arrays = []
    for f in REQUEST_SCHEMA:
        parts = []
        for start in range(0, len(rows), 256):
            parts.append(pa.array([r.get(f.name) for r in rows[start:start + 256]], f.type))
            if yield_gil:
                time.sleep(0)
        arrays.append(pa.chunked_array(parts, f.type))
    return pa.Table.from_arrays(arrays, schema=REQUEST_SCHEMA)


#: What a value that does not fit its column raises in ``pa.array``.
_UNFIT = (pa.ArrowException, TypeError, ValueError, OverflowError)


def _fitted(row: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` with each value that does not fit its column set to null, and the row marked
    failed (``malformed``, the columns named in ``error_detail``)."""
    out, bad = dict(row), []
    for f in REQUEST_SCHEMA:
        try:
            pa.array([row.get(f.name)], f.type)
        except _UNFIT:
            out[f.name] = None
            bad.append(f.name)
    if bad:
        out["ok"] = False
        if out.get("error") is None:
            out["error"] = "malformed"
        out["error_detail"] = f"values that do not fit requests.parquet: {', '.join(bad)}"
    return out


def safe_table(rows: Sequence[Mapping[str, Any]], yield_gil: bool = False) -> pa.Table:
    """:func:`rows_table`, and when a value does not fit its column (an odd answer the client
    let through) the same rows with such values nulled: one bad row never loses a batch."""
    try:
        return rows_table(rows, yield_gil)
    except _UNFIT:
        return rows_table([_fitted(r) for r in rows], yield_gil)


def _part_paths(parts: Path) -> list[Path]:
    return sorted(parts.glob("part-*.parquet"))


class Recorder:
    """Collects finished rows and writes them to ``out/requests.parts/`` from a thread.

    Memory holds at most ``flush_rows`` rows (plus the one part being written), whatever the
    run's length. :meth:`close` writes what is left, waits for the thread and finalizes.
    """

    def __init__(self, out: Path, *, flush_rows: int = 2048, flush_s: float = 1.0,
                 prefix: str = "", fresh: bool = True) -> None:
        self.out = Path(out)
        self.parts = self.out / PARTS
        #: part names are ``part-{prefix}{seq:06d}.parquet``: a worker's own prefix keeps
        #: several recorders apart in one folder; ``fresh=False`` keeps what is there already
        self.prefix = prefix
        if fresh:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.parts.exists():
                shutil.rmtree(self.parts)
            (self.out / REQUESTS).unlink(missing_ok=True)
        self.parts.mkdir(parents=True, exist_ok=not fresh)
        self.flush_rows, self.flush_s = flush_rows, flush_s
        self.rows = 0
        self._buf: list[dict[str, Any]] = []
        self._last = time.monotonic()
        self._seq = 0
        self._queue: queue.SimpleQueue[list[dict[str, Any]] | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="llmtraces-replay-writer",
                                        daemon=True)
        self._thread.start()

    def add(self, row: dict[str, Any]) -> None:
        """Record one finished request."""
        self._buf.append(row)
        self.rows += 1
        if len(self._buf) >= self.flush_rows:
            self.flush()

    def tick(self) -> None:
        """Flush when ``flush_s`` has passed since the last flush (call it periodically)."""
        if self._buf and time.monotonic() - self._last >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        """Hand the buffered rows to the writer thread."""
        self._last = time.monotonic()
        if self._buf:
            self._queue.put(self._buf)
            self._buf = []
        if self._error is not None:
            raise self._error

    def _work(self) -> None:
        while True:
            rows = self._queue.get()
            if rows is None:
                return
            try:
                table = safe_table(rows, yield_gil=True)
                name = f"part-{self.prefix}{self._seq:06d}.parquet"
                with atomic_path(self.parts / name) as tmp:
                    # uncompressed: the parts are temporary, finalize compresses
                    pq.write_table(table, tmp, compression="none")
                self._seq += 1
            except BaseException as exc:  # reported to the loop thread on its next flush
                self._error = exc

    def close(self, finish: bool = True) -> Path:
        """Write the remaining rows, stop the thread and build ``requests.parquet`` (with
        ``finish=False``, as a worker does, leave the parts for the run to join; return the
        parts folder)."""
        self.flush()
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return finalize(self.out) if finish else self.parts

    def part_paths(self) -> list[Path]:
        """The parts this recorder wrote, in order."""
        return sorted(self.parts.glob(f"part-{self.prefix}[0-9]*.parquet"))


def finalize(out: Path) -> Path:
    """Concatenate ``out/requests.parts/*.parquet`` into ``out/requests.parquet`` (atomic,
    one part in memory at a time) and remove the parts; return the file.

    Also the recovery after a hard kill: the parts written before it are all complete files.
    """
    out = Path(out)
    parts = out / PARTS
    dest = out / REQUESTS
    if not parts.is_dir():
        if dest.is_file():
            return dest
        raise FileNotFoundError(f"{out}: neither {REQUESTS} nor {PARTS}/ to finalize")
    with atomic_path(dest) as tmp:
        with pq.ParquetWriter(tmp, REQUEST_SCHEMA, compression="zstd") as writer:
            for path in _part_paths(parts):
                try:
                    table = pq.read_table(path, schema=REQUEST_SCHEMA)
                except (OSError, pa.ArrowInvalid):
                    continue  # a part cut by a hard kill while being renamed: nothing to keep
                writer.write_table(table, row_group_size=1 << 16)
    shutil.rmtree(parts, ignore_errors=True)
    return dest


def read_requests(out: Path, columns: list[str] | None = None) -> pa.Table:
    """``requests.parquet`` of an output folder (or of a file path), as a table."""
    path = Path(out)
    if path.is_dir():
        path = path / REQUESTS
    return pq.read_table(os.fspath(path), columns=columns)
