"""``llmtraces replay --ray [ADDRESS]``: the ``--workers`` as Ray actors across a cluster.

Each actor replays its share of the schedule (:func:`~.schedule.share`) in a thread of its own
process, writing its parts into a temporary folder on its node. Hosts do not share a
monotonic clock, so the start is agreed on wall clocks: the driver measures each actor's
offset NTP-style (several round trips of a tiny call returning the actor's ``time.time()``;
offset = remote - (t0 + t1) / 2 of the round trip with the smallest RTT, error at most half
that RTT) and sends each actor the common start instant shifted by its offset. When the
actors are done, the driver fetches their parts one at a time into ``requests.parts/`` and
finalizes the same three outputs as a single-process run; ``summary.json`` ``workers``
records each actor's host, offset, RTT and lateness.

Ray is the optional extra ``ray`` (``pip install 'llmtraces[ray]'``), imported only here.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from ..atomic import atomic_path
from ..transforms import TraceLike
from .errors import ReplayError
from .options import clear_outputs
from .recorder import PARTS, finalize
from .runner import Replay, ReplayConfig
from .workers import (
    assemble,
    portable,
    prepare,
    worker_config,
    worker_report,
)

__all__ = ["ReplayActor", "clock_offset", "replay_ray"]

#: how far ahead of the last "go" the common start instant is put (s): Ray calls take ms
RAY_LEAD_S = 0.5
#: round trips per actor for its clock offset
CLOCK_ROUNDS = 8


def _ray() -> ModuleType:
    try:
        return importlib.import_module("ray")  # optional extra, loaded only for --ray
    except ImportError as exc:
        raise ReplayError(f"--ray needs ray ({exc}): pip install 'llmtraces[ray]'") from None


class ReplayActor:
    """One worker on a Ray node (made a Ray actor by :func:`replay_ray`)."""

    def __init__(self, trace: Any, cfg: ReplayConfig, index: int, workers: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="llmtraces-replay-"))
        if isinstance(trace, tuple):  # (file name, bytes) shipped from the driver
            name, data = trace
            path = self.dir / name
            path.write_bytes(data)
            trace = path
        self.out = self.dir / "out"
        self._ready = threading.Event()
        self._go = threading.Event()
        self._start: float | None = None
        self._result: dict[str, Any] | None = None
        self._error: str | None = None
        self.replay = Replay(trace, cfg, self.out, part=(index, workers), gate=self._gate)
        self._thread = threading.Thread(target=self._run, name="llmtraces-replay-ray",
                                        daemon=True)
        self._thread.start()

    def _gate(self) -> float | None:
        self._ready.set()
        self._go.wait()
        if self._start is None:
            return None
        # the driver's instant, shifted to this host's wall clock, on this process's perf clock
        return time.perf_counter() + (self._start - time.time())

    def _run(self) -> None:
        try:
            self._result = self.replay.run()
            self._result["host"] = socket.gethostname()
            self._result["pid"] = os.getpid()
        except BaseException as exc:  # handed to the driver as one line
            self._error = str(exc) if isinstance(exc, ReplayError) \
                else f"{type(exc).__name__}: {exc}"
        finally:
            self._ready.set()

    def clock(self) -> float:
        """This host's wall clock (for the driver's offset measurement)."""
        return time.time()

    def wait_ready(self) -> str | None:
        """Block until the bodies are built and the start is awaited; an error's line."""
        self._ready.wait()
        return self._error

    def go(self, start_unix: float | None) -> None:
        """Start at ``start_unix`` on this host's wall clock (None: do not start)."""
        self._start = start_unix
        self._go.set()

    def stop(self, reason: str) -> None:
        """Stop dispatching, as Ctrl-C does (a second call cancels what is in flight)."""
        if not self._go.is_set():
            self.go(None)
        self.replay.stop_soon(reason)

    def result(self) -> dict[str, Any]:
        """Wait for the run; its result (or raise its error)."""
        self._thread.join()
        if self._result is None:
            raise ReplayError(self._error or "the worker ended without a result")
        return self._result

    def parts(self) -> list[str]:
        """Names of the parts written."""
        return sorted(p.name for p in (self.out / PARTS).glob("part-*.parquet"))

    def part(self, name: str) -> bytes:
        """One part's bytes."""
        return (self.out / PARTS / Path(name).name).read_bytes()

    def cleanup(self) -> None:
        """Remove the temporary folder."""
        shutil.rmtree(self.dir, ignore_errors=True)


def clock_offset(call: Any, rounds: int = CLOCK_ROUNDS) -> tuple[float, float]:
    """(offset, rtt) in seconds of a remote clock: ``call()`` returns the remote
    ``time.time()``; offset = remote - midpoint of the round trip with the smallest RTT."""
    best: tuple[float, float] | None = None
    for _ in range(rounds):
        t0 = time.time()
        remote = call()
        t1 = time.time()
        if best is None or t1 - t0 < best[1]:
            best = (remote - (t0 + t1) / 2, t1 - t0)
    assert best is not None
    return best


