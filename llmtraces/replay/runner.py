"""The replay itself: a producer thread (:mod:`.producer`) builds request bodies ahead of
time; a dispatcher on a dedicated event loop sends each one at its due time; every answer
becomes a row (:mod:`.rows`), and the run ends with the summary and the time series.

Precision: the dispatcher waits for each request's due instant on :mod:`.alarm` (a timerfd
that wakes the loop's epoll on time; the loop's own timers round up to the millisecond),
then hands the request to :mod:`.http`'s lean client. Prompts, JSON bodies and the trace
reading happen in the producer thread, up to ``lookahead`` requests ahead, and Parquet writes
in the recorder's thread, so the loop thread does little besides sending and reading; the
interpreter's thread switch interval is lowered during the run so that those threads give
the loop the GIL back quickly. uvloop is used when it is installed.

Open loop by default: a request is sent at its time whatever is in flight. With
``max_concurrency`` the dispatcher waits for a free slot (requests keep their order); the
wait is the row's ``queue_s`` and dispatch lateness is measured from the slot's release.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import importlib
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pyarrow as pa
import pyarrow.parquet as pq

from ..transforms import TraceLike
from . import client, http, metrics
from .alarm import ThreadAlarm, TimerfdAlarm, open_alarm
from .errors import ReplayError
from .options import check_endpoint, check_out, check_ranges, clear_outputs
from .outputs import SUMMARY, TIMESERIES, write_outputs
from .producer import Item, Producer
from .prompts import BodySpec, PromptBuilder, TextRenderer
from .recorder import Recorder
from .rows import result_row
from .schedule import Schedule, Timing, share

__all__ = ["SUMMARY", "TIMESERIES", "Replay", "ReplayConfig", "replay"]
#: longest single sleep, so a stop request is seen quickly during long trace gaps
MAX_SLEEP_S = 0.25
APIS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


@dataclass
class ReplayConfig:
    """Every option of a replay (the CLI's flags)."""

    endpoint: str = "http://127.0.0.1:8000"
    api: str = "completions"
    model: str | None = None
    api_key: str | None = field(default=None, repr=False)
    extra: dict[str, Any] = field(default_factory=dict)
    stream: bool = True
    prompt_format: str = "auto"          # auto, ids, text
    prompt_source: str = "synthetic"     # synthetic, ids
    vocab_size: int | None = None
    tokenizer: str | None = None
    ignore_eos: bool = True
    default_output_tokens: int = 128
    seed: int = 0
    timing: Timing = field(default_factory=Timing)
    max_concurrency: int | None = None
    timeout_s: float | None = 600.0
    slo: metrics.Slo | None = None
    window_s: float = 10.0
    percentiles: list[float] = field(default_factory=lambda: [50.0, 90.0, 99.0])
    grace_s: float = 5.0
    lookahead: int = 2048
    progress: bool = False
    flush_rows: int = 2048
    flush_s: float = 1.0
    overwrite: bool = False
    measure_from_s: float | None = None   # the summary covers requests scheduled in
    measure_until_s: float | None = None  # [from, until) s; all are still sent and recorded

    def check(self) -> ReplayConfig:
        """Raise :class:`ReplayError` for a bad option (one line naming it, its value and what
        is accepted) before anything is sent or written; return self."""
        check_endpoint(self.endpoint)
        if self.api not in APIS:
            raise ReplayError(f"--api: {self.api!r} is not one of {', '.join(APIS)}")
        if self.prompt_format not in ("auto", "ids", "text"):
            raise ReplayError("--prompt-format must be auto, ids or text")
        if self.prompt_source not in ("synthetic", "ids"):
            raise ReplayError("--prompt-source must be synthetic or ids")
        self.timing.check()
        check_ranges([("--timeout", self.timeout_s), ("--grace", self.grace_s),
                      ("--window-s", self.window_s), ("--max-concurrency", self.max_concurrency),
                      ("--default-output-tokens", self.default_output_tokens),
                      ("--vocab-size", self.vocab_size)])
        check_ranges(("--percentiles", p) for p in self.percentiles)
        check_ranges(("--slo", ms) for ms in (self.slo.as_dict().values() if self.slo else ()))
        if not (self.lookahead >= 1 and self.flush_rows >= 1 and self.flush_s > 0):
            raise ReplayError("lookahead and flush_rows must be >= 1, flush_s > 0")
        return self

    def urls(self) -> tuple[str, str, str]:
        """(base URL, request URL, api) from ``endpoint``: a base URL, or the full URL of
        ``/v1/completions`` or ``/v1/chat/completions`` (which then sets the api)."""
        url = self.endpoint.rstrip("/")
        for api, path in APIS.items():
            if url.endswith(path):
                return url[: -len(path)], url, api
        if url.endswith("/v1"):
            url = url[:-3]
        return url, url + APIS[self.api], self.api


class Replay:
    """One replay run: build with a trace and a config, then :meth:`run`."""

    def __init__(self, trace: TraceLike, cfg: ReplayConfig, out: Path,
                 echo: Callable[[str], None] | None = None, *,
                 part: tuple[int, int] | None = None,
                 gate: Callable[[], float | None] | None = None) -> None:
        self.cfg, self.out = cfg.check(), Path(out)
        #: as a worker (:mod:`.workers`): (index, workers), this worker's share of the
        #: schedule; ``gate`` blocks until the agreed start (a ``perf_counter`` instant, or
        #: None: do not start); the run then leaves its parts to the parent
        self.part, self.gate = part, gate
        if part is None:
            check_out(self.out, cfg.overwrite)
        self.echo = echo or (lambda msg: print(msg, file=sys.stderr))
        self.base, self.url, self.api = cfg.urls()
        if self.api == "chat" and (cfg.prompt_format == "ids" or cfg.prompt_source == "ids"):
            raise ReplayError("chat requests carry text: token-id prompts "
                              "(--prompt-format ids, --prompt-source ids) need --api "
                              "completions")
        if cfg.slo is not None and cfg.slo.ttft_ms is not None and not cfg.stream:
            raise ReplayError("--slo ttft needs streaming: a non-streaming answer has no "
                              "first-token time")
        self.schedule = Schedule(trace, cfg.timing)
        self.stop_reason: str | None = None
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.done = 0
        self.failed = 0
        self._late_max = 0.0
        self.t0 = 0.0
        self.recorder: Recorder | None = None  # opened once the server has answered
        self.loop: asyncio.AbstractEventLoop | None = None
        self.cpu0 = 0.0  # process CPU seconds at the start (a worker reports its use)
        self.cpu_sending = 0.0  # process CPU seconds from the start to the last answer

    # -- setup ---------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self.cfg.api_key:
            h["Authorization"] = f"Bearer {self.cfg.api_key}"
        return h

    def _spec(self, info: client.ServerInfo) -> tuple[BodySpec, TextRenderer | None]:
        cfg = self.cfg
        vocab = cfg.vocab_size if cfg.vocab_size is not None else info.vocab_size
        fmt = cfg.prompt_format
        if cfg.prompt_source == "ids":
            fmt = "ids"
        elif fmt == "auto":
            fmt = "ids" if self.api == "completions" and vocab is not None else "text"
        if fmt == "ids" and vocab is None and cfg.prompt_source != "ids":
            raise ReplayError("token-id prompts need the vocabulary size: pass --vocab-size N "
                              "(the server does not say it at /v1/models)")
        model = cfg.model if cfg.model is not None else info.model
        renderer = TextRenderer(cfg.tokenizer) if fmt == "text" or self.api == "chat" \
            else None
        return BodySpec(self.api, model, cfg.stream, cfg.ignore_eos, fmt, vocab,
                        dict(cfg.extra)), renderer

    # -- the run -------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Stop dispatching (a second call also cancels what is in flight)."""
        if self.stop_reason is not None:
            for task in list(self._tasks):
                task.cancel()
            return
        self.stop_reason = reason
        self._stop.set()

    def stop_soon(self, reason: str) -> None:
        """:meth:`request_stop` from another thread (a Ray worker's driver call)."""
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the run is over
                self.loop.call_soon_threadsafe(self.request_stop, reason)

    async def _next(self, prod: Producer) -> Item | None:
        while True:
            if (item := prod.take()) is not None:
                return item
            if prod.done.is_set() and not prod.items:
                if prod.error is not None:
                    raise prod.error
                return None
            if self._stop.is_set():
                return None
            await asyncio.sleep(0.0005)

    async def _one(self, pool: http.Pool, item: Item, ready: float,
                   sem: asyncio.Semaphore | None, recorder: Recorder) -> None:
        out = client.Outcome()
        item.recorded = True
        try:
            if item.body is None:
                recorder.add(result_row(item, self.t0, ready, None, self.cfg.stream))
                self.failed += 1
                return
            try:
                await client.send(pool, item.body, stream=self.cfg.stream,
                                  timeout=self.cfg.timeout_s, out=out,
                                  request_id=item.request_id)
            except asyncio.CancelledError:
                pass  # recorded as cancelled below
            late = out.sent - ready if out.sent else 0.0
            if late > self._late_max:
                self._late_max = late
            row = result_row(item, self.t0, ready, out, self.cfg.stream)
            recorder.add(row)
            if not row["ok"]:
                self.failed += 1
        finally:
            self.done += 1
            if sem is not None:
                sem.release()

    async def _dispatch(self, pool: http.Pool, prod: Producer, recorder: Recorder) -> None:
        loop = asyncio.get_running_loop()
        alarm = open_alarm(loop)
        try:
            await self._send_all(loop, alarm, pool, prod, recorder)
        finally:
            alarm.close()

    async def _send_all(self, loop: asyncio.AbstractEventLoop,
                        alarm: TimerfdAlarm | ThreadAlarm, pool: http.Pool,
                        prod: Producer, recorder: Recorder) -> None:
        sem = asyncio.Semaphore(self.cfg.max_concurrency) if self.cfg.max_concurrency else None
        clock = time.perf_counter
        while not self._stop.is_set():
            item = await self._next(prod)
            if item is None:
                break
            due = self.t0 + item.due
            while not self._stop.is_set() and (left := due - clock()) > 0:
                await alarm.at(due if left <= MAX_SLEEP_S else clock() + MAX_SLEEP_S)
            if self._stop.is_set():
                break
            ready = due
            if sem is not None:
                waits = sem.locked()
                await sem.acquire()
                if self._stop.is_set():
                    sem.release()
                    break
                if waits:
                    ready = max(clock(), due)
            self.sent += 1
            task = loop.create_task(self._one(pool, item, ready, sem, recorder))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(functools.partial(self._unstarted, item=item, ready=ready,
                                                     sem=sem, recorder=recorder))

    def _unstarted(self, task: asyncio.Task[None], item: Item, ready: float,
                   sem: asyncio.Semaphore | None, recorder: Recorder) -> None:
        """A task cancelled before it ran: its request was never sent; record that."""
        if item.recorded:
            return
        out = client.Outcome()
        out.fail("cancelled", "dispatched but cancelled before it was sent")
        recorder.add(result_row(item, self.t0, ready, out, self.cfg.stream))
        self.failed += 1
        self.done += 1
        if sem is not None:
            sem.release()

    async def _housekeeping(self, recorder: Recorder) -> None:
        last = 0.0
        ticks = 0
        while True:
            await asyncio.sleep(0.25)
            ticks += 1
            # reference cycles (aiohttp's futures, exceptions) are collected here, young
            # generations often and the old one every 15 s, rather than whenever the
            # allocation counter says: a full collection can pause the loop for many ms
            gc.collect(2 if ticks % 60 == 0 else 1)
            recorder.tick()
            now = time.perf_counter()
            if self.cfg.progress and now - last >= 0.5:
                last = now
                sys.stderr.write(
                    f"\r{now - self.t0:7.1f}s  sent {self.sent:,}  done {self.done:,}  "
                    f"in flight {len(self._tasks):,}  failed {self.failed:,}  "
                    f"max late {self._late_max * 1000:.1f} ms   ")
                sys.stderr.flush()

    def _open_recorder(self) -> Recorder:
        """The output folder and its recorder, only once the server has answered and the first
        requests are ready (a failed start writes nothing); with ``overwrite`` an earlier
        run's outputs are removed first, other files stay."""
        if self.part is not None:  # a worker: the parent cleared the folder
            self.recorder = Recorder(self.out, flush_rows=self.cfg.flush_rows,
                                     flush_s=self.cfg.flush_s, prefix=f"w{self.part[0]:03d}-",
                                     fresh=False)
            return self.recorder
        if self.cfg.overwrite:
            clear_outputs(self.out)
        self.recorder = Recorder(self.out, flush_rows=self.cfg.flush_rows,
                                 flush_s=self.cfg.flush_s)
        return self.recorder

    async def _main(self) -> dict[str, Any]:
        loop = self.loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGINT, self.request_stop, "interrupted")
            loop.add_signal_handler(signal.SIGTERM, self.request_stop, "terminated")
        tls = http.tls_for(self.url)
        connector = aiohttp.TCPConnector(ssl=tls if tls is not None else True)
        async with aiohttp.ClientSession(auto_decompress=False, connector=connector) as session:
            info = await client.probe(session, self.base, self._headers())
        spec, renderer = self._spec(info)
        self.spec = spec
        rows = self.schedule if self.part is None else share(self.schedule, *self.part)
        prod = Producer(rows, PromptBuilder(
            self.cfg.seed, use_trace_ids=self.cfg.prompt_source == "ids"), spec,
            renderer, self.cfg.lookahead, self.cfg.default_output_tokens)
        self.producer, self.renderer = prod, renderer
        prod.start()
        deadline = time.monotonic() + 10.0
        while (len(prod.items) < min(256, self.cfg.lookahead) and not prod.done.is_set()
               and time.monotonic() < deadline):
            await asyncio.sleep(0.005)
        if (prod.error is not None and not prod.items) or self._stop.is_set():
            prod.halt()  # the schedule failed before its first request, or Ctrl-C
            raise prod.error if prod.error is not None else KeyboardInterrupt()
        start = None
        if self.gate is not None:
            start = await loop.run_in_executor(None, self.gate)
            if start is None:
                prod.halt()
                raise ReplayError("the run was stopped before it started")
        recorder = self._open_recorder()
        # objects alive now (trace decoding, tokenizer tables) never need collecting:
        # keep them out of the collector's way, so its pauses stay short during the run
        gc.collect()
        gc.freeze()
        gc.disable()  # collections run in the housekeeping task instead (young ones)
        self.t0 = time.perf_counter() if start is None else start
        self.t0_unix = time.time() + (self.t0 - time.perf_counter())
        self.cpu0 = time.process_time()
        house = loop.create_task(self._housekeeping(recorder))
        pool = http.Pool(self.url, self._headers(), tls)
        try:
            try:
                await self._dispatch(pool, prod, recorder)
            except Exception:
                self.stop_reason = "crashed"
                if self._tasks:  # let what is in flight finish, briefly
                    await asyncio.wait(set(self._tasks), timeout=self.cfg.grace_s)
                raise
            if self._tasks:
                grace = self.cfg.grace_s if self.stop_reason else None
                await asyncio.wait(set(self._tasks), timeout=grace)
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=5.0)
            self.cpu_sending = time.process_time() - self.cpu0
        finally:
            prod.halt()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=5.0)
            house.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await house
            pool.close()
            if self.cfg.progress:
                sys.stderr.write("\n")
        return {"server": info}

    def run(self) -> dict[str, Any]:
        """Replay, write the outputs and return the summary (also on Ctrl-C; a crash still
        writes ``requests.parquet`` and ``summary.json`` of what ran, then re-raises). A start
        that fails (server down, nothing to send) raises and writes nothing."""
        self.recorder = None
        loop = _new_loop()
        old_switch = sys.getswitchinterval()
        sys.setswitchinterval(0.0002)
        info: client.ServerInfo | None = None
        crash: BaseException | None = None
        try:
            got = loop.run_until_complete(self._main())
            info = got["server"]
        except BaseException as exc:
            crash = exc
        finally:
            sys.setswitchinterval(old_switch)
            gc.enable()
            gc.unfreeze()
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
        if self.recorder is None:  # the server did not answer, or nothing was ready to send
            raise crash if crash is not None else ReplayError("the replay did not start")
        try:
            self.recorder.close(finish=self.part is None)
        except BaseException:
            if crash is None:
                raise
        if self.part is not None:  # a worker: the parent joins the parts and sums up
            return self._outcome(info, crash)
        if crash is not None and self.t0 == 0.0:
            raise crash  # nothing was sent: an empty requests.parquet, no summary
        summary = self._finish(info, crash)
        if crash is not None:
            raise crash
        return summary

    def _server_fields(self, info: client.ServerInfo | None) -> dict[str, Any]:
        """summary.json's ``server`` entry."""
        cfg = self.cfg
        return {
            "endpoint": self.url, "api": self.api, "model": self.spec.model,
            "stream": cfg.stream, "prompt_format": self.spec.prompt_format,
            "prompt_source": cfg.prompt_source, "vocab_size": self.spec.vocab_size,
            "vocab_from_server": cfg.vocab_size is None and info is not None
            and info.vocab_size is not None,
            "tokenizer": (self.renderer.identity.get("name")
                          if self.renderer is not None else None),
            "ignore_eos": cfg.ignore_eos, "extra": cfg.extra,
            "api_key": "set" if cfg.api_key else None,
        }

    def _prompt_fields(self) -> dict[str, Any]:
        """summary.json's ``prompts`` entry."""
        return {"history_missing": self.producer.builder.history_missing,
                "text_exact_by_construction": self.renderer.exact if self.renderer else None,
                "text_corrected": self.renderer.corrected if self.renderer else 0}

    def _finish(self, info: client.ServerInfo | None,
                crash: BaseException | None) -> dict[str, Any]:
        return write_outputs(
            self.out, self.cfg, t0_unix=self.t0_unix,
            stop_reason="crashed" if crash is not None else (self.stop_reason or "completed"),
            crash=f"{type(crash).__name__}: {crash}" if crash is not None else None,
            meta=self.schedule.meta, server=self._server_fields(info),
            prompts=self._prompt_fields())

    def _outcome(self, info: client.ServerInfo | None,
                 crash: BaseException | None) -> dict[str, Any]:
        """A worker's result: what the run needs for its summary, and this worker's own
        dispatch fidelity (from the parts it wrote)."""
        assert self.recorder is not None and self.part is not None
        paths = self.recorder.part_paths()
        cols = ["scheduled_s", "ready_s", "sent_s", "queue_s", "lateness_s"]
        table = pa.concat_tables([pq.read_table(p, columns=cols) for p in paths]) if paths \
            else pa.table({c: pa.array([], pa.float64()) for c in cols})
        return {"worker": self.part[0], "stop_reason": self.stop_reason or "completed",
                "crash": f"{type(crash).__name__}: {crash}" if crash is not None else None,
                "t0_unix": self.t0_unix, "rows": self.recorder.rows, "sent": self.sent,
                "failed": self.failed, "parts": [p.name for p in paths],
                "cpu_s": time.process_time() - self.cpu0,
                "server": self._server_fields(info), "prompts": self._prompt_fields(),
                "fidelity": metrics.fidelity(table, self.cfg.percentiles)}


def _new_loop() -> asyncio.AbstractEventLoop:
    """A fresh event loop: uvloop's when installed."""
    try:
        uvloop = importlib.import_module("uvloop")  # optional; not a dependency
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def replay(trace: TraceLike, out: Path, cfg: ReplayConfig | None = None,
           **options: Any) -> dict[str, Any]:
    """Replay ``trace`` (a unified Parquet path, native file or Table) against a server and
    write ``requests.parquet``, ``summary.json`` and ``timeseries.parquet`` into ``out``;
    return the summary. ``options`` are :class:`ReplayConfig` fields."""
    if cfg is None:
        cfg = ReplayConfig(**options)
    return Replay(trace, cfg, out).run()
