"""``llmtraces validate (ID | PATH)``: check native files or unified tables, problem by problem."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..pipeline.validate import validate_path, validate_source
from ._common import root


@click.command("validate")
@click.argument("target")
@click.option("--trace", help="With a source id: only this trace.")
@click.option("--strict", is_flag=True, help="Warnings count as failures.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def command(ctx: click.Context, target: str, trace: str | None, strict: bool,
            as_json: bool) -> None:
    """Validate TARGET: a source id (its cached and converted files) or a file or folder.

    Checks the header, value types, non-negative token counts, arrival order, and the row
    count and checksum against the registry. Exits 1 when there are errors (or, with
    --strict, warnings); a trace not fetched yet is named, but is no error.
    """
    from ..pipeline.convert import source_of  # lazy: CLI start-up time

    path = Path(target)
    if path.exists():
        report = validate_path(path, strict=strict)
    else:
        report = validate_source(source_of(target).id, trace, root=root(ctx), strict=strict)
    if as_json:
        click.echo(report.dumps())
    else:
        for line in report.lines():
            click.echo(line)
        for line in report.notices:
            click.echo(f"notice: {line}")
        click.echo(("FAILED: " if report.failed(strict) else "OK: ") + report.summary())
    sys.exit(1 if report.failed(strict) else 0)