class _Flag:
    """Ctrl-C / SIGTERM during the run: remembered here, acted on by the wait loop."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.count = 0
        self._old: dict[int, Any] = {}

    def _on(self, signum: int, frame: FrameType | None) -> None:
        self.reason = self.reason or ("interrupted" if signum == signal.SIGINT
                                      else "terminated")
        self.count += 1

    def __enter__(self) -> _Flag:
        for s in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread
                self._old[s] = signal.signal(s, self._on)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)


def _shipped(trace: TraceLike) -> Any:
    """The trace as the actors get it: a file's (name, bytes), or a table."""
    trace = portable(trace)
    if isinstance(trace, str):
        path = Path(trace)
        return (path.name, path.read_bytes())
    return trace


def replay_ray(trace: TraceLike, out: Path, cfg: ReplayConfig, workers: int, *,
               address: str | None = None, lead_s: float = RAY_LEAD_S) -> dict[str, Any]:
    """:func:`~.workers.replay_workers` with Ray actors (on the cluster at ``address``, or
    the Ray instance already initialised, or a new local one); return the summary."""
    ray = _ray()
    cfg, out, lead, caps = prepare(trace, out, cfg, workers)
    ours = not ray.is_initialized()
    if ours:
        ray.init(address=address, include_dashboard=False, logging_level="warning",
                 log_to_driver=False)
    try:
        return _run(ray, trace, out, cfg, lead, caps, lead_s)
    finally:
        if ours:
            ray.shutdown()


def _run(ray: ModuleType, trace: TraceLike, out: Path, cfg: ReplayConfig, lead: Replay,
         caps: list[int | None], lead_s: float) -> dict[str, Any]:
    workers = len(caps)
    actor = ray.remote(num_cpus=1, max_concurrency=4)(ReplayActor)
    ref = ray.put(_shipped(trace))
    handles = [actor.options(scheduling_strategy="SPREAD").remote(
        ref, worker_config(cfg, caps[i]), i, workers) for i in range(workers)]
    try:
        for i, err in enumerate(ray.get([h.wait_ready.remote() for h in handles])):
            if err is not None:
                raise ReplayError(f"worker {i}: {err}")
        clocks = [clock_offset(lambda h=h: ray.get(h.clock.remote())) for h in handles]
    except BaseException:
        for h in handles:
            with contextlib.suppress(Exception):
                ray.get(h.go.remote(None))
            ray.kill(h)
        raise
    if cfg.overwrite:
        clear_outputs(out)
    (out / PARTS).mkdir(parents=True, exist_ok=True)
    t0_unix = time.time() + lead_s
    ray.get([h.go.remote(t0_unix + off) for h, (off, _) in zip(handles, clocks, strict=True)])
    results, lost = _collect(ray, handles)
    signalled = results.pop(-1, None)
    for i, h in enumerate(handles):
        if i in results:
            for name in ray.get(h.parts.remote()):
                with atomic_path(out / PARTS / name) as tmp:
                    tmp.write_bytes(ray.get(h.part.remote(name)))
            with contextlib.suppress(Exception):
                ray.get(h.cleanup.remote())
        ray.kill(h)
    finalize(out)
    reports = []
    for i in range(workers):
        off, rtt = clocks[i]
        rep: dict[str, Any] = {"worker": i, "clock_offset_ms": off * 1000.0,
                               "rtt_ms": rtt * 1000.0}
        res = results.get(i)
        if res is not None:
            res["t0_unix"] -= off  # the worker's start on the driver's clock
        rep.update(worker_report(res, t0_unix))
        if i in lost:
            rep["died"] = lost[i]
        reports.append(rep)
    return assemble(out, cfg, lead, reports, signalled, t0_unix, mode="ray",
                    clock=f"time.time(), offset per worker from {CLOCK_ROUNDS} round trips",
                    lead_s=lead_s)


def _collect(ray: ModuleType, handles: list[Any]) -> tuple[dict[int, Any], dict[int, str]]:
    """Each actor's result until all have ended; Ctrl-C / SIGTERM and a dead actor stop
    the others. ``results[-1]`` is the signal's stop reason, when there was one."""
    pending = {h.result.remote(): i for i, h in enumerate(handles)}
    results: dict[int, Any] = {}
    lost: dict[int, str] = {}
    told = 0
    with _Flag() as flag:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
            for r in done:
                i = pending.pop(r)
                try:
                    results[i] = ray.get(r)
                except Exception as exc:  # a dead actor (RayActorError) or its error
                    lost[i] = str(exc).strip().splitlines()[0][:200] if str(exc) \
                        else type(exc).__name__
                    for j in pending.values():
                        handles[j].stop.remote("terminated")
            if flag.count > told:
                told = flag.count
                for j in pending.values():
                    handles[j].stop.remote(flag.reason)
    if flag.reason is not None:
        results[-1] = flag.reason
    return results, lost
