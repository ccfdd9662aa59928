"""``llmtraces synthesize model.json``: a new trace drawn from a fitted trace model."""

from __future__ import annotations

from pathlib import Path

import click

from ..formats import all_writers, get_writer
from ..licensing import notice, write_sidecar
from ..transforms import TraceModel, synthesize


@click.command("synthesize")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rps", type=click.FloatRange(min=0, min_open=True),
              help="Mean rate in requests/s [default: the model's].")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="Length in seconds [default: the fitted trace's span].")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Same model and seed: the same trace, byte for byte.")
@click.option("--to", "to", default="parquet", show_default=True,
              type=click.Choice(sorted(all_writers())), help="Output format.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="Output file.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
def command(model: Path, rps: float | None, duration: float | None, seed: int, to: str,
            output: Path, quiet: bool) -> None:
    """Synthesize a trace from MODEL (JSON written by `llmtraces fit`).

    Arrivals follow the per-window Gamma fits (with --rps, every window's rate is scaled by
    one factor, the burstiness kept), request lengths the Zipf fit, response lengths the
    percentiles of their request-length bin.
    """
    stream = synthesize(TraceModel.load(model), rps=rps, duration_s=duration, seed=seed)
    rows = get_writer(to).write(stream, output)
    line = notice(stream.meta)
    if line is not None:
        click.echo(line, err=True)
        if to != "parquet":
            write_sidecar(output, stream.meta)
    if not quiet:
        click.echo(f"{model} -> {output} ({rows:,} rows)")
