"""``.zenodo.json``: the Zenodo deposit *metadata object* of a release (what ``release
deposit`` PUTs as ``{"metadata": ...}``), mapped from CITATION.cff and the registry."""

from __future__ import annotations

import html
from typing import Any

from ..registry import Source
from .manifest import Manifest
from .project import Project

#: When the files carry several licences, the record's one licence id (the legacy API takes
#: one) is this, and the description lists each file's own; never Zenodo's CC0 default.
MIXED_LICENCE = "cc-by-4.0"


def record_licence(spdx_ids: set[str]) -> str:
    """Zenodo's (legacy, lower-case SPDX) licence id for a record holding these licences."""
    if len(spdx_ids) == 1:
        return next(iter(spdx_ids)).lower()
    return MIXED_LICENCE


def description(manifest: Manifest, sources: dict[str, Source]) -> str:
    """The record description in the HTML subset Zenodo accepts (p, ul/li, code, a)."""
    items = "".join(
        f"<li><code>{html.escape(f.key)}</code>: {f.rows:,} requests; "
        f"{html.escape(f.licence.spdx)}"
        + (" (non-commercial)" if f.non_commercial else "")
        + f"; {html.escape(f.licence.attribution)}</li>" for f in manifest.files)
    left = "".join(f"<li>{html.escape(e.source)}: {html.escape(e.reason)}</li>"
                   for e in manifest.excluded)
    text = (f"<p>Public LLM inference traces converted by llmtraces "
            f"{html.escape(manifest.build.llmtraces)} into one unified schema: one Parquet "
            "file per trace, one row per request. Each file keeps the licence of its upstream "
            "data (LICENSES.md); MANIFEST.json, SHA256SUMS and MD5SUMS let anyone check every "
            f"byte (<code>llmtraces release verify</code>).</p><ul>{items}</ul>")
    if left:
        text += ("<p>Not included (recipes.json says how to rebuild them locally):</p>"
                 f"<ul>{left}</ul>")
    return text


def zenodo_metadata(manifest: Manifest, sources: dict[str, Source], proj: Project
                    ) -> dict[str, Any]:
    """The deposit metadata. ``doi`` is never set (Zenodo mints it; the sandbox refuses the
    production prefix)."""
    used = sorted({f.source for f in manifest.files})
    related: list[dict[str, str]] = []
    for sid in used:
        related.append({"identifier": sources[sid].homepage, "relation": "isDerivedFrom",
                        "resource_type": "dataset", "scheme": "url"})
    for sid in used:
        doi = sources[sid].citation.doi
        if doi:
            related.append({"identifier": doi, "relation": "references",
                            "resource_type": "publication", "scheme": "doi"})
    return {
        "upload_type": "dataset",
        "title": f"llmtraces traces {manifest.release.version}: public LLM inference traces "
                 "in one schema",
        "creators": [a.zenodo() for a in proj.authors],
        "description": description(manifest, sources),
        "access_right": "open",
        "license": record_licence({f.licence.spdx for f in manifest.files}),
        "version": manifest.release.version,
        "publication_date": manifest.release.date,
        "keywords": list(proj.keywords),
        "related_identifiers": related,
        "references": [sources[sid].citation.text for sid in used],
        "notes": f"Made with {proj.software_title} {manifest.build.llmtraces}; per-file "
                 "licences in LICENSES.md.",
    }
