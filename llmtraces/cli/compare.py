"""``llmtraces compare A B``: two traces' statistics side by side, with the KS and Wasserstein
distances of their inter-arrival gaps, input and output lengths."""

from __future__ import annotations

import click

from .stats import open_target


@click.command("compare")
@click.argument("a")
@click.argument("b")
@click.option("--window-s", type=click.FloatRange(min=0, min_open=True), default=60.0,
              show_default=True, help="Window of the rate series, in seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@click.pass_context
def command(ctx: click.Context, a: str, b: str, window_s: float, as_json: bool) -> None:
    """Compare two traces side by side, with the KS and Wasserstein distances of their gaps
    and lengths.

    A and B are registry ids (``source/trace``), native trace files or unified Parquet files.
    KS D is the largest gap between the two empirical CDFs; Wasserstein-1 is the area between
    them, in seconds for gaps and tokens for lengths.
    """
    try:
        from ..characterize.compare import compare, render_comparison  # lazy: stats extra
    except ImportError as exc:
        raise click.ClickException(str(exc)) from None
    result = compare(open_target(ctx, a, None), open_target(ctx, b, None), window_s=window_s)
    click.echo(result.model_dump_json(indent=1) if as_json else render_comparison(result))
