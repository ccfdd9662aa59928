"""``llmtraces stats TARGET``: workload statistics of a trace (docs/stats.md), as a short
table or ``--json``; ``--check`` compares them with the figures its publisher states."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ._common import root


def open_target(ctx: click.Context, target: str, trace_id: str | None) -> Any:
    """TARGET as a trace view: a file as it is, else a registry id (with ``--trace``),
    fetched and converted into the cache on first use."""
    from ..pipeline.inputs import open_trace  # lazy: pyarrow, kept out of `llmtraces --help`
    from ..pipeline.unified import registry_path  # lazy: as above
    as_path = Path(target).expanduser()
    if as_path.exists():
        if trace_id is not None:
            raise click.UsageError("--trace picks a trace of a registry source; TARGET is a "
                                   "file")
        return open_trace(as_path)
    return open_trace(registry_path(target, trace_id, root=root(ctx)))


def compute(ctx: click.Context, target: str, trace_id: str | None, window_s: float,
            gamma_window_s: float) -> Any:
    """The statistics of TARGET; a missing ``stats`` extra is one line."""
    try:
        from ..characterize.compute import stats  # lazy: numpy and scipy (the stats extra)
    except ImportError as exc:
        raise click.ClickException(str(exc)) from None
    return stats(open_target(ctx, target, trace_id), window_s=window_s,
                 gamma_window_s=gamma_window_s)


@click.command("stats")
@click.argument("target")
@click.option("--trace", "trace_id", help="The trace of a registry source with several.")
@click.option("--window-s", type=click.FloatRange(min=0, min_open=True), default=60.0,
              show_default=True, help="Window of the rate and failure series, in seconds.")
@click.option("--gamma-window-s", type=click.FloatRange(min=0, min_open=True), default=1200.0,
              show_default=True, help="Window of the per-window Gamma fits (BurstGPT: 20 min).")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON (schemas/stats.schema.json) instead of the table.")
@click.option("--check", is_flag=True, help="Compare with the registry's published figures; "
              "exit 1 if one is not met.")
@click.pass_context
def command(ctx: click.Context, target: str, trace_id: str | None, window_s: float,
            gamma_window_s: float, as_json: bool, check: bool) -> None:
    """Workload statistics of TARGET (a registry id, a native trace file or a unified Parquet
    file).

    Size and span, the rate per window, inter-arrival gaps (CV; Gamma, Weibull and exponential
    fits with their KS distance; per-window Gamma), hour-of-day and weekday profiles, input and
    output lengths (percentiles, correlation, Zipf fit), failures, models, services, sessions,
    images and prefix reuse. docs/stats.md defines each.
    """
    from ..characterize.render import render, render_checks  # lazy: with the stats extra
    result = compute(ctx, target, trace_id, window_s, gamma_window_s)
    if not check:
        click.echo(result.model_dump_json(indent=1) if as_json else render(result))
        return
    from ..characterize.published import check as check_published  # lazy: as above
    checks = check_published(result)
    if as_json:
        click.echo(json.dumps({"trace": result.trace, "checks": [
            {"stat": c.stat, "published": c.published, "measured": c.measured,
             "tolerance": c.tolerance, "met": c.met, "source": c.source} for c in checks]},
            indent=1))
    else:
        click.echo(render_checks(result.trace, checks))
    if not all(c.met for c in checks):
        ctx.exit(1)
