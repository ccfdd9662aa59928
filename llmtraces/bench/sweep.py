"""``bench run``: every engine x serve variant of a spec, each a capacity search or a list of
fixed points, into one output folder; ``--resume`` continues an interrupted sweep.

Resuming never re-measures a complete point: a search is replayed from the start over the
stored verdicts (the search is deterministic), and only a load with no complete folder is
measured; a partial ``.tmp-`` folder left by a kill is removed and measured again. Exit codes:
0 every point ran (PASS and FAIL are results), 2 a point was INVALID or its engine crashed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .capacity import capacity_entry, combined
from .engines import Engine, make_engine
from .env import collect_env
from .outputs import CAPACITY, ENV, PLAN, RunDir, write_json
from .point import PointResult, PointSettings, run_point
from .search import Load, Search, SearchResult
from .spec import EngineSpec, ServeSpec, Spec, SpecError
from .verdict import INVALID
from .workload import Workload

SERVE = "serve.json"
#: relaunches of an engine that crashed, per engine x serve
RELAUNCHES = 2


def settings_of(spec: Spec) -> PointSettings:
    """The point settings a spec gives."""
    m, w = spec.measure, spec.workload
    return PointSettings(
        slo=spec.slo.slo(), attainment=spec.slo.attainment, warmup_s=m.warmup_s,
        measure_s=m.measure_s, min_requests=m.min_requests, drain_s=m.drain_s,
        cooldown_s=m.cooldown_s, idle_timeout_s=m.idle_timeout_s, late_ms=m.late_ms,
        late_share=m.late_share,
        telemetry=spec.telemetry.gpu, interval_s=spec.telemetry.interval_ms / 1000,
        idle_s=spec.telemetry.idle_s,
        api=w.api, model=w.model, extra=dict(w.extra), vocab_size=w.vocab_size)


def workload_of(spec: Spec, trace: str | None = None) -> Workload:
    """The workload a spec gives (``trace``: its trace already resolved to a file)."""
    w = spec.workload
    window = (w.start_s, w.duration_s) if w.duration_s is not None else \
        ((w.start_s, 1e12) if w.start_s else None)
    return Workload(trace or w.trace, window=window, arrivals=w.arrivals, cv=w.cv, seed=spec.seed)


def engine_of(e: EngineSpec, serve: ServeSpec) -> Engine:
    """The adapter of one engine x serve variant (nothing starts)."""
    return make_engine(e.kind, model=e.model, endpoint=e.endpoint,
                       engine_args=[*e.args, *serve.args], ready_timeout_s=e.ready_timeout_s,
                       env={"CUDA_VISIBLE_DEVICES": ",".join(map(str, e.gpus))}
                       if e.gpus else None, gpus=e.gpus)


def plan_of(spec: Spec, argv: list[str] | None = None) -> dict[str, Any]:
    """``plan.json``: every engine x serve variant, its exact argv and its points/search."""
    groups = []
    for e in spec.engine:
        for s in spec.serve:
            eng = engine_of(e, s)
            item: dict[str, Any] = {"engine": e.id, "kind": e.kind, "serve": s.name,
                                    "folder": f"engines/{e.id}/{s.name}",
                                    "argv": eng.argv(), "endpoint": e.endpoint}
            if spec.search is not None:
                item["search"] = spec.search.model_dump()
            else:
                assert spec.load is not None
                item["points"] = [load.key for load in fixed_loads(spec)]
            groups.append(item)
    return {"format": "llmtraces.bench-plan", "version": 1, "name": spec.name,
            "argv": argv, "spec": spec.model_dump(mode="json"), "runs": groups}


def fixed_loads(spec: Spec) -> list[Load]:
    """The ``[load]`` points of a spec."""
    assert spec.load is not None
    if spec.load.rps is not None:
        return [Load("rps", float(x), "point") for x in spec.load.rps]
    return [Load("concurrency", float(c), "point") for c in spec.load.concurrency or []]


@dataclass
class Group:
    """One engine x serve variant while it runs: its engine, started on first need."""

    rd: RunDir
    spec: Spec
    engine_spec: EngineSpec
    serve: ServeSpec
    workload: Workload
    settings: PointSettings
    echo: Callable[[str], None]
    argv: list[str]
    engine: Engine | None = None
    base_url: str | None = None
    relaunches: int = 0
    errored: bool = False
    entries: list[dict[str, Any]] = field(default_factory=list)
    done: list[dict[str, Any]] = field(default_factory=list)   # earlier groups' entries

    @property
    def folder(self) -> Path:
        return self.rd.group(self.engine_spec.id, self.serve.name)

    def _ensure_engine(self) -> None:
        if self.engine is not None and self.engine.alive():
            return
        if self.engine is not None:
            if self.relaunches >= RELAUNCHES:
                raise SpecError(f"{self.engine_spec.id}/{self.serve.name}: the engine crashed "
                                f"{self.relaunches + 1} times; giving up")
            self.relaunches += 1
            self.engine.stop()
        self.engine = engine_of(self.engine_spec, self.serve)
        self.rd.log("engine_start", engine=self.engine_spec.id, serve=self.serve.name,
                    argv=self.engine.argv())
        self.base_url = self.engine.start(self.folder)
        record = _env_record(self.engine, self.argv)
        write_json(self.folder / SERVE, record["engine"])
        self.rd.add_engine_env(record, self.engine_spec.id, self.serve.name)

    def slots(self) -> int | None:
        """The server's slots (the engine is started if it is not yet)."""
        self._ensure_engine()
        assert self.engine is not None
        return self.engine.slots()

    def measure(self, load: Load) -> PointResult:
        """A stored point, or a new measurement (a search's ``measure``)."""
        e, s = self.engine_spec.id, self.serve.name
        stored = self.rd.stored(e, s, load.key)
        if stored is not None:
            self.rd.log("reused", engine=e, serve=s, key=load.key)
            return stored
        self._ensure_engine()
        assert self.engine is not None and self.base_url is not None
        tmp = self.rd.begin_point(e, s, load.key)
        self.rd.log("started", engine=e, serve=s, key=load.key)
        res = run_point(self.engine, self.workload, load, self.settings, tmp, self.base_url)
        self.rd.finish_point(e, s, load.key, tmp)
        self.rd.append_result(e, s, res)
        self.rd.log("finished", engine=e, serve=s, key=load.key, verdict=res.verdict)
        # the saturation probe only sets the search's scale: a late client there is no error
        if (res.verdict == INVALID and load.kind != "saturation") or \
                (res.reason or "").startswith("engine_exited"):
            self.errored = True
        self.echo(f"{e}/{s} {load.key}: {res.verdict}"
                  + (f" (attainment {res.attainment:.3f}, n={res.n})"
                     if res.attainment is not None else "")
                  + (f" - {res.reason}" if res.reason else ""))
        return res

    def on_step(self, res: SearchResult) -> None:
        entry = capacity_entry(res, engine=self.engine_spec.id, serve=self.serve.name,
                               settings=self.settings, workload=self.workload.describe(),
                               gpus=max(1, len(self.engine_spec.gpus)))
        write_json(self.folder / CAPACITY, entry)
        self.entries[:] = [entry]
        _write_capacity(self.rd, [*self.done, entry])

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.stop()


