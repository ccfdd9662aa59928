"""The CSV engine of the writers whose readers share ``read_seconds_csv`` (vidur, splitwise-sim).

A :class:`Plan` fixes a file's header, line ends and seconds style; :func:`write_csv` streams
the trace through it, and the column helpers render token counts, seconds (raw text kept in
``extra`` wins, so a native file comes back byte for byte) and verbatim text fields.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pjson

from ..atomic import atomic_path
from ..errors import InvalidTraceError
from ..schema import TraceStream
from .limits import check_json_cells
from .seconds import FIXED6, Style, format_styled


@dataclass(frozen=True)
class Plan:
    """What one CSV file looks like: header, line ends, seconds style and time shift.

    ``native`` means the trace was read from this very layout, so values kept in ``extra``
    (unknown columns, seconds the style would not reproduce) are written back verbatim.
    """

    columns: list[str]
    native: bool
    style: Style
    newline: str = "\n"
    final_newline: bool = True
    origin_us: int = 0


ColumnFn = Callable[[str, pa.RecordBatch, Plan, dict[str, pa.Array]], pa.Array]


def native_plan(meta: dict[str, Any], formats: tuple[str, ...]) -> Plan | None:
    """The plan of a trace read from one of ``formats``, from its ``native_layout``."""
    layout = meta.get("native_layout") or {}
    if meta.get("native_format") not in formats or not layout.get("columns"):
        return None
    return Plan(list(layout["columns"]), True, layout.get("seconds") or dict(FIXED6),
                layout.get("newline", "\n"), layout.get("final_newline") is not False)


def kept_values(batch: pa.RecordBatch, names: list[str]) -> dict[str, pa.Array]:
    """The string values of ``names`` in each row's ``extra`` (null where absent)."""
    extra = batch.column("extra")
    if extra.null_count == batch.num_rows:
        return {n: pa.nulls(batch.num_rows, pa.string()) for n in names}
    check_json_cells(extra, "extra")  # pyarrow.json crashes on deep nesting
    objects = pc.fill_null(extra, "{}")
    one = pa.ListArray.from_arrays(pa.array([0, len(objects)], pa.int32()), objects)
    text = pc.binary_join(one, "\n")[0].as_buffer()
    schema = pa.schema([(n, pa.string()) for n in names])
    try:
        table = pjson.read_json(pa.BufferReader(text), parse_options=pjson.ParseOptions(
            explicit_schema=schema, unexpected_field_behavior="ignore"))
        return {n: table.column(n).combine_chunks() for n in names}
    except pa.ArrowInvalid:  # a value that is not a string: convert it the slow way
        rows = [json.loads(r) for r in objects.to_pylist()]
        return {n: pa.array([None if r.get(n) is None else str(r[n]) for r in rows], pa.string())
                for n in names}


def csv_field(values: pa.Array) -> pa.Array:
    """Text values as CSV fields: quoted (quotes doubled) where they hold , " or a line end."""
    special = pc.fill_null(pc.match_substring_regex(values, '[,"\r\n]'), False)
    if not pc.any(special).as_py():
        return values
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(values, '"', '""'), '"', "")
    return pc.if_else(special, quoted, values)


def counts(batch: pa.RecordBatch, column: str, fmt: str) -> pa.Array:
    """A token-count column as text; the format needs one for every request."""
    values = batch.column(column)
    if values.null_count:
        raise InvalidTraceError(f"a {fmt} CSV needs {column} for every request; "
                                f"{values.null_count:,} rows have none")
    return pc.cast(values, pa.string())


def seconds(batch: pa.RecordBatch, plan: Plan, kept: dict[str, pa.Array], column: str,
            fmt: str) -> pa.Array:
    """``arrival_us - plan.origin_us`` as seconds in the plan's style (kept raw text wins)."""
    arrival = batch.column("arrival_us")
    if arrival.null_count:
        raise InvalidTraceError(f"a {fmt} CSV needs a time for every request; "
                                f"{arrival.null_count:,} rows have none")
    shifted = pc.subtract(arrival, plan.origin_us)
    negative = pc.less(shifted, 0)
    if pc.any(negative).as_py():
        i = pc.indices_nonzero(negative)[0].as_py()
        rid = batch.column("request_id")[i].as_py()
        raise InvalidTraceError(
            f"a {fmt} CSV has no negative times: request_id {rid} arrives "
            f"{-shifted[i].as_py():,} µs before the {'origin' if plan.native else 'first row'}")
    text = format_styled(shifted, plan.style)
    raw = kept.get(column)
    return text if raw is None or raw.null_count == len(raw) else pc.if_else(
        raw.is_valid(), raw, text)


def write_csv(stream: TraceStream, dest: Path, plan_for: Callable[[pa.RecordBatch | None], Plan],
              column: ColumnFn) -> int:
    """Stream the trace into a CSV at ``dest`` atomically; returns the rows written.

    ``plan_for`` sees the first batch (None for an empty trace) once the reader has filled the
    metadata; ``column`` renders one native column of one batch as text.
    """
    rows = 0
    plan: Plan | None = None
    with atomic_path(dest) as tmp, tmp.open("w", encoding="utf-8", newline="") as fh:
        for batch in stream.batches:
            if plan is None:
                plan = plan_for(batch)
                fh.write(",".join(plan.columns))
            kept = kept_values(batch, plan.columns) if plan.native else {}
            cols = [column(name, batch, plan, kept) for name in plan.columns]
            if batch.num_rows:
                lines = pc.binary_join_element_wise(*cols, ",").to_pylist()
                fh.write(plan.newline + plan.newline.join(lines))
            rows += batch.num_rows
        if plan is None:
            plan = plan_for(None)
            fh.write(",".join(plan.columns))
        if plan.final_newline:
            fh.write(plan.newline)
    return rows
