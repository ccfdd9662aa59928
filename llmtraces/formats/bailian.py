"""Qwen/Bailian KVCache traces (github.com/alibaba-edu/qwen-bailian-usagetraces-anon), JSONL: the
``bailian-jsonl`` reader and the ``bailian`` writer.

Reader: one object per request: ``chat_id``, ``parent_chat_id`` (-1 for a root), ``timestamp``
(float seconds since the start of the trace), ``input_length``, ``output_length``, ``type``
(text/search/image/file), ``turn`` and ``hash_ids`` (salted SipHash over 16-token blocks,
remapped to integers). Each row is a whole request: a follow-up's ``input_length`` and
``hash_ids`` include the history.

Mapping: request_id stays 0..n-1 in file order; ``parent_request_id`` is the request_id of the
earlier row whose chat_id is this row's ``parent_chat_id``; ``session_id`` is the chat_id of the
chain's root, as text; ``type`` -> service; ``turn`` -> turn counted from 0, as the schema
counts it. Bailian's own numbering looks 1-based (a root is turn 1 in aiperf's example, a child
turn 2 in the README's), but no real bytes were checked here, so the reader takes the base from
the data: the smallest turn of the root rows (parent -1) in the first block, if that is 1, else
0; it is kept in the layout (``turn_base``) for the writer. ``chat_id`` and ``parent_chat_id``
are kept in ``extra`` so the bailian writer gives them back exactly.

Memory: linking needs a chat_id -> request_id map over the whole file (ints only, about 100
bytes per row: ~17 MB for the 172,800-row traceB) plus 8 bytes per row for the session roots.

Writer: unified trace -> Qwen/Bailian trace JSONL, the layout aiperf's ``bailian_trace`` loader
reads. One object per request: ``chat_id``, ``parent_chat_id`` (-1 for a root), ``timestamp``
(float seconds since the trace start, the shortest text that gives ``arrival_us / 1e6`` back),
``input_length``, ``output_length``, ``type``, ``turn`` and ``hash_ids`` over 16-token blocks.

A trace read from a Bailian file keeps its chat ids (from ``extra``), raw sub-µs timestamps,
key order, separators and final newline, so the file comes back byte for byte. For a trace
from elsewhere: ``chat_id`` is the request_id and ``parent_chat_id`` the parent_request_id,
or, where the trace has sessions but no links, the request_id of the session's previous
request (so aiperf's ``bailian_trace`` loader sees the conversations), -1 for a root;
``type`` is the service (``text`` when unknown), and hash ids come from
:class:`~llmtraces.formats.mooncake.BlockIds` at 16 tokens per block. ``turn`` is the unified
turn (from 0; a missing one is the position in the parent chain) plus the file's
``turn_base``, or plus 1 for a trace from elsewhere, Bailian numbering roots 1 as far as its
README and aiperf show.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..schema import TraceStream, make_batch, row_index
from ..text import ReadContext
from ..text.jsonl import (
    JsonBlock,
    Key,
    check_block_count,
    check_counts,
    check_hash_ids,
    check_order,
    first_record_keys,
    iter_jsonl,
    report_rows,
)
from ..text.jsonlwrite import write_jsonl
from ..timing import TimeSemantics
from . import NativeFormat, Writer
from .mooncake import HashIdColumn, extras, record, required

# --- reading -------------------------------------------------------------------------------------

BLOCK_TOKENS = 16
TYPES = ("text", "search", "image", "file")
KEYS = (Key("chat_id", "int"), Key("parent_chat_id", "int"), Key("timestamp", "number"),
        Key("input_length", "int"), Key("output_length", "int"), Key("type", "string"),
        Key("turn", "int"), Key("hash_ids", "int_list"))
REQUIRED = tuple(k.name for k in KEYS)
_MAX_S = float((1 << 63) // 1_000_000)  # larger seconds overflow int64 microseconds


def arrival_from_seconds(ctx: ReadContext, block: JsonBlock) -> tuple[pa.Array, pa.Array]:
    """``timestamp`` (float s) as exact arrival_us, and a mask of values finer than 1 µs.

    round(s * 1e6) is exact for any value written with at most 6 decimals (the double nearest
    the text, times 1e6, is within far less than 0.5 of the integer); a value with finer
    digits is exactly the one whose µs do not give the same double back.
    """
    s = block.columns["timestamp"]
    negative = pc.less(s, 0)
    report_rows(ctx, block, negative, "timestamp", "negative", "negative timestamp")
    huge = pc.greater(s, _MAX_S)
    report_rows(ctx, block, huge, "timestamp", "range", "timestamp too large for int64 µs")
    bad = pc.fill_null(pc.or_(negative, huge), False)
    s = pc.if_else(bad, pa.scalar(None, pa.float64()), s)
    us = pc.cast(pc.round(pc.multiply(s, 1e6)), pa.int64())
    back = pc.divide(pc.cast(us, pa.float64()), 1e6)
    sub_us = pc.fill_null(pc.not_equal(back, s), False)
    report_rows(ctx, block, sub_us, "timestamp", "sub-microsecond",
                "digits finer than 1 µs do not fit arrival_us (rounded); the raw value is kept "
                "in extra", level="warning")
    return us, sub_us


class _Links:
    """chat_id -> request_id over the file read so far, and each request's session root."""

    def __init__(self) -> None:
        self.request_of: dict[int, int] = {}
        self.root_of = array("q")

    def link(self, ctx: ReadContext, block: JsonBlock) -> tuple[list[int | None],
                                                               list[str | None]]:
        chats = block.columns["chat_id"].to_pylist()
        parents = block.columns["parent_chat_id"].to_pylist()
        parent_rid: list[int | None] = []
        session: list[str | None] = []
        for i, (chat, parent) in enumerate(zip(chats, parents, strict=True)):
            rid = block.start + i
            prid: int | None = None
            root = chat
            if chat is None or parent is None:
                root = -1 if chat is None else chat
            elif parent != -1:
                prid = self.request_of.get(parent)  # looked up first: a self-parent is unseen
                if prid is None:
                    ctx.report.warning(
                        "parent", ctx.label, "parent_chat_id not seen earlier in the file; "
                        "parent_request_id is null and the row starts its own session",
                        line=block.line(i), column="parent_chat_id", value=str(parent))
                else:
                    root = self.root_of[prid]
            if chat is not None:
                if chat in self.request_of:
                    ctx.report.warning(
                        "duplicate", ctx.label, "chat_id already used by an earlier row; "
                        "children link to the first", line=block.line(i), column="chat_id",
                        value=str(chat))
                else:
                    self.request_of[chat] = rid
            self.root_of.append(root)
            parent_rid.append(prid)
            session.append(None if chat is None else str(root))
        return parent_rid, session


