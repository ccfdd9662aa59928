"""Deterministic sampling that keeps sessions whole: :func:`sample` and its seeded hashes.

Each sampling unit (a session, or a request with no ``session_id``) gets a key in [0, 1) from
a seeded hash, BLAKE2b of the session id or splitmix64 of the request_id, so the same seed
keeps the same units on every machine and version.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..pipeline.inputs import TraceLike, open_trace
from ..pipeline.view import TraceView, TransformError
from ._stream import replayable, select_rows

_U64 = pa.uint64()
_M64 = (1 << 64) - 1

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

    return select_rows(inp, entry, keep, ["session_id"], warn_empty=bool(n or fraction))
