"""Plumbing shared by the transforms: first passes, derived metadata, request-id renumbering
with parent links kept, and :func:`derive`, which builds a transform's :class:`TraceView`.

Every transform takes a trace and returns a view (:mod:`llmtraces.pipeline.view`): a recipe,
not a result, re-read from its source at each read. The few transforms that need a fact about
the whole trace (its first arrival, its mean rate, a sampling threshold) take it in a first
pass over only the columns they need (``reopen``); where that would mean parsing a native file
twice, it is spooled once to a temporary Parquet file instead (:func:`replayable`).
"""

from __future__ import annotations

import array
import copy
import os
import shutil
import sys
import tempfile
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InvalidTraceError
from ..formats.parquet import write
from ..pipeline.inputs import TraceLike, open_trace, parquet_stream
from ..pipeline.view import Reopen, TraceView, TransformError, describe_op, label, live
from ..schema import TRACE_SCHEMA, row_index

Batches = Iterator[pa.RecordBatch]
#: A transform's batch function: input batches in, output batches out.
BatchFn = Callable[[Batches], Batches]


class EmptyResultWarning(UserWarning):
    """A transform kept none of its input's requests (e.g. a window outside the trace)."""


def replayable(trace: TraceLike) -> TraceView:
    """``trace`` as a view with a cheap ``reopen`` for first passes: itself when it has one;
    otherwise it is written once to a temporary unified Parquet file (removed when the
    returned view is garbage-collected) and read from there, so a first pass costs one
    sequential write, not memory."""
    stream = open_trace(trace)
    if stream.reopen is not None:
        return stream
    folder = tempfile.mkdtemp(prefix="llmtraces-spool-")
    try:
        path = Path(folder) / "spool.parquet"
        write(stream, path)
        out = parquet_stream(path)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    weakref.finalize(out, shutil.rmtree, folder, True)
    return out


def project(batches: Iterable[pa.RecordBatch], columns: Sequence[str]
            ) -> Iterator[pa.RecordBatch]:
    """Only ``columns`` of each batch, in schema order."""
    for batch in batches:
        yield batch.select([n for n in TRACE_SCHEMA.names if n in set(columns)
                            and n in batch.schema.names])


# --- metadata --------------------------------------------------------------------------------

