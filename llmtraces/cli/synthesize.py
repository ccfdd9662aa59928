"""``llmtraces synthesize MODEL``: a new trace drawn from a fitted trace model (``llmtraces
fit`` JSON) or a ServeGen workload description (a ``chunk-N-trace.csv`` or
``servegen/<client>``)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import NoSuchFileError, UnknownSourceError
from ..formats import all_writers, get_writer
from ..licensing import notice, write_sidecar
from ..transforms import TraceModel, synthesize
from ..transforms.servegen_read import read_servegen

#: The registry source whose traces are ServeGen clients.
SERVEGEN = "servegen"


def load_model(spec: str) -> TraceModel:
    """The model named by ``spec``: a ServeGen ``*-trace.csv`` (its dataset JSON beside it),
    ``servegen/<client>`` (both files fetched), or a model JSON from ``llmtraces fit``."""
    path = Path(spec)
    if path.is_file():
        return read_servegen(path) if path.name.endswith("-trace.csv") else \
            TraceModel.load(path)
    source, _, client = spec.partition("/")
    if source == SERVEGEN and client and not path.exists():
        from ..api import fetch  # lazy: the fetch machinery, only for a registry id
        from ..registry import get_source  # lazy: as above
        src = get_source(SERVEGEN)
        if client not in src.traces or client.endswith("-dataset"):
            clients = ", ".join(t for t in src.traces if not t.endswith("-dataset"))
            raise UnknownSourceError(f"{spec}: no such ServeGen client; expected one of "
                                     f"{clients}")
        (got,) = fetch(SERVEGEN, client)
        fetch(SERVEGEN, f"{client}-dataset")
        # the upstream path, data/<category>/<model>/chunk-N-trace.csv, names the model
        entry = src.traces[client].file
        upstream = str(entry.url) if entry is not None else ""
        parts = upstream.split("/data/", 1)[-1].split("/")
        return read_servegen(got.path, model=parts[1] if len(parts) == 3 else None,
                             provenance={"source": SERVEGEN, "trace": client,
                                         "licence": src.licence.model_dump(),
                                         "citation": src.citation.model_dump()})
    raise NoSuchFileError(f"{spec}: no such file; expected a model JSON from `llmtraces fit`, "
                          f"a ServeGen chunk-N-trace.csv or servegen/<client>")


@click.command("synthesize")
@click.argument("model")
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
def command(model: str, rps: float | None, duration: float | None, seed: int, to: str,
            output: Path, quiet: bool) -> None:
    """Synthesize a trace from MODEL (`llmtraces fit` JSON, or ServeGen's).

    From a fit: arrivals follow the per-window Gamma fits (with --rps, every window's rate is
    scaled by one factor, the burstiness kept), request lengths the Zipf fit, response
    lengths the percentiles of their request-length bin. From a ServeGen chunk-N-trace.csv
    (its chunk-N-dataset.json beside it) or servegen/<client>: each 600 s window's rate and
    Gamma or Weibull law, and the window's length PMFs.
    """
    stream = synthesize(load_model(model), rps=rps, duration_s=duration, seed=seed)
    rows = get_writer(to).write(stream, output)
    line = notice(stream.meta)
    if line is not None:
        click.echo(line, err=True)
        if to != "parquet":
            write_sidecar(output, stream.meta)
    if not quiet:
        click.echo(f"{model} -> {output} ({rows:,} rows)")
