"""Sessions: requests per ``session_id`` and the gaps between a session's requests."""

from __future__ import annotations

from array import array

import numpy as np
import pyarrow as pa

from .model import Sessions


class SessionPass:
    """Per session: its request count and last arrival; the gaps within sessions so far."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.last_us: dict[str, int] = {}
        self.gaps_s = array("d")

    def add(self, sessions: pa.Array, arrivals: pa.Array) -> None:
        """Take the next rows' ``session_id`` and ``arrival_us`` (file order)."""
        if sessions.null_count == len(sessions):
            return
        counts, last, gaps = self.counts, self.last_us, self.gaps_s
        for sid, t in zip(sessions.to_pylist(), arrivals.to_pylist(), strict=True):
            if sid is None:
                continue
            counts[sid] = counts.get(sid, 0) + 1
            if t is None:
                continue
            prev = last.get(sid)
            if prev is not None:
                gaps.append((t - prev) / 1e6)
            last[sid] = t

    def result(self) -> Sessions | None:
        """The summary; None when no row has a session."""
        if not self.counts:
            return None
        sizes = np.fromiter(self.counts.values(), dtype=np.int64, count=len(self.counts))
        gaps = np.frombuffer(self.gaps_s, dtype=np.float64) if len(self.gaps_s) else None
        return Sessions(
            sessions=len(sizes), requests=int(sizes.sum()),
            share_single=float((sizes == 1).mean()), median=float(np.median(sizes)),
            p75=float(np.percentile(sizes, 75)), max=int(sizes.max()),
            gaps=0 if gaps is None else len(gaps),
            gap_mean_s=None if gaps is None else float(gaps.mean()),
            gap_median_s=None if gaps is None else float(np.median(gaps)))
