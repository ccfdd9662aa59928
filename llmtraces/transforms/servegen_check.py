"""Per-window rate and inter-arrival CV of a trace synthesized from ServeGen, against what the
ServeGen file asked for: :func:`window_cv_report`.

ServeGen states each window's observed CV and the law (Gamma or Weibull) fitted to it. A
Gamma of shape a has CV 1/sqrt(a), which matches the stated CV; ServeGen's Weibull fits do
not: their own CV, and more so the CV of a sample of a few hundred heavy-tailed gaps, falls
short of the stated one. The report shows the shortfall window by window.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..pipeline.inputs import TraceLike, open_trace
from ..pipeline.view import TraceView, TransformError
from .servegen_model import ArrivalWindow
from .servegen_read import Problems, read_trace_csv

#: A window "reaches" its CV when the synthesized CV is at least this share of the target.
REACHED = 0.9


def _targets_from_meta(meta: dict[str, Any]) -> list[dict[str, Any]]:
    doc = meta.get("window_targets")
    if not isinstance(doc, dict):
        raise TransformError("window_cv_report: the trace has no window_targets metadata "
                             "(not synthesized from ServeGen); pass the ServeGen trace CSV")
    keys = ("start_s", "rate", "requests", "cv", "law", "shape", "law_cv")
    return [dict(zip(keys, row, strict=True)) | {"window_s": doc["window_s"]}
            for row in zip(*(doc[k] for k in keys), strict=True)]


def _targets_from_csv(path: Path, factor: float, span_s: float) -> list[dict[str, Any]]:
    windows, step = read_trace_csv(path, Problems())
    span_s = span_s if span_s > 0 else step * len(windows)  # not recorded: the file's span
    out = []
    for k in range(math.ceil(span_s / step)):
        w: ArrivalWindow = windows[k % len(windows)]
        if w.law is None:
            continue
        covered = min(step, span_s - k * step)
        law_cv = w.law_cv()
        out.append({"start_s": k * step, "rate": w.rate * factor,
                    "requests": round(w.rate * factor * covered), "cv": w.cv, "law": w.law,
                    "shape": w.shape, "window_s": step,
                    "law_cv": law_cv if law_cv is not None and math.isfinite(law_cv)
                    else None})
    return out


def _window_gaps(view: TraceView, window_s: float) -> dict[int, list[float]]:
    """Per window index: arrival count, gap count, sum and sum of squares of the gaps between
    consecutive arrivals inside it (seconds)."""
    stats: dict[int, list[float]] = {}
    prev: int | None = None
    win_us = window_s * 1e6
    batches = view.reopen(["arrival_us"]) if view.reopen is not None else view.batches
    for batch in batches:
        for t in batch.column(batch.schema.get_field_index("arrival_us")).to_pylist():
            if t is None:
                raise TransformError("window_cv_report needs arrival times; the trace has "
                                     "rows with a null arrival_us")
            k = int(t // win_us)
            s = stats.setdefault(k, [0, 0, 0.0, 0.0])
            s[0] += 1
            if prev is not None and int(prev // win_us) == k:
                gap = (t - prev) / 1e6
                s[1] += 1
                s[2] += gap
                s[3] += gap * gap
            prev = t
    return stats


def window_cv_report(trace: TraceLike, servegen_csv: Path | str | None = None
                     ) -> list[dict[str, Any]]:
    """One row per window with requests: the target rate and CV (from ``servegen_csv``, else
    from the trace's ``window_targets`` metadata) against the synthesized trace's.

    Each row: ``start_s``, ``law``, ``shape``, ``rate_target`` / ``rate`` (requests/s),
    ``requests_target`` / ``requests``, ``cv_target`` (the file's), ``law_cv`` (the law's own
    CV at that shape), ``cv`` (std/mean of the gaps between consecutive arrivals inside the
    window, population std), ``cv_ratio`` = cv / cv_target and ``reached`` (cv_ratio >= 0.9).
    """
    view = open_trace(trace)
    meta = view.meta
    if servegen_csv is None:
        targets = _targets_from_meta(meta)
    else:
        factor, span = 1.0, 0.0  # the synthesis's rate factor and duration, where recorded
        for op in meta.get("transforms") or []:
            if isinstance(op, dict) and op.get("op") == "synthesize":
                factor = float(op.get("rate_factor") or 1.0)
                span = float(op.get("duration_s") or 0.0)
        targets = _targets_from_csv(Path(servegen_csv), factor, span)
    if not targets:
        return []
    window_s = float(targets[0]["window_s"])
    stats = _window_gaps(view, window_s)
    rows = []
    for t in targets:
        k = round(t["start_s"] / window_s)
        n, gaps, total, squares = stats.get(k, [0, 0, 0.0, 0.0])
        cv = None
        if gaps >= 2 and total > 0:
            mean = total / gaps
            cv = math.sqrt(max(squares / gaps - mean * mean, 0.0)) / mean
        ratio = cv / t["cv"] if cv is not None and t["cv"] > 0 else None
        rows.append({
            "start_s": t["start_s"], "law": t["law"], "shape": t["shape"],
            "rate_target": t["rate"], "rate": n / window_s,
            "requests_target": t["requests"], "requests": int(n),
            "cv_target": t["cv"], "law_cv": t["law_cv"], "cv": cv, "cv_ratio": ratio,
            "reached": ratio is not None and ratio >= REACHED,
        })
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per law: windows, how many reach their CV, and the median cv / cv_target."""
    out: dict[str, Any] = {}
    for law in sorted({str(r["law"]) for r in rows}):
        mine = sorted(r["cv_ratio"] for r in rows if r["law"] == law and r["cv_ratio"])
        out[law] = {"windows": sum(1 for r in rows if r["law"] == law),
                    "reached": sum(1 for r in rows if r["law"] == law and r["reached"]),
                    "median_cv_ratio": mine[len(mine) // 2] if mine else None}
    return out


__all__ = ["REACHED", "summarize", "window_cv_report"]
