"""``llmtraces list``: every source in the registry, one line each."""

from __future__ import annotations

import json
from typing import Any

import click

from ..api import sources
from ._common import human_bytes


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
def command(as_json: bool) -> None:
    """List the sources in the registry."""
    rows: list[dict[str, Any]] = []
    for s in sources():
        sizes = [t.file.size for t in s.traces.values()]
        counts = [t.file.rows for t in s.traces.values()]
        rows.append({"id": s.id, "name": s.name, "traces": list(s.traces),
                     "rows": None if None in counts else sum(c or 0 for c in counts),
                     "bytes": None if None in sizes else sum(x or 0 for x in sizes),
                     "licence": s.licence.spdx})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = [("id", "traces", "rows", "size", "licence", "name")] + [
        (r["id"], ",".join(r["traces"]), f"{r['rows']:,}" if r["rows"] is not None else "?",
         human_bytes(r["bytes"]) if r["bytes"] is not None else "?", r["licence"], r["name"])
        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].rjust(widths[2]),
                 row[3].rjust(widths[3]), row[4].ljust(widths[4]), row[5]]
        click.echo("  ".join(cells))
