"""Unified trace -> BurstGPT release CSV, in the layout the trace came in.

A trace read from a BurstGPT file is written back with its own header (column order, unknown
columns), number spellings (``5`` / ``5.0``), line ends and final newline, and the raw values
its reader kept in ``extra``, so a release file comes back byte for byte. Any other trace gets
the 6-column release order (``Timestamp,Model,Request tokens,Response tokens,Total tokens,
Log Type``), which vLLM's position-based reader expects, or the 8-column ``BurstGPT_3`` order
when it has sessions or latencies. ``Timestamp`` is ``arrival_us / 1e6`` on the trace's own
axis (BurstGPT times are relative), ``Total tokens`` is Request + Response, and a failed request
is written with ``Response tokens`` 0, the only way BurstGPT marks a failure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from ..atomic import atomic_path
from ..errors import InvalidTraceError
from ..schema import constant
from ..sources.burstgpt import COLUMNS_6, COLUMNS_8, format_seconds, log_type_of
from . import TraceStream, Writer

NATIVE = "burstgpt-csv"


@dataclass(frozen=True)
class _Plan:
    """What the whole file is written with, decided from the metadata and the first batch."""

    header: tuple[str, ...]
    native: bool  # the trace came from a BurstGPT file: its extra holds raw native values
    newline: str
    final_newline: bool
    #: The native layout; live while a reader streams, as it learns a column's number form
    #: from the first block that has a value.
    layout: dict[str, Any]
    default_forms: tuple[dict[str, Any], dict[str, Any]] = ({"form": "int"}, {"form": "int"})

    @classmethod
    def of(cls, meta: dict[str, Any], batch: pa.RecordBatch | None) -> _Plan:
        layout = meta.get("native_layout") or {}
        if meta.get("native_format") == NATIVE and layout.get("columns"):
            return cls(tuple(layout["columns"]), True, layout.get("newline", "\n"),
                       layout.get("final_newline", True) is not False, layout)
        if batch is not None and _has_v3_fields(batch):  # like BurstGPT_3: 19440110.0, 43
            return cls(COLUMNS_8, False, "\n", True, {}, ({"form": "float"}, {"form": "int"}))
        return cls(COLUMNS_6, False, "\n", True, {})

    def form(self, column: str) -> dict[str, Any]:
        """How the seconds of ``Timestamp`` or ``Elapsed time`` are written."""
        if column == "Timestamp":
            return self.layout.get("timestamp_form") or self.default_forms[0]
        return self.layout.get("elapsed_form") or self.default_forms[1]


def _has_v3_fields(batch: pa.RecordBatch) -> bool:
    n = batch.num_rows
    return (batch.column("session_id").null_count < n
            or batch.column("e2e_latency_us").null_count < n)


def _quote(col: pa.Array) -> pa.Array:
    """CSV-quote the values that need it (BurstGPT's own values never do)."""
    if not _any_byte_of(col, b'",\r\n'):
        return col
    needs = pc.match_substring_regex(col, '[",\r\n]')
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(col, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, col)


def _any_byte_of(col: pa.Array, chars: bytes) -> bool:
    """Whether the string data of ``col`` holds any of ``chars``, by a memchr over one copy of
    its buffer (bytes outside a sliced array can only cause a needless per-row check)."""
    data = col.buffers()[2]
    if data is None or not data.size:
        return False
    raw = data.to_pybytes()
    return any(raw.find(bytes([c])) >= 0 for c in chars)


def _kept(batch: pa.RecordBatch, names: tuple[str, ...]) -> dict[str, pa.Array]:
    """Raw native values kept in ``extra`` by the reader, per column (null where none)."""
    extra = batch.column("extra")
    if extra.null_count == batch.num_rows:
        return {}
    out: dict[str, list[str | None]] = {n: [None] * batch.num_rows for n in names}
    for i in pc.indices_nonzero(extra.is_valid()).to_pylist():
        row = json.loads(extra[i].as_py())
        for n in names:
            if n in row:
                out[n][i] = row[n]
    return {n: pa.array(v, pa.string()) for n, v in out.items() if any(x is not None for x in v)}


def _counts(batch: pa.RecordBatch, start: int) -> tuple[pa.Array, pa.Array]:
    """Request and Response tokens; a failed request has Response tokens 0."""
    failed = pc.fill_null(batch.column("failed"), False)
    outputs = batch.column("output_tokens")
    missing = pc.and_(pc.invert(failed), outputs.is_null())
    if pc.any(missing).as_py():
        i = pc.indices_nonzero(missing)[0].as_py()
        raise InvalidTraceError(f"a BurstGPT CSV needs Response tokens for every request that "
                                f"did not fail; request_id {start + i} has output_tokens null")
    return batch.column("input_tokens"), pc.if_else(failed, 0, outputs)


def _arrivals(batch: pa.RecordBatch, start: int) -> pa.Array:
    arrival = batch.column("arrival_us")
    bad = pc.fill_null(pc.less(arrival, 0), True)
    if pc.any(bad).as_py():
        i = pc.indices_nonzero(bad)[0].as_py()
        raise InvalidTraceError(
            f"a BurstGPT CSV needs a non-negative time for every request; request_id "
            f"{start + i} has arrival_us {arrival[i].as_py()}")
    return arrival


def _columns(batch: pa.RecordBatch, plan: _Plan, start: int) -> list[pa.Array]:
    inputs, outputs = _counts(batch, start)
    rebuilt: dict[str, pa.Array] = {
        "Timestamp": format_seconds(_arrivals(batch, start), plan.form("Timestamp")),
        "Session ID": _quote(pc.fill_null(batch.column("session_id"), "")),
        "Elapsed time": pc.fill_null(format_seconds(batch.column("e2e_latency_us"),
                                                    plan.form("Elapsed time")), ""),
        "Model": _quote(pc.fill_null(batch.column("model"), "")),
        "Request tokens": pc.cast(inputs, pa.string()),
        "Response tokens": pc.cast(outputs, pa.string()),
        "Total tokens": pc.cast(pc.add(inputs, outputs), pa.string()),
        "Log Type": _quote(log_type_of(batch.column("service"))),
    }
    kept = _kept(batch, plan.header) if plan.native else {}
    cols = []
    for name in plan.header:
        col = rebuilt.get(name)
        raw = kept.get(name)
        if raw is not None:
            quoted = _quote(pc.fill_null(raw, ""))
            col = quoted if col is None else pc.if_else(raw.is_valid(), quoted, col)
        cols.append(col if col is not None else constant("", batch.num_rows, pa.string()))
    return cols


def _write_lines(fh: BinaryIO, lines: pa.Array) -> None:
    """Write the bytes of a string array, values back to back, without Python strings."""
    if not len(lines):
        return
    offsets = lines.buffers()[1]
    first, last = (int.from_bytes(offsets[4 * k:4 * k + 4], "little", signed=True)
                   for k in (lines.offset, lines.offset + len(lines)))
    fh.write(memoryview(lines.buffers()[2])[first:last])


def write(stream: TraceStream, dest: Path) -> int:
    """Write the stream as a BurstGPT release CSV at ``dest``, atomically."""
    rows = 0
    plan: _Plan | None = None
    with atomic_path(dest) as tmp, tmp.open("wb") as fh:
        for batch in stream.batches:
            if plan is None:
                plan = _Plan.of(stream.meta, batch)
                fh.write(",".join(plan.header).encode())
            elif not plan.native and len(plan.header) == 6 and _has_v3_fields(batch):
                raise InvalidTraceError(
                    "sessions or latencies appear after the first batch, which had none, so the "
                    "6-column layout already chosen cannot hold them")
            cols = _columns(batch, plan, rows)
            cols[0] = pc.binary_join_element_wise("", cols[0], plan.newline)  # newline first
            _write_lines(fh, pc.binary_join_element_wise(*cols, ","))
            rows += batch.num_rows
        if plan is None:
            plan = _Plan.of(stream.meta, None)
            fh.write(",".join(plan.header).encode())
        if plan.final_newline:
            fh.write(plan.newline.encode())
    return rows


WRITER = Writer("burstgpt", ".csv", "BurstGPT release CSV (Timestamp,[Session ID,Elapsed time,]"
                "Model,Request tokens,Response tokens,Total tokens,Log Type), seconds", write)
