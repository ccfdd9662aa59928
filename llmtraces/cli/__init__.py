"""The ``llmtraces`` command: a click group whose verbs live one per module, imported on use."""

from __future__ import annotations

import importlib
from typing import Any

import click

from .. import __version__
from ..errors import LLMTracesError

#: verb -> module in this package defining ``command``; loaded only when the verb runs.
VERBS = {
    "list": "list_",
    "info": "info",
    "cite": "cite",
    "fetch": "fetch",
    "convert": "convert",
    "validate": "validate",
    "fit": "fit",
    "synthesize": "synthesize",
    "demo": "demo",
    "registry": "registry",
    "serve-sim": "serve_sim",
    "serve-llamacpp": "serve_llamacpp",
    "replay": "replay",
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

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LLMTracesError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="llmtraces")
@click.option("--home", type=click.Path(file_okay=False), envvar="LLMTRACES_HOME",
              help="Cache folder for downloads and converted traces "
                   "[default: $LLMTRACES_HOME or the user cache folder].")
@click.pass_context
def main(ctx: click.Context, home: str | None) -> None:
    """Public LLM inference traces: fetch, validate, convert, load."""
    ctx.obj = {"home": home}
