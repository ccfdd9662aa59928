"""``bench plot``: latency vs load with the SLO lines, attainment vs load with its Wilson
interval, and GPU power over time per point (when telemetry recorded it); one PNG each,
drawn with matplotlib's Agg backend (the ``plot`` extra)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..atomic import atomic_path
from ..errors import LLMTracesError
from .outputs import RunDir


def _pyplot() -> Any:
    try:
        import matplotlib  # lazy: optional extra, heavy
    except ImportError:
        raise LLMTracesError("bench plot needs matplotlib: pip install 'llmtraces[plot]'") \
            from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: optional extra, heavy
    return plt


def _series(path: Path) -> tuple[str, list[Any], dict[str, Any]]:
    rd = RunDir(path)
    points = [r for _, _, r in rd.points() if r.kind not in ("idle", "saturation")
              and r.attainment is not None]
    points.sort(key=lambda r: r.x)
    plan = json.loads((path / "plan.json").read_text()) if (path / "plan.json").is_file() \
        else {}
    return str(plan.get("name") or path.name), points, plan.get("spec", {}).get("slo", {})


def plot_runs(paths: list[Path], out: Path) -> list[Path]:
    """Draw the plots of ``paths`` into ``out``; the PNGs written."""
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    runs = [_series(Path(p)) for p in paths]
    written = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    slo: dict[str, Any] = {}
    for name, pts, slo_ in runs:
        slo = slo or slo_
        xs = [p.x for p in pts]
        for ax, metric in zip(axes, ("ttft", "tpot"), strict=True):
            for pct, style in (("p50", "o-"), ("p99", "s--")):
                ax.plot(xs, [p.latency_ms.get(f"{metric}_{pct}") for p in pts], style,
                        label=f"{name} {pct}")
    for ax, metric in zip(axes, ("ttft", "tpot"), strict=True):
        bound = slo.get(f"{metric}_ms")
        if bound:
            ax.axhline(bound, color="red", linestyle=":", label=f"SLO {bound:g} ms")
        ax.set_xlabel("load (req/s or concurrency)")
        ax.set_ylabel(f"{metric.upper()} (ms)")
        ax.legend(fontsize="small")
    written.append(_save(fig, out / "latency_vs_load.png", plt))
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, pts, slo_ in runs:
        xs = [p.x for p in pts]
        a = [p.attainment for p in pts]
        err = [[p.attainment - p.attainment_lo for p in pts],
               [p.attainment_hi - p.attainment for p in pts]]
        ax.errorbar(xs, a, yerr=err, fmt="o", capsize=3, label=name)
        target = slo_.get("attainment")
        if target:
            ax.axhline(target, color="red", linestyle=":")
    ax.set_xlabel("load (req/s or concurrency)")
    ax.set_ylabel("SLO attainment (Wilson 95 % one-sided)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize="small")
    written.append(_save(fig, out / "attainment_vs_load.png", plt))
    power = _power(paths, plt, out)
    if power is not None:
        written.append(power)
    return written


def _power(paths: list[Path], plt: Any, out: Path) -> Path | None:
    """Power over time of every point that has a ``telemetry.parquet`` with power."""
    import pyarrow.parquet as pq  # lazy: only when plotting
    fig, ax = plt.subplots(figsize=(8, 4))
    drawn = False
    for path in paths:
        for tel in sorted(Path(path).glob("engines/*/*/points/*/telemetry.parquet")):
            table = pq.read_table(tel)
            if "power_w" not in table.column_names or "t_s" not in table.column_names:
                continue
            t, w = table["t_s"].to_pylist(), table["power_w"].to_pylist()
            pairs = [(a, b) for a, b in zip(t, w, strict=True) if a is not None
                     and b is not None]
            if not pairs:
                continue
            t0 = pairs[0][0]
            ax.plot([a - t0 for a, _ in pairs], [b for _, b in pairs], label=tel.parent.name)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("time in point (s)")
    ax.set_ylabel("GPU power (W)")
    ax.legend(fontsize="x-small")
    return _save(fig, out / "power_over_time.png", plt)


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
