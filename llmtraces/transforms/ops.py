"""Transforms of unified traces: select rows, merge traces, move and stretch the time axis.

Every function takes a trace (a :class:`~llmtraces.transforms.TraceView`, a pyarrow Table in
the unified schema, a path or a registry id) and returns a :class:`TraceView` that can be read
any number of times, each read streamed batch by batch. Rows keep their order;
``request_id`` is renumbered 0..n-1 after rows are dropped and ``parent_request_id`` follows
its parent's new id (null when the parent was dropped). Each transform appends
``{"op": name, ...parameters}`` to the metadata's ``transforms`` list.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from ._stream import (
    BATCH_ROWS,
    IdMap,
    Renumber,
    TraceLike,
    TraceView,
    TransformError,
    arange,
    arrival_facts,
    check_arrivals,
    derive,
    live,
    open_trace,
    project,
    replayable,
    require_timing,
    set_column,
    span_text,
)

Batches = Iterator[pa.RecordBatch]
BatchFn = Callable[[Batches], Batches]

_U64 = pa.uint64()
_M64 = (1 << 64) - 1


def _selection(inp: TraceView, entry: dict[str, Any],
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


def window(trace: TraceLike, start_s: float, duration_s: float) -> TraceView:
    """The requests that arrive in ``[start_s, start_s + duration_s)`` seconds.

    Times are on the trace's own axis (``arrival_us`` is µs since its time origin). Arrivals
    are not moved: follow with :func:`rebase` for a window that starts at 0. A window that
    holds no request warns (:class:`EmptyResultWarning`), naming the trace's span.

    Parameters
    ----------
    trace : TraceView, pyarrow.Table, path or registry id
        A unified trace with timing.
    start_s, duration_s : float
        Window start and length in seconds; ``duration_s`` must be positive.

    Returns
    -------
    TraceView
        The rows in the window, renumbered.

    Raises
    ------
    TransformError
        A trace without timing, or a bad window.

    Examples
    --------
    >>> import llmtraces
    >>> t = llmtraces.window("azure-llm-2023/code", 30, 30).to_table()
    >>> t.num_rows, t["request_id"][0].as_py(), t["arrival_us"][0].as_py()
    (46, 0, 30177869)
    """
    if not duration_s > 0 or start_s != start_s:
        raise TransformError(f"window: duration must be > 0 s (got {duration_s})")
    inp = open_trace(trace)
    require_timing(inp.meta, "window")
    lo = round(start_s * 1e6)
    hi = lo + round(duration_s * 1e6)
    seen: list[int] = []  # first and last arrival of the input, for the empty-window warning

    def keep(batch: pa.RecordBatch) -> pa.Array:
        arr = batch.column("arrival_us")
        check_arrivals(arr, "window")
        if len(arr):
            mm = pc.min_max(arr)
            seen[:] = [min(seen[:1] + [mm["min"].as_py()]), max(seen[1:] + [mm["max"].as_py()])]
        return pc.and_(pc.greater_equal(arr, lo), pc.less(arr, hi))

    def empty() -> str:
        first, last = seen[0] / 1e6, seen[1] / 1e6
        return (f": its arrivals span {first:,.1f} s..{last:,.1f} s ({span_text(last - first)}"
                f") on its own axis; pick a window inside it")

    return _selection(inp, {"op": "window", "start_s": start_s, "duration_s": duration_s},
                      keep, ["arrival_us"], empty=empty)


def head(trace: TraceLike, n: int) -> TraceView:
    """The first ``n`` requests in row order.

    A unified Parquet input is read only as far as needed; a native file is still read to
    its end, so that it is checked as a conversion checks it.

    Examples
    --------
    >>> import llmtraces
    >>> llmtraces.head("azure-llm-2023/code", 5).num_rows
    5
    """
    if n < 0:
        raise TransformError(f"head: n must be >= 0 (got {n})")
    inp = open_trace(trace)
    drain = inp.checked_at_end

    def make() -> BatchFn:
        def run(batches: Batches) -> Batches:
            left = n
            for batch in batches:
                if left > 0:
                    out = batch.slice(0, min(left, batch.num_rows))
                    left -= out.num_rows
                    yield out
                if left <= 0 and not drain:
                    break
        return run
    # head keeps a prefix: ids and parent links stay valid (parents precede their children)
    return derive(inp, {"op": "head", "n": n}, make, (), warn_empty=n > 0)


def filter(trace: TraceLike, *, model: str | Sequence[str] | None = None,
           service: str | Sequence[str] | None = None, failed: bool | None = None
           ) -> TraceView:
    """The requests of the given models and services, failed or not.

    Parameters
    ----------
    model, service : str or sequence of str, optional
        Keep rows whose value is one of these (rows where it is null are dropped).
    failed : bool, optional
        True: only rows marked failed. False: every row not marked failed (null counts as not
        failed, as for sources that record no failures).

    Examples
    --------
    >>> from llmtraces.transforms import filter
    >>> filter("azure-llm-2023/code", service="code").num_rows
    8819
    """
    inp = open_trace(trace)
    models = [model] if isinstance(model, str) else None if model is None else list(model)
    services = ([service] if isinstance(service, str) else None if service is None
                else list(service))
    entry: dict[str, Any] = {"op": "filter"}
    needs = []
    if models is not None:
        entry["model"] = models
        needs.append("model")
    if services is not None:
        entry["service"] = services
        needs.append("service")
    if failed is not None:
        entry["failed"] = bool(failed)
        needs.append("failed")

    def keep(batch: pa.RecordBatch) -> pa.Array:
        mask = pc.fill_null(pa.nulls(batch.num_rows, pa.bool_()), True)
        if models is not None:
            mask = pc.and_(mask, pc.is_in(batch.column("model"), pa.array(models, pa.string())))
        if services is not None:
            mask = pc.and_(mask, pc.is_in(batch.column("service"),
                                          pa.array(services, pa.string())))
        if failed is not None:
            marked = pc.fill_null(batch.column("failed"), False)
            mask = pc.and_(mask, marked if failed else pc.invert(marked))
        return mask

    return _selection(inp, entry, keep, needs)


# --- sampling --------------------------------------------------------------------------------

_GOLDEN = 0x9E3779B97F4A7C15
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB


def splitmix64(x: int) -> int:
    """The splitmix64 finaliser of ``x`` (the per-request hash of :func:`sample`)."""
    z = (x + _GOLDEN) & _M64
    z = ((z ^ (z >> 30)) * _C1) & _M64
    z = ((z ^ (z >> 27)) * _C2) & _M64
    return z ^ (z >> 31)


def _splitmix_array(x: pa.Array) -> pa.Array:
    def s(v: int) -> pa.Scalar:
        return pa.scalar(v, _U64)
    z = pc.add(x, s(_GOLDEN))  # wraps on overflow, as uint64 arithmetic should
    z = pc.multiply(pc.bit_wise_xor(z, pc.shift_right(z, s(30))), s(_C1))
    z = pc.multiply(pc.bit_wise_xor(z, pc.shift_right(z, s(27))), s(_C2))
    return pc.bit_wise_xor(z, pc.shift_right(z, s(31)))


def session_hash(session_id: str, seed: int) -> int:
    """The 64-bit key of a session for ``seed``: BLAKE2b-64 keyed by the seed."""
    key = str(seed).encode()
    return int.from_bytes(hashlib.blake2b(session_id.encode(), digest_size=8,
                                          key=key).digest(), "little")


def sample_keys(batch: pa.RecordBatch, seed: int) -> pa.Array:
    """Each row's sampling key in [0, 1): its session's hash, or for a request with no
    session, the hash of its request_id; every request of a session shares one key."""
    ids = batch.column("request_id").cast(_U64)
    keyed = _splitmix_array(pc.bit_wise_xor(ids, pa.scalar(splitmix64(seed & _M64), _U64)))
    sess = batch.column("session_id")
    if sess.null_count < len(sess):
        enc = pc.dictionary_encode(sess)
        hashes = pa.array([session_hash(v, seed) for v in enc.dictionary.to_pylist()], _U64)
        per_row = pc.take(hashes, enc.indices)
        keyed = pc.if_else(pc.is_valid(sess), per_row, keyed)
    return pc.multiply(pc.shift_right(keyed, pa.scalar(11, _U64)).cast(pa.float64()),
                       2.0 ** -53)


def _threshold(stream: TraceView, n: int, seed: int) -> float:
    """The largest key threshold that keeps at most ``n`` rows (whole units only): the
    ``n+1``-th smallest key over the trace, from one pass over two columns."""
    assert stream.reopen is not None
    best: pa.Array = pa.array([], pa.float64())
    for batch in stream.reopen(["request_id", "session_id"]):
        both = pa.concat_arrays([best, sample_keys(batch, seed)])
        if len(both) > n + 1:
            both = pc.take(both, pc.select_k_unstable(both, k=n + 1,
                                                      sort_keys=[("k", "ascending")]))
        best = both
    if len(best) <= n:
        return 2.0  # the trace has at most n rows: keep them all
    return float(pc.max(best).as_py())


def sample(trace: TraceLike, fraction: float | None = None, n: int | None = None,
           seed: int = 0) -> TraceView:
    """A deterministic sample that keeps sessions whole.

    Each sampling unit (a session, or a request with no ``session_id``) gets a key in [0, 1)
    from a seeded hash (BLAKE2b of the session id, splitmix64 of the request_id), and is kept
    when its key is below a threshold: ``fraction``, or for ``n`` the largest threshold that
    keeps at most ``n`` requests (found in a first pass over ``request_id`` and
    ``session_id``). The same seed keeps the same units on every machine and version.

    Parameters
    ----------
    fraction : float, optional
        Expected share of units kept, in [0, 1].
    n : int, optional
        Keep at most ``n`` requests: exactly ``n`` when no session straddles the cut.
    seed : int
        Hash seed.

    Examples
    --------
    >>> import llmtraces
    >>> code = llmtraces.load("azure-llm-2023", trace="code")
    >>> llmtraces.sample(code, n=100, seed=1).num_rows              # 100 requests
    100
    >>> llmtraces.sample(code, fraction=0.1, seed=1).num_rows       # about a tenth
    877
    """
    if (fraction is None) == (n is None):
        raise TransformError("sample: give exactly one of fraction and n")
    if fraction is not None and not 0 <= fraction <= 1:
        hint = (f"; for {fraction:g} requests use n={int(fraction)}"
                if fraction > 1 and fraction == int(fraction) else "")
        raise TransformError(f"sample: fraction must be in [0, 1] (got {fraction}){hint}")
    if n is not None and n < 0:
        raise TransformError(f"sample: n must be >= 0 (got {n})")
    inp = open_trace(trace)
    entry: dict[str, Any] = {"op": "sample", "seed": seed}
    if n is not None:
        inp = replayable(inp)
        limit = _threshold(inp, n, seed)
        entry.update(n=n, threshold=limit)
    else:
        assert fraction is not None
        limit = float(fraction)
        entry["fraction"] = fraction

    def keep(batch: pa.RecordBatch) -> pa.Array:
        return pc.less(sample_keys(batch, seed), limit)

    return _selection(inp, entry, keep, ["session_id"], warn_empty=bool(n or fraction))


# --- time axis -------------------------------------------------------------------------------

def _scaled(inp: TraceView, entry: dict[str, Any], speedup: float) -> TraceView:
    def make() -> BatchFn:
        def run(batches: Batches) -> Batches:
            for batch in batches:
                arr = batch.column("arrival_us")
                check_arrivals(arr, entry["op"])
                moved = pc.round(pc.divide(arr.cast(pa.float64()), speedup)).cast(pa.int64())
                yield set_column(batch, "arrival_us", moved)
        return run
    return derive(inp, entry, make, {"arrival_us"})


def time_scale(trace: TraceLike, speedup: float) -> TraceView:
    """Arrivals divided by ``speedup`` (2: twice as fast), rounded to the microsecond.

    The axis is scaled about its origin (``arrival_us = 0``), so ``time_origin`` still names
    the instant of 0; ``e2e_latency_us`` is a measurement and is not scaled.

    Examples
    --------
    >>> import llmtraces
    >>> llmtraces.time_scale("azure-llm-2023/code", 2.0).to_table()["arrival_us"][1].as_py()
    26000
    """
    if not speedup > 0 or speedup == float("inf"):
        raise TransformError(f"time_scale: speedup must be a positive number (got {speedup})")
    inp = open_trace(trace)
    require_timing(inp.meta, "time_scale")
    return _scaled(inp, {"op": "time_scale", "speedup": speedup}, speedup)


def mean_rate(trace: TraceLike) -> float:
    """Mean request rate in requests per second: ``(n - 1) / (last - first arrival)``, the
    inverse of the mean inter-arrival time (BurstGPT's "average RPS").

    Examples
    --------
    >>> from llmtraces.testing import tiny_trace
    >>> round(mean_rate(tiny_trace()), 3)   # 12 requests over 5.5 s
    2.0
    """
    inp = replayable(open_trace(trace))
    facts = arrival_facts(inp)
    if facts.nulls:
        raise TransformError("the trace has rows with a null arrival_us (no timing): no rate")
    if facts.rows < 2 or facts.first_us == facts.last_us:
        raise TransformError(f"a rate needs two distinct arrival times; the trace has "
                             f"{facts.rows} row(s) spanning 0 s")
    assert facts.first_us is not None and facts.last_us is not None
    return (facts.rows - 1) / ((facts.last_us - facts.first_us) / 1e6)


def rate_scale(trace: TraceLike, rps: float) -> TraceView:
    """BurstGPT's RPS scaling: arrivals scaled so the mean rate becomes ``rps`` requests/s.

    The current rate is :func:`mean_rate`, read from Parquet statistics or one pass over
    ``arrival_us``; the factor is then applied as :func:`time_scale` does.

    Examples
    --------
    >>> import llmtraces
    >>> code = llmtraces.load("azure-llm-2023", trace="code")
    >>> round(mean_rate(code), 4), round(mean_rate(rate_scale(code, rps=10.0)), 4)
    (2.5664, 10.0)
    """
    if not rps > 0 or rps == float("inf"):
        raise TransformError(f"rate_scale: rps must be a positive number (got {rps})")
    inp = open_trace(trace)
    require_timing(inp.meta, "rate_scale")
    inp = replayable(inp)
    current = mean_rate(inp)
    speedup = rps / current
    return _scaled(inp, {"op": "rate_scale", "rps": rps, "from_rps": current,
                         "speedup": speedup}, speedup)


def rebase(trace: TraceLike) -> TraceView:
    """Arrivals shifted so that the first (earliest) one is at 0.

    ``time_origin``, where the trace has one, moves by the same amount, so wall-clock times
    are unchanged.

    Examples
    --------
    >>> from llmtraces.transforms import rebase, window
    >>> t = rebase(window("azure-llm-2023/code", 30, 30)).to_table()
    >>> t["arrival_us"][0].as_py(), t["arrival_us"][-1].as_py()
    (0, 9149648)
    """
    inp = open_trace(trace)
    require_timing(inp.meta, "rebase")
    inp = replayable(inp)
    facts = arrival_facts(inp)
    if facts.nulls:
        raise TransformError("rebase needs arrival times, but the trace has rows with a null "
                             "arrival_us (no timing)")
    shift = facts.first_us or 0
    entry = {"op": "rebase", "shift_us": shift}

    def overrides() -> dict[str, Any]:
        from ..text.timestamps import epoch_us_of, iso_utc

        origin = inp.meta.get("time_origin")
        return {"time_origin": iso_utc(epoch_us_of(origin) + shift) if origin else origin}

    def make() -> BatchFn:
        def run(batches: Batches) -> Batches:
            for batch in batches:
                arr = batch.column("arrival_us")
                yield set_column(batch, "arrival_us", pc.subtract(arr, shift))
        return run

    out = derive(inp, entry, make, {"arrival_us"}, overrides)
    out.meta.update(overrides())
    return out


# --- merge -----------------------------------------------------------------------------------

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
    from ..text.timestamps import epoch_us_of, iso_utc

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
