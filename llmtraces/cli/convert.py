"""``llmtraces convert (ID | PATH)``: native trace -> unified schema, atomically."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from ..atomic import signals_interrupt
from ..errors import DownloadError, LLMTracesError, NotCachedError
from ..formats import all_writers, get_writer
from ..paths import converted_path
from ..pipeline.convert import (
    convert_file,
    convert_source,
    skip_pandas_probe,
    source_of,
    use_jemalloc,
)
from ..ranges import check_ranges, parse_window
from ..registry import Source
from ..report import Report
from ._common import log_to_stderr, root, show_progress


def _warn(report: Report, quiet: bool) -> None:
    if not quiet:
        for line in report.lines():
            click.echo(line, err=True)


def _default_output(path: Path, to: str) -> Path:
    """``./<name><suffix>`` for a format named like its suffix (``code.parquet``,
    ``code.csv``), else ``./<name>.<format><suffix>`` (``code.mooncake.jsonl``), since several
    formats share a suffix; ``.llmtraces`` is added where that would be the input itself."""
    stem, suffix = path.name.split(".")[0], get_writer(to).suffix
    out = Path.cwd() / (stem + (suffix if suffix == f".{to}" else f".{to}{suffix}"))
    if out.resolve() == path.resolve():
        out = out.with_name(f"{stem}.llmtraces{out.name[len(stem):]}")
    return out


def _notices(reports: list[Report]) -> None:
    """Licence terms of what was written: said once, even with --quiet."""
    for line in dict.fromkeys(n for r in reports for n in r.notices):
        click.echo(line, err=True)



if TYPE_CHECKING:
    from ..transforms import Plan

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
@click.option("--merge", "merge", multiple=True, type=click.Path(exists=True, dir_okay=False,
              path_type=Path), metavar="PATH",
              help="Transforms (applied in the order listed here; see docs/transforms.md). "
                   "Merge another trace (native or unified) onto the same time axis; "
                   "repeatable.")
@click.option("--model", "models", multiple=True, metavar="NAME",
              help="Keep only requests of this model; repeatable.")
@click.option("--service", "services", multiple=True, metavar="NAME",
              help="Keep only requests of this service; repeatable.")
@click.option("--failed/--no-failed", default=None,
              help="Keep only failed requests / only those not marked failed.")
@click.option("--window", metavar="START:DURATION",
              help="Keep the requests arriving in [START, START+DURATION) seconds.")
@click.option("--sample", "sample_spec", metavar="F|N",
              help="Keep a fraction F (0 < F < 1, e.g. 0.1) of the sessions, or at most N "
                   "requests (an integer >= 1); sessions stay whole.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --sample.")
@click.option("--head", type=click.IntRange(min=0), metavar="N",
              help="Keep the first N requests.")
@click.option("--rebase", is_flag=True, help="Shift arrivals so that the first is at 0.")
@click.option("--speedup", type=float, metavar="X",
              help="Divide arrival times by X (2: twice as fast).")
@click.option("--rps", type=float, metavar="R",
              help="Scale arrival times so the mean rate is R requests/s (BurstGPT's RPS "
                   "scaling).")
@click.pass_context
def command(ctx: click.Context, target: str, trace: str | None, to: str, output: Path | None,
            strict: bool, tokenizer: str | None, mirror: str | None, offline: bool,
            quiet: bool, merge: tuple[Path, ...], models: tuple[str, ...],
            services: tuple[str, ...], failed: bool | None, window: str | None,
            sample_spec: str | None, seed: int, head: int | None, rebase: bool,
            speedup: float | None, rps: float | None) -> None:
    """Convert TARGET (a registry source id, a native trace file, or a unified Parquet file).

    A source id writes <home>/parquet/source=<id>/trace=<trace>/part-0.parquet, fetching files
    first if needed; the traces whose files are cached are converted even when others cannot
    be fetched (those are named, and the exit status is 1). A native file's format is
    recognised from its header or first record; a unified Parquet file can be exported to any
    --to format. Nothing is written at the output path unless the whole input converts
    cleanly.

    Transforms apply to a file TARGET, in this order whatever the order on the command line:
    --merge, --model/--service/--failed, --window, --sample, --head, --rebase, then --speedup
    or --rps. Each is recorded in the output's metadata (transforms).
    """
    ctx.with_resource(signals_interrupt())  # SIGTERM/SIGHUP clean up as Ctrl-C does
    options = {"tokenizer": tokenizer} if tokenizer else {}
    plan = _plan(merge, models, services, failed, window, sample_spec, seed, head, rebase,
                 speedup, rps)
    path = Path(target)
    if path.exists():
        if trace:
            raise click.UsageError("--trace applies to a source id, not to a file path")
        out = output or _default_output(path, to)
        skip_pandas_probe()  # the command hands pyarrow no pandas objects: ~0.25 s saved
        use_jemalloc()  # ~20 MiB lower peak, less kernel time than mimalloc
        rows, report = convert_file(path, out, to=to, strict=strict, options=options,
                                    transform=None if plan is None else plan.apply)
        _warn(report, quiet)
        if not quiet:
            click.echo(f"{path} -> {out} ({rows:,} rows)")
        _notices([report])
        return
    home = root(ctx)
    source = source_of(target)
    if plan is not None:
        raise click.UsageError(_transform_hint(ctx, source, trace, home, output))
    if to != "parquet":
        raise click.UsageError("a source id converts to the parquet dataset; use a file "
                               "PATH (or the Python API) for other formats")
    if output is not None and output.is_file():
        raise click.UsageError(f"-o {output}: with a source id, -o must be a folder")
    # A file never needs the download stack (requests, urllib3, filelock, tqdm: ~0.09 s).
    from ..fetching.download import fetch  # lazy: only a source id downloads

    unfetched: LLMTracesError | None = None
    try:
        fetch(source.id, trace, root=home, mirror=mirror, offline=offline or None,
              show_progress=show_progress(quiet), log=log_to_stderr(quiet))
    except (DownloadError, NotCachedError) as exc:
        if not exc.traces:  # failed before trying any file (e.g. no file list yet)
            raise
        unfetched = exc  # convert what is cached, then say what is not
    skipped: list[str] = []
    results = convert_source(source.id, trace, root=home, strict=strict, dataset=output,
                             options=options, skip_missing=skipped.append)
    for trace_id, dest, rows, report in results:
        _warn(report, quiet)
        if not quiet:
            click.echo(f"{source.id} {trace_id}: {dest} ({rows:,} rows)")
    _notices([r for *_, r in results])
    if skipped:
        raise click.ClickException(
            f"not converted, not in the cache: {source.id} {', '.join(skipped)} "
            f"({len(skipped)} of {len(skipped) + len(results)} traces)"
            + (f"\n{unfetched}" if unfetched else ""))
    if unfetched is not None:
        raise unfetched


def _transform_hint(ctx: click.Context, source: Source, trace: str | None, home: Path,
                    output: Path | None) -> str:
    """Why transforms need a file, with the commands that do it: convert the trace, then
    transform its real converted path with the options given here."""
    trace_id = trace or next(iter(source.traces), "TRACE")
    part = converted_path(source.id, trace_id, home, output)
    given = [opt for p in ctx.command.params if p.name in _TRANSFORMS
             and ctx.get_parameter_source(p.name) is not ParameterSource.DEFAULT
             for opt in _as_args(p, ctx.params[p.name])]
    first = f"llmtraces convert {source.id} --trace {trace_id}" + (
        f" -o {shlex.quote(str(output))}" if output is not None else "")
    then = shlex.join(["llmtraces", "convert", str(part), *given, "-o", f"{trace_id}.parquet"])
    return ("transforms apply to a file PATH, not to a source id (whose output is the cache "
            f"dataset): convert the trace, then transform its Parquet file: `{first}`, then "
            f"`{then}`")


#: The options of ``convert`` that are transforms (a file PATH only).
_TRANSFORMS = {"merge", "models", "services", "failed", "window", "sample_spec", "seed",
               "head", "rebase", "speedup", "rps"}


def _as_args(param: click.Parameter, value: object) -> list[str]:
    """A parameter's value written back as command-line arguments."""
    opts, secondary = param.opts, getattr(param, "secondary_opts", [])
    if isinstance(value, bool):
        return [opts[0]] if value else secondary[:1] or []
    values = value if isinstance(value, tuple) else (value,)
    return [arg for v in values for arg in (opts[-1] if opts[-1].startswith("--") else opts[0],
                                            str(v))]


