"""``llmtraces convert (ID | PATH)``: native trace -> unified schema, atomically."""

from __future__ import annotations

from pathlib import Path

import click

from ..convert import convert_file, convert_source
from ..download import fetch
from ..formats import all_writers, get_writer
from ..registry import get_source
from ..report import Report
from ._common import log_to_stderr, root, show_progress


def _warn(report: Report, quiet: bool) -> None:
    if not quiet:
        for line in report.lines():
            click.echo(line, err=True)


def _default_output(path: Path, suffix: str) -> Path:
    """``./<name>.<format>``, or ``./<name>.llmtraces.<format>`` where that is the input."""
    out = Path.cwd() / (path.name.split(".")[0] + suffix)
    if out.resolve() == path.resolve():
        out = out.with_name(path.name.split(".")[0] + ".llmtraces" + suffix)
    return out


def _notices(reports: list[Report]) -> None:
    """Licence terms of what was written: said once, even with --quiet."""
    for line in dict.fromkeys(n for r in reports for n in r.notices):
        click.echo(line, err=True)


@click.command("convert")
@click.argument("target")
@click.option("--trace", help="With a source id: only this trace.")
@click.option("--to", "to", default="parquet", show_default=True,
              type=click.Choice(sorted(all_writers())), help="Output format.")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="With a PATH: the output file [default: ./<name>.<format>]. With a source "
                   "id: a folder for the Hive layout [default: <home>/parquet].")
@click.option("--strict", is_flag=True, help="Fail on warnings too (e.g. sub-µs timestamps).")
@click.option("--tokenizer", metavar="NAME",
              help="For sources with text but no token counts (LMSys-Chat-1M): a tiktoken "
                   "encoding (o200k_base, cl100k_base), a tokenizer.json path, or a Hugging "
                   "Face tokenizer id; recorded in the trace metadata.")
@click.option("--mirror", envvar="LLMTRACES_MIRROR", metavar="BASE",
              help="With a source id: mirror base URL for files not yet fetched.")
@click.option("--offline", is_flag=True, envvar="LLMTRACES_OFFLINE",
              help="With a source id: never download missing files.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.pass_context
def command(ctx: click.Context, target: str, trace: str | None, to: str, output: Path | None,
            strict: bool, tokenizer: str | None, mirror: str | None, offline: bool,
            quiet: bool) -> None:
    """Convert TARGET (a registry source id, a native trace file, or a unified Parquet file).

    A source id writes <home>/parquet/source=<id>/trace=<trace>/part-0.parquet, fetching files
    first if needed. A native file's format is recognised from its header or first record; a
    unified Parquet file can be exported to any --to format. Nothing is written at the output
    path unless the whole input converts cleanly.
    """
    options = {"tokenizer": tokenizer} if tokenizer else {}
    path = Path(target)
    if path.exists():
        if trace:
            raise click.UsageError("--trace applies to a source id, not to a file path")
        out = output or _default_output(path, get_writer(to).suffix)
        rows, report = convert_file(path, out, to=to, strict=strict, options=options)
        _warn(report, quiet)
        if not quiet:
            click.echo(f"{path} -> {out} ({rows:,} rows)")
        _notices([report])
        return
    home = root(ctx)
    source = get_source(target)
    if to != "parquet":
        raise click.UsageError("a source id converts to the parquet dataset; use a file "
                               "PATH (or the Python API) for other formats")
    fetch(source.id, trace, root=home, mirror=mirror, offline=offline or None,
          show_progress=show_progress(quiet), log=log_to_stderr(quiet))
    if output is not None and output.is_file():
        raise click.UsageError(f"-o {output}: with a source id, -o must be a folder")
    results = convert_source(source.id, trace, root=home, strict=strict, dataset=output,
                             options=options)
    for trace_id, dest, rows, report in results:
        _warn(report, quiet)
        if not quiet:
            click.echo(f"{source.id} {trace_id}: {dest} ({rows:,} rows)")
    _notices([r for *_, r in results])
