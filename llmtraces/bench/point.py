"""One load point against a running engine, in order: wait until the server is idle, reset
its prefix cache (recording when it cannot), start telemetry, replay the workload at the
point's rate (or fixed concurrency) with ``warmup_s`` sent but not measured, measure at least
``measure_s`` and ``min_requests``, drain at most ``drain_s`` (what is still running is
cancelled and counts as not good), stop telemetry, judge, write ``point.json``, cool down.

The replay is the replayer's own (:class:`~llmtraces.replay.runner.Replay`); a watcher thread
stops a closed-loop point once its window is measured and cancels what is left after the
drain, through the replay's ``request_stop`` on its own event loop.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_path
from ..replay.metrics import Slo
from ..replay.recorder import REQUESTS
from ..replay.runner import Replay, ReplayConfig
from .energy import energy_fields
from .pointstats import PointStats, point_stats
from .search import Load
from .verdict import FAIL, judge
from .workload import Workload

POINT = "point.json"
#: lines of the server log quoted when the engine died during a point
LOG_TAIL = 40


@dataclass
class PointSettings:
    """How every point of a run is measured (``[measure]``, ``[slo]``, ``[telemetry]``)."""

    slo: Slo
    attainment: float = 0.90
    warmup_s: float = 30.0
    measure_s: float = 120.0
    min_requests: int = 300
    drain_s: float = 60.0
    cooldown_s: float = 10.0
    idle_timeout_s: float = 60.0
    late_ms: float = 10.0            # the client kept up: p99 lateness <= late_ms and
    late_share: float = 0.01         # at most late_share of requests later than late_ms
    telemetry: str = "auto"          # auto | off | require
    interval_s: float = 0.1
    idle_s: float = 2.0              # idle GPU power measured before the replay
    api: str = "completions"
    model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    vocab_size: int | None = None
    percentiles: list[float] = field(default_factory=lambda: [50.0, 90.0, 99.0])

    def as_dict(self) -> dict[str, Any]:
        """The settings, for ``plan.json``."""
        out = asdict(self)
        out["slo"] = self.slo.as_dict()
        return out


@dataclass
class PointResult:
    """One measured point: the load, its verdict and every number of ``results.parquet``."""

    key: str
    kind: str
    variable: str
    x: float
    repeat: int
    longer: bool
    verdict: str
    uncertain: bool = False
    reason: str | None = None
    n: int = 0
    good: int = 0
    attainment: float | None = None
    attainment_lo: float = 0.0
    attainment_hi: float = 1.0
    per_bound: dict[str, float | None] = field(default_factory=dict)
    binding_slo: str | None = None
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    throughput_rps: float | None = None
    output_tps: float | None = None
    goodput_rps: float | None = None
    lateness_p99_ms: float | None = None
    kept_up: bool = True
    measured_from_s: float | None = None
    measured_until_s: float | None = None
    window_monotonic: list[float] | None = None
    short_window: bool = False
    prefix_reset: str | None = None          # None: done; else why not
    idle_before: bool = True
    energy: dict[str, Any] = field(default_factory=dict)
    log_tail: str | None = None
    digest: str | None = None
    started_at: str | None = None
    wall_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        """``point.json``'s content."""
        return {"format": "llmtraces.bench-point", "version": 1, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PointResult:
        """A result read back from ``point.json``."""
        return cls(**{k: v for k, v in data.items() if k not in ("format", "version")})


class _PointReplay(Replay):
    """The replayer, keeping a handle on its event loop so another thread can stop it."""

    loop: asyncio.AbstractEventLoop | None = None

    async def _main(self) -> dict[str, Any]:
        self.loop = asyncio.get_running_loop()
        return await super()._main()

    def stop_soon(self, reason: str) -> None:
        """Thread-safe :meth:`request_stop` (a second call cancels what is in flight)."""
        if self.loop is not None and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self.request_stop, reason)
            except RuntimeError:
                return  # the loop closed meanwhile: the replay is over


