"""``llmtraces info ID``: what a source is, its files, licence, time semantics and quirks."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..fetching.stamps import is_cached
from ..licensing import restrictions
from ..paths import converted_path, raw_dir
from ..registry import AUTO_FORMAT, Source, get_source
from ._common import human_bytes, root


@click.command("info")
@click.argument("source_id")
@click.option("--json", "as_json", is_flag=True, help="Print the registry entry as JSON.")
@click.pass_context
def command(ctx: click.Context, source_id: str, as_json: bool) -> None:
    """Show everything the registry knows about SOURCE_ID, and what is cached."""
    home = root(ctx)
    s = get_source(source_id)
    if s.discover is not None:
        # lazy: `info` start-up; discover imports requests, needed only for a listed source
        from ..fetching.discover import with_discovered

        s = with_discovered(s, home)
    if as_json:
        click.echo(json.dumps(s.model_dump(), indent=2, ensure_ascii=False))
        return
    lic = s.licence
    click.echo(f"{s.id}: {s.name}\n{s.description}\nhomepage: {s.homepage}")
    terms = [("redistributable" if lic.redistributable else "NOT redistributable"),
             ("commercial use allowed" if lic.commercial_use else "NON-COMMERCIAL")]
    click.echo(f"licence:  {lic.spdx} ({', '.join(terms)}) {lic.url}\n"
               f"credit:   {lic.attribution}")
    if restrictions(lic):
        click.echo(f"WARNING:  {', '.join(restrictions(lic))}: "
                   + ("do not share or re-host its files or anything converted from them; "
                      if not lic.redistributable else "")
                   + ("no commercial use; " if not lic.commercial_use else "")
                   + "release bundles leave it out.")
    t = s.time
    zone = f"{t.zone}{' (assumed)' if t.zone_assumed else ''}" if t.zone else "n/a"
    click.echo(f"time:     {t.kind}, written {t.native_format}; zone {zone}; "
               f"resolution {t.resolution}\n          arrival_us = 0 at {t.origin}")
    click.echo(f"format:   {s.format}" + (" (each file recognised from its header)"
                                           if s.format == AUTO_FORMAT else ""))
    if s.discover is not None:
        _listing(s, home)
    click.echo("traces:" if s.traces else "traces:   none pinned yet")
    for key, a in s.archives.items():
        size = human_bytes(a.size) if a.size is not None else "size unknown"
        pin = f"; UNVERIFIED: {a.unverified}" if a.unverified else ""
        state = "fetched" if is_cached(raw_dir(s.id, home) / a.name, a) else "not fetched"
        click.echo(f"  archive {key}: {a.name} ({size}{pin}) [{state}]\n             {a.url}")
    w = max([10, *(len(t) for t in s.traces)])
    for tid, tr in s.traces.items():
        f = s.download(tid)
        cached = is_cached(raw_dir(s.id, home) / f.name, f)
        converted = converted_path(s.id, tid, home).is_file()
        state = ("converted" if converted else "fetched") if cached else (
            "bundled" if f.bundled else "not fetched")
        p = tr.pins
        rows = f"{p.rows:,} rows" if p.rows is not None else "rows unknown"
        size = human_bytes(p.size) if p.size is not None else "size unknown"
        if tr.member is not None:
            click.echo(f"  {tid:<{w}} {tr.member.path} in archive {tr.member.archive} "
                       f"({size}, {rows}) [{state}]\n             {tr.description}")
            continue
        pin = f"; UNVERIFIED: {f.unverified}" if f.unverified else ""
        click.echo(f"  {tid:<{w}} {f.name} ({size}, {rows}{pin}) [{state}]\n"
                   f"             {tr.description}\n             {f.url}")
    if s.quirks:
        click.echo("quirks:")
        for q in s.quirks:
            click.echo(f"  - {q}")
    click.echo(f"cite:     {s.citation.text}  (`llmtraces cite {s.id}` for BibTeX)")


def _listing(s: Source, home: Path) -> None:
    """Where a source's file list comes from, and what its last fetch skipped."""
    # lazy: `info` start-up; discover imports requests, needed only for a listed source
    from ..fetching.discover import saved_listing, skipped

    assert s.discover is not None
    listed = saved_listing(s, home)
    click.echo(f"files:    listed by Zenodo record {s.discover.zenodo} "
               f"(https://doi.org/10.5281/zenodo.{s.discover.zenodo}) at fetch time, "
               "checked against its size and md5; "
               + (f"{len(listed)} file(s) in the list saved by the last fetch"
                  if listed is not None else "not fetched yet (run `llmtraces fetch "
                  f"{s.id}`)"))
    for name in skipped(s, home):
        click.echo(f"          skipped (not a trace file): {name}")
