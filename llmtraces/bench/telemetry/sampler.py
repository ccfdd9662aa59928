"""The telemetry process: samples NVML and the engine's process tree every ``interval_s`` on
``time.monotonic()`` (CLOCK_MONOTONIC, the same clock in every process of the machine, so the
replay's times and these line up), scrapes ``/metrics`` every ``metrics_interval_s`` on a
thread of its own, and when told to stop writes ``telemetry.parquet`` and
``server_metrics.parquet`` atomically.

It is a separate Python process (``python -m llmtraces.bench.telemetry CONFIG_JSON``), so the
replay's event loop never waits on an NVML call or a scrape. It reports on stdout, one JSON
line per message (``ready``, then ``done``), and stops when its stdin says ``stop`` or closes
(so it also ends when its parent dies).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...atomic import atomic_path
from .host import open_host
from .nvml import open_nvml
from .prometheus import parse, server_load

__all__ = ["METRICS_FILE", "TELEMETRY_FILE", "main", "run"]

TELEMETRY_FILE = "telemetry.parquet"
METRICS_FILE = "server_metrics.parquet"
#: raw scrape text kept at most (bytes); past it only the parsed numbers are kept.
RAW_BUDGET = 64 << 20

#: column -> pyarrow type name, in order (``telemetry.parquet``; see docs/bench.md).
TELEMETRY_COLUMNS = {
    "t_s": "float64", "source": "string", "gpu": "int32", "uuid": "string",
    "energy_mj": "int64", "power_w": "float64", "power_source": "string",
    "util_gpu_pct": "float64", "mem_used_bytes": "int64", "sm_clock_mhz": "float64",
    "temp_c": "float64", "clock_event_reasons": "uint64", "cpu_percent": "float64",
    "rss_bytes": "int64", "processes": "int32"}
METRICS_COLUMNS = {
    "t_s": "float64", "status": "int32", "running": "float64", "waiting": "float64",
    "kv_usage": "float64", "error": "string", "raw": "string"}


class Scraper(threading.Thread):
    """Scrapes a Prometheus URL every ``interval_s`` until ``stop`` is set."""

    def __init__(self, url: str, interval_s: float, stop: threading.Event) -> None:
        super().__init__(name="llmtraces-metrics", daemon=True)
        self.url, self.interval_s, self.stop_event = url, interval_s, stop
        self.rows: list[dict[str, Any]] = []
        self._raw = 0

    def run(self) -> None:
        import urllib.error  # lazy: only a process with a metrics URL scrapes
        import urllib.request  # lazy: as above
        next_t = time.monotonic()
        while not self.stop_event.is_set():
            t = time.monotonic()
            row: dict[str, Any] = {"t_s": t, "status": None, "running": None, "waiting": None,
                                   "kv_usage": None, "error": None, "raw": None}
            try:
                with urllib.request.urlopen(self.url, timeout=max(0.5, self.interval_s)) as r:
                    row["status"] = int(r.status)
                    text = r.read().decode("utf-8", "replace")
                load = server_load(parse(text))
                row.update(running=load.running, waiting=load.waiting, kv_usage=load.kv_usage)
                if self._raw + len(text) <= RAW_BUDGET:
                    row["raw"] = text
                    self._raw += len(text)
            except urllib.error.HTTPError as exc:
                row.update(status=int(exc.code), error=f"HTTP {exc.code}")
            except (OSError, ValueError) as exc:
                row["error"] = str(exc) or type(exc).__name__
            self.rows.append(row)
            next_t += self.interval_s
            now = time.monotonic()
            if next_t < now:
                next_t = now + self.interval_s  # fell behind: skip, never burst
            self.stop_event.wait(next_t - now)


def _write(path: Path, rows: list[dict[str, Any]], columns: dict[str, str]) -> None:
    import pyarrow as pa  # lazy: only at the end of the process, after sampling stopped
    import pyarrow.parquet as pq  # lazy: as above
    schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in columns.items()])
    data = {name: [row.get(name) for row in rows] for name in columns}
    table = pa.table(data, schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def run(cfg: dict[str, Any], status: Callable[[dict[str, Any]], None],
        stop: threading.Event) -> None:
    """Report readiness through ``status``, sample until ``stop`` is set, write the two files
    and report ``done`` (rows, errors)."""
    with contextlib.suppress(OSError):
        os.nice(2)  # below the replay when the CPUs are scarce; NVML readings keep their times
    nvml, reason = open_nvml(cfg.get("gpu_indices"))
    host, host_reason = open_host(cfg.get("engine_pid"))
    gpus = nvml.info() if nvml is not None else []
    system = nvml.system() if nvml is not None else {}
    status({"kind": "ready", "nvml": nvml is not None, "reason": reason, "gpus": gpus,
                "system": system, "host_reason": host_reason, "pid": os.getpid()})
    if cfg.get("require") and nvml is None:
        return
    rows: list[dict[str, Any]] = []
    scrape_stop = threading.Event()
    scraper = None
    if cfg.get("metrics_url"):
        scraper = Scraper(cfg["metrics_url"], float(cfg.get("metrics_interval_s", 1.0)),
                          scrape_stop)
        scraper.start()
    interval = float(cfg["interval_s"])
    next_t = time.monotonic()
    while True:
        if nvml is not None:
            rows += nvml.sample()
        if host is not None:
            got = host.sample()
            if got is None:
                host = None  # the engine exited; GPU sampling goes on
            else:
                rows.append(got)
        if stop.is_set():
            break  # the sample just taken brackets the end of any window before the stop
        next_t += interval
        now = time.monotonic()
        if next_t < now:
            next_t = now + interval
        stop.wait(next_t - now)
    scrape_stop.set()
    if scraper is not None:
        scraper.join(10)
    folder = Path(cfg["folder"])
    _write(folder / TELEMETRY_FILE, rows, TELEMETRY_COLUMNS)
    _write(folder / METRICS_FILE, scraper.rows if scraper is not None else [], METRICS_COLUMNS)
    errors = nvml.errors if nvml is not None else {}
    if nvml is not None:
        nvml.close()
    status({"kind": "done", "rows": len(rows), "errors": errors,
                "scrapes": len(scraper.rows) if scraper is not None else 0})


def _say(msg: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(msg, default=str) + "\n")
    sys.stdout.flush()


def _watch_stdin(stop: threading.Event) -> None:
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    stop.set()


def main(argv: list[str] | None = None) -> int:
    """``python -m llmtraces.bench.telemetry CONFIG_JSON``: sample until stdin says stop."""
    args = sys.argv[1:] if argv is None else argv
    cfg = json.loads(args[0])
    # Ctrl-C in the terminal reaches the whole process group; the parent decides when to stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()
    run(cfg, _say, stop)
    return 0
