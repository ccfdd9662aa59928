"""Maintainers: regenerate the files derived from the code (``python -m llmtraces._generate``).

``schemas/trace.schema.json`` and ``schemas/registry.schema.json`` come from
:mod:`llmtraces.schema` and :mod:`llmtraces.registry`; the column table in ``docs/schema.md``
comes from :data:`llmtraces.schema.COLUMNS`. Tests fail when any of them is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .registry import json_schema_text
from .schema import COLUMNS, dumps_json_schema, type_name

START, END = "<!-- columns:start -->", "<!-- columns:end -->"


def column_table() -> str:
    """The Markdown table of unified columns, as it appears in ``docs/schema.md``."""
    rows = ["| column | type | null | meaning |", "|---|---|---|---|"]
    for c in COLUMNS:
        rule = f" Must be >= {c.minimum}." if c.minimum is not None else ""
        rows.append(f"| `{c.name}` | `{type_name(c.type)}` | {'yes' if c.nullable else 'no'} | "
                    f"{c.description}{rule} |")
    return "\n".join(rows)


def with_table(doc: str) -> str:
    """``doc`` with the text between the column markers replaced by :func:`column_table`."""
    head, _, rest = doc.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{column_table()}\n{END}{tail}"


def main(repo: Path) -> None:
    (repo / "schemas" / "trace.schema.json").write_text(dumps_json_schema(), encoding="utf-8")
    (repo / "schemas" / "registry.schema.json").write_text(json_schema_text(), encoding="utf-8")
    doc = repo / "docs" / "schema.md"
    doc.write_text(with_table(doc.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