def run_spec(spec: Spec, out: Path, *, resume: bool = False, argv: list[str] | None = None,
             trace: str | None = None, echo: Callable[[str], None] | None = None) -> int:
    """Run (or resume) a sweep into ``out``; the exit code (0, or 2 when a point errored).
    ``trace`` is the spec's trace resolved to a file (a registry id fetched, converted)."""
    say = echo or (lambda msg: print(msg, file=sys.stderr))
    rd = RunDir(out)
    plan = plan_of(spec, argv)
    old = rd.path / PLAN
    if old.exists():
        if not resume:
            raise SpecError(f"{out}: holds a run already; pass --resume to continue it, or "
                            "choose another -o")
        before = json.loads(old.read_text())
        if json.dumps(before.get("spec"), sort_keys=True) != spec.digest_text():
            raise SpecError(f"{out}: --resume with a different spec than the run's "
                            "plan.json; choose another -o")
    elif resume and rd.path.exists() and any(rd.path.iterdir()):
        raise SpecError(f"{out}: nothing to resume (no {PLAN})")
    workload = workload_of(spec, trace)
    plan["workload"] = workload.describe()
    rd.path.mkdir(parents=True, exist_ok=True)
    if not old.exists():
        write_json(old, plan)
    if not (rd.path / ENV).exists():
        write_json(rd.path / ENV, _env_record(None, list(argv or [])))
    rd.log("resume" if resume else "begin", name=spec.name)
    settings = settings_of(spec)
    entries: list[dict[str, Any]] = []
    errored = False
    for e in spec.engine:
        for s in spec.serve:
            group = Group(rd, spec, e, s, workload, settings, say, list(argv or []))
            try:
                if spec.search is not None:
                    sp = spec.search
                    group.done = entries
                    Search(group.measure, variable=sp.variable, precision=sp.precision,
                           max_points=sp.max_points, sat_concurrency=sp.sat_concurrency,
                           time_budget_s=sp.time_budget_s, on_step=group.on_step,
                           slots=group.slots).run()
                    entries.extend(group.entries)
                else:
                    for load in fixed_loads(spec):
                        group.measure(load)
            finally:
                group.stop()
            errored = errored or group.errored
    rd.log("end", name=spec.name)
    return 2 if errored else 0


def _write_capacity(rd: RunDir, entries: list[dict[str, Any]]) -> None:
    """The top-level ``capacity.json`` of every search so far."""
    write_json(rd.path / CAPACITY, combined(entries))


def _env_record(engine: Engine | None, argv: list[str]) -> dict[str, Any]:
    """``env.json``'s record (with the engine's versions once it runs)."""
    return collect_env(engine, argv)
