"""``capacity.json``: where a search stands, rewritten after every point.

``capacity`` holds the largest passing load (``rate_rps`` or ``concurrency``; confirmed when
``converged``), ``first_failing`` the smallest failing one above it, ``binding_slo`` the bound
met least often at the first failing load, and ``at_capacity`` the goodput, latency
percentiles and energy measured at the capacity (its confirmation when there is one);
``history`` lists every point in order.
"""

from __future__ import annotations

from typing import Any

from .point import PointResult, PointSettings
from .search import SearchResult
from .verdict import PASS

FORMAT = "llmtraces.bench-capacity"


def _at(res: SearchResult, x: float | None, verdict: str | None = None) -> PointResult | None:
    """The last judged point at load ``x`` (of ``verdict`` when given)."""
    if x is None:
        return None
    found = None
    for step in res.history:
        out = step.outcome
        if step.load.kind in ("idle", "saturation") or step.load.x != x:
            continue
        if verdict is None or out.verdict == verdict:
            found = out
    return found if isinstance(found, PointResult) else None


def capacity_entry(res: SearchResult, *, engine: str, serve: str, settings: PointSettings,
                   workload: dict[str, Any], gpus: int = 1) -> dict[str, Any]:
    """One search's ``capacity.json`` content."""
    unit = "rate_rps" if res.variable == "rps" else "concurrency"
    at = _at(res, res.capacity, PASS)
    failing = _at(res, res.first_failing)
    at_capacity = None
    if at is not None:
        at_capacity = {
            "key": at.key, "goodput_rps": at.goodput_rps,
            "goodput_per_gpu_rps": at.goodput_rps / gpus if at.goodput_rps is not None
            and gpus else None,
            "throughput_rps": at.throughput_rps, "output_tps": at.output_tps,
            "attainment": at.attainment, "attainment_ci": [at.attainment_lo,
                                                           at.attainment_hi],
            **{f"{k}_ms": v for k, v in at.latency_ms.items() if k.endswith(("p50", "p99"))},
            "energy": at.energy,
        }
    return {
        "format": FORMAT, "version": 1, "engine": engine, "serve": serve,
        "variable": res.variable,
        "capacity": {unit: res.capacity},
        "first_failing": {unit: res.first_failing},
        "bracket_ratio": res.bracket_ratio,
        "status": res.status, "converged": res.converged, "confirmed": res.confirmed,
        "monotonic": res.monotonic, "reason": res.reason, "saturation_rps": res.x_sat,
        "slo_ms": settings.slo.as_dict(), "attainment_target": settings.attainment,
        "binding_slo": failing.binding_slo if failing is not None else None,
        "per_bound_at_first_failing": failing.per_bound if failing is not None else None,
        "at_capacity": at_capacity,
        "workload": workload,
        "history": [_step(s.load.kind, s.outcome) for s in res.history],
    }


def _step(kind: str, out: Any) -> dict[str, Any]:
    if not isinstance(out, PointResult):
        return {"kind": kind, "verdict": out.verdict}
    return {"key": out.key, "kind": kind, "x": out.x, "verdict": out.verdict,
            "uncertain": out.uncertain, "attainment": out.attainment,
            "ci": [out.attainment_lo, out.attainment_hi], "n": out.n,
            "throughput_rps": out.throughput_rps, "reason": out.reason}


def combined(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The top-level ``capacity.json``: each search; with one search its fields at the top
    level too (``capacity.rate_rps`` reads the same for a one-engine run)."""
    out: dict[str, Any] = {"format": FORMAT, "version": 1}
    if len(entries) == 1:
        out.update(entries[0])
    out["searches"] = [{k: v for k, v in e.items() if k not in ("format", "version")}
                       for e in entries]
    return out
