"""``llmtraces replay --workers N``: N processes share one schedule.

Each worker reads the whole schedule and keeps its share (:func:`~.schedule.share`: a
session's turns stay on one worker, other requests go round robin), builds its bodies, and
reports ready. The parent then picks one start instant a little in the future on
``CLOCK_MONOTONIC`` (one clock for every process of a Linux host) and every worker dispatches
against it, writing its own parts (``requests.parts/part-wNNN-*.parquet``). When all have
ended, the parent joins the parts into the same three outputs as a single-process run, with
the same request ids and scheduled times, and adds a ``workers`` entry to ``summary.json``
(rows, lateness and start error per worker).

Ctrl-C or SIGTERM reaches the parent, which passes it on once to each worker (each in its own
process group); a worker that dies stops the others (gracefully, like SIGTERM), its rows
already written are kept with everybody else's, and the run ends with one line and a
non-zero exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp

from ..transforms import TraceLike, to_table
from . import client
from .errors import ReplayError
from .options import clear_outputs
from .outputs import write_outputs
from .recorder import PARTS, finalize
from .runner import Replay, ReplayConfig

__all__ = ["START_LEAD_S", "assemble", "portable", "probe", "replay_workers",
           "split_concurrency", "worker_config", "worker_report"]

#: how far ahead of "all workers ready" the common start instant is put (s)
START_LEAD_S = 0.2


def split_concurrency(total: int | None, workers: int) -> list[int | None]:
    """``--max-concurrency`` shared among workers (their caps add up to ``total``)."""
    if total is None:
        return [None] * workers
    if total < workers:
        raise ReplayError(f"--max-concurrency {total} is below --workers {workers}; expected "
                          "at least one request in flight per worker")
    return [total // workers + (1 if i < total % workers else 0) for i in range(workers)]


def worker_config(cfg: ReplayConfig, cap: int | None) -> ReplayConfig:
    """Worker ``cfg``: its share of the concurrency, no progress line, no folder clearing."""
    return dataclasses.replace(cfg, max_concurrency=cap, progress=False, overwrite=True)


def portable(trace: TraceLike) -> TraceLike:
    """``trace`` as something another process can open: a path or a table."""
    if isinstance(trace, (str, os.PathLike)):
        return os.fspath(trace)
    return to_table(trace)


def probe(cfg: ReplayConfig) -> client.ServerInfo:
    """``GET /v1/models`` once, before any worker starts: a server that is down is one line
    and nothing is written."""
    base = cfg.urls()[0]
    headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}

    async def main() -> client.ServerInfo:
        async with aiohttp.ClientSession() as session:
            return await client.probe(session, base, headers)

    return asyncio.run(main())


def _worker_main(conn: Connection, trace: TraceLike, cfg: ReplayConfig, out: str,
                 index: int, workers: int) -> None:
    """One worker process: replay its share; the start instant comes over ``conn``."""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)  # Ctrl-C at a terminal reaches the parent only; it passes it on

    def gate() -> float | None:
        conn.send(("ready", None))
        msg = conn.recv()
        if msg[0] != "start":
            return None
        # the parent's CLOCK_MONOTONIC instant, on this process's perf_counter
        return float(time.perf_counter() + (msg[1] - time.monotonic()))

    try:
        result = Replay(trace, cfg, Path(out), part=(index, workers), gate=gate).run()
        result.update(pid=os.getpid(), host=socket.gethostname())
        conn.send(("done", result))
    except BaseException as exc:  # reported to the parent as one line
        text = str(exc) if isinstance(exc, ReplayError) else f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(OSError):
            conn.send(("error", text))


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class _Signals:
    """While the workers run: Ctrl-C and SIGTERM are passed on to them (once per signal)."""

    def __init__(self, procs: list[Any]) -> None:
        self.procs = procs
        self.reason: str | None = None
        self._old: dict[int, Any] = {}

    def _on(self, signum: int, frame: FrameType | None) -> None:
        if self.reason is None:
            self.reason = "interrupted" if signum == signal.SIGINT else "terminated"
        for p in self.procs:
            if p.is_alive() and p.pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(p.pid, signum)

    def __enter__(self) -> _Signals:
        for s in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: leave them be
                self._old[s] = signal.signal(s, self._on)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)


def prepare(trace: TraceLike, out: Path, cfg: ReplayConfig, workers: int
            ) -> tuple[ReplayConfig, Path, Replay, list[int | None]]:
    """Before any worker starts: the options checked, the lead replay (its checks and the
    schedule's metadata; nothing sent), each worker's share of ``--max-concurrency`` and the
    server probed."""
    if not 1 <= workers <= 1024:
        raise ReplayError(f"--workers: {workers} is out of range; expected 1 to 1,024")
    cfg = cfg.check()
    out = Path(out)
    lead = Replay(trace, cfg, out)
    caps = split_concurrency(cfg.max_concurrency, workers)
    probe(cfg)
    return cfg, out, lead, caps


def replay_workers(trace: TraceLike, out: Path, cfg: ReplayConfig, workers: int,
                   lead_s: float = START_LEAD_S) -> dict[str, Any]:
    """Replay ``trace`` with ``workers`` processes into ``out`` (the outputs of
    :func:`~.runner.replay`, plus ``summary.json`` ``workers``); return the summary."""
    cfg, out, lead, caps = prepare(trace, out, cfg, workers)
    trace = portable(trace)
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding threads
    conns, procs = [], []
    for i in range(workers):
        mine, theirs = ctx.Pipe()
        procs.append(ctx.Process(target=_worker_main, name=f"llmtraces-replay-w{i}",
                                 args=(theirs, trace, worker_config(cfg, caps[i]), str(out),
                                       i, workers), daemon=True))
        conns.append(mine)
    started = False
    try:
        for p in procs:
            p.start()
        _wait_ready(procs, conns)
        if cfg.overwrite:
            clear_outputs(out)
        (out / PARTS).mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic() + lead_s
        t0_unix = time.time() + lead_s
        for c in conns:
            c.send(("start", t0))
        started = True
        with _Signals(procs) as sig:
            results, lost = _collect(procs, conns)
    finally:
        if not started:
            for c in conns:
                with contextlib.suppress(OSError):
                    c.send(("stop", None))
        for p in procs:
            p.join(None if started else 5)
            if p.is_alive():
                p.kill()
                p.join()
    finalize(out)
    reports = []
    for i in range(workers):
        rep: dict[str, Any] = {"worker": i, "clock_offset_ms": 0.0, "rtt_ms": None}
        rep.update(worker_report(results.get(i), t0_unix))
        if i in lost:
            rep["died"] = lost[i]
        reports.append(rep)
    return assemble(out, cfg, lead, reports, sig.reason, t0_unix, mode="processes",
                    clock="CLOCK_MONOTONIC (shared by the host's processes)", lead_s=lead_s)


def _who(procs: list[Any], conns: list[Connection], among: Any) -> dict[Any, int]:
    """What to wait on for the workers ``among``: each one's pipe and process sentinel."""
    who: dict[Any, int] = {}
    for i in among:
        who[conns[i]] = i
        who[procs[i].sentinel] = i
    return who


def _wait_ready(procs: list[Any], conns: list[Connection]) -> None:
    """Block until every worker is ready; one that fails first ends the start (one line)."""
    waiting = dict(enumerate(conns))
    while waiting:
        who = _who(procs, conns, waiting)
        for got in wait(list(who)):
            i = who[got]
            try:
                msg = conns[i].recv() if conns[i].poll() else None
            except EOFError:
                msg = None
            if msg is None:
                procs[i].join(5)
                raise ReplayError(f"worker {i} ended before it was ready "
                                  f"({_exit_text(procs[i].exitcode)})")
            if msg[0] == "error":
                raise ReplayError(f"worker {i}: {msg[1]}")
            waiting.pop(i, None)


def _collect(procs: list[Any], conns: list[Connection]
             ) -> tuple[dict[int, dict[str, Any]], dict[int, str]]:
    """Each worker's result until all have ended; a worker that dies (or fails) stops the
    others. Returns (results, what happened to the workers that gave none)."""
    results: dict[int, dict[str, Any]] = {}
    lost: dict[int, str] = {}
    running = set(range(len(procs)))
    while running:
        who = _who(procs, conns, running)
        for got in wait(list(who), timeout=1.0):
            i = who[got]
            if i not in running:
                continue
            try:
                msg = conns[i].recv() if conns[i].poll() else None
            except EOFError:
                msg = None
            if msg is not None and msg[0] == "done":
                results[i] = msg[1]
            elif msg is not None and msg[0] == "error":
                lost[i] = msg[1]
            else:
                procs[i].join(5)
                lost[i] = _exit_text(procs[i].exitcode)
            running.discard(i)
            if i in lost:  # the run is broken: the others stop, as on SIGTERM
                for j in running:
                    pid = procs[j].pid
                    if pid is not None and procs[j].is_alive():
                        with contextlib.suppress(OSError):
                            os.kill(pid, signal.SIGTERM)
    return results, lost


def worker_report(result: dict[str, Any] | None, t0_unix: float) -> dict[str, Any]:
    """One worker's entry in summary.json ``workers.per_worker``."""
    if result is None:
        return {"rows": None, "sent": None, "failed": None, "stop_reason": "died"}
    fid = result["fidelity"]
    return {"host": result.get("host"), "pid": result.get("pid"), "rows": result["rows"],
            "sent": result["sent"], "failed": result["failed"],
            "stop_reason": result["stop_reason"], "crash": result["crash"],
            "start_error_ms": (result["t0_unix"] - t0_unix) * 1000.0,
            "lateness_ms": fid["lateness_ms"], "late_over_1ms": fid["late_over_1ms"],
            "late_over_10ms": fid["late_over_10ms"], "drift_ms": fid["drift_ms"],
            "kept_up": fid["kept_up"], "cpu_s": result["cpu_s"],
            "cpu_ms_per_request": (result["cpu_s"] * 1000.0 / result["rows"]
                                   if result["rows"] else None),
            "_server": result["server"],
            "_prompts": result["prompts"]}


def assemble(out: Path, cfg: ReplayConfig, lead: Replay, reports: list[dict[str, Any]],
             signalled: str | None, t0_unix: float, **workers: Any) -> dict[str, Any]:
    """The run's summary and time series from the joined ``requests.parquet`` and each
    worker's report; raise one :class:`ReplayError` line (after writing) when a worker died
    or crashed."""
    done = [r for r in reports if "_server" in r]
    server = done[0]["_server"] if done else {"endpoint": lead.url, "api": lead.api}
    prompts = {"history_missing": sum(r["_prompts"]["history_missing"] for r in done),
               "text_exact_by_construction": (done[0]["_prompts"]["text_exact_by_construction"]
                                              if done else None),
               "text_corrected": sum(r["_prompts"]["text_corrected"] for r in done)}
    for r in reports:
        r.pop("_server", None)
        r.pop("_prompts", None)
    broken = [f"worker {r['worker']} of {len(reports)} "
              + (f"died ({r['died']})" if "died" in r else f"crashed ({r['crash']})")
              for r in reports if "died" in r or r.get("crash")]
    crash = "; ".join(broken) if broken else None
    reasons = {r["stop_reason"] for r in reports}
    stop = signalled or ("crashed" if crash else
                         next((s for s in ("terminated", "interrupted") if s in reasons),
                              "completed"))
    summary = write_outputs(out, cfg, t0_unix=t0_unix, stop_reason=stop, crash=crash,
                            meta=lead.schedule.meta, server=server, prompts=prompts,
                            workers={"count": len(reports), **workers, "per_worker": reports})
    if crash:
        rows = summary["metrics"]["requests"]["total"]
        raise ReplayError(f"{crash}; the other workers were stopped, and the {rows:,} "
                          f"requests written are in {out}/requests.parquet")
    return summary
