"""The energy of a time window from telemetry samples: the change of NVML's total-energy counter
(mJ), linearly interpolated at the window's edges, summed over GPUs; power integrated over time
only where a GPU has no counter. A counter that goes backwards (reset or wrap) gives no figure,
as vLLM's ``energy.py`` does; missing readings are interpolated across and said so.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Energy", "GpuSeries", "counter_joules", "power_joules", "window_energy"]


@dataclass
class GpuSeries:
    """One GPU's samples: monotonic times (s), counter readings (mJ, None when the call
    failed) and power (W, None when failed) with its source (``instant`` or ``average``)."""

    index: int
    uuid: str | None
    t: list[float]
    energy_mj: list[int | None]
    power_w: list[float | None]
    power_source: str | None = None


@dataclass
class Energy:
    """Energy of a window: ``joules`` (None when it cannot be known) and ``reason`` (why not,
    or what was noticed on the way: missing readings, a fallback); ``method`` is
    ``nvml_counter``, ``power_integral``, ``mixed`` or None; ``per_gpu`` one dict per GPU."""

    joules: float | None
    reason: str | None
    method: str | None
    per_gpu: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    avg_power_w: float | None = None

    @property
    def gpus(self) -> list[str | None]:
        """The UUIDs of the GPUs metered."""
        return [g.get("uuid") for g in self.per_gpu]

    @property
    def source(self) -> str | None:
        """Same as ``method``."""
        return self.method

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


def _edge_tolerance(interval_s: float) -> float:
    """How far outside the readings a window edge may be and still be extrapolated."""
    return max(2.0 * interval_s, 0.25)


def _at(ts: list[float], vs: list[float], x: float, tol: float) -> tuple[float | None, str]:
    """``vs`` linearly interpolated at ``x`` (extrapolated up to ``tol`` outside)."""
    n = len(ts)
    i = bisect.bisect_right(ts, x)
    if i == 0:
        if ts[0] - x > tol:
            return None, f"no reading within {tol:g} s before t={x:.3f}"
        i = 1
    elif i == n:
        if x - ts[-1] > tol:
            return None, f"no reading within {tol:g} s after t={x:.3f}"
        i = n - 1
    t_a, t_b, v_a, v_b = ts[i - 1], ts[i], vs[i - 1], vs[i]
    if t_b == t_a:
        return v_a, ""
    return v_a + (v_b - v_a) * (x - t_a) / (t_b - t_a), ""


def _inside(ts: Sequence[float], t0: float, t1: float) -> tuple[int, int]:
    """Index range of the readings that bracket ``[t0, t1]`` (one before, one after)."""
    lo = max(0, bisect.bisect_right(ts, t0) - 1)
    hi = min(len(ts), bisect.bisect_left(ts, t1) + 1)
    return lo, hi


def counter_joules(t: Sequence[float], energy_mj: Sequence[int | None], t0: float, t1: float,
                   interval_s: float) -> tuple[float | None, list[str]]:
    """Joules the counter moved over ``[t0, t1]`` and notes; None (first note: why) when the
    counter went backwards, has fewer than two readings, or does not reach the edges."""
    pts = sorted((ti, float(e)) for ti, e in zip(t, energy_mj, strict=True) if e is not None)
    if len(pts) < 2:
        return None, ["fewer than two energy-counter readings"]
    ts, es = [p[0] for p in pts], [p[1] for p in pts]
    lo, hi = _inside(ts, t0, t1)
    for i in range(lo, hi - 1):
        if es[i + 1] < es[i]:
            return None, [f"the energy counter went backwards ({es[i]:.0f} -> "
                          f"{es[i + 1]:.0f} mJ at t={ts[i + 1]:.3f}): reset or wrap; energy "
                          "omitted"]
    tol = _edge_tolerance(interval_s)
    e0, why0 = _at(ts, es, t0, tol)
    e1, why1 = _at(ts, es, t1, tol)
    if e0 is None or e1 is None:
        return None, [f"the energy counter does not cover the window ({why0 or why1})"]
    notes = []
    window = [ti for ti, e in zip(t, energy_mj, strict=True) if t0 <= ti <= t1]
    failed = sum(1 for ti, e in zip(t, energy_mj, strict=True) if t0 <= ti <= t1 and e is None)
    if failed:
        notes.append(f"{failed} of {len(window)} counter readings in the window failed; "
                     "interpolated across them")
    gap = max((b - a for a, b in zip(ts[lo:hi], ts[lo + 1:hi], strict=False)), default=0.0)
    if gap > max(5.0 * interval_s, 1.0):
        notes.append(f"no counter reading for {gap:.2f} s; interpolated across the gap")
    return (e1 - e0) / 1000.0, notes


def power_joules(t: Sequence[float], power_w: Sequence[float | None], t0: float, t1: float,
                 interval_s: float) -> tuple[float | None, list[str]]:
    """Power integrated over ``[t0, t1]`` (trapezoids, edges interpolated) and notes."""
    pts = sorted((ti, float(p)) for ti, p in zip(t, power_w, strict=True) if p is not None)
    if len(pts) < 2:
        return None, ["fewer than two power readings"]
    ts, ps = [p[0] for p in pts], [p[1] for p in pts]
    tol = _edge_tolerance(interval_s)
    p0, why0 = _at(ts, ps, t0, tol)
    p1, why1 = _at(ts, ps, t1, tol)
    if p0 is None or p1 is None:
        return None, [f"power readings do not cover the window ({why0 or why1})"]
    inner = [(ti, pi) for ti, pi in pts if t0 < ti < t1]
    xs = [t0, *(ti for ti, _ in inner), t1]
    ys = [p0, *(pi for _, pi in inner), p1]
    joules = sum((xs[i + 1] - xs[i]) * (ys[i] + ys[i + 1]) / 2 for i in range(len(xs) - 1))
    return joules, []


def window_energy(series: Sequence[GpuSeries], t0: float, t1: float,
                  interval_s: float) -> Energy:
    """The :class:`Energy` of ``[t0, t1]`` over every GPU in ``series``."""
    seconds = t1 - t0
    if not series:
        return Energy(None, "no GPU was metered", None, [], seconds)
    if seconds <= 0:
        return Energy(None, f"empty window ({t0:.3f} to {t1:.3f})", None, [], seconds)
    per_gpu, notes, methods = [], [], set()
    total: float | None = 0.0
    for g in series:
        method = "nvml_counter"
        joules, gnotes = counter_joules(g.t, g.energy_mj, t0, t1, interval_s)
        if joules is None and all(e is None for e in g.energy_mj):
            method = "power_integral"
            joules, pnotes = power_joules(g.t, g.power_w, t0, t1, interval_s)
            gnotes = ["no energy counter (not supported or every read failed); power "
                      "integrated instead" + (" (PowerUsage: a 1-s average on Ampere and "
                                              "newer)" if g.power_source == "average" else ""),
                      *pnotes]
        methods.add(method)
        per_gpu.append({"index": g.index, "uuid": g.uuid, "joules": joules, "method": method,
                        "notes": gnotes})
        notes += [f"GPU {g.index}: {n}" for n in gnotes]
        total = None if joules is None or total is None else total + joules
    method_all = methods.pop() if len(methods) == 1 else "mixed"
    reason = "; ".join(notes) or None
    avg = total / seconds if total is not None else None
    return Energy(total, reason, method_all, per_gpu, seconds, avg)
