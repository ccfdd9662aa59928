"""``llmtraces list``: every source in the registry, one line each."""

from __future__ import annotations

import json
from typing import Any

import click

from ..api import sources
from ..licensing import restrictions
from ._common import human_bytes


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
def command(as_json: bool) -> None:
    """List the sources in the registry."""
    rows: list[dict[str, Any]] = []
    for s in sources():
        files = {s.download(t).name: s.download(t) for t in s.traces}  # archives once
        sizes = [f.size for f in files.values()]
        counts = [t.pins.rows for t in s.traces.values()]
        if s.discover is not None and not s.traces:
            counts, sizes = [None], [None]
        rows.append({"id": s.id, "name": s.name, "traces": list(s.traces) or [
                         f"(Zenodo record {s.discover.zenodo if s.discover else '?'})"],
                     "rows": None if None in counts else sum(c or 0 for c in counts),
                     "bytes": None if None in sizes else sum(x or 0 for x in sizes),
                     "licence": s.licence.spdx, "terms": list(restrictions(s.licence))})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = [("id", "traces", "rows", "size", "licence", "terms", "name")] + [
        (r["id"], _traces(r["traces"]), f"{r['rows']:,}" if r["rows"] is not None else "?",
         human_bytes(r["bytes"]) if r["bytes"] is not None else "?", r["licence"],
         ", ".join(r["terms"]) or "open", r["name"])
        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(6)]
    right = (False, False, True, True, False, False)
    for row in table:
        cells = [c.rjust(w) if r else c.ljust(w)
                 for c, w, r in zip(row[:6], widths, right, strict=True)]
        click.echo("  ".join(cells + [row[6]]))


def _traces(ids: list[str]) -> str:
    """Trace ids, or their number when there are too many for one column."""
    return ",".join(ids) if len(ids) <= 6 else f"{len(ids)} traces"
