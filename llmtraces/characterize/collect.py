"""The one pass of :func:`llmtraces.stats`: each batch's columns go to the accumulators.

What must be sorted or fitted (arrival times, input and output lengths, the failed flag) is
kept as numpy columns, 26 bytes a row (10 million rows: about 260 MB, twice that while the
chunks are joined); counts (models, services, images) are kept as running totals, sessions as
one entry per session, and prefix blocks as the set of distinct hash ids.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .prefix import PrefixPass
from .sessions import SessionPass

#: The unified columns a stats pass reads.
COLUMNS = ["arrival_us", "input_tokens", "output_tokens", "failed", "model", "service",
           "session_id", "num_images", "hash_ids", "hash_block_size"]


@dataclass
class Columns:
    """The per-row columns kept whole, joined once the pass is over."""

    arrival_us: np.ndarray  # int64, 0 where not timed
    timed: np.ndarray  # bool
    input_tokens: np.ndarray  # int64
    output_tokens: np.ndarray  # int64, 0 where null
    has_output: np.ndarray  # bool
    failed: np.ndarray  # int8: 1 failed, 0 not, -1 unknown


@dataclass
class Pass:
    """Accumulators fed batch by batch."""

    chunks: dict[str, list[np.ndarray]] = field(default_factory=lambda: {
        k: [] for k in Columns.__dataclass_fields__})
    models: Counter[str] = field(default_factory=Counter)
    services: Counter[str] = field(default_factory=Counter)
    image_rows: int = 0
    image_with: int = 0
    image_total: int = 0
    image_max: int = 0
    sessions: SessionPass = field(default_factory=SessionPass)
    prefix: PrefixPass = field(default_factory=PrefixPass)

    def add(self, batch: pa.RecordBatch) -> None:
        """Take one unified record batch (the :data:`COLUMNS` at least)."""
        arr = batch.column("arrival_us")
        timed = arr.is_valid().to_numpy(zero_copy_only=False)
        arrival = arr.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        out = batch.column("output_tokens")
        failed = batch.column("failed")
        fcode = pc.if_else(failed.is_null(), -1, pc.if_else(failed.fill_null(False), 1, 0))
        put = self.chunks
        put["arrival_us"].append(arrival)
        put["timed"].append(timed)
        put["input_tokens"].append(batch.column("input_tokens").to_numpy(
            zero_copy_only=False).astype(np.int64, copy=False))
        put["output_tokens"].append(out.fill_null(0).to_numpy(zero_copy_only=False).astype(
            np.int64, copy=False))
        put["has_output"].append(out.is_valid().to_numpy(zero_copy_only=False))
        put["failed"].append(fcode.to_numpy(zero_copy_only=False).astype(np.int8))
        self._counts(self.models, batch.column("model"))
        self._counts(self.services, batch.column("service"))
        self._images(batch.column("num_images"))
        self.sessions.add(batch.column("session_id"), arr)
        self.prefix.add(batch.column("hash_ids"), batch.column("hash_block_size"),
                        batch.column("input_tokens"))

    @staticmethod
    def _counts(counter: Counter[str], col: pa.Array) -> None:
        vc = pc.value_counts(col.drop_null())
        for value, count in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(),
                                strict=True):
            counter[str(value)] += int(count)

    def _images(self, col: pa.Array) -> None:
        known = col.drop_null()
        if not len(known):
            return
        n = known.to_numpy(zero_copy_only=False).astype(np.int64)
        self.image_rows += len(n)
        self.image_with += int((n > 0).sum())
        self.image_total += int(n.sum())
        self.image_max = max(self.image_max, int(n.max()))

    def columns(self) -> Columns:
        """The kept columns, each joined into one array."""
        def join(key: str, dtype: type) -> np.ndarray:
            parts = self.chunks[key]
            return np.concatenate(parts) if parts else np.zeros(0, dtype)
        cols = Columns(
            arrival_us=join("arrival_us", np.int64), timed=join("timed", np.bool_),
            input_tokens=join("input_tokens", np.int64),
            output_tokens=join("output_tokens", np.int64), has_output=join("has_output", np.bool_),
            failed=join("failed", np.int8))
        self.chunks = {k: [] for k in self.chunks}
        return cols


def run(batches: Iterable[pa.RecordBatch]) -> Pass:
    """One pass over ``batches``."""
    acc = Pass()
    for batch in batches:
        acc.add(batch)
    return acc