def _float(option: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise click.BadParameter(f"not a number: {text!r}", param_hint=option) from None


def _plan(merge: tuple[Path, ...], models: tuple[str, ...], services: tuple[str, ...],
          failed: bool | None, window: str | None, sample_spec: str | None, seed: int,
          head: int | None, rebase: bool, speedup: float | None, rps: float | None
          ) -> Plan | None:
    """The transforms the options ask for, checked before anything is read; None when they
    ask for none."""
    span = parse_window(window)
    fraction = count = None
    if sample_spec is not None:
        if sample_spec.isdigit() and int(sample_spec) >= 1:
            count = int(sample_spec)
        else:
            fraction = _float("--sample", sample_spec)
            if not 0 < fraction < 1:
                raise click.BadParameter(
                    f"a fraction in (0, 1) such as 0.1, or a number of requests >= 1 "
                    f"(got {sample_spec!r})", param_hint="--sample")
    check_ranges([("--speedup", speedup), ("--rps", rps)])
    if speedup is not None and rps is not None:
        raise click.UsageError("--speedup and --rps both set the time scale; give one")
    if not (merge or models or services or span or fraction or count or head is not None
            or rebase or speedup is not None or rps is not None or failed is not None):
        return None
    # lazy: the transforms package (its fitting and synthesis too, ~0.03 s) only when asked
    from ..transforms import Plan

    plan = Plan(merge=list(merge), model=list(models), service=list(services), failed=failed,
                window=span, sample_fraction=fraction, sample_n=count, seed=seed, head=head,
                rebase=rebase, speedup=speedup, rps=rps)
    return None if plan.empty() else plan
