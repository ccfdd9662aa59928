"""``llmtraces plot TARGET -o DIR``: the workload figures of a trace, as the papers draw
them, written as PNG and SVG (docs/stats.md lists each and the figure it redraws)."""

from __future__ import annotations

from pathlib import Path

import click

from .stats import open_target

#: The figure kinds (llmtraces.characterize.figdata.KINDS, listed here so --help needs no
#: numpy; a test keeps the two equal).
KINDS = ("rate", "interarrival", "lengths", "joint", "zipf", "failures", "sessions", "prefix",
         "gamma")


@click.command("plot")
@click.argument("target")
@click.option("--trace", "trace_id", help="The trace of a registry source with several.")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(KINDS),
              help="A figure to draw (repeatable) [default: every one the trace has data for].")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              required=True, help="Folder for the PNG and SVG files.")
@click.option("--window-s", type=click.FloatRange(min=0, min_open=True), default=60.0,
              show_default=True, help="Window of the rate and failure series, in seconds.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.pass_context
def command(ctx: click.Context, target: str, trace_id: str | None, kinds: tuple[str, ...],
            output: Path, window_s: float, quiet: bool) -> None:
    """Draw TARGET's workload figures, as in the papers, into DIR as PNG and SVG.

    rate over time, inter-arrival CDF with the fitted laws, length CDFs, the joint length
    histogram, the Zipf plot, failures over time, session sizes, prefix-cache hit ratio
    against capacity and the per-window Gamma shape. Files repeat byte for byte.
    """
    try:
        from ..characterize.figures import plot  # lazy: matplotlib (the plot extra)
    except ImportError as exc:
        raise click.ClickException(str(exc)) from None
    written = plot(open_target(ctx, target, trace_id), output, list(kinds) or None,
                   window_s=window_s)
    if not quiet:
        for path in written:
            click.echo(str(path))
