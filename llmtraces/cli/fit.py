"""``llmtraces fit TRACE -o model.json``: a BurstGPT trace model (Gamma arrivals per window,
Zipf request lengths, response lengths given request length) as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..transforms import fit
from ..transforms.modeled import model_summary


@click.command("fit")
@click.argument("trace", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Model JSON [default: ./<name>.model.json].")
@click.option("--window-s", type=click.FloatRange(min=0, min_open=True), default=1200.0,
              show_default=True, help="Window length in seconds for the Gamma fits.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
def command(trace: Path, output: Path | None, window_s: float, quiet: bool) -> None:
    """Fit a trace model to TRACE (a unified Parquet file or a native trace file).

    Per window: the Gamma shape alpha and rate beta (1/s) of the inter-arrival times (MLE).
    Request lengths: a bounded Zipf exponent (MLE). Response lengths: percentiles per
    request-length bin. See docs/transforms.md for the JSON layout.
    """
    model = fit(trace, window_s=window_s)
    out = output or Path.cwd() / (trace.name.split(".")[0] + ".model.json")
    model.save(out)
    if not quiet:
        click.echo(f"{trace} -> {out} {json.dumps(model_summary(model))}")