class _Watcher(threading.Thread):
    """Ends a closed-loop point after its measured window, and cancels what is still in
    flight ``drain_s`` after the schedule's end."""

    def __init__(self, rp: _PointReplay, *, until_s: float | None, warmup_s: float,
                 measure_s: float, min_requests: int, drain_s: float) -> None:
        super().__init__(daemon=True)
        self.rp, self.until_s, self.warmup_s = rp, until_s, warmup_s
        self.measure_s, self.min_requests, self.drain_s = measure_s, min_requests, drain_s
        self.done = threading.Event()
        self.stopped_at_s: float | None = None

    def _wait_until(self, t_s: float) -> bool:
        """Sleep until ``t_s`` after the replay's start; False when the replay ended."""
        while not self.done.is_set():
            left = self.rp.t0 + t_s - time.perf_counter()
            if left <= 0:
                return True
            self.done.wait(min(left, 0.05))
        return False

    def run(self) -> None:
        while self.rp.t0 == 0.0:
            if self.done.wait(0.01):
                return
        if self.until_s is None:   # closed loop: stop once the window has its requests
            if not self._wait_until(self.warmup_s):
                return
            sent_w = self.rp.sent
            if not self._wait_until(self.warmup_s + self.measure_s):
                return
            cap = self.warmup_s + 4 * self.measure_s
            while self.rp.sent - sent_w < self.min_requests and \
                    time.perf_counter() - self.rp.t0 < cap:
                if self.done.wait(0.05):
                    return
            self.stopped_at_s = time.perf_counter() - self.rp.t0
            self.rp.stop_soon("measured")
            end = self.stopped_at_s
        else:
            end = self.until_s
        if self._wait_until(end + self.drain_s):
            self.rp.stop_soon("drain")
            self.rp.stop_soon("drain")   # the second call cancels what is in flight


def _now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_point(engine: Any, workload: Workload, load: Load, settings: PointSettings,
              folder: Path, base_url: str) -> PointResult:
    """Measure ``load`` against ``engine`` (serving at ``base_url``); write the replay's
    files, telemetry and ``point.json`` into ``folder`` and return the result."""
    folder.mkdir(parents=True, exist_ok=True)
    started, wall0 = _now_iso(), time.monotonic()
    res = PointResult(load.key, load.kind, load.variable, load.x, load.repeat, load.longer,
                      verdict=FAIL, digest=workload.digest, started_at=started)
    scale = 2 if load.longer else 1
    measure_s, min_req = settings.measure_s * scale, settings.min_requests * scale
    if not engine.alive():
        return _crashed(res, engine, folder, "the engine was not running at the point's start")
    res.idle_before = bool(engine.wait_idle(settings.idle_timeout_s))
    res.prefix_reset = engine.reset_prefix_cache()
    if load.closed:
        plan = workload.closed_loop(settings.warmup_s, load.repeat)
    else:
        plan = workload.open_loop(load.x, settings.warmup_s, measure_s, min_req, load.repeat)
    res.short_window = plan.short
    cfg = ReplayConfig(
        endpoint=base_url, api=settings.api, model=settings.model, extra=dict(settings.extra),
        vocab_size=settings.vocab_size, seed=workload.seed + load.repeat, timing=plan.timing,
        max_concurrency=int(load.x) if load.closed else None, slo=settings.slo,
        percentiles=list(settings.percentiles), grace_s=settings.drain_s,
        measure_from_s=None if load.closed else plan.from_s,
        measure_until_s=None if load.closed else plan.until_s,
        # the watcher cancels stragglers; this only bounds a request the server never ends
        timeout_s=(plan.until_s or settings.warmup_s + 4 * measure_s) + settings.drain_s + 60)
    rp = _PointReplay(workload.trace, cfg, folder, echo=lambda _msg: None)
    tel = _telemetry(engine, folder, settings)   # after the replay checked its empty folder
    idle = _idle_window(tel, settings.idle_s)
    clock_offset = time.monotonic() - time.perf_counter()
    watcher = _Watcher(rp, until_s=plan.until_s, warmup_s=settings.warmup_s,
                       measure_s=measure_s, min_requests=min_req, drain_s=settings.drain_s)
    watcher.start()
    error: BaseException | None = None
    try:
        rp.run()
    except Exception as exc:  # judged below: an engine crash is a FAIL, else re-raised
        error = exc
    finally:
        watcher.done.set()
        watcher.join()
        if tel is not None:
            tel.stop()
    if not engine.alive():
        return _crashed(res, engine, folder, "the engine exited during the point")
    if error is not None:
        raise error
    until = plan.until_s if plan.until_s is not None else watcher.stopped_at_s
    if until is None:   # closed loop that ran out of rows before its window ended
        until = time.perf_counter() - rp.t0
        res.short_window = True
    by = "ready_s" if load.closed else "scheduled_s"
    st = point_stats(folder / REQUESTS, settings.slo, by=by, start_s=plan.from_s,
                     until_s=until, percentiles=list(settings.percentiles),
                     late_ms=settings.late_ms, late_share=settings.late_share)
    t0_mono = rp.t0 + clock_offset
    res.measured_from_s, res.measured_until_s = plan.from_s, until
    res.window_monotonic = [t0_mono + plan.from_s, t0_mono + until]
    _fill(res, st, settings, load)
    res.energy = energy_fields(tel, res.window_monotonic, st, settings.telemetry, idle=idle)
    res.wall_s = time.monotonic() - wall0
    write_point(folder, res)
    if settings.cooldown_s > 0:
        time.sleep(settings.cooldown_s)
    return res


