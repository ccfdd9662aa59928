"""Mooncake traces (github.com/kvcache-ai/Mooncake, FAST'25 release and the arXiv trace), JSONL:
the ``mooncake-jsonl`` reader and the ``mooncake`` writer.

Reader: one object per line, ``{"timestamp": ms, "input_length": n, "output_length": n,
"hash_ids": [...]}`` in that key order with ``json.dumps``'s default separators.
``timestamp`` is integer milliseconds since the start of the trace; ``hash_ids`` are remapped
prefix-block hashes over 512-token blocks, and on every published row ``len(hash_ids) ==
ceil(input_length / 512)`` (a mismatch is an error here; dynamo's docs write
``input_length // 512``, which is off by one for partial blocks). An optional ``session_id``
(aiperf's Mooncake reader accepts one) maps to ``session_id``; any other key goes to ``extra``.
Mooncake publishes no sessions, models or failures.

Writer: unified trace -> Mooncake trace JSONL, the layout aiperf, dynamo and sglang replay. One
object per request: ``timestamp`` (integer ms since the trace start: ``arrival_us // 1000``,
floored), ``input_length``, ``output_length``, ``hash_ids`` over 512-token blocks, and
``session_id`` on rows that have one. A trace read from a Mooncake file keeps its key order,
separators, extra keys and final newline, so the published files come back byte for byte.

``hash_ids`` must satisfy ``len == ceil(input_length / 512)``. Traces whose ids are already
512-token ids are written as they are; any other trace gets ids from :class:`BlockIds`.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InvalidTraceError
from ..schema import TraceStream, constant, native_batch
from ..text import ReadContext
from ..text.jsonl import (
    JsonBlock,
    Key,
    check_block_count,
    check_counts,
    check_hash_ids,
    check_order,
    extra_json,
    first_record_keys,
    iter_jsonl,
    report_rows,
    timestamp_is_float,
)
from ..text.jsonlwrite import write_jsonl
from ..text.limits import check_json_cells
from ..timing import TimeSemantics
from . import NativeFormat, Writer

# --- reading -------------------------------------------------------------------------------------

BLOCK_TOKENS = 512
REQUIRED = ("timestamp", "input_length", "output_length", "hash_ids")
KEYS = (Key("timestamp", "int"), Key("input_length", "int"), Key("output_length", "int"),
        Key("hash_ids", "int_list"), Key("session_id", "string", required=False))
_MAX_MS = (1 << 63) // 1000  # larger ms values overflow int64 microseconds


def arrival_from_ms(ctx: ReadContext, block: JsonBlock) -> pa.Array:
    """``timestamp`` (ms) as arrival_us; negative or overflowing values are reported, null."""
    ms = check_counts(ctx, block, "timestamp", "timestamp")
    huge = pc.greater(ms, _MAX_MS)
    report_rows(ctx, block, huge, "timestamp", "range", "timestamp too large for int64 µs")
    ms = pc.if_else(pc.fill_null(huge, False), pa.scalar(None, pa.int64()), ms)
    return pc.multiply(ms, 1000)


class MooncakeJSONL(NativeFormat):
    """Mooncake trace JSONL (timestamp ms, input_length, output_length, 512-token hash_ids)."""

    name = "mooncake-jsonl"
    description = "Mooncake trace JSONL (timestamp,input_length,output_length,hash_ids)"
    time = TimeSemantics(
        kind="relative", native_format="integer milliseconds since the start of the trace",
        resolution="1ms", origin="start of the trace (timestamp 0)")

    def sniff(self, first_line: str) -> bool:
        keys = first_record_keys(first_line)
        # Float timestamps are seconds (vLLM timed_trace): see formats/timed_trace.py.
        return (keys is not None and set(REQUIRED) <= keys and "chat_id" not in keys
                and not timestamp_is_float(first_line))

    def read(self, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        last: int | None = None
        for b in iter_jsonl(ctx, KEYS):
            n = b.num_rows
            arrival = arrival_from_ms(ctx, b)
            inputs = check_counts(ctx, b, "input_length", "token count")
            outputs = check_counts(ctx, b, "output_length", "token count")
            check_hash_ids(ctx, b)
            check_block_count(ctx, b, inputs, BLOCK_TOKENS, "error")
            last = check_order(ctx, b, arrival, "timestamp", last)
            cols: dict[str, pa.Array] = {
                "arrival_us": arrival,
                "input_tokens": pc.fill_null(inputs, 0),
                "output_tokens": outputs,
                "hash_ids": b.columns["hash_ids"],
                "hash_block_size": constant(BLOCK_TOKENS, n, pa.int32()),
            }
            session = b.columns["session_id"]
            if session.null_count < n:
                cols["session_id"] = session
            extra = extra_json(b.extra) if b.extra is not None else None
            b.flush()
            yield native_batch(b.start, n, cols, service=ctx.service, extra=extra)


FORMATS = (MooncakeJSONL(),)


# --- writing -------------------------------------------------------------------------------------

OWN_FORMAT = "mooncake-jsonl"
DEFAULT_KEYS = ("timestamp", "input_length", "output_length", "hash_ids", "session_id")


def blocks(tokens: int, block: int) -> int:
    """``ceil(tokens / block)``: the number of blocks, the last one possibly partial."""
    return -(-tokens // block)


class BlockIds:
    """Prefix-block ids at ``block`` tokens per block, made up for traces that lack them.

    Why: replay tools (aiperf, dynamo) need ``len(hash_ids) == ceil(input/block)``, and equal
    ids promise identical KV blocks, so ids must never claim sharing the trace does not show.

    How:

    * token ids but no hash ids in the trace (Marconi, Kavier inputs): block ``j`` is
      identified by the previous block's id and its own tokens, so two requests share ids
      exactly as far as their token prefixes are equal block for block (a partial last block
      matches only the same partial block). Within a session, where each turn's prompt starts
      with the history, the earlier turns' blocks come back with their ids; across sessions
      only truly identical prefixes share. Where the token ids stop short of the input, the
      rest are new unique ids;
    * no ids and no tokens: every request gets new ids, unique across the file (no prefix
      sharing, i.e. no cache hits on replay: the conservative reading of a trace that says
      nothing about reuse, sessions included, since a session alone does not say how much
      of the history the next prompt repeats);
    * ids at another block size (e.g. Bailian's 16 tokens): a new block is identified by the
      previous new block's id, its token count and the source ids covering its tokens, so two
      requests share a new id exactly when the source ids show their whole prefix up to the
      end of that block is shared. Where the source ids stop short of the input, the rest
      are new unique ids. When the new block size divides the source one (512 -> 16), each
      source block prefix gets a run of consecutive ids instead, one per new block in it.

    Ids are dense integers from 0 in order of first appearance, like Mooncake's. Memory: one
    dict entry (~130 bytes: a 16-byte blake2b digest of the key and an int) per distinct new
    block, or per distinct source prefix block when splitting.
    """

    def __init__(self, block: int) -> None:
        self.block = block
        self._known: dict[bytes, int] = {}
        self._next = 0

    def _fresh(self, count: int) -> list[int]:
        start = self._next
        self._next += count
        return list(range(start, start + count))

    def _lookup(self, key: tuple[int, ...], count: int) -> int:
        """The first of ``count`` consecutive ids for ``key``, allocated on first sight."""
        digest = hashlib.blake2b(array("q", key).tobytes(), digest_size=16).digest()
        got = self._known.get(digest)
        if got is None:
            got = self._known[digest] = self._next
            self._next += count
        return got

    def ids(self, source: list[int] | None, source_block: int | None, tokens: int,
            token_ids: list[int] | None = None) -> list[int]:
        """Ids for one request of ``tokens`` input tokens, from its ``source`` ids (if any),
        else from its ``token_ids`` (if any)."""
        size = self.block
        if not source or not source_block:
            if token_ids:
                return self._from_tokens(token_ids, tokens)
            return self._fresh(blocks(tokens, size))
        if source_block > size and source_block % size == 0:
            return self._split(source, source_block, tokens)
        out: list[int] = []
        parent = -1
        for j in range(blocks(tokens, size)):
            end = min((j + 1) * size, tokens)
            lo, hi = blocks(j * size, source_block), blocks(end, source_block)
            if hi > len(source):
                out.extend(self._fresh(blocks(tokens, size) - j))
                break
            parent = self._lookup((0, parent, end - j * size, *source[lo:hi]), 1)
            out.append(parent)
        return out

    def _from_tokens(self, token_ids: list[int], tokens: int) -> list[int]:
        size = self.block
        have = min(len(token_ids), tokens)
        out: list[int] = []
        parent = -1
        for j in range(blocks(tokens, size)):
            lo, hi = j * size, min((j + 1) * size, tokens)
            if hi > have:
                out.extend(self._fresh(blocks(tokens, size) - j))
                break
            parent = self._lookup((2, parent, hi - lo, *token_ids[lo:hi]), 1)
            out.append(parent)
        return out

    def _split(self, source: list[int], source_block: int, tokens: int) -> list[int]:
        out: list[int] = []
        parent = -1
        for s in range(blocks(tokens, source_block)):
            span = min(source_block, tokens - s * source_block)
            count = blocks(span, self.block)
            if s >= len(source):
                out.extend(self._fresh(blocks(tokens - s * source_block, self.block)))
                break
            parent = self._lookup((1, parent, span, source[s]), count)
            out.extend(range(parent, parent + count))
        return out


class HashIdColumn:
    """Per-row hash ids for a writer whose format fixes the block size.

    The first batch decides: if every row there already has ids at ``block`` tokens (and, with
    ``exact_length``, ``ceil(input/block)`` of them), ids are written unchanged; otherwise all
    ids come from :class:`BlockIds`, so one file never mixes two id namespaces.
    """

    def __init__(self, block: int, exact_length: bool) -> None:
        self.block = block
        self.exact_length = exact_length
        self.keep: bool | None = None
        self.made = BlockIds(block)

    def _fits(self, ids: list[int] | None, size: int | None, tokens: int) -> bool:
        return ids is not None and size == self.block and (
            not self.exact_length or len(ids) == blocks(tokens, self.block))

    def rows(self, batch: pa.RecordBatch) -> list[list[int]]:
        ids = batch.column("hash_ids").to_pylist()
        sizes = batch.column("hash_block_size").to_pylist()
        tokens = batch.column("input_tokens").to_pylist()
        if self.keep is None and batch.num_rows:
            self.keep = all(map(self._fits, ids, sizes, tokens))
        if self.keep:
            bad = [i for i in range(len(ids)) if not self._fits(ids[i], sizes[i], tokens[i])]
            if bad:
                raise InvalidTraceError(
                    f"request_id {batch.column('request_id')[bad[0]].as_py()}: hash ids at "
                    f"{sizes[bad[0]]}-token blocks in a trace whose ids are {self.block}-token "
                    "ids; a file cannot mix the two")
            return ids
        col = batch.column("input_token_ids")
        toks = col.to_pylist() if col.null_count < batch.num_rows else [None] * batch.num_rows
        return [self.made.ids(i, s, n, t)
                for i, s, n, t in zip(ids, sizes, tokens, toks, strict=True)]


def required(batch: pa.RecordBatch, column: str, fmt: str, what: str) -> list[Any]:
    """A column that the native format cannot leave out, as Python values."""
    col = batch.column(column)
    if col.null_count:
        raise InvalidTraceError(f"a {fmt} trace needs {what} for every request; "
                                f"{col.null_count} rows have none")
    return col.to_pylist()


def extras(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """The ``extra`` column parsed (empty dicts for nulls)."""
    check_json_cells(batch.column("extra"), "extra")
    return [json.loads(e) if e else {} for e in batch.column("extra").to_pylist()]


def record(keys: Sequence[str], fields: dict[str, Any], kept: dict[str, Any]) -> dict[str, Any]:
    """One output object: ``keys`` in order (from ``fields``, else from the native keys kept in
    ``extra``), then the other kept keys, then the other fields; None fields are left out."""
    rec: dict[str, Any] = {}
    for key in keys:
        if key in fields:
            if fields[key] is not None:
                rec[key] = fields[key]
        elif key in kept:
            rec[key] = kept[key]
    for key, value in kept.items():
        rec.setdefault(key, value)
    for key, value in fields.items():
        if value is not None:
            rec.setdefault(key, value)
    return rec


def write(stream: TraceStream, dest: Path) -> int:
    """Write the stream as Mooncake JSONL at ``dest``, atomically."""
    hash_ids = HashIdColumn(BLOCK_TOKENS, exact_length=True)

    def records(batch: pa.RecordBatch, layout: dict[str, Any]) -> list[dict[str, Any]]:
        own = stream.meta.get("native_format") == OWN_FORMAT
        arrival = required(batch, "arrival_us", "Mooncake", "an arrival time")
        columns = {
            "timestamp": [us // 1000 for us in arrival],
            "input_length": batch.column("input_tokens").to_pylist(),
            "output_length": required(batch, "output_tokens", "Mooncake", "an output length"),
            "hash_ids": hash_ids.rows(batch),
            "session_id": batch.column("session_id").to_pylist(),
        }
        kept = extras(batch) if own else [{}] * batch.num_rows
        keys = layout["keys"] or DEFAULT_KEYS
        return [record(keys, {k: v[i] for k, v in columns.items()}, kept[i])
                for i in range(batch.num_rows)]

    return write_jsonl(stream, dest, OWN_FORMAT, records)


WRITER = Writer("mooncake", ".jsonl", "Mooncake trace JSONL (timestamp ms, input_length, "
                "output_length, 512-token hash_ids[, session_id])", write)