def _verbatim(block: JsonBlock, key: str, mask: pa.Array) -> list[Any] | None:
    """Raw values of ``key`` where ``mask`` is true (None elsewhere), or None if nowhere."""
    if not pc.any(mask).as_py():
        return None
    return pc.if_else(mask, block.columns[key], pa.scalar(None, block.columns[key].type)
                      ).to_pylist()


def _extra(block: JsonBlock, sub_us: pa.Array, odd_turn: pa.Array) -> pa.Array:
    """chat_id and parent_chat_id (always), raw sub-µs timestamps and turns below the file's
    base, and unknown keys, as JSON text (``json.dumps``'s, built without it where only the
    two ids are needed)."""
    chats, parents = block.columns["chat_id"], block.columns["parent_chat_id"]
    plain = pc.binary_join_element_wise(
        '{"chat_id": ', pc.cast(chats, pa.string()), ', "parent_chat_id": ',
        pc.cast(parents, pa.string()), "}", "")
    special = pc.or_(sub_us, odd_turn)
    if block.extra is None and not pc.any(special).as_py():
        return plain
    raw = {"timestamp": _verbatim(block, "timestamp", sub_us),
           "turn": _verbatim(block, "turn", odd_turn)}
    out: list[str | None] = plain.to_pylist()
    chat_l, parent_l, special_l = chats.to_pylist(), parents.to_pylist(), special.to_pylist()
    for i in range(block.num_rows):
        unknown = block.extra[i] if block.extra is not None else None
        if not (special_l[i] or unknown):
            continue
        row: dict[str, Any] = {"chat_id": chat_l[i], "parent_chat_id": parent_l[i]}
        for key, values in raw.items():
            if values is not None and values[i] is not None:
                row[key] = values[i]
        row.update(unknown or {})
        out[i] = json.dumps(row, ensure_ascii=False)
    return pa.array(out, pa.string())