def _fill(res: PointResult, st: PointStats, settings: PointSettings, load: Load) -> None:
    att = st.attainment
    res.n, res.good, res.attainment = att.n, att.good, att.a
    res.attainment_lo, res.attainment_hi = att.lo, att.hi
    res.per_bound, res.binding_slo = st.per_bound, st.binding
    sm = st.summary
    res.latency_ms = {f"{m}_{p}": sm[f"{m}_ms"].get(p) for m in ("ttft", "tpot", "e2e")
                      for p in ("p50", "p90", "p99")}
    res.throughput_rps = st.completed / st.span_s
    res.output_tps = st.tokens_in_window / st.span_s
    res.goodput_rps = att.good / st.span_s
    res.lateness_p99_ms, res.kept_up = st.lateness_p99_ms, st.kept_up
    res.verdict, res.uncertain = judge(att, settings.attainment, kept_up=st.kept_up,
                                       final=load.longer)
    if not st.kept_up:   # INVALID, or a FAIL that stands under the gentler load
        res.reason = f"client_late: {st.late_warning}"
    elif res.short_window:
        res.reason = "short_window: the workload window ran out of rows before the measured " \
                     "window was full"


def _telemetry(engine: Any, folder: Path, settings: PointSettings) -> Any:
    """The started telemetry process, or None when it is off."""
    if settings.telemetry == "off":
        return None
    from .telemetry import Telemetry  # lazy: starts a process; imports psutil/NVML on use
    gpus = list(getattr(engine, "gpus", ()))   # NVML ignores CUDA_VISIBLE_DEVICES: same ids
    tel = Telemetry(folder, engine_pid=engine.pid, metrics_url=engine.metrics_url,
                    interval_s=settings.interval_s, require=settings.telemetry == "require",
                    gpu_indices=gpus or None)
    tel.start()
    return tel


def _idle_window(tel: Any, idle_s: float) -> list[float] | None:
    """With GPU telemetry, wait ``idle_s`` (the server idle, its cache reset) and return that
    window, whose power is the point's idle power; else None at once."""
    if tel is None or not tel.available or idle_s <= 0:
        return None
    t0 = time.monotonic()
    time.sleep(idle_s)
    return [t0, time.monotonic()]


def _crashed(res: PointResult, engine: Any, folder: Path, why: str) -> PointResult:
    res.verdict, res.reason = FAIL, f"engine_exited: {why}"
    res.log_tail = engine.log_tail(LOG_TAIL)
    write_point(folder, res)
    return res


def write_point(folder: Path, res: PointResult) -> None:
    """Write ``point.json`` atomically."""
    with atomic_path(folder / POINT) as tmp:
        tmp.write_text(json.dumps(res.to_json(), indent=1, default=str) + "\n")


def read_point(folder: Path) -> PointResult:
    """A point's result from its ``point.json``."""
    return PointResult.from_json(json.loads((folder / POINT).read_text()))
