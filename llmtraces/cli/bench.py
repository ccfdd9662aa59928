"""``llmtraces bench``: capacity, goodput and energy of a trace on an engine
(``llmtraces.bench``; docs/bench.md)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from ..ranges import parse_window
from ._common import root

ENGINE_KINDS = ("vllm", "sglang", "llamacpp", "sim", "url")
#: ``--quick``: shorter points, a 10 % bracket and a 270 s time budget for the search (a
#: local server's capacity within 5 minutes, its start included)
QUICK = {"warmup_s": 5.0, "measure_s": 20.0, "min_requests": 50, "drain_s": 10.0,
         "cooldown_s": 1.0, "precision": 0.10, "max_points": 8, "time_budget_s": 270.0}


@click.group("bench")
def command() -> None:
    """Benchmark an engine on a trace: SLO capacity, goodput and energy."""


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options ``capacity`` and ``point`` share."""
    options: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
        click.argument("trace"),
        click.option("--engine", "kind", type=click.Choice(ENGINE_KINDS), required=True,
                     help="Engine to launch (vllm, sglang, llamacpp, sim) or url (running)."),
        click.option("--model", help="Model the engine serves (and requests name)."),
        click.option("--endpoint", help="Base URL of a running server (--engine url)."),
        click.option("--engine-arg", "engine_args", multiple=True,
                     help="An argument added to the engine's launch (repeatable)."),
        click.option("--slo", default="ttft=2000,tpot=100", show_default=True,
                     help="SLO bounds in ms: ttft=MS,tpot=MS[,e2e=MS]."),
        click.option("--attainment", type=float, default=0.90, show_default=True,
                     help="Share of measured requests that must meet every bound."),
        click.option("--window", "window_", metavar="START:DURATION",
                     help="The trace's rows from START s on, for DURATION s."),
        click.option("--arrivals", type=click.Choice(["trace", "poisson", "gamma"]),
                     default="trace", show_default=True,
                     help="trace: rate-scaled, bursts kept; poisson/gamma: same mean rate."),
        click.option("--cv", type=float, default=1.0, show_default=True,
                     help="Coefficient of variation of gamma arrivals."),
        click.option("--api", type=click.Choice(["completions", "chat"]),
                     default="completions", show_default=True, help="OpenAI API to call."),
        click.option("--extra", help="JSON object merged into every request body."),
        click.option("--warmup-s", type=float, help="Sent, not measured [30; quick 5]."),
        click.option("--measure-s", type=float, help="Measured at least [120; quick 20]."),
        click.option("--min-requests", type=int, help="Measured at least [300; quick 50]."),
        click.option("--drain-s", type=float, help="Stragglers waited for [60; quick 10]."),
        click.option("--cooldown-s", type=float, help="Pause after a point [10; quick 1]."),
        click.option("--late-ms", type=float,
                     help="The client kept up: p99 dispatch lateness at most this [10]."),
        click.option("--telemetry", type=click.Choice(["auto", "off", "require"]),
                     default="auto", show_default=True, help="GPU/engine telemetry."),
        click.option("--interval-ms", type=float, default=100.0, show_default=True,
                     help="Telemetry sampling interval."),
        click.option("--gpus", help="GPU indices the engine uses (metered), e.g. 0,1."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed of prompts and renewal arrivals."),
        click.option("--ready-timeout-s", type=float, default=900.0, show_default=True,
                     help="Wait for the engine to be ready at most this long."),
        click.option("--quick", is_flag=True, help="Short points, 10 % precision."),
        click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
                     required=True, help="Output folder."),
        click.option("--resume", is_flag=True, help="Continue an interrupted run in -o."),
        click.option("--dry-run", is_flag=True, help="Print the plan (its argv) and run nothing."),
        click.pass_context,
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def _spec_data(kw: dict[str, Any], trace: str) -> dict[str, Any]:
    from ..replay.metrics import Slo  # lazy: imports pyarrow
    try:
        slo = Slo.parse(kw["slo"])
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    assert slo is not None
    quick = kw["quick"]
    measure = {k: kw[k] if kw[k] is not None else QUICK[k]
               for k in ("warmup_s", "measure_s", "min_requests", "drain_s", "cooldown_s")
               if kw[k] is not None or quick}
    if kw["late_ms"] is not None:
        measure["late_ms"] = kw["late_ms"]
    window = parse_window(kw["window_"])
    extra = {}
    if kw["extra"]:
        try:
            extra = json.loads(kw["extra"])
        except json.JSONDecodeError as exc:
            raise click.UsageError(f"--extra: not JSON: {exc}") from None
    workload: dict[str, Any] = {"trace": trace, "arrivals": kw["arrivals"], "cv": kw["cv"],
                                "api": kw["api"], "model": kw["model"], "extra": extra}
    if window is not None:
        workload.update(start_s=window[0], duration_s=window[1])
    gpus = [int(g) for g in kw["gpus"].split(",")] if kw["gpus"] else []
    return {
        "name": kw["kind"], "seed": kw["seed"], "measure": measure,
        "slo": {**{f"{k}": None for k in ("ttft_ms", "tpot_ms", "e2e_ms")}, **slo.as_dict(),
                "attainment": kw["attainment"]},
        "telemetry": {"gpu": kw["telemetry"], "interval_ms": kw["interval_ms"]},
        "workload": workload,
        "engine": [{"id": kw["kind"], "kind": kw["kind"], "model": kw["model"],
                    "endpoint": kw["endpoint"], "args": list(kw["engine_args"]),
                    "ready_timeout_s": kw["ready_timeout_s"], "gpus": gpus}],
    }


