"""``SPEC.toml``, a benchmark sweep: the workload, the SLO, how points are measured, engines x
serve variants, and either a capacity ``[search]`` or fixed ``[load]`` points. Parsed with
``tomllib`` and validated with pydantic like the registry (``schemas/bench-spec.schema.json``
is generated from :class:`Spec`); a bad file is one line naming the key."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import LLMTracesError
from ..replay.metrics import Slo
from .verdict import Z

ENGINE_KINDS = ("vllm", "sglang", "llamacpp", "sim", "url")


class SpecError(LLMTracesError):
    """A spec file (or the options of ``bench capacity``/``point``) that is not valid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MeasureSpec(_Strict):
    """How each point is measured (seconds; requests)."""

    warmup_s: float = Field(30.0, ge=0, description="Sent but not measured, at the start.")
    measure_s: float = Field(120.0, gt=0, description="Measured at least this long.")
    min_requests: int = Field(300, ge=1, description="Measured at least this many requests.")
    drain_s: float = Field(60.0, ge=0, description="Wait for stragglers at most this long.")
    cooldown_s: float = Field(10.0, ge=0, description="Pause after each point.")
    idle_timeout_s: float = Field(60.0, ge=0, description="Wait for an idle server at most.")
    late_ms: float = Field(10.0, gt=0, description="The client kept up when p99 dispatch "
                           "lateness is at most this, and ...")
    late_share: float = Field(0.01, ge=0, le=1, description="... at most this share of "
                              "requests was sent more than late_ms late.")


class SloSpec(_Strict):
    """The service-level objective, in milliseconds, and the share that must meet it."""

    ttft_ms: float | None = Field(2000.0, gt=0)
    tpot_ms: float | None = Field(100.0, gt=0)
    e2e_ms: float | None = Field(None, gt=0)
    attainment: float = Field(0.90, gt=0, lt=1)

    @model_validator(mode="after")
    def _some_bound(self) -> SloSpec:
        if self.ttft_ms is None and self.tpot_ms is None and self.e2e_ms is None:
            raise ValueError("give at least one of ttft_ms, tpot_ms, e2e_ms")
        return self

    def slo(self) -> Slo:
        """As the replayer's :class:`Slo`."""
        return Slo(self.ttft_ms, self.tpot_ms, self.e2e_ms)


class TelemetrySpec(_Strict):
    """GPU/engine telemetry: ``auto`` meters when it can, ``require`` fails without a GPU."""

    gpu: Literal["auto", "off", "require"] = "auto"
    interval_ms: float = Field(100.0, gt=0)
    idle_s: float = Field(2.0, ge=0, le=600, description="GPU power measured this long with "
                          "the server idle before each point's replay (with GPU telemetry "
                          "only): the idle power the energy above idle is counted from.")


class WorkloadSpec(_Strict):
    """The trace, where its stream starts, and how requests are sent."""

    trace: str = Field(min_length=1, description="Registry id or trace file path.")
    start_s: float = Field(0.0, ge=0)
    duration_s: float | None = Field(None, gt=0, description="Rows available (default: all).")
    arrivals: Literal["trace", "poisson", "gamma"] = "trace"
    cv: float = Field(1.0, gt=0, description="Gamma arrivals' coefficient of variation.")
    api: Literal["completions", "chat"] = "completions"
    model: str | None = Field(None, description="Model name sent in requests.")
    vocab_size: int | None = Field(None, ge=1)
    extra: dict[str, Any] = Field(default_factory=dict, description="Extra request fields.")


class EngineSpec(_Strict):
    """One engine: how it is launched (or where a ``url`` engine listens)."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    kind: Literal["vllm", "sglang", "llamacpp", "sim", "url"]
    model: str | None = None
    endpoint: str | None = None
    args: list[str] = Field(default_factory=list)
    ready_timeout_s: float = Field(900.0, gt=0)
    gpus: list[int] = Field(default_factory=list)

    @model_validator(mode="after")
    def _url_needs_endpoint(self) -> EngineSpec:
        if self.kind == "url" and not self.endpoint:
            raise ValueError("a url engine needs endpoint = \"http://127.0.0.1:PORT\"")
        return self


class ServeSpec(_Strict):
    """A serve variant: arguments added to every engine's launch."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    args: list[str] = Field(default_factory=list)


