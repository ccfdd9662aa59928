"""The parent's handle on the telemetry process: start it, stop it (it then writes its files),
and compute the energy of a window from what it wrote.

The process is ``python -m llmtraces.bench.telemetry`` started with :mod:`subprocess`, not
:mod:`multiprocessing`: a spawned multiprocessing child re-imports the caller's ``__main__``
(re-running a script without a ``__main__`` guard, failing for ``python -`` on stdin), which a
library called from any script must not do.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from ...errors import LLMTracesError
from .energy import Energy, GpuSeries, window_energy
from .sampler import TELEMETRY_FILE

__all__ = ["Telemetry", "TelemetryError"]

#: seconds to wait for the process to report it samples (a fresh interpreter imports first).
START_TIMEOUT_S = 120.0
#: seconds to wait for it to write its files after the stop signal.
STOP_TIMEOUT_S = 60.0
#: the process's stderr, kept in the point's folder when it wrote anything.
LOG_FILE = "telemetry.log"


class TelemetryError(LLMTracesError):
    """Telemetry was required (``--telemetry require``) and cannot run, or its process died."""


class Telemetry:
    """A separate process sampling GPU power and energy (NVML), the engine's CPU and memory
    (psutil) and its ``/metrics``; use as a context manager or :meth:`start`/:meth:`stop`,
    then :meth:`energy` of any window inside the sampled span."""

    def __init__(self, folder: Path, *, engine_pid: int | None, metrics_url: str | None,
                 interval_s: float = 0.1, require: bool = False,
                 gpu_indices: Sequence[int] | None = None,
                 metrics_interval_s: float = 1.0) -> None:
        if not interval_s > 0 or not metrics_interval_s > 0:
            raise TelemetryError(f"telemetry interval must be > 0 s (got {interval_s}, "
                                 f"{metrics_interval_s})")
        self.folder = Path(folder)
        self.interval_s = float(interval_s)
        self.require = require
        self._cfg = {"folder": str(self.folder), "engine_pid": engine_pid,
                     "metrics_url": metrics_url, "interval_s": self.interval_s,
                     "metrics_interval_s": float(metrics_interval_s), "require": require,
                     "gpu_indices": list(gpu_indices) if gpu_indices is not None else None}
        self.ready: dict[str, Any] = {}
        self.done: dict[str, Any] = {}
        self._proc: Any = None
        self._status: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._log: IO[bytes] | None = None
        self._stopped = False
        self._series: list[GpuSeries] | None = None
        self._failure: str | None = None

    @property
    def available(self) -> bool:
        """Whether NVML answered in the telemetry process."""
        return bool(self.ready.get("nvml"))

    @property
    def reason(self) -> str | None:
        """Why there is no GPU telemetry (None when there is)."""
        return self._failure or self.ready.get("reason")

    def start(self) -> None:
        """Start sampling; returns once the process samples. Raises :class:`TelemetryError`
        when ``require`` and NVML is not available."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._log = open(self.folder / LOG_FILE, "wb")  # the child's stderr until stop()
        env = {**os.environ, "PYTHONPATH": _child_path()}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "llmtraces.bench.telemetry", json.dumps(self._cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env)
        self._status = queue.Queue()
        threading.Thread(target=_read_lines, args=(self._proc.stdout, self._status),
                         name="llmtraces-telemetry-status", daemon=True).start()
        self.ready = self._wait("ready", START_TIMEOUT_S) or {}
        if self.require and not self.available:
            self.stop()
            raise TelemetryError(f"--telemetry require: no GPU telemetry: {self.reason}")

    def _wait(self, kind: str, timeout: float) -> dict[str, Any] | None:
        """The process's ``kind`` message; None (and the reason kept) if it ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self._status.get(timeout=0.2)
            except queue.Empty:
                continue
            if msg is None:  # stdout closed: the process ended
                code = self._proc.wait()
                self._failure = (f"the telemetry process exited (code {code}) before "
                                 f"'{kind}'; see {self.folder / LOG_FILE}")
                return None
            if msg.get("kind") == kind:
                return msg
        self._failure = f"the telemetry process sent no '{kind}' within {timeout:g} s"
        return None

    def stop(self) -> None:
        """Stop sampling and wait for the files to be written. Idempotent."""
        proc = self._proc
        if proc is None or self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(OSError):  # closing stdin is the stop signal (EOF)
            proc.stdin.write(b"stop\n")
            proc.stdin.close()
        if self.ready and not (self.require and not self.available):
            self.done = self._wait("done", STOP_TIMEOUT_S) or {}
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if self._log is not None:
            self._log.close()
        log = self.folder / LOG_FILE
        if log.is_file() and log.stat().st_size == 0:
            log.unlink()

    def __enter__(self) -> Telemetry:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def series(self) -> list[GpuSeries]:
        """Per GPU, the samples written to ``telemetry.parquet`` (after :meth:`stop`)."""
        if self._series is None:
            import pyarrow.parquet as pq  # lazy: read once, after the point
            path = self.folder / TELEMETRY_FILE
            rows = pq.read_table(path).to_pylist() if path.is_file() else []
            by_gpu: dict[int, GpuSeries] = {}
            for r in rows:
                if r["source"] != "gpu":
                    continue
                g = by_gpu.setdefault(r["gpu"], GpuSeries(r["gpu"], r["uuid"], [], [], []))
                g.t.append(r["t_s"])
                g.energy_mj.append(r["energy_mj"])
                g.power_w.append(r["power_w"])
                g.power_source = g.power_source or r["power_source"]
            self._series = [by_gpu[k] for k in sorted(by_gpu)]
        return self._series

    def energy(self, t0: float, t1: float) -> Energy:
        """Energy of ``[t0, t1]`` (``time.monotonic()`` values) over the metered GPUs; None
        joules with the reason when there is no GPU telemetry or the counter misbehaved."""
        if not self.available:
            return Energy(None, self.reason or "telemetry was not started", None, [], t1 - t0)
        if not self._stopped:
            return Energy(None, "telemetry still running: call stop() first", None, [],
                          t1 - t0)
        if not self.done:
            return Energy(None, self.reason or "telemetry wrote no samples", None, [],
                          t1 - t0)
        return window_energy(self.series(), t0, t1, self.interval_s)


def _read_lines(stream: IO[bytes], out: queue.Queue[dict[str, Any] | None]) -> None:
    """Each JSON line of ``stream`` into ``out``, then None at its end."""
    for line in stream:
        with contextlib.suppress(ValueError):
            msg = json.loads(line)
            if isinstance(msg, dict):
                out.put(msg)
    out.put(None)


def _child_path() -> str:
    """``PYTHONPATH`` for the process: this one's, plus the folders this interpreter was
    given beyond its installation (a test's fake module, a checkout on ``sys.path``)."""
    own = [p for p in sys.path if p and not p.startswith((sys.prefix, sys.base_prefix))]
    given = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join(p for p in dict.fromkeys([*own, *given.split(os.pathsep)]) if p)