@contextlib.contextmanager
def _resolved(ctx: click.Context, trace: str) -> Iterator[str]:
    """A trace argument as a unified Parquet path (registry ids fetched and converted)."""
    from ..api import unified_path  # lazy: imports pyarrow
    as_path = Path(trace).expanduser()
    source: str | os.PathLike[str] = as_path if as_path.exists() else trace
    with unified_path(source, None, root=root(ctx)) as path:
        yield str(path)


def _run(ctx: click.Context, data: dict[str, Any], output: Path, resume: bool,
         dry_run: bool = False) -> None:
    from ..bench.spec import parse_spec  # lazy: pydantic, pyarrow
    from ..bench.sweep import plan_of, run_spec
    spec = parse_spec(data, "options")
    if dry_run:
        click.echo(json.dumps(plan_of(spec, sys.argv), indent=1))
        return
    with _resolved(ctx, spec.workload.trace) as path:
        try:
            code = run_spec(spec, output, resume=resume, argv=sys.argv, trace=path)
        except KeyboardInterrupt:
            raise click.ClickException("interrupted") from None
    _print_outcome(output)
    ctx.exit(code)


def _print_outcome(output: Path) -> None:
    from ..bench.report import format_report, report  # lazy: pyarrow
    click.echo(format_report(report(output)))
    click.echo(f"-> {output}/results.parquet, capacity.json, plan.json, env.json")


@command.command("capacity")
@_common
@click.option("--variable", type=click.Choice(["rps", "concurrency"]), default="rps",
              show_default=True, help="Search the mean request rate or the concurrency.")
@click.option("--precision", type=float, help="Stop when hi/lo <= 1 + this [0.05; quick 0.10].")
@click.option("--max-points", type=int, help="Points at most, probes aside [12; quick 8].")
@click.option("--sat-concurrency", type=click.IntRange(1),
              help="Concurrency of the saturation probe [4 x the server's slots where it "
                   "says (llama.cpp, serve-sim); else 256].")
@click.option("--time-budget-s", type=float,
              help="Start no point that would end past this [none; quick 270].")
