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
        size = sum(t.file.size or 0 for t in s.traces.values())
        rows.append({"id": s.id, "name": s.name, "traces": list(s.traces),
                     "rows": sum(t.file.rows or 0 for t in s.traces.values()),
                     "bytes": size, "licence": s.licence.spdx})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'id':<20} {'traces':<16} {'rows':>12} {'size':>10}  licence  name")
    for r in rows:
        click.echo(f"{r['id']:<20} {','.join(r['traces']):<16} {r['rows']:>12,} "
                   f"{human_bytes(r['bytes']):>10}  {r['licence']:<8} {r['name']}")
