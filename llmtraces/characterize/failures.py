"""Failed requests: their share, overall and per window of arrival time."""

from __future__ import annotations

import numpy as np

from .arrivals import window_index
from .model import Failures


def failures(failed: np.ndarray, arrival_us: np.ndarray, timed: np.ndarray, window_s: float
             ) -> Failures | None:
    """``failed`` codes (1 failed, 0 not, -1 unknown) summarised; None when all are unknown."""
    known = failed >= 0
    n_known = int(known.sum())
    if not n_known:
        return None
    n_failed = int((failed == 1).sum())
    by_window: list[float | None] = []
    sel = known & timed
    if sel.any():
        w = window_index(arrival_us[sel], window_s, int(arrival_us[timed].min()))
        total = np.bincount(w)
        bad = np.bincount(w, weights=(failed[sel] == 1).astype(np.float64),
                          minlength=len(total))
        by_window = [float(b / n) if n else None for b, n in zip(bad, total, strict=True)]
    return Failures(known=n_known, failed=n_failed, share=n_failed / n_known,
                    window_s=window_s, share_by_window=by_window)