def turn_base(block: JsonBlock) -> int:
    """1 if the smallest turn among the block's root rows is 1, else 0."""
    roots = pc.fill_null(pc.equal(block.columns["parent_chat_id"], -1), False)
    low = pc.min(pc.filter(block.columns["turn"], roots)).as_py()
    return 1 if low == 1 else 0


def unified_turn(ctx: ReadContext, block: JsonBlock, base: int) -> tuple[pa.Array, pa.Array]:
    """``turn - base`` as int32, and a mask of turns below the base (null, raw kept)."""
    turn = check_counts(ctx, block, "turn", "turn")
    huge = pc.greater(turn, (1 << 31) - 1)
    report_rows(ctx, block, huge, "turn", "range", "turn too large for int32")
    below = pc.fill_null(pc.less(turn, base), False)
    report_rows(ctx, block, below, "turn", "turn",
                f"below {base}, the first turn of this file's sessions; turn is null and the "
                "raw value kept in extra", level="warning")
    drop = pc.or_(below, pc.fill_null(huge, False))
    shifted = pc.if_else(drop, pa.scalar(None, pa.int64()), pc.subtract(turn, base))
    return pc.cast(shifted, pa.int32()), below


class BailianJSONL(NativeFormat):
    """Qwen/Bailian usage trace JSONL (chat_id, parent_chat_id, timestamp s, ..., hash_ids)."""

    name = "bailian-jsonl"
    description = ("Qwen/Bailian trace JSONL (chat_id,parent_chat_id,timestamp,input_length,"
                   "output_length,type,turn,hash_ids)")
    time = TimeSemantics(
        kind="relative", native_format="float seconds since the start of the trace",
        resolution="as written (float seconds, kept to 1 µs)",
        origin="start of the trace (timestamp 0.0)")

    def sniff(self, first_line: str) -> bool:
        keys = first_record_keys(first_line)
        return keys is not None and set(REQUIRED) <= keys

    def read(self, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        links = _Links()
        last: int | None = None
        base: int | None = None
        for b in iter_jsonl(ctx, KEYS):
            n = b.num_rows
            if base is None:
                base = turn_base(b)
                ctx.meta["native_layout"]["turn_base"] = base
            arrival, sub_us = arrival_from_seconds(ctx, b)
            inputs = check_counts(ctx, b, "input_length", "token count")
            outputs = check_counts(ctx, b, "output_length", "token count")
            turn, odd_turn = unified_turn(ctx, b, base)
            check_counts(ctx, b, "chat_id", "chat_id")
            below = pc.less(b.columns["parent_chat_id"], -1)
            report_rows(ctx, b, below, "parent_chat_id", "negative",
                        "parent_chat_id must be a chat_id or -1 (a root)")
            other = pc.invert(pc.is_in(b.columns["type"], value_set=pa.array(TYPES)))
            report_rows(ctx, b, pc.and_(other, b.columns["type"].is_valid()), "type", "type",
                        f"not one of the documented request types {', '.join(TYPES)} "
                        "(kept as service)", level="warning")
            check_hash_ids(ctx, b)
            # The README warns that the last block's hash may change (padding replaced by the
            # first output token); that changes an id, not the count, but as no real bytes
            # were checked here a count mismatch is a warning rather than an error.
            check_block_count(ctx, b, inputs, BLOCK_TOKENS, "warning")
            last = check_order(ctx, b, arrival, "timestamp", last)
            parent_rid, session = links.link(ctx, b)
            b.flush()
            yield make_batch(n, {
                "request_id": row_index(b.start, n),
                "source_row": row_index(b.start, n),
                "arrival_us": arrival,
                "input_tokens": pc.fill_null(inputs, 0),
                "output_tokens": outputs,
                "service": b.columns["type"],
                "session_id": pa.array(session, pa.string()),
                "turn": turn,
                "parent_request_id": pa.array(parent_rid, pa.int64()),
                "hash_ids": b.columns["hash_ids"],
                "hash_block_size": pc.if_else(b.columns["hash_ids"].is_valid(),
                                              pa.scalar(BLOCK_TOKENS, pa.int32()),
                                              pa.scalar(None, pa.int32())),
                "extra": _extra(b, sub_us, odd_turn),
            })


FORMATS = (BailianJSONL(),)


# --- writing -------------------------------------------------------------------------------------

OWN_FORMAT = "bailian-jsonl"
DEFAULT_KEYS = ("chat_id", "parent_chat_id", "timestamp", "input_length", "output_length",
                "type", "turn", "hash_ids")


def write(stream: TraceStream, dest: Path) -> int:
    """Write the stream as Bailian JSONL at ``dest``, atomically."""
    # Bailian's own last block may not match ceil(input/16) (see the reader), so only the
    # block size decides whether ids are kept.
    hash_ids = HashIdColumn(BLOCK_TOKENS, exact_length=False)
    turns = array("q")  # unified turn of each request_id so far (8 bytes per row)
    last_of: dict[str, int] = {}  # session_id -> its latest request_id (one entry a session)

    def records(batch: pa.RecordBatch, layout: dict[str, Any]) -> list[dict[str, Any]]:
        own = stream.meta.get("native_format") == OWN_FORMAT
        keys = layout["keys"] or DEFAULT_KEYS
        base = int(layout.get("turn_base", 1))
        kept = extras(batch) if own else [{}] * batch.num_rows
        arrival = required(batch, "arrival_us", "Bailian", "an arrival time")
        rid = batch.column("request_id").to_pylist()
        parent = batch.column("parent_request_id").to_pylist()
        service = batch.column("service").to_pylist()
        turn = batch.column("turn").to_pylist()
        values: dict[str, list[Any]] = {
            "chat_id": [],
            "parent_chat_id": [],
            "timestamp": [],
            "input_length": batch.column("input_tokens").to_pylist(),
            "output_length": required(batch, "output_tokens", "Bailian", "an output length"),
            "type": [s if s is not None else "text" for s in service],
            "turn": [],
            "hash_ids": hash_ids.rows(batch),
        }
        session = batch.column("session_id").to_pylist()
        for i in range(batch.num_rows):
            k = kept[i]
            p = parent[i]
            if p is None and session[i] is not None:  # linked through its session
                p = last_of.get(session[i])
            if session[i] is not None:
                last_of[session[i]] = rid[i]
            values["chat_id"].append(k.get("chat_id", rid[i]))
            values["parent_chat_id"].append(k.get("parent_chat_id", -1 if p is None else p))
            values["timestamp"].append(k.get("timestamp", arrival[i] / 1_000_000))
            t = turn[i]
            if t is None:
                t = turns[p] + 1 if p is not None and 0 <= p < len(turns) else 0
            values["turn"].append(k.get("turn", t + base))
            turns.append(t)
        return [record(keys, {k: v[i] for k, v in values.items()}, kept[i])
                for i in range(batch.num_rows)]

    return write_jsonl(stream, dest, OWN_FORMAT, records)


WRITER = Writer("bailian", ".jsonl", "Qwen/Bailian trace JSONL (chat_id, parent_chat_id, "
                "timestamp s, input_length, output_length, type, turn, 16-token hash_ids)",
                write)
