"""A trace as requests (and input tokens) per time bin: :func:`bin_counts`, streamed over
``arrival_us`` and ``input_tokens``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from ..pipeline.inputs import TraceLike, open_trace
from ..pipeline.view import TransformError

#: What a forecast predicts per bin.
TARGETS = ("requests", "mean_input_tokens")


@dataclass(frozen=True)
class BinnedSeries:
    """Requests (and, where read, the sum of their input tokens) per bin from the trace's
    time 0 (``arrival_us`` = 0), and the wall-clock time of that 0 where the trace has one."""

    counts: np.ndarray
    bin_s: int
    origin: datetime | None
    tokens: np.ndarray | None = None

    def values(self, target: str = "requests") -> np.ndarray:
        """The series to forecast: requests per bin, or the mean input tokens of a bin's
        requests (NaN for a bin with none)."""
        if target == "requests":
            return self.counts.astype(float)
        if target == "mean_input_tokens" and self.tokens is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(self.counts > 0, self.tokens / np.maximum(self.counts, 1),
                                np.nan)
        raise TransformError(f"forecast: target must be one of {', '.join(TARGETS)} (with "
                             f"input tokens read); got {target!r}")

    def bin_start(self, k: int) -> datetime | float:
        """Wall-clock start of bin ``k`` (seconds from time 0 when the trace has no wall
        time)."""
        if self.origin is None:
            return float(k * self.bin_s)
        return self.origin + timedelta(seconds=k * self.bin_s)


def _origin(meta: dict[str, object]) -> datetime | None:
    time = meta.get("time")
    origin = meta.get("time_origin")
    if not (isinstance(time, dict) and time.get("kind") == "absolute" and isinstance(origin, str)):
        return None
    try:
        return datetime.fromisoformat(origin)
    except ValueError:
        return None


def bin_counts(trace: TraceLike, bin_s: int) -> BinnedSeries:
    """Requests per ``bin_s``-second bin, from bin 0 (arrival 0) to the last arrival's bin.

    Bins are counted in one pass over ``arrival_us``, so memory follows the number of bins,
    not of rows. A row with no arrival time is an error (a forecast needs timing)."""
    if not (isinstance(bin_s, int) and bin_s >= 1):
        raise TransformError(f"forecast: --bin must be whole seconds >= 1 (got {bin_s!r})")
    view = open_trace(trace)
    width = bin_s * 1_000_000
    counts = np.zeros(0, dtype=np.int64)
    tokens = np.zeros(0, dtype=np.float64)
    columns = ["arrival_us", "input_tokens"]
    batches = view.reopen(columns) if view.reopen is not None else view.batches
    for batch in batches:
        col = batch.column(batch.schema.get_field_index("arrival_us"))
        if col.null_count:
            raise TransformError("forecast needs arrival times, but the trace has rows with a "
                                 "null arrival_us (no timing)")
        ks = col.to_numpy(zero_copy_only=False) // width
        if len(ks) and ks.min() < 0:
            raise TransformError("forecast: arrival_us before the trace's time 0")
        inputs = batch.column(batch.schema.get_field_index("input_tokens")).to_numpy(
            zero_copy_only=False).astype(np.float64)
        part = np.bincount(ks)
        part_tokens = np.bincount(ks, weights=inputs, minlength=len(part))
        if len(part) > len(counts):
            grow = len(part) - len(counts)
            counts = np.concatenate([counts, np.zeros(grow, np.int64)])
            tokens = np.concatenate([tokens, np.zeros(grow, np.float64)])
        counts[: len(part)] += part
        tokens[: len(part)] += part_tokens
    if not len(counts):
        raise TransformError("forecast: the trace has no requests")
    return BinnedSeries(counts=counts, bin_s=bin_s, origin=_origin(view.meta), tokens=tokens)


__all__ = ["TARGETS", "BinnedSeries", "bin_counts"]
