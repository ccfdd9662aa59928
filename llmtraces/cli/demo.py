"""``llmtraces demo``: the main job end to end on the bundled Azure 2023 code trace, offline."""

from __future__ import annotations

import click

from ..api import describe, load
from ..fetching.download import fetch
from ..paths import bundled_dir
from ..pipeline.convert import convert_source
from ..pipeline.validate import validate_source
from ._common import log_to_stderr, root, show_progress

SOURCE, TRACE = "azure-llm-2023", "code"


@click.command("demo")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def command(ctx: click.Context, quiet: bool) -> None:
    """Fetch (from the copy shipped in the package), validate, convert and summarise a trace.

    Uses the same download, validation and conversion code as every source, with the package's
    bundled folder as the mirror, so it needs no network.
    """
    home = root(ctx)
    mirror = bundled_dir().as_uri()
    (got,) = fetch(SOURCE, TRACE, root=home, mirror=mirror, show_progress=show_progress(quiet),
                   log=log_to_stderr(quiet))
    how = "already cached" if got.origin == "cache" else "bundled copy"
    click.echo(f"1. fetch     {got.path}\n              size and sha256 verified ({how})")
    (trace_id, dest, rows, _), = convert_source(SOURCE, TRACE, root=home)
    report = validate_source(SOURCE, TRACE, root=home, strict=True)
    if report.failed(strict=True):
        for line in report.lines():
            click.echo(line, err=True)
        raise click.ClickException("the demo trace did not validate")
    click.echo(f"2. validate  {report.summary()} (native CSV and converted Parquet, strict)")
    click.echo(f"3. convert   {dest}\n              {rows:,} rows, unified schema v1, zstd")
    s = describe(load(SOURCE, trace=TRACE, root=home))
    click.echo(
        f"4. summary   {s['rows']:,} requests over {s['span_s'] / 60:.1f} min "
        f"({s['rows'] / s['span_s']:.2f} req/s); median input {s['input_tokens_median']:.0f} "
        f"tokens, median output {s['output_tokens_median']:.0f} tokens\n"
        f"Load it:     python -c \"import llmtraces; print(llmtraces.load('{SOURCE}', "
        f"trace='{TRACE}'))\"\nCite it:     llmtraces cite {SOURCE}")
