"""``llmtraces formats``: the file formats llmtraces reads and the ones it exports, one a line."""

from __future__ import annotations

import click


@click.command("formats")
def command() -> None:
    """List the native formats read (recognised from a file's header or first record) and
    the export formats of ``llmtraces convert FILE --to NAME``."""
    # lazy: CLI start-up time (both registries import pyarrow)
    from ..formats import all_formats, all_writers

    readers = {f.name: f.description for f in all_formats().values()}
    writers = {w.name: f"{w.description} [{w.suffix}]" for w in all_writers().values()}
    click.echo("Read (llmtraces convert/validate FILE; recognised from the header or first "
               "record):")
    _table(readers)
    click.echo("  and unified Parquet files (the output of `llmtraces convert`)")
    click.echo("\nExport (llmtraces convert FILE --to NAME):")
    _table(writers)


def _table(rows: dict[str, str]) -> None:
    """``  name  description`` lines, names padded to one column, in name order."""
    width = max(map(len, rows), default=0)
    for name in sorted(rows):
        click.echo(f"  {name:<{width}}  {rows[name]}")
