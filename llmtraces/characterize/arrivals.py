"""Size and span, the per-window rate series, inter-arrival gaps and their fits, and the
hour-of-day and weekday profiles of traces with wall-clock time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from ..transforms.fitting import resolution_us
from .fits import fit_laws, for_fitting, gamma_windows
from .model import Arrivals, Periodicity, RateSeries, Size


def size(rows: int, t: np.ndarray, meta: dict[str, Any]) -> Size:
    """Rows, timed rows, distinct arrivals, first and last arrival, span and mean rate."""
    if not len(t):
        return Size(rows=rows, timed_rows=0, distinct_arrivals=0, first_arrival_s=None,
                    last_arrival_s=None, span_s=None, mean_rate_rps=None,
                    time_origin=meta.get("time_origin"))
    lo, hi = int(t.min()), int(t.max())
    span = (hi - lo) / 1e6
    return Size(rows=rows, timed_rows=len(t), distinct_arrivals=len(np.unique(t)),
                first_arrival_s=lo / 1e6, last_arrival_s=hi / 1e6, span_s=span,
                mean_rate_rps=(len(t) - 1) / span if span > 0 else None,
                time_origin=meta.get("time_origin"))


def window_index(t: np.ndarray, window_s: float, first: int | None = None) -> np.ndarray:
    """Window of each arrival: windows of ``window_s`` from ``first`` (default: the first
    arrival)."""
    start = int(t.min()) if first is None else first
    return ((t - start) // (window_s * 1e6)).astype(np.int64)


def rate(t: np.ndarray, window_s: float) -> RateSeries | None:
    """Requests per second per window, its peak and peak-to-mean (None with no timed rows)."""
    if not len(t):
        return None
    counts = np.bincount(window_index(t, window_s))
    return RateSeries(window_s=window_s, rps=[float(c) / window_s for c in counts],
                      peak_rps=float(counts.max()) / window_s,
                      peak_to_mean=float(counts.max() / counts.mean()))


def arrivals(t: np.ndarray, meta: dict[str, Any], gamma_window_s: float) -> Arrivals | None:
    """Gaps between consecutive timed rows in file order: moments, fits, per-window Gamma."""
    if len(t) < 2:
        return None
    gaps = np.diff(t) / 1e6
    floor_s = resolution_us(meta) / 2e6
    x = for_fitting(gaps, floor_s)
    mean = float(gaps.mean())
    std = float(gaps.std())
    laws = fit_laws(x)
    return Arrivals(
        gaps=len(gaps), zero_gaps=int((gaps == 0).sum()), backward_gaps=int((gaps < 0).sum()),
        mean_s=mean, std_s=std, cv=std / mean if mean > 0 else None, fitted_gaps=len(x),
        gamma=laws[0] if laws else None, weibull=laws[1] if laws else None,
        exponential=laws[2] if laws else None, window_s=gamma_window_s,
        windows=gamma_windows(t, gamma_window_s, floor_s))


def wall_clock(meta: dict[str, Any]) -> np.datetime64 | None:
    """The instant of arrival_us = 0 for a trace with absolute time, else None."""
    time = meta.get("time") if isinstance(meta.get("time"), dict) else {}
    origin = meta.get("time_origin")
    if not origin or (time or {}).get("kind") != "absolute":
        return None
    instant = datetime.fromisoformat(str(origin).replace("Z", "+00:00"))
    if instant.tzinfo is None:  # the schema writes UTC; a bare instant is read as UTC too
        instant = instant.replace(tzinfo=UTC)
    return np.datetime64(instant.astimezone(UTC).replace(tzinfo=None), "us")


def local_midnight_zone(meta: dict[str, Any]) -> str | None:
    """The zone of a relative trace whose origin is a local midnight (BurstGPT: "00:00:00
    UTC+8 of an undisclosed day 0"): hours of day are known there, weekdays are not."""
    time = meta.get("time") if isinstance(meta.get("time"), dict) else {}
    time = time or {}
    if time.get("kind") == "relative" and time.get("zone") and str(
            time.get("origin") or "").startswith("00:00:00"):
        return str(time["zone"])
    return None


def periodicity(t: np.ndarray, meta: dict[str, Any]) -> Periodicity | None:
    """Requests per hour of day and per weekday (Monday first): in UTC for wall-clock traces;
    in the trace's zone, without weekdays, for a relative trace whose origin is a midnight."""
    if not len(t):
        return None
    origin = wall_clock(meta)
    if origin is not None:
        instants = origin + t.astype("timedelta64[us]")
        hours = instants.astype("datetime64[h]").astype(np.int64)
        days = instants.astype("datetime64[D]").astype(np.int64)
        return Periodicity(zone="UTC", days=len(np.unique(days)),
                           hour_of_day=np.bincount(hours % 24, minlength=24).tolist(),
                           weekday=np.bincount((days + 3) % 7, minlength=7).tolist())
    zone = local_midnight_zone(meta)
    if zone is None:
        return None
    hours = t // 3_600_000_000
    return Periodicity(zone=zone, days=len(np.unique(t // 86_400_000_000)),
                       hour_of_day=np.bincount(hours % 24, minlength=24).tolist(), weekday=None)