def capacity(ctx: click.Context, trace: str, **kw: Any) -> None:
    """Find the largest load of TRACE at which the SLO is met (the capacity)."""
    data = _spec_data(kw, trace)
    search = {"variable": kw["variable"]}
    for key in ("precision", "max_points", "time_budget_s", "sat_concurrency"):
        if kw[key] is not None:
            search[key] = kw[key]
        elif kw["quick"] and key in QUICK:
            search[key] = QUICK[key]
    data["search"] = search
    _run(ctx, data, kw["output"], kw["resume"], kw["dry_run"])


@command.command("point")
@_common
@click.option("--rps", type=float, help="Mean request rate of the point.")
@click.option("--concurrency", type=int, help="Fixed concurrency of the point (closed loop).")
def point(ctx: click.Context, trace: str, **kw: Any) -> None:
    """Measure one load point of TRACE (--rps R or --concurrency C)."""
    if (kw["rps"] is None) == (kw["concurrency"] is None):
        raise click.UsageError("give exactly one of --rps R and --concurrency C")
    data = _spec_data(kw, trace)
    data["load"] = {"rps": [kw["rps"]]} if kw["rps"] is not None else \
        {"concurrency": [kw["concurrency"]]}
    _run(ctx, data, kw["output"], kw["resume"], kw["dry_run"])


@command.command("run")
@click.argument("spec_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder [default: bench-NAME].")
@click.option("--dry-run", is_flag=True, help="Print the plan (every argv) and run nothing.")
@click.option("--resume", is_flag=True, help="Continue an interrupted sweep in -o.")
@click.pass_context
def run(ctx: click.Context, spec_file: Path, output: Path | None, dry_run: bool,
        resume: bool) -> None:
    """Run the sweep of SPEC_FILE (TOML: engines x serve variants x points or searches)."""
    from ..bench.spec import load_spec  # lazy: pydantic
    spec = load_spec(spec_file)
    data = spec.model_dump(mode="json")
    trace = Path(spec.workload.trace)
    if not trace.is_absolute() and (spec_file.parent / trace).exists():
        data["workload"]["trace"] = str(spec_file.parent / trace)
    _run(ctx, data, output or Path(f"bench-{spec.name}"), resume, dry_run)


@command.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def report_cmd(run_dir: Path, as_json: bool) -> None:
    """Print the points and capacities of RUN_DIR (rebuilding results.parquet)."""
    from ..bench.report import format_report, report  # lazy: pyarrow
    rep = report(run_dir)
    click.echo(json.dumps(rep, indent=1, default=str) if as_json else format_report(rep))


@command.command("compare")
@click.argument("run_dirs", nargs=-1, required=True,
                type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def compare_cmd(run_dirs: tuple[Path, ...], as_json: bool) -> None:
    """Compare the capacities of RUN_DIRS (refused when their workloads differ)."""
    from ..bench.report import compare, format_compare  # lazy: pyarrow
    cmp = compare(list(run_dirs))
    click.echo(json.dumps(cmp, indent=1, default=str) if as_json else format_compare(cmp))


@command.command("plot")
@click.argument("run_dirs", nargs=-1, required=True,
                type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the PNGs [default: RUN_DIR/plots].")
def plot_cmd(run_dirs: tuple[Path, ...], output: Path | None) -> None:
    """Draw latency, attainment and power plots of RUN_DIRS (needs llmtraces[plot])."""
    from ..bench.plot import plot_runs  # lazy: matplotlib
    for path in plot_runs(list(run_dirs), output or run_dirs[0] / "plots"):
        click.echo(str(path))


@command.command("env")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (as env.json holds it).")
def env_cmd(as_json: bool) -> None:
    """Show GPUs, driver, CUDA and the engine versions found."""
    from ..bench.env import collect_env, format_env  # lazy: NVML, package probes
    env = collect_env(None, sys.argv)
    click.echo(json.dumps(env, indent=1, default=str) if as_json else format_env(env))

