"""``llmtraces info ID``: what a source is, its files, licence, time semantics and quirks."""

from __future__ import annotations

import json

import click

from ..api import source as get_source
from ..convert import converted_path
from ..download import is_cached
from ..paths import raw_dir
from ._common import human_bytes, root


@click.command("info")
@click.argument("source_id")
@click.option("--json", "as_json", is_flag=True, help="Print the registry entry as JSON.")
@click.pass_context
def command(ctx: click.Context, source_id: str, as_json: bool) -> None:
    """Show everything the registry knows about SOURCE_ID, and what is cached."""
    s = get_source(source_id)
    home = root(ctx)
    if as_json:
        click.echo(json.dumps(s.model_dump(), indent=2, ensure_ascii=False))
        return
    lic = s.licence
    click.echo(f"{s.id}: {s.name}\n{s.description}\nhomepage: {s.homepage}")
    terms = [("redistributable" if lic.redistributable else "NOT redistributable"),
             ("commercial use allowed" if lic.commercial_use else "NON-COMMERCIAL")]
    click.echo(f"licence:  {lic.spdx} ({', '.join(terms)}) {lic.url}\n"
               f"credit:   {lic.attribution}")
    t = s.time
    zone = f"{t.zone}{' (assumed)' if t.zone_assumed else ''}" if t.zone else "n/a"
    click.echo(f"time:     {t.kind}, written {t.native_format}; zone {zone}; "
               f"resolution {t.resolution}\n          arrival_us = 0 at {t.origin}")
    click.echo(f"format:   {s.format}\ntraces:")
    for tid, tr in s.traces.items():
        f = tr.file
        cached = is_cached(raw_dir(s.id, home) / f.name, f)
        converted = converted_path(s.id, tid, home).is_file()
        state = ("converted" if converted else "fetched") if cached else (
            "bundled" if f.bundled else "not fetched")
        rows = f"{f.rows:,} rows" if f.rows is not None else "rows unknown"
        size = human_bytes(f.size) if f.size is not None else "size unknown"
        pin = f"; UNVERIFIED: {f.unverified}" if f.unverified else ""
        click.echo(f"  {tid:<10} {f.name} ({size}, {rows}{pin}) [{state}]\n"
                   f"             {tr.description}\n             {f.url}")
    if s.quirks:
        click.echo("quirks:")
        for q in s.quirks:
            click.echo(f"  - {q}")
    click.echo(f"cite:     {s.citation.text}  (`llmtraces cite {s.id}` for BibTeX)")
