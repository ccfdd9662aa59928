"""Traces merged onto one time axis in arrival order: :func:`merge`, a streaming k-way merge.

Each round of :func:`_kway` emits, from every input, the rows up to the smallest last arrival
among their current batches, sorted; ids are renumbered and parent links remapped per input,
sessions and ``extra`` tagged with the input they came from.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from ..pipeline.inputs import TraceLike, open_trace
from ..pipeline.view import BATCH_ROWS, TraceView, TransformError, live
from ..text.timestamps import epoch_us_of, iso_utc
from ._stream import (
    Batches,
    IdMap,
    arange,
    check_arrivals,
    project,
    require_timing,
    set_column,
)

_MERGE_KEY = '"merge_input"'


def _tag_extra(extra: pa.Array, k: int) -> pa.Array:
    """``extra`` with ``"merge_input": k`` added first; an existing tag (a merged trace merged
    again) becomes the path ``[k, inner...]``."""
    tag = f'{{"merge_input": {k}'
    rest = pc.utf8_slice_codeunits(extra, 1)
    empty = pc.starts_with(pc.utf8_ltrim_whitespace(rest), "}")
    joined = pc.if_else(empty, pc.binary_join_element_wise(tag, rest, ""),
                        pc.binary_join_element_wise(tag + ", ", rest, ""))
    out = pc.if_else(pc.is_null(extra), pa.scalar(tag + "}", pa.string()), joined)
    nested = pc.fill_null(pc.match_substring(extra, _MERGE_KEY), False)
    if pc.any(nested).as_py():
        values = out.to_pylist()
        for i in pc.indices_nonzero(nested).to_pylist():
            obj = json.loads(extra[i].as_py())
            inner = obj.pop("merge_input")
            obj = {"merge_input": [k, *(inner if isinstance(inner, list) else [inner])], **obj}
            values[i] = json.dumps(obj, ensure_ascii=False)
        out = pa.array(values, pa.string())
    return out


def _combined_licence(licences: list[Any]) -> Any:
    if all(lic == licences[0] for lic in licences):
        return licences[0]
    known = [lic for lic in licences if isinstance(lic, dict)]
    return {
        "spdx": " AND ".join(dict.fromkeys(str(lic.get("spdx")) for lic in known)),
        "redistributable": all(lic.get("redistributable", True) for lic in known),
        "commercial_use": all(lic.get("commercial_use", True) for lic in known),
        "url": " ; ".join(dict.fromkeys(str(lic.get("url")) for lic in known)),
        "attribution": " / ".join(dict.fromkeys(str(lic.get("attribution")) for lic in known)),
    }


_SUMMARY_KEYS = ("source", "trace", "native_file", "native_sha256", "native_verified",
                 "native_format", "rows", "time", "time_origin", "licence", "citation",
                 "tokenizer", "transforms", "merged")


def _common(metas: list[dict[str, Any]], key: str) -> Any:
    values = [m.get(key) for m in metas]
    return values[0] if all(v == values[0] for v in values) else None


def merge(traces: Sequence[TraceLike], *, align: Literal["auto", "absolute", "zero"] = "auto"
          ) -> TraceView:
    """Traces merged onto one time axis, in arrival order (a streaming k-way merge).

    Each input must be in arrival order (as converted traces of sorted sources are). With
    ``align="absolute"`` arrivals are placed by wall clock (every input needs a
    ``time_origin``; the merged origin is the earliest); ``"zero"`` overlays them on their own
    axes; ``"auto"`` is absolute when every input has a ``time_origin``, else zero. Ties go to
    the earlier input.

    Column rules: ``request_id`` is renumbered 0..n-1 and ``parent_request_id`` follows;
    ``session_id`` becomes ``"<k>:<session_id>"`` (k: the input's position, so sessions of
    different inputs never collide); ``extra`` gets ``"merge_input": k``; ``source_row``
    stays the row's index in its own native file. The metadata's ``merged`` list keeps each
    input's source, file, checksum, rows, origin, licence and transforms; the licence is the
    inputs' if they agree, else their conjunction (redistributable only if all are).

    Examples
    --------
    >>> import llmtraces
    >>> from llmtraces.transforms import head, merge, window
    >>> code = llmtraces.load("azure-llm-2023", trace="code")
    >>> t = merge([head(code, 3), window(code, 1, 1)]).to_table()
    >>> t.num_rows, t["arrival_us"].to_pylist()[:4], t["extra"][3].as_py()
    (8, [0, 52000, 98189, 1016041], '{"merge_input": 1}')
    """
    if not traces:
        raise TransformError("merge: no traces given")
    if align not in ("auto", "absolute", "zero"):
        raise TransformError(f"merge: align must be auto, absolute or zero (got {align!r})")
    streams = [open_trace(t) for t in traces]
    for s in streams:
        require_timing(s.meta, "merge")
    # Peek at each input whose metadata a reader is still filling: a native reader sets
    # time_origin once its first batch is out. The first read goes on from there.
    heads: list[Batches | None] = []
    for s in streams:
        if s.settled:
            heads.append(None)
            continue
        batches = s.batches
        first = next(batches, None)
        heads.append(itertools.chain([first] if first is not None else [], batches))
    origins = [s.meta.get("time_origin") for s in streams]
    absolute = align == "absolute" or (align == "auto" and all(origins))
    if absolute and not all(origins):
        missing = [i for i, o in enumerate(origins) if not o]
        raise TransformError(f"merge: align='absolute' needs a time_origin in every input; "
                             f"input(s) {missing} have none")
    if absolute:
        epochs = [epoch_us_of(o) for o in origins if o]
        base = min(epochs)
        offsets = [e - base for e in epochs]
    else:
        offsets = [0] * len(streams)
    entry = {"op": "merge", "inputs": len(streams), "align": "absolute" if absolute else "zero",
             "offsets_us": offsets}

    def summary() -> dict[str, Any]:
        metas = [s.meta for s in streams]
        merged = [{k: m.get(k) for k in _SUMMARY_KEYS if k in m} | {"offset_us": off}
                  for m, off in zip(metas, offsets, strict=True)]
        return {
            "source": _common(metas, "source"),
            "trace": "+".join(str(m.get("trace")) for m in metas),
            "native_file": None, "native_sha256": None, "native_verified": None,
            "native_format": _common(metas, "native_format"),
            "native_layout": {},
            "time": _common(metas, "time"),
            "time_origin": iso_utc(base) if absolute else None,
            "licence": _combined_licence([m.get("licence") for m in metas]),
            "citation": _common(metas, "citation"),
            "tokenizer": _common(metas, "tokenizer"),
            "merged": merged,
        }

    meta = {k: v for k, v in streams[0].meta.items() if k in ("schema_version", "converter")}
    meta.update(summary())
    meta["transforms"] = [entry]
    meta["rows"] = None

    def run(inputs: list[Batches]) -> Batches:
        yield from _kway(inputs, offsets)

    reopens = [s.reopen for s in streams]
    reopen = None
    if all(r is not None for r in reopens):
        def reopen(columns: Sequence[str]) -> Batches:
            cols = sorted(set(columns) | {"arrival_us", "request_id"})
            return project(run([r(cols) for r in reopens if r is not None]), columns)

    def read() -> Batches:
        inputs = [h if h is not None else s.batches for h, s in zip(heads, streams, strict=True)]
        heads[:] = [None] * len(heads)  # peeked once: later reads open every input again
        return live(run(inputs), {}, meta, summary)

    return TraceView(meta, read, reopen=reopen, settled=True,
                     checked_at_end=any(s.checked_at_end for s in streams))


def _kway(inputs: list[Batches], offsets: list[int]) -> Batches:
    """Merge sorted inputs: each round emits, from every input, the rows up to the smallest
    last arrival among their current batches, sorted (ties: earlier input first)."""
    k_inputs = len(inputs)
    maps = [IdMap() for _ in inputs]
    last = [-(1 << 63)] * k_inputs
    seen = [0] * k_inputs
    cur: list[pa.RecordBatch | None] = [None] * k_inputs

    def pull(k: int) -> pa.RecordBatch | None:
        for batch in inputs[k]:
            if not batch.num_rows:
                continue
            arr = batch.column("arrival_us")
            check_arrivals(arr, "merge")
            if offsets[k]:
                arr = pc.add(arr, offsets[k])
                batch = set_column(batch, "arrival_us", arr)
            back = pc.less(pc.pairwise_diff(arr), 0) if len(arr) > 1 else None
            first = arr[0].as_py()
            if first < last[k] or (back is not None and pc.any(back).as_py()):
                at = seen[k] + (0 if first < last[k] else
                                pc.indices_nonzero(pc.fill_null(back, False))[0].as_py())
                raise TransformError(f"merge: input {k} goes back in time at row {at}; merge "
                                     "needs every input in arrival order")
            last[k] = arr[-1].as_py()
            seen[k] += len(arr)
            return batch
        return None

    for k in range(k_inputs):
        cur[k] = pull(k)
    next_id = 0
    while True:
        active = [k for k in range(k_inputs) if cur[k] is not None]
        if not active:
            return
        bound = min(cur[k].column("arrival_us")[-1].as_py() for k in active)  # type: ignore
        pieces: list[pa.RecordBatch] = []
        owners: list[tuple[int, int, int]] = []  # input, offset in the round, rows
        at = 0
        for k in active:
            batch = cur[k]
            assert batch is not None
            cnt = pc.sum(pc.less_equal(batch.column("arrival_us"), bound)).as_py() or 0
            if cnt == 0:
                continue
            piece, rest = batch.slice(0, cnt), batch.slice(cnt)
            cur[k] = rest if rest.num_rows else pull(k)
            names = piece.schema.names
            if "session_id" in names:
                piece = set_column(piece, "session_id", pc.binary_join_element_wise(
                    f"{k}:", piece.column("session_id"), ""))
            if "extra" in names:
                piece = set_column(piece, "extra", _tag_extra(piece.column("extra"), k))
            pieces.append(piece)
            owners.append((k, at, cnt))
            at += cnt
        table = pa.Table.from_batches(pieces).combine_chunks()
        keys = pa.table({"a": table.column("arrival_us"), "p": arange(0, at)})
        order = pc.sort_indices(keys, sort_keys=[("a", "ascending"), ("p", "ascending")])
        where = pc.sort_indices(order)  # inverse permutation: each row's place in the round
        parents = []
        has_parents = "parent_request_id" in table.schema.names
        for (k, off, cnt), piece in zip(owners, pieces, strict=True):
            maps[k].append(piece.column("request_id"),
                           pc.add(where.slice(off, cnt), next_id))
            if has_parents:
                parents.append(maps[k].lookup(piece.column("parent_request_id")))
        if has_parents:
            i = table.schema.get_field_index("parent_request_id")
            table = table.set_column(i, table.schema.field(i),
                                     pa.chunked_array(parents, pa.int64()))
        out = table.take(order)
        i = out.schema.get_field_index("request_id")
        out = out.set_column(i, out.schema.field(i), arange(next_id, at))
        next_id += at
        for batch in out.combine_chunks().to_batches(max_chunksize=BATCH_ROWS):
            yield batch