class SearchSpec(_Strict):
    """A capacity search per engine x serve."""

    variable: Literal["rps", "concurrency"] = "rps"
    precision: float = Field(0.05, gt=0, lt=1)
    max_points: int = Field(12, ge=1)
    sat_concurrency: int | None = Field(
        None, ge=1, description="The saturation probe's concurrency (default: 4 x the "
        "server's slots where it says, as llama.cpp and serve-sim do; else 256).")
    #: seconds; a point that would end past it is not started (status ``time``)
    time_budget_s: float | None = Field(None, gt=0, le=1e7)


class LoadSpec(_Strict):
    """Fixed load points per engine x serve: rates or concurrencies."""

    rps: list[float] | None = None
    concurrency: list[int] | None = None

    @model_validator(mode="after")
    def _one(self) -> LoadSpec:
        if (self.rps is None) == (self.concurrency is None):
            raise ValueError("give exactly one of rps = [...] and concurrency = [...]")
        values = self.rps if self.rps is not None else self.concurrency
        if not values or any(v <= 0 for v in values):
            raise ValueError("the loads must be a non-empty list of numbers > 0")
        return self


class Spec(_Strict):
    """A benchmark sweep (``llmtraces bench run SPEC.toml``)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    seed: int = 0
    measure: MeasureSpec = Field(default_factory=lambda: MeasureSpec.model_validate({}))
    slo: SloSpec = Field(default_factory=lambda: SloSpec.model_validate({}))
    telemetry: TelemetrySpec = Field(default_factory=lambda: TelemetrySpec.model_validate({}))
    workload: WorkloadSpec
    engine: list[EngineSpec] = Field(min_length=1)
    serve: list[ServeSpec] = Field(
        default_factory=lambda: [ServeSpec(name="default")], min_length=1,
        description="Serve variants (default: one, named default, adding nothing).")
    search: SearchSpec | None = None
    load: LoadSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Spec:
        if (self.search is None) == (self.load is None):
            raise ValueError("give exactly one of [search] and [load]")
        least = least_requests(self.slo.attainment)
        if self.measure.min_requests < least:
            raise ValueError(f"measure.min_requests = {self.measure.min_requests} can never "
                             f"PASS at attainment {self.slo.attainment:g}: the Wilson lower "
                             f"bound of n/n reaches it only from n = {least}")
        for what, ids in (("engine", [e.id for e in self.engine]),
                          ("serve", [s.name for s in self.serve])):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            if dup:
                raise ValueError(f"{what} ids must be unique (repeated: {', '.join(dup)})")
        return self

    def digest_text(self) -> str:
        """The spec as canonical JSON (``--resume`` refuses a changed spec)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


def least_requests(attainment: float) -> int:
    """The fewest measured requests whose Wilson lower bound can reach ``attainment``
    (all of them good): ``n / (n + z^2) >= A``, so ``n >= z^2 A / (1 - A)``."""
    return math.ceil(Z * Z * attainment / (1 - attainment) - 1e-9)


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def describe(err: ValidationError, source: str) -> str:
    """One line per problem: ``SPEC.toml: engine.0.kind: Input should be ...``."""
    return "; ".join(f"{source}: {_where(e['loc'])}: {e['msg']}" for e in err.errors())


def parse_spec(data: object, source: str) -> Spec:
    """Validate a decoded spec; :class:`SpecError` names the key."""
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(describe(exc, source)) from None


def load_spec(path: Path) -> Spec:
    """Read and validate ``SPEC.toml``."""
    try:
        with Path(path).open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: byte {exc.start} is not UTF-8") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_spec(data, str(path))


def json_schema_text() -> str:
    """The exact text of ``schemas/bench-spec.schema.json``."""
    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://llmtraces.org/schemas/bench-spec.schema.json"
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
