"""The release's README.md and CITATION.cff, from the manifest, the registry and the project."""

from __future__ import annotations

import json

from ..registry import Source
from .layout import folder_name
from .manifest import Manifest
from .project import Project


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is a subset of YAML's)."""
    return json.dumps(text, ensure_ascii=False)


def citation_cff(manifest: Manifest, sources: dict[str, Source], proj: Project) -> str:
    """CITATION.cff of the dataset release: its authors, version, date, licences, and each
    source's paper as a reference."""
    lines = ["cff-version: 1.2.0",
             "message: " + _q("If you use these traces, cite this release and each trace's "
                              "paper (LICENSES.md lists them per file)."),
             "type: dataset",
             "title: " + _q(f"llmtraces traces {manifest.release.version}: public LLM "
                            "inference traces in one schema"),
             "version: " + _q(manifest.release.version),
             "date-released: " + _q(manifest.release.date),
             "authors:"]
    for a in proj.authors:
        person = a.cff()
        first, *rest = person.items()
        lines.append(f"  - {first[0]}: {_q(first[1])}")
        lines += [f"    {k}: {_q(v)}" for k, v in rest]
    spdx = sorted({f.licence.spdx for f in manifest.files})
    lines.append("license:")
    lines += [f"  - {_q(s)}" for s in spdx]
    lines.append("keywords:")
    lines += [f"  - {_q(k)}" for k in proj.keywords]
    used = sorted({f.source for f in manifest.files})
    lines.append("references:")
    for sid in used:
        c = sources[sid].citation
        who = c.text.split(". ", 1)[0]
        lines += ["  - type: generic", f"    title: {_q(c.text)}",
                  "    authors:", f"      - name: {_q(who)}",
                  f"    url: {_q(sources[sid].homepage)}"]
        if c.doi:
            lines.append(f"    doi: {_q(c.doi)}")
    return "\n".join(lines) + "\n"


def readme(manifest: Manifest, sources: dict[str, Source]) -> str:
    """README.md: what the release is, its files, how to check and use it, and whom to cite."""
    name = folder_name(manifest.release.version)
    rows = ["| file | requests | bytes | licence | source |", "|---|---:|---:|---|---|"]
    for f in manifest.files:
        nc = ", non-commercial" if f.non_commercial else ""
        rows.append(f"| `{f.key}` | {f.rows:,} | {f.bytes:,} | {f.licence.spdx}{nc} | "
                    f"[{sources[f.source].name}]({sources[f.source].homepage}) |")
    parts = [
        f"# {name}", "",
        f"Public LLM inference traces converted by llmtraces {manifest.build.llmtraces} into "
        f"its unified schema (schema version {manifest.schema_version}), released "
        f"{manifest.release.date}. One Parquet file per trace, one row per request; the "
        "columns are described in `datapackage.json` and `croissant.json`.", "",
        "\n".join(rows), "",
        "## Check it", "",
        "```", "sha256sum -c SHA256SUMS      # or: md5sum -c MD5SUMS",
        "llmtraces release verify .   # sizes, hashes, schemas, licences, row counts", "```",
        "",
        "## Use it", "",
        "Each file is plain Parquet (pyarrow, pandas, DuckDB, Polars, Spark read it). To use "
        "the release as a mirror of llmtraces' cache, so that `llmtraces.load(\"<source>/"
        "<trace>\")` works offline:", "",
        "```", "llmtraces release unpack .", "```", "",
        "## Licences and citation", "",
        "Every file keeps its upstream licence; `LICENSES.md` gives each file's licence, "
        "attribution and the changes made. Cite this release (`CITATION.cff`) and the paper of "
        "each trace you use:", ""]
    for sid in sorted({f.source for f in manifest.files}):
        c = sources[sid].citation
        parts.append(f"- {sid}: {c.text}" + (f" doi:{c.doi}" if c.doi else ""))
    if manifest.excluded:
        parts += ["", "## Not included", ""]
        for e in manifest.excluded:
            how = f" See `{e.recipe}` to rebuild it from your own copy." if e.recipe else ""
            parts.append(f"- {e.source}: {e.reason}.{how}")
    return "\n".join(parts) + "\n"
