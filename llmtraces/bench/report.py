"""``bench report`` and ``bench compare``: tables from the output folders alone.

``report`` rebuilds ``results.parquet`` from the point folders and prints one line per point
and the capacity of each search. ``compare`` puts several runs side by side (each search's
capacity with goodput, latency and energy at it, or each fixed point; engine versions) and
refuses runs whose workload digests differ: their numbers are not of the same stream.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import LLMTracesError
from .outputs import CAPACITY, PLAN, RunDir


class CompareError(LLMTracesError):
    """Runs that cannot be compared (different workloads, no results)."""


def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _need_run(path: Path) -> RunDir:
    if not (path / PLAN).is_file():
        raise CompareError(f"{path}: not a bench output folder (no {PLAN})")
    return RunDir(path)


def read_capacity(path: Path) -> list[dict[str, Any]]:
    """The searches of a run's ``capacity.json`` (empty for fixed-point runs)."""
    file = path / CAPACITY
    if not file.is_file():
        return []
    data = json.loads(file.read_text())
    return list(data.get("searches", []))


def report(path: Path) -> dict[str, Any]:
    """The report of one run: its points (``results.parquet`` rebuilt) and its searches."""
    rd = _need_run(Path(path))
    rows = []
    for engine, serve, res in rd.points():
        rows.append({"engine": engine, "serve": serve, "key": res.key, "kind": res.kind,
                     "x": res.x, "verdict": res.verdict, "uncertain": res.uncertain,
                     "n": res.n, "attainment": res.attainment,
                     "ci": [res.attainment_lo, res.attainment_hi],
                     "ttft_p99_ms": res.latency_ms.get("ttft_p99"),
                     "tpot_p99_ms": res.latency_ms.get("tpot_p99"),
                     "goodput_rps": res.goodput_rps, "throughput_rps": res.throughput_rps,
                     "j_per_token": res.energy.get("j_per_token"), "reason": res.reason})
    rd.rebuild_results()
    plan = json.loads((rd.path / PLAN).read_text())
    return {"run": str(path), "name": plan.get("name"),
            "digest": plan.get("workload", {}).get("digest"), "points": rows,
            "searches": read_capacity(rd.path)}


def format_report(rep: dict[str, Any]) -> str:
    """The report as text tables."""
    header = ["engine/serve", "point", "verdict", "n", "attain", "ci", "ttft p99",
              "tpot p99", "goodput/s", "J/token"]
    rows = [[f"{p['engine']}/{p['serve']}", p["key"],
             p["verdict"] + ("?" if p["uncertain"] else ""), str(p["n"]),
             _fmt(p["attainment"]), f"[{p['ci'][0]:.3f}, {p['ci'][1]:.3f}]",
             _fmt(p["ttft_p99_ms"], ".1f"), _fmt(p["tpot_p99_ms"], ".1f"),
             _fmt(p["goodput_rps"]), _fmt(p["j_per_token"])] for p in rep["points"]]
    out = [f"{rep['run']}: {rep['name']} (workload {str(rep['digest'])[:12]})",
           _table(header, rows)]
    for s in rep["searches"]:
        out.append(_capacity_line(s))
    return "\n".join(out)


def _capacity_line(s: dict[str, Any]) -> str:
    unit = "rate_rps" if s["variable"] == "rps" else "concurrency"
    cap, hi = s["capacity"].get(unit), s["first_failing"].get(unit)
    label = "req/s" if unit == "rate_rps" else "concurrent"
    flags = [s["status"]] + ([] if s["monotonic"] else ["NON-MONOTONIC"])
    return (f"capacity {s['engine']}/{s['serve']}: {_fmt(cap)} {label} (first failing "
            f"{_fmt(hi)}; binding {s.get('binding_slo') or '-'}; {', '.join(flags)})"
            + (f" - {s['reason']}" if s.get("reason") else ""))


def compare(paths: list[Path]) -> dict[str, Any]:
    """Several runs side by side; :class:`CompareError` when their workloads differ."""
    runs = []
    for path in paths:
        rd = _need_run(Path(path))
        plan = json.loads((rd.path / PLAN).read_text())
        runs.append((path, plan.get("workload", {}).get("digest"), plan, None))
    digests = {d for _, d, _, _ in runs}
    if len(digests) > 1:
        listing = "; ".join(f"{p}: {str(d)[:12]}" for p, d, _, _ in runs)
        raise CompareError(f"the runs replayed different workloads ({listing}): their "
                           "capacities are not comparable; rerun with the same trace, window, "
                           "arrivals and seed")
    rows = []
    for path, _, _, _ in runs:
        searches = read_capacity(Path(path))
        for s in searches:
            unit = "rate_rps" if s["variable"] == "rps" else "concurrency"
            at = s.get("at_capacity") or {}
            rows.append({"run": str(path), "engine": s["engine"], "serve": s["serve"],
                         "what": "capacity", "load": s["capacity"].get(unit),
                         "first_failing": s["first_failing"].get(unit),
                         "status": s["status"] + ("" if s["monotonic"] else
                                                  ", NON-MONOTONIC"),
                         "goodput_per_gpu_rps": at.get("goodput_per_gpu_rps"),
                         "ttft_p99_ms": at.get("ttft_p99_ms"),
                         "tpot_p99_ms": at.get("tpot_p99_ms"),
                         "j_per_token": (at.get("energy") or {}).get("j_per_token"),
                         "version": _version(Path(path), s["engine"], s["serve"])})
        if searches:
            continue
        for engine, serve, res in RunDir(Path(path)).points():
            rows.append({"run": str(path), "engine": engine, "serve": serve,
                         "what": res.key, "load": res.x, "first_failing": None,
                         "status": res.verdict, "goodput_per_gpu_rps": res.goodput_rps,
                         "ttft_p99_ms": res.latency_ms.get("ttft_p99"),
                         "tpot_p99_ms": res.latency_ms.get("tpot_p99"),
                         "j_per_token": res.energy.get("j_per_token"),
                         "version": _version(Path(path), engine, serve)})
    if not rows:
        raise CompareError("no measured point in these runs")
    return {"digest": digests.pop(), "rows": rows}


def _version(path: Path, engine: str, serve: str) -> str | None:
    """The engine's version as its ``serve.json`` recorded it."""
    file = path / "engines" / engine / serve / "serve.json"
    if not file.is_file():
        return None
    version = json.loads(file.read_text()).get("engine_version")
    return str(version) if version is not None else None


def format_compare(cmp: dict[str, Any]) -> str:
    """The comparison as a text table."""
    header = ["run", "engine/serve", "what", "load", "first failing", "status", "goodput/GPU",
              "ttft p99", "tpot p99", "J/token", "version"]
    rows = [[r["run"], f"{r['engine']}/{r['serve']}", r["what"], _fmt(r["load"]),
             _fmt(r["first_failing"]), r["status"], _fmt(r["goodput_per_gpu_rps"]),
             _fmt(r["ttft_p99_ms"], ".1f"), _fmt(r["tpot_p99_ms"], ".1f"),
             _fmt(r["j_per_token"]), r["version"] or "-"] for r in cmp["rows"]]
    return f"workload {cmp['digest'][:12]}\n" + _table(header, rows)
