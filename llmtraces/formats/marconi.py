"""Marconi traces (Pan et al., MLSys'25, ``ruipeterpan/marconi``): the ``marconi-jsonl`` reader and
the ``marconi`` writer.

Reader: one request per line, keys in order ``session_id`` (int), ``turn_id`` (int), ``ts``
(float seconds, relative and synthetic), ``num_input_tokens``, ``num_output_tokens``,
``input_tokens`` and ``output_tokens`` (Llama-2 token ids; the input holds the whole history,
each tokenisation starting with BOS 1), written with ``json.dumps``'s default separators.
Kavier's input files, the same requests as CSV or Parquet, are read by :mod:`.kavier_csv` and
:mod:`.kavier_parquet`, which share :func:`check_ids` and :data:`TIME` from here.

Mapping: ``session_id`` -> ``session_id`` (text), ``turn_id`` -> ``turn``, ``ts`` ->
``arrival_us`` (exact to 1 µs; a value with finer digits, e.g. ``9.333333333333334``, is rounded
and its raw value kept in ``extra`` for the writers), ``num_*_tokens`` ->
``input_tokens``/``output_tokens``, the lists -> ``input_token_ids``/``output_token_ids``. A
count that differs from its list's length is an error, as is an id outside ``0..2**31-1``.

Writer: unified trace -> Marconi trace JSONL, the layout Marconi's ``policy_exploration.py``
replays. One object per request: ``session_id`` (int where the unified id is a decimal integer,
else the text), ``turn_id`` (``turn``, 0 where null), ``ts`` (float seconds:
``arrival_us / 1e6``, or the raw value kept in ``extra``), ``num_input_tokens``,
``num_output_tokens``, ``input_tokens`` and ``output_tokens``. The token id lists are required:
Marconi simulates prefix caching on them. A request without a session becomes its own session,
numbered by its request_id. A trace read from a Marconi file keeps its key order, separators,
extra keys and final newline, so the file comes back byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..schema import TraceStream, native_batch
from ..text import ReadContext
from ..text.jsonl import (
    JsonBlock,
    Key,
    check_counts,
    check_order,
    first_record_keys,
    iter_jsonl,
)
from ..text.jsonl import report_rows as json_report_rows
from ..text.jsonlwrite import write_jsonl
from ..text.seconds import float_seconds
from ..timing import TimeSemantics
from . import NativeFormat, Writer
from .mooncake import extras, record, required

# --- reading -------------------------------------------------------------------------------------

#: Marconi's keys, in the order its generator writes them.
KEYS = (Key("session_id", "int"), Key("turn_id", "int"), Key("ts", "number"),
        Key("num_input_tokens", "int"), Key("num_output_tokens", "int"),
        Key("input_tokens", "int_list"), Key("output_tokens", "int_list"))
SNIFF_KEYS = ("session_id", "turn_id", "ts", "num_input_tokens", "num_output_tokens")
LISTS = (("input_tokens", "num_input_tokens", "input_token_ids"),
         ("output_tokens", "num_output_tokens", "output_token_ids"))
INT32_MAX = (1 << 31) - 1

TIME = TimeSemantics(
    kind="relative", native_format="float seconds since the start of the trace (synthetic)",
    resolution="as written (float seconds, kept to 1 µs)",
    origin="start of the trace (ts 0.0: session 0's first request)")

Reporter = Callable[[pa.Array, str, str, str], None]


def check_ids(ids: pa.Array, counts: pa.Array, list_key: str, count_key: str,
              report: Reporter, problem: Callable[[int, str, str, str], None]) -> pa.Array:
    """Token id lists as list<int32>: ids outside int32 or negative, and lists whose length is
    not the count, are reported; such rows read as null."""
    flat = pc.list_flatten(ids)
    n = len(ids)
    bad = pa.array([False] * n)
    if len(flat):
        out = pc.or_(pc.less(flat, 0), pc.greater(flat, INT32_MAX))
        if pc.any(out).as_py():
            rows = pc.filter(pc.list_parent_indices(ids), out)
            bad = pc.is_in(pa.array(range(n), pa.int64()), value_set=rows)
            report(bad, list_key, "range", "token id outside 0..2147483647 (int32)")
    length = pc.list_value_length(ids)
    wrong = pc.fill_null(pc.not_equal(pc.cast(length, pa.int64()), counts), False)
    if pc.any(wrong).as_py():
        lengths, values = length.to_pylist(), counts.to_pylist()
        for i in pc.indices_nonzero(wrong).to_pylist():
            problem(i, count_key, f"{count_key} is {values[i]} but {list_key} holds "
                    f"{lengths[i]} ids", str(values[i]))
    drop = pc.or_(bad, wrong)
    cleaned = pc.if_else(drop, pa.scalar(None, ids.type), ids)
    return cleaned.cast(pa.list_(pa.int32()))


# --- marconi-jsonl ------------------------------------------------------------------------------


def _arrival(ctx: ReadContext, b: JsonBlock) -> tuple[pa.Array, pa.Array]:
    """``ts`` (float s) as exact arrival_us, and a mask of values with digits finer than 1 µs
    (rounded; the caller keeps their raw value). See bailian's ``arrival_from_seconds``."""
    t = float_seconds(b.columns["ts"])
    json_report_rows(ctx, b, t.negative, "ts", "negative", "negative ts")
    json_report_rows(ctx, b, t.huge, "ts", "range", "ts too large for int64 µs")
    return t.us, t.sub_us


