"""CPU and memory of the engine's process tree through psutil (the ``gpu`` extra): summed CPU
percent (100 = one core busy), resident memory, and the number of processes."""

from __future__ import annotations

import importlib
import time
from typing import Any

__all__ = ["HostReader", "open_host"]


def open_host(pid: int | None) -> tuple[HostReader | None, str | None]:
    """A :class:`HostReader` of process ``pid`` and its children, or None and why not."""
    if pid is None:
        return None, "no engine process to watch (a server started by the user)"
    try:
        # lazy: optional dependency (the gpu extra); imported by name as it has no type stubs
        psutil = importlib.import_module("psutil")
    except ImportError:
        return None, "psutil is not installed (pip install 'llmtraces[gpu]')"
    try:
        return HostReader(psutil, psutil.Process(pid)), None
    except psutil.Error as exc:
        return None, f"cannot watch process {pid} ({exc})"


class HostReader:
    """Samples one process tree; CPU percent is measured between consecutive samples."""

    def __init__(self, ps: Any, root: Any) -> None:
        self.ps, self.root = ps, root
        self._procs: dict[int, Any] = {}

    def sample(self) -> dict[str, Any] | None:
        """One ``source = "host"`` row, or None once the process is gone."""
        ps = self.ps
        t = time.monotonic()
        try:
            tree = [self.root, *self.root.children(recursive=True)]
        except ps.Error:
            return None
        cpu, rss, alive = 0.0, 0, 0
        seen = {}
        for proc in tree:
            known = self._procs.get(proc.pid, proc)
            try:
                with known.oneshot():
                    cpu += known.cpu_percent(None)  # 0.0 on the first call of a process
                    rss += known.memory_info().rss
                alive += 1
                seen[proc.pid] = known
            except ps.Error:
                continue
        self._procs = seen
        return {"t_s": t, "source": "host", "cpu_percent": cpu, "rss_bytes": rss,
                "processes": alive}
