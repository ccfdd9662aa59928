"""The end of a replay: ``summary.json`` and ``timeseries.parquet`` from ``requests.parquet``,
the same for a single process and for workers (which add their ``workers`` entry)."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from ..atomic import atomic_path
from . import metrics
from .recorder import REQUESTS

if TYPE_CHECKING:  # the config lives with the runner, which needs aiohttp
    from .runner import ReplayConfig

__all__ = ["SUMMARY", "TIMESERIES", "TRACE_KEYS", "write_outputs"]

SUMMARY = "summary.json"
TIMESERIES = "timeseries.parquet"
#: the trace metadata kept in summary.json
TRACE_KEYS = ("source", "trace", "native_file", "native_sha256", "rows", "time_origin",
              "transforms")


def write_outputs(out: Path, cfg: ReplayConfig, *, t0_unix: float, stop_reason: str,
                  crash: str | None, meta: dict[str, Any], server: dict[str, Any],
                  prompts: dict[str, Any], workers: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """Write ``summary.json`` and ``timeseries.parquet`` of ``out/requests.parquet``; return
    the summary. ``t0_unix`` is the run's start (UTC seconds); ``crash`` a one-line text."""
    path = Path(out) / REQUESTS
    table = pq.read_table(path, columns=list(metrics.SCALAR_COLUMNS))
    summary: dict[str, Any] = {
        "format": "llmtraces.replay-summary", "version": 2,  # 2: latencies in ms
        "started_at": _dt.datetime.fromtimestamp(t0_unix, _dt.UTC)
        .isoformat().replace("+00:00", "Z"),
        "stop_reason": stop_reason,
        "crash": crash,
        "trace": {k: meta.get(k) for k in TRACE_KEYS if k in meta},
        "server": server,
        "options": {"timing": cfg.timing.as_dict(), "max_concurrency": cfg.max_concurrency,
                    "timeout_s": cfg.timeout_s, "seed": cfg.seed,
                    "default_output_tokens": cfg.default_output_tokens,
                    "percentiles": cfg.percentiles, "window_s": cfg.window_s,
                    "slo_ms": cfg.slo.as_dict() if cfg.slo else None},
        "prompts": prompts,
        "metrics": metrics.summarize(path, percentiles=cfg.percentiles, slo=cfg.slo,
                                     measure_from_s=cfg.measure_from_s,
                                     measure_until_s=cfg.measure_until_s),
        "fidelity": metrics.fidelity(table, cfg.percentiles),
    }
    if workers is not None:
        summary["workers"] = workers
    ts = metrics.timeseries(table, cfg.window_s, percentiles=cfg.percentiles, slo=cfg.slo)
    with atomic_path(Path(out) / TIMESERIES) as tmp:
        pq.write_table(ts, tmp)
    with atomic_path(Path(out) / SUMMARY) as tmp:
        tmp.write_text(json.dumps(summary, indent=1, default=str) + "\n")
    return summary
