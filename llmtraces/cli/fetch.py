"""``llmtraces fetch ID``: download and verify a source's files into the cache."""

from __future__ import annotations

from pathlib import Path

import click

from ..fetching.download import fetch
from ..fetching.stamps import pin_kind
from ._common import log_to_stderr, root, show_progress


@click.command("fetch")
@click.argument("source_id")
@click.option("--trace", help="Only this trace (default: every trace of the source).")
@click.option("--mirror", envvar="LLMTRACES_MIRROR", metavar="BASE",
              help="Try BASE/<source-id>/<file-name> first [env: LLMTRACES_MIRROR].")
@click.option("--file", "file", type=click.Path(dir_okay=False, path_type=Path),
              help="Import a file downloaded by hand; it is verified like a download.")
@click.option("--offline", is_flag=True, envvar="LLMTRACES_OFFLINE",
              help="Never touch the network [env: LLMTRACES_OFFLINE=1].")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no messages.")
@click.pass_context
def command(ctx: click.Context, source_id: str, trace: str | None, mirror: str | None,
            file: Path | None, offline: bool, quiet: bool) -> None:
    """Download SOURCE_ID's native files into the cache, verifying size then checksum.

    Files already cached and valid are skipped. Each file is written to a .part file and
    renamed into place only after verification.
    """
    done = fetch(source_id, trace, root=root(ctx), mirror=mirror, file=file,
                 offline=offline or None, show_progress=show_progress(quiet),
                 log=log_to_stderr(quiet))
    if quiet:
        return
    for f in done:
        unpinned = pin_kind(f.path) == "unpinned"  # nothing to verify against
        how = ("already cached" + (" (unpinned)" if unpinned else " and valid")
               if f.origin == "cache" else
               f"{'unpinned' if unpinned else 'verified'}, from {f.origin}")
        click.echo(f"{f.source} {f.trace}: {f.path} ({how})")
