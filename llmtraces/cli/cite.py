"""``llmtraces cite ID``: the BibTeX (or plain text) to cite a source with."""

from __future__ import annotations

import click

from ..registry import get_source


@click.command("cite")
@click.argument("source_id")
@click.option("--text", "as_text", is_flag=True, help="Plain-text reference instead of BibTeX.")
def command(source_id: str, as_text: bool) -> None:
    """Print how to cite SOURCE_ID."""
    c = get_source(source_id).citation
    click.echo(c.text if as_text else c.bibtex)
