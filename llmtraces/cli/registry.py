"""``llmtraces registry update-hashes ID``: re-pin a source after an upstream change."""

from __future__ import annotations

from pathlib import Path

import click

from ..fetching.repin import update_hashes
from ._common import log_to_stderr, show_progress


@click.group("registry")
def command() -> None:
    """Maintain registry files (for maintainers)."""


@command.command("update-hashes")
@click.argument("source_id")
@click.option("--trace", help="Only this trace (default: every trace of the source).")
@click.option("--registry-dir", type=click.Path(file_okay=False, path_type=Path),
              envvar="LLMTRACES_REGISTRY",
              help="Folder of registry files to rewrite [default: the one in use].")
@click.option("--mirror", metavar="BASE", help="Try BASE/<source-id>/<file-name> first.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def update_hashes_command(source_id: str, trace: str | None, registry_dir: Path | None,
                          mirror: str | None, quiet: bool) -> None:
    """Re-download SOURCE_ID's files and rewrite their sizes and checksums in its registry file.

    Comments and every other field stay as they are; the new file is validated before it
    replaces the old one. Review the diff, and re-check row counts with `llmtraces validate`.
    """
    pins = update_hashes(source_id, trace, registry=registry_dir, mirror=mirror,
                         show_progress=show_progress(quiet), log=log_to_stderr(quiet))
    for p in pins:
        click.echo(f"{source_id} {p.trace}: {p.size:,} bytes, sha256 {p.sha256} (from {p.url})")
