"""``llmtraces release build|verify|unpack``: a versioned, citable, licence-aware dataset
release of converted traces (docs/release.md)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ._common import log_to_stderr, root, show_progress


@click.group("release")
def command() -> None:
    """Build, verify, unpack and deposit Zenodo-style dataset releases."""


@command.command("build")
@click.option("--sources", "sources", metavar="ID,...",
              help="Comma-separated source ids to release.")
@click.option("--all", "all_sources", is_flag=True,
              help="Every source of the registry (restricted ones as recipes).")
@click.option("--version", "version", required=True, metavar="X.Y.Z",
              help="Release version (semantic versioning).")
@click.option("--date", "date", metavar="YYYY-MM-DD",
              help="Release date [default: $SOURCE_DATE_EPOCH, else the repository's last "
                   "commit date].")
@click.option("--offline", is_flag=True, help="Use the cache only; never touch the network.")
@click.option("--mirror", metavar="BASE", help="Try BASE/<source-id>/<file-name> first.")
@click.option("--previous", type=click.Path(exists=True, path_type=Path),
              help="The previous release (folder, its MANIFEST.json or its .tar.zst), for "
                   "CHANGELOG.md.")
@click.option("--allow-non-commercial", is_flag=True,
              help="Include sources whose licence forbids commercial use (listed as such).")
@click.option("--layout", type=click.Choice(["folder", "bundle"]), default="folder",
              show_default=True, help="A folder of files, or one deterministic .tar.zst.")
@click.option("-o", "--output", "output", required=True,
              type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def build_command(ctx: click.Context, sources: str | None, all_sources: bool, version: str,
                  date: str | None, offline: bool, mirror: str | None,
                  previous: Path | None, allow_non_commercial: bool, layout: str,
                  output: Path, quiet: bool) -> None:
    """Fetch, convert and validate sources, and lay out release OUTPUT/llmtraces-traces-X.Y.Z.

    Only redistributable sources carry data; restricted ones get a recipe (recipes.json).
    """
    from ..release.build import BuildOptions, build_release  # lazy: pyarrow

    ids = [s for s in (sources or "").split(",") if s.strip()]
    if bool(ids) == all_sources:
        raise click.UsageError("give either --sources ID,... or --all")
    opts = BuildOptions(sources=tuple(s.strip() for s in ids) if ids else None,
                        version=version, date=date, offline=offline, mirror=mirror,
                        previous=previous, allow_non_commercial=allow_non_commercial,
                        layout=layout, show_progress=show_progress(quiet),
                        log=log_to_stderr(quiet))
    result = build_release(opts, output, root=root(ctx))
    click.echo(f"{result.path}: {result.summary}")


@command.command("verify")
@click.argument("directory", type=click.Path(exists=True, path_type=Path))
@click.option("--rebuild", is_flag=True,
              help="Reconvert every trace from the cache and compare with the release.")
@click.option("--json", "as_json", is_flag=True, help="The findings as JSON.")
@click.pass_context
def verify_command(ctx: click.Context, directory: Path, rebuild: bool, as_json: bool) -> None:
    """Check release DIRECTORY (or its .tar.zst): sizes, hashes, schemas, licences, rows.

    Names every file that fails and exits 1.
    """
    from ..release.verify import verify_release  # lazy: pyarrow, jsonschema

    result = verify_release(directory, rebuild=rebuild, root=root(ctx))
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, sort_keys=True))
    else:
        for line in result.lines():
            click.echo(line, err=not result.ok)
    if not result.ok:
        raise SystemExit(1)


@command.command("unpack")
@click.argument("directory", type=click.Path(exists=True, path_type=Path))
@click.pass_context
def unpack_command(ctx: click.Context, directory: Path) -> None:
    """Put the traces of release DIRECTORY (or its .tar.zst) into the cache, as a mirror.

    The release is verified first; then ``llmtraces.load("<source>/<trace>")`` reads them
    offline.
    """
    from ..release.unpack import unpack_release  # lazy: pyarrow

    for dest in unpack_release(directory, root=root(ctx)):
        click.echo(str(dest))


@command.command("deposit")
@click.argument("directory", type=click.Path(exists=True, path_type=Path))
@click.option("--zenodo-url", metavar="URL",
              help="Zenodo server [default: https://zenodo.org; http only to localhost].")
@click.option("--sandbox", is_flag=True, help="Use https://sandbox.zenodo.org (its own token).")
@click.option("--new-version-of", type=click.IntRange(min=1), metavar="RECID",
              help="Deposit a new version of record RECID (the latest version's id).")
@click.option("--publish", is_flag=True, help="Publish the draft (mints a DOI; final).")
@click.option("--yes", is_flag=True, help="With --publish: do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Print the requests it would make; send none.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or log lines.")
def deposit_command(directory: Path, zenodo_url: str | None, sandbox: bool,
                    new_version_of: int | None, publish: bool, yes: bool, dry_run: bool,
                    quiet: bool) -> None:
    """Upload release DIRECTORY (or its .tar.zst) to Zenodo as a draft ($ZENODO_TOKEN).

    Publishes only with --publish; a rerun resumes the same draft (.deposit-state.json).
    """
    from ..release.deposit import DepositOptions, deposit  # lazy: requests, start-up time
    from ..release.zenodo_client import DEFAULT_URL, SANDBOX_URL  # lazy: as above

    if sandbox and zenodo_url:
        raise click.UsageError("give --sandbox or --zenodo-url, not both")
    if yes and not publish:
        raise click.UsageError("--yes confirms --publish; give both")

    def confirm(draft: str) -> bool:
        return click.confirm(f"Publish {draft}? Publishing mints a DOI and cannot be undone",
                             err=True)

    opts = DepositOptions(directory, zenodo_url or (SANDBOX_URL if sandbox else DEFAULT_URL),
                          new_version_of=new_version_of, publish=publish, dry_run=dry_run,
                          confirm=None if yes else confirm, log=log_to_stderr(quiet),
                          show_progress=show_progress(quiet))
    for line in deposit(opts).lines():
        click.echo(line)
