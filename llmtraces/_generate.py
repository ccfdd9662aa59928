"""Maintainers: regenerate the files derived from the code (``python -m llmtraces._generate``).

``schemas/trace.schema.json`` and ``schemas/registry.schema.json`` come from
:mod:`llmtraces.schema` and :mod:`llmtraces.registry`; the column table in ``docs/schema.md``
comes from :data:`llmtraces.schema.COLUMNS`; the README's sources table and each
``docs/sources/<id>.md`` "Files" table come from the registry. Tests fail when any is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .bench.spec import json_schema_text as bench_spec_schema_text
from .characterize.model import json_schema_text as stats_schema_text
from .registry import FileEntry, Member, Source, json_schema_text, load_registry
from .release.manifest import json_schema_text as release_schema_text
from .schema import COLUMNS, dumps_json_schema, type_name

START, END = "<!-- columns:start -->", "<!-- columns:end -->"
#: Traces listed one by one in the sources table; more are summarised.
LISTED = 6


def column_table() -> str:
    """The Markdown table of unified columns, as it appears in ``docs/schema.md``."""
    rows = ["| column | type | null | meaning |", "|---|---|---|---|"]
    for c in COLUMNS:
        rule = f" Must be >= {c.minimum}." if c.minimum is not None else ""
        rows.append(f"| `{c.name}` | `{type_name(c.type)}` | {'yes' if c.nullable else 'no'} | "
                    f"{c.description}{rule} |")
    return "\n".join(rows)


def with_section(doc: str, name: str, body: str) -> str:
    """``doc`` with the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` replaced."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    head, found, rest = doc.partition(start)
    if not found or end not in rest:
        raise ValueError(f"no {start} ... {end} section")
    _, _, tail = rest.partition(end)
    return f"{head}{start}\n{body}\n{end}{tail}"


def with_table(doc: str) -> str:
    """``doc`` with the text between the column markers replaced by :func:`column_table`."""
    return with_section(doc, "columns", column_table())


def _traces(source: Source) -> str:
    ids = list(source.traces)
    listed = ", ".join(ids) if len(ids) <= LISTED else f"{len(ids)}: {ids[0]} … {ids[-1]}"
    if source.discover is not None:
        found = f"listed by Zenodo record {source.discover.zenodo} at fetch time"
        return f"{listed}; more {found}" if ids else found
    return listed


def _terms(source: Source) -> str:
    terms = source.licence.spdx
    if not source.licence.redistributable:
        terms += ", **not redistributable**"
    elif not source.licence.commercial_use:
        terms += ", non-commercial"
    return terms


def sources_table(sources: list[Source]) -> str:
    """The README's table of registry sources."""
    rows = ["| id | traces | native format | licence | docs |", "|---|---|---|---|---|"]
    for s in sources:
        rows.append(f"| `{s.id}` | {_traces(s)} | {s.layout or f'`{s.format}`'} | {_terms(s)} | "
                    f"[page](docs/sources/{s.id}.md) |")
    return "\n".join(rows)


def _checksums(f: FileEntry | Member) -> str:
    pins = [f"sha256 `{f.sha256}`" if f.sha256 else "", f"md5 `{f.md5}`" if f.md5 else "",
            f"git blob `{f.git_blob}`" if f.git_blob else ""]
    if isinstance(f, FileEntry) and f.zenodo is not None:
        pins.append("md5 from the Zenodo record at fetch time")
    if isinstance(f, FileEntry) and f.hf is not None:
        pins.append("sha256 from the Hub tree API at fetch time")
    return "<br>".join(p for p in pins if p) or "none pinned"


def _file(f: FileEntry) -> str:
    """The file's name, linked to where it is fetched from."""
    if f.zenodo is not None:
        return f"`{f.name}` (Zenodo record {f.zenodo.record})"
    if f.hf is not None:
        return f"`{f.name}` (Hub `{f.hf.repo}`, `{f.hf.path}`)"
    if f.gdrive is not None:
        return f"`{f.name}` (Google Drive file `{f.gdrive.id}`)"
    return f"[`{f.name}`]({f.url})"


def _known(f: FileEntry) -> str:
    if f.unverified:
        return f"**unverified**: {f.unverified}"
    return f.provenance or ""


def files_table(source: Source) -> str:
    """A source's pinned files (traces, then archives) as its docs page shows them."""
    rows = ["| trace | file | bytes | checksums | data rows | how the pins are known |",
            "|---|---|---:|---|---:|---|"]

    def num(n: int | None) -> str:
        return f"{n:,}" if n is not None else "unknown"

    for tid, tr in source.traces.items():
        if tr.member is not None:
            m = tr.member
            rows.append(f"| `{tid}` | `{m.path}` in archive `{m.archive}` | {num(m.size)} | "
                        f"{_checksums(m)} | {num(m.rows)} | |")
            continue
        assert tr.file is not None
        f = tr.file
        rows.append(f"| `{tid}` | {_file(f)} | {num(f.size)} | {_checksums(f)} | {num(f.rows)} "
                    f"| {_known(f)} |")
    for key, f in source.archives.items():
        rows.append(f"| archive `{key}` | {_file(f)} | {num(f.size)} | {_checksums(f)} | | "
                    f"{_known(f)} |")
    if len(rows) == 2 and source.discover is not None:
        return (f"No file is pinned in the registry: `llmtraces fetch {source.id}` reads the "
                f"list from Zenodo record {source.discover.zenodo} and checks each file "
                "against the record's size and md5.")
    return "\n".join(rows)


def main(repo: Path) -> None:
    (repo / "schemas" / "trace.schema.json").write_text(dumps_json_schema(), encoding="utf-8")
    (repo / "schemas" / "registry.schema.json").write_text(json_schema_text(), encoding="utf-8")
    (repo / "schemas" / "stats.schema.json").write_text(stats_schema_text(), encoding="utf-8")
    (repo / "schemas" / "release.schema.json").write_text(release_schema_text(),
                                                          encoding="utf-8")
    (repo / "schemas" / "bench-spec.schema.json").write_text(bench_spec_schema_text(),
                                                             encoding="utf-8")
    doc = repo / "docs" / "schema.md"
    doc.write_text(with_table(doc.read_text(encoding="utf-8")), encoding="utf-8")
    sources = list(load_registry(repo / "registry").values())
    readme = repo / "README.md"
    readme.write_text(with_section(readme.read_text(encoding="utf-8"), "sources",
                                   sources_table(sources)), encoding="utf-8")
    for s in sources:
        page = repo / "docs" / "sources" / f"{s.id}.md"
        page.write_text(with_section(page.read_text(encoding="utf-8"), "files", files_table(s)),
                        encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