def derived_meta(inp: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """The metadata of a derived trace: the input's, with ``entry`` appended to ``transforms``
    and ``rows`` unknown until the output is exhausted."""
    out = copy.deepcopy(inp)
    out["transforms"] = [*inp.get("transforms", []), entry]
    out["rows"] = None
    return out


def time_kind(meta: dict[str, Any]) -> str | None:
    """``absolute``, ``relative``, ``none`` (no timing) or None (not recorded)."""
    time = meta.get("time")
    return time.get("kind") if isinstance(time, dict) else None


def require_timing(meta: dict[str, Any], op: str) -> None:
    """Refuse a time-based transform on a trace whose metadata says it has no timing."""
    if time_kind(meta) == "none":
        what = meta.get("source") or meta.get("native_file") or "this trace"
        raise TransformError(f"{op} needs arrival times, but {what} has none (its time kind is "
                             "'none': arrival_us is null); use head, sample or filter instead")


def check_arrivals(arr: pa.Array, op: str) -> None:
    """A time-based transform met a row with no arrival time."""
    if arr.null_count:
        raise TransformError(f"{op} needs arrival times, but the trace has rows with a null "
                             "arrival_us (no timing); use head, sample or filter instead")


# --- renumbering -----------------------------------------------------------------------------

_I64 = pa.int64()


class IdMap:
    """Old request_id -> new request_id for one input, kept as 8 bytes per input row.

    Old ids are the input's 0..n-1 in row order (the unified schema's rule); the new id of a
    row that was dropped is -1. Parent links point back to earlier requests, so by the time a
    child is seen its parent's new id is known; a link to a dropped request becomes null.
    """

    def __init__(self) -> None:
        self._ids = array.array("q")

    def __len__(self) -> int:
        return len(self._ids)

    def append(self, old_ids: pa.Array | None, new_ids: pa.Array) -> None:
        """Record the new ids (-1: dropped) of the next rows, whose old ids are ``old_ids``."""
        start = len(self._ids)
        n = len(new_ids)
        if old_ids is not None and n:
            first, last = old_ids[0].as_py(), old_ids[n - 1].as_py()
            if first != start or last != start + n - 1 or old_ids.null_count:
                raise InvalidTraceError(
                    f"request_id must be 0..n-1 in row order (unified schema v1); rows "
                    f"{start}..{start + n - 1} have {first}..{last}")
        filled = pc.fill_null(new_ids.cast(_I64), -1)
        if isinstance(filled, pa.ChunkedArray):
            filled = filled.combine_chunks()
        if n:
            data = memoryview(filled.buffers()[1])
            self._ids.frombytes(data[8 * filled.offset: 8 * (filled.offset + n)])

    def lookup(self, parents: pa.Array) -> pa.Array:
        """New ids of the old ids in ``parents``; null where null, dropped or not seen yet."""
        if parents.null_count == len(parents):
            return pa.nulls(len(parents), _I64)
        size = len(self._ids)
        known = pc.and_kleene(pc.greater_equal(parents, 0), pc.less(parents, size))
        safe = pc.if_else(known, parents, pa.scalar(0, _I64))
        view = pa.Array.from_buffers(_I64, size, [None, pa.py_buffer(self._ids)])
        try:
            got = pc.take(view, safe) if size else pa.nulls(len(parents), _I64)
        finally:
            del view  # release the buffer export before the array grows again
        got = pc.if_else(pc.and_kleene(known, pc.greater_equal(got, 0)), got,
                         pa.scalar(None, _I64))
        return got.combine_chunks() if isinstance(got, pa.ChunkedArray) else got


def arange(start: int, n: int) -> pa.Array:
    """int64 ``start .. start+n-1``."""
    return row_index(start, n)


def set_column(batch: pa.RecordBatch, name: str, values: pa.Array) -> pa.RecordBatch:
    """``batch`` with column ``name`` replaced by ``values``."""
    i = batch.schema.get_field_index(name)
    return batch.set_column(i, batch.schema.field(i), values)


class Renumber:
    """Drops rows and renumbers ``request_id`` 0..n-1, remapping ``parent_request_id``.

    Feed it every input batch in order with the mask of rows to keep; it returns the kept rows
    renumbered. Only the columns present in the batch are touched.
    """

    def __init__(self) -> None:
        self.kept = 0
        self.seen = 0
        self.ids = IdMap()

    def __call__(self, batch: pa.RecordBatch, keep: pa.Array | None) -> pa.RecordBatch:
        n = batch.num_rows
        names = batch.schema.names
        keep = pc.fill_null(pa.nulls(n, pa.bool_()) if keep is None else keep,
                            keep is None)
        taken = pc.sum(keep).as_py() or 0
        has_parents = "parent_request_id" in names
        if has_parents or taken != n:
            # cumulative count of kept rows gives each kept row its new id
            csum = pc.cumulative_sum(keep.cast(_I64))
            new = pc.if_else(keep, pc.add(csum, self.kept - 1), pa.scalar(-1, _I64))
        else:
            new = arange(self.kept, n)
        old = batch.column("request_id") if "request_id" in names else None
        self.ids.append(old, new)
        out = batch.filter(keep) if taken != n else batch
        if "request_id" in names:
            out = set_column(out, "request_id", arange(self.kept, taken))
        if has_parents:
            out = set_column(out, "parent_request_id",
                             self.ids.lookup(out.column("parent_request_id")))
        self.kept += taken
        self.seen += n
        return out


def _caller_level() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside this package (the
    user's line that read the trace), counted from the function that calls this one."""
    package = os.path.dirname(os.path.dirname(__file__))  # as code objects name their files
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(package):
        level += 1
        frame = frame.f_back  # type: ignore[assignment]
    return level


def derive(inp: TraceView, entry: dict[str, Any], make: Callable[[], Callable[
        [Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]], needs: Iterable[str],
        overrides: Callable[[], dict[str, Any]] | None = None, *,
        empty: Callable[[], str] | None = None, warn_empty: bool = True) -> TraceView:
    """The view ``make()(inp.batches)``, with metadata ``entry`` appended to ``transforms``.

    ``make`` returns a fresh batch function for each read (it may hold state), so the output
    is re-read by re-reading the input, and column-projected whenever the input can be: the
    function then runs on the input's batches of the asked columns plus ``needs``. A read
    that keeps none of a non-empty input's rows warns (:class:`EmptyResultWarning`), with
    ``empty()`` appended to the message, unless ``warn_empty`` is False (``head(0)``).
    """
    needs = set(needs)
    out_meta = derived_meta(inp.meta, entry)
    reopen: Reopen | None = None
    in_reopen = inp.reopen
    if in_reopen is not None:
        def reopen(columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
            assert in_reopen is not None
            cols = set(columns) | needs
            return project(make()(in_reopen(sorted(cols))), columns)

    def read() -> Iterator[pa.RecordBatch]:
        source = inp.batches  # now: a one-shot input already read fails here, clearly
        seen = [0]

        def counted() -> Iterator[pa.RecordBatch]:
            for batch in source:
                seen[0] += batch.num_rows
                yield batch

        def run() -> Iterator[pa.RecordBatch]:
            yield from live(make()(counted()), inp.meta, out_meta, overrides)
            if warn_empty and out_meta["rows"] == 0 and seen[0]:
                warnings.warn(f"{describe_op(entry)} kept none of the {seen[0]:,} requests of "
                              f"{label(inp.meta)}{empty() if empty is not None else ''}",
                              EmptyResultWarning, stacklevel=_caller_level())
        return run()

    return TraceView(out_meta, read, reopen=reopen, settled=inp.settled,
                     checked_at_end=inp.checked_at_end)


def select_rows(inp: TraceView, entry: dict[str, Any],
                keep: Callable[[pa.RecordBatch], pa.Array], needs: Sequence[str], *,
                empty: Callable[[], str] | None = None, warn_empty: bool = True) -> TraceView:
    """A row selection by a per-batch mask, with renumbering."""
    def make() -> BatchFn:
        def run(batches: Batches) -> Batches:
            ren = Renumber()
            for batch in batches:
                out = ren(batch, keep(batch))
                if out.num_rows:
                    yield out
        return run
    return derive(inp, entry, make, {"request_id", *needs}, empty=empty,
                  warn_empty=warn_empty)
