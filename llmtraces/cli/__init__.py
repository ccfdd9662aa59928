"""The ``llmtraces`` command: a click group whose verbs live one per module, imported on use."""

from __future__ import annotations

import importlib
from typing import Any

import click

from .._version import __version__
from ..errors import LLMTracesError, OptionError

#: verb -> module in this package defining ``command``; loaded only when the verb runs.
VERBS = {
    "list": "list_",
    "info": "info",
    "cite": "cite",
    "fetch": "fetch",
    "convert": "convert",
    "validate": "validate",
    "formats": "formats",
    "fit": "fit",
    "synthesize": "synthesize",
    "forecast": "forecast",
    "demo": "demo",
    "registry": "registry",
    "serve-sim": "serve_sim",
    "serve-llamacpp": "serve_llamacpp",
    "replay": "replay",
    "bench": "bench",
    "release": "release",
    "stats": "stats",
    "plot": "plot",
    "compare": "compare",
}


#: verb -> its one-line help, as click would shorten the command's own: ``--help`` lists the
#: verbs from here without importing them (a test keeps the two in sync). A verb missing here
#: is imported for its help.
SUMMARIES = {
    "list": "List the sources in the registry.",
    "info": "Show everything the registry knows about SOURCE_ID, and what is cached.",
    "cite": "Print how to cite SOURCE_ID.",
    "fetch": "Download SOURCE_ID's native files into the cache, verifying size then checksum.",
    "convert": "Convert TARGET (a registry source id, a native trace file, or a unified Parquet "
               "file).",
    "validate": "Validate TARGET: a source id (its cached and converted files) or a file or "
                "folder.",
    "formats": "List the native formats read (recognised from a file's header or first record) "
               "and the export formats of ``llmtraces convert FILE --to NAME``.",
    "fit": "Fit a trace model to TRACE (a unified Parquet file or a native trace file).",
    "synthesize": "Synthesize a trace from MODEL (`llmtraces fit` JSON, or ServeGen's).",
    "forecast": "Forecast TARGET's requests per bin and score it (NMAE, NMSE) against "
                "baselines.",
    "demo": "Fetch (from the copy shipped in the package), validate, convert and summarise a "
            "trace.",
    "registry": "Maintain registry files (for maintainers).",
    "serve-sim": "Serve a simulated OpenAI-compatible LLM (completions and chat, SSE streaming).",
    "serve-llamacpp": "Serve a GGUF model with llama.cpp's own OpenAI-compatible server, on the "
                      "CPU.",
    "replay": "Replay TRACE (a registry id or a trace file) against an OpenAI-compatible server.",
    "bench": "Benchmark an engine on a trace: SLO capacity, goodput and energy.",
    "release": "Build, verify, unpack and deposit Zenodo-style dataset releases.",
    "stats": "Workload statistics of TARGET (a registry id, a native trace file or a unified "
             "Parquet file).",
    "plot": "Draw TARGET's workload figures, as in the papers, into DIR as PNG and SVG.",
    "compare": "Compare two traces side by side, with the KS and Wasserstein distances of "
               "their gaps and lengths.",
}


class LazyGroup(click.Group):
    """Loads a verb's module on first use, so ``llmtraces --help`` stays fast."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(VERBS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in VERBS:
            return None
        module = importlib.import_module(f"{__name__}.{VERBS[name]}")
        cmd: click.Command = module.command
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The verbs and their help as click lays them out, from :data:`SUMMARIES` where it can."""
        listed = {verb: click.Command(verb, help=SUMMARIES[verb]) if verb in SUMMARIES
                  else self.get_command(ctx, verb) for verb in self.list_commands(ctx)}
        _Listing(commands={v: c for v, c in listed.items() if c is not None}).format_commands(
            ctx, formatter)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OptionError as exc:  # a bad option value: a usage error (exit 2), one line
            raise click.UsageError(str(exc)) from None
        except LLMTracesError as exc:
            raise click.ClickException(str(exc)) from None


class _Listing(click.Group):
    """The verbs as ``--help`` lists them, in :data:`VERBS` order."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="llmtraces")
@click.option("--home", type=click.Path(file_okay=False), envvar="LLMTRACES_HOME",
              help="Cache folder for downloads and converted traces "
                   "[default: $LLMTRACES_HOME or the user cache folder].")
@click.pass_context
def main(ctx: click.Context, home: str | None) -> None:
    """Public LLM inference traces: fetch, validate, convert, load."""
    ctx.obj = {"home": home}
