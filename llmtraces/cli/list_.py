"""``llmtraces list``: every source in the registry, fitted to the terminal's width."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from itertools import zip_longest
from typing import Any

import click

from ..licensing import restrictions
from ..registry import Source, load_registry
from ._common import human_bytes, terminal_width

#: The table's columns: (header, right-aligned, shares). Free-text columns wrap to share the
#: room the others leave (the name gets two shares); columns with no shares never wrap.
COLUMNS = (("id", False, 0), ("traces", False, 1), ("rows", True, 0), ("size", True, 0),
           ("licence", False, 1), ("terms", False, 1), ("name", False, 2))
GAP = "  "
#: A wrapping column narrower than this (and than its text) reads badly: below it, each
#: source is printed as a block of wrapped lines instead of a table row.
MIN_WRAP = 20
#: A word and the spaces or commas after it: where a cell may be broken.
_PIECE = re.compile(r"[^ ,]+[ ,]*|[ ,]+")


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
def command(as_json: bool) -> None:
    """List the sources in the registry."""
    rows = [_row(s) for s in load_registry().values()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for line in render(rows, terminal_width()):
        click.echo(line)


def _row(s: Source) -> dict[str, Any]:
    """One source's line of ``list --json``: ids, totals (None when unknown) and licence."""
    files = {s.download(t).name: s.download(t) for t in s.traces}  # archives once
    sizes = [f.size for f in files.values()]
    counts = [t.pins.rows for t in s.traces.values()]
    if s.discover is not None and not s.traces:
        counts, sizes = [None], [None]
    return {"id": s.id, "name": s.name, "traces": list(s.traces) or [
                f"(Zenodo record {s.discover.zenodo if s.discover else '?'})"],
            "rows": None if None in counts else sum(c or 0 for c in counts),
            "bytes": None if None in sizes else sum(x or 0 for x in sizes),
            "licence": s.licence.spdx, "terms": list(restrictions(s.licence))}


def render(rows: list[dict[str, Any]], width: int | None) -> Iterator[str]:
    """The table, no line wider than ``width`` (None: no limit): long cells wrap in their
    column; where that would leave a column too narrow, one block of lines per source."""
    cells = [tuple(h for h, _, _ in COLUMNS)] + [_cells(r) for r in rows]
    widths = _widths([max(len(c[i]) for c in cells) for i in range(len(COLUMNS))], width)
    if widths is None:
        assert width is not None  # with no limit every column keeps its width
        for row in cells[1:]:
            yield from _block(row, width)
        return
    for row in cells:
        wrapped = [_wrap(c, w) for c, w in zip(row, widths, strict=True)]
        for line in zip_longest(*wrapped, fillvalue=""):
            yield GAP.join(part.rjust(w) if right else part.ljust(w) for part, w, (_, right, _)
                           in zip(line, widths, COLUMNS, strict=True)).rstrip()


def _cells(r: dict[str, Any]) -> tuple[str, ...]:
    """A source's table cells, in the order of :data:`COLUMNS`."""
    return (r["id"], _traces(r["traces"]), f"{r['rows']:,}" if r["rows"] is not None else "?",
            human_bytes(r["bytes"]) if r["bytes"] is not None else "?", r["licence"],
            ", ".join(r["terms"]) or "open", r["name"])


def _widths(natural: list[int], width: int | None) -> list[int] | None:
    """Column widths within ``width``: fixed columns keep theirs, wrapping ones share the rest.

    Least needy first, each takes what it needs if that leaves :data:`MIN_WRAP` to each of the
    others, else its share of what is left; None if one would get less than ``MIN_WRAP``.
    """
    flexible = [i for i, (_, _, share) in enumerate(COLUMNS) if share]
    if width is None:
        return natural
    room = width - len(GAP) * (len(natural) - 1) - sum(
        n for i, n in enumerate(natural) if i not in flexible)
    shares = sum(COLUMNS[i][2] for i in flexible)
    widths = list(natural)
    order = sorted(flexible, key=lambda i: natural[i] / COLUMNS[i][2])
    for k, i in enumerate(order):
        share = room * COLUMNS[i][2] // shares
        spare = room - MIN_WRAP * (len(order) - k - 1)  # leaves MIN_WRAP to each of the others
        widths[i] = natural[i] if natural[i] <= max(spare, share) else share
        if widths[i] < min(natural[i], MIN_WRAP):
            return None
        room, shares = room - widths[i], shares - COLUMNS[i][2]
    return widths


def _block(cells: tuple[str, ...], width: int) -> Iterator[str]:
    """One source as wrapped lines, for a terminal too narrow for the table."""
    source_id, traces, count, size, licence, terms, name = cells
    yield from _wrap(f"{source_id}  {name}", width, indent="    ")
    yield from _wrap(f"    traces: {traces}  rows: {count}  size: {size}  licence: {licence} "
                     f"({terms})", width, indent="    ")


def _wrap(text: str, width: int, indent: str = "") -> list[str]:
    """``text`` in lines of at most ``width``, broken after spaces and commas (a longer word is
    split); lines after the first start with ``indent``."""
    lines: list[str] = []
    line = ""
    for piece in _PIECE.findall(text):
        while len((line + piece).rstrip()) > width:
            if line.strip():
                lines.append(line.rstrip())
                line = indent
                continue
            cut = max(1, width - len(line))
            cut = piece.rfind("-", 0, cut) + 1 or cut  # after a hyphen where there is one
            lines.append(line + piece[:cut])
            line, piece = indent, piece[cut:]
        line += piece
    lines.append(line.rstrip())
    return lines


def _traces(ids: list[str]) -> str:
    """Trace ids, or their number when there are too many for one column."""
    return ",".join(ids) if len(ids) <= 6 else f"{len(ids)} traces"