def _json_extra(b: JsonBlock, sub_us: pa.Array) -> pa.Array | None:
    """Raw ``ts`` of sub-µs rows and unknown keys, as JSON text (null where none)."""
    if b.extra is None and not pc.any(sub_us).as_py():
        return None
    ts, fine = b.columns["ts"].to_pylist(), sub_us.to_pylist()
    out: list[str | None] = []
    for i in range(b.num_rows):
        row: dict[str, Any] = {"ts": ts[i]} if fine[i] else {}
        row.update((b.extra[i] or {}) if b.extra is not None else {})
        out.append(json.dumps(row, ensure_ascii=False) if row else None)
    return pa.array(out, pa.string())


class MarconiJSONL(NativeFormat):
    """Marconi trace JSONL (session_id, turn_id, ts s, counts, Llama-2 token id lists)."""

    name = "marconi-jsonl"
    description = ("Marconi trace JSONL (session_id,turn_id,ts,num_input_tokens,"
                   "num_output_tokens,input_tokens,output_tokens)")
    time = TIME
    #: Only Marconi's traces have this layout: its licence applies to any copy, however named.
    licence_source = "marconi"

    def sniff(self, first_line: str) -> bool:
        keys = first_record_keys(first_line)
        return keys is not None and set(SNIFF_KEYS) <= keys

    def read(self, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        last: int | None = None
        for b in iter_jsonl(ctx, KEYS):
            n = b.num_rows

            def report(mask: pa.Array, key: str, code: str, message: str,
                       b: JsonBlock = b) -> None:
                json_report_rows(ctx, b, mask, key, code, message)

            def problem(i: int, key: str, message: str, value: str, b: JsonBlock = b) -> None:
                ctx.report.error("length", ctx.label, message, line=b.line(i), column=key,
                                 value=value)

            arrival, sub_us = _arrival(ctx, b)
            inputs = check_counts(ctx, b, "num_input_tokens", "token count")
            outputs = check_counts(ctx, b, "num_output_tokens", "token count")
            check_counts(ctx, b, "session_id", "session_id")
            turn = check_counts(ctx, b, "turn_id", "turn_id")
            huge = pc.greater(turn, INT32_MAX)
            json_report_rows(ctx, b, huge, "turn_id", "range", "turn_id too large for int32")
            turn = pc.if_else(pc.fill_null(huge, False), pa.scalar(None, pa.int64()), turn)
            ids = {target: check_ids(b.columns[key], b.columns[count], key, count, report,
                                     problem) for key, count, target in LISTS}
            last = check_order(ctx, b, arrival, "ts", last)
            cols: dict[str, pa.Array] = {
                "arrival_us": arrival,
                "input_tokens": pc.fill_null(inputs, 0),
                "output_tokens": outputs,
                "session_id": pc.cast(b.columns["session_id"], pa.string()),
                "turn": pc.cast(turn, pa.int32()),
                **ids,
            }
            extra = _json_extra(b, sub_us)
            b.flush()
            yield native_batch(b.start, n, cols, service=ctx.service, extra=extra)


FORMATS = (MarconiJSONL(),)


# --- writing -------------------------------------------------------------------------------------

OWN_FORMAT = "marconi-jsonl"
DEFAULT_KEYS = ("session_id", "turn_id", "ts", "num_input_tokens", "num_output_tokens",
                "input_tokens", "output_tokens")


def session_value(session: str | None, request_id: int) -> int | str:
    """Marconi's integer session id from the unified text (the text where it is no integer)."""
    if session is None:
        return request_id
    if session.isascii() and session.isdecimal() and str(int(session)) == session:
        return int(session)
    return session


def write(stream: TraceStream, dest: Path) -> int:
    """Write the stream as Marconi JSONL at ``dest``, atomically."""

    def records(batch: pa.RecordBatch, layout: dict[str, Any]) -> list[dict[str, Any]]:
        own = stream.meta.get("native_format") == OWN_FORMAT
        arrival = required(batch, "arrival_us", "Marconi", "an arrival time")
        kept = extras(batch) if own else [{}] * batch.num_rows
        rid = batch.column("request_id").to_pylist()
        sessions = batch.column("session_id").to_pylist()
        turns = batch.column("turn").to_pylist()
        columns = {
            "num_input_tokens": batch.column("input_tokens").to_pylist(),
            "num_output_tokens": required(batch, "output_tokens", "Marconi", "an output length"),
            "input_tokens": required(batch, "input_token_ids", "Marconi", "input token ids"),
            "output_tokens": required(batch, "output_token_ids", "Marconi", "output token ids"),
        }
        keys = layout["keys"] or DEFAULT_KEYS
        out = []
        for i in range(batch.num_rows):
            extra = dict(kept[i])
            fields: dict[str, Any] = {
                "session_id": session_value(sessions[i], rid[i]),
                "turn_id": turns[i] if turns[i] is not None else 0,
                "ts": extra.pop("ts", arrival[i] / 1_000_000),
                **{k: v[i] for k, v in columns.items()},
            }
            out.append(record(keys, fields, extra))
        return out

    return write_jsonl(stream, dest, OWN_FORMAT, records)


WRITER = Writer("marconi", ".jsonl", "Marconi trace JSONL (session_id, turn_id, ts s, "
                "num_input_tokens, num_output_tokens, input_tokens, output_tokens)", write)
