"""datapackage.json: the release as a Data Package v2, with per-resource licences, sources
and hashes, validated against the v2 profile shipped in the package
(``llmtraces/data/datapackage.schema.json``, see ``datapackage.schema.md`` beside it)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import pyarrow as pa

from ..paths import bundled_dir
from ..registry import Source
from ..schema import COLUMNS
from .manifest import Manifest
from .project import Project

PROFILE_URL = "https://datapackage.org/profiles/2.0/datapackage.json"
PROFILE_FILE = "datapackage.schema.json"
#: IANA's registered media type for Parquet.
PARQUET_MEDIATYPE = "application/vnd.apache.parquet"


@lru_cache(maxsize=1)
def profile() -> dict[str, Any]:
    """The Data Package v2 profile (JSON Schema draft-07) shipped in the package."""
    loaded: dict[str, Any] = json.loads((bundled_dir() / PROFILE_FILE).read_text("utf-8"))
    return loaded


def _field_type(t: pa.DataType) -> dict[str, Any]:
    """A Table Schema field type for an Arrow type."""
    if pa.types.is_boolean(t):
        return {"type": "boolean"}
    if pa.types.is_integer(t):
        return {"type": "integer"}
    if pa.types.is_floating(t):
        return {"type": "number"}
    if pa.types.is_list(t):
        return {"type": "array"}
    return {"type": "string"}


def table_schema() -> dict[str, Any]:
    """The unified columns as a Table Schema (the same for every file)."""
    fields = []
    for c in COLUMNS:
        f: dict[str, Any] = {"name": c.name, "description": c.description, **_field_type(c.type)}
        constraints: dict[str, Any] = {}
        if not c.nullable:
            constraints["required"] = True
        if c.minimum is not None:
            constraints["minimum"] = c.minimum
        if constraints:
            f["constraints"] = constraints
        fields.append(f)
    return {"fields": fields, "primaryKey": ["request_id"]}


def _licence(spdx: str, url: str) -> dict[str, str]:
    return {"name": spdx, "path": url, "title": spdx}


def datapackage(manifest: Manifest, sources: dict[str, Source], proj: Project
                ) -> dict[str, Any]:
    """The Data Package descriptor of a release."""
    schema = table_schema()
    resources = []
    for f in manifest.files:
        src = sources[f.source]
        resources.append({
            "name": f.key.removesuffix(".parquet"), "path": f.key, "type": "table",
            "format": "parquet", "mediatype": PARQUET_MEDIATYPE, "bytes": f.bytes,
            "hash": f"sha256:{f.sha256}",
            "description": src.traces[f.trace].description,
            "licenses": [_licence(f.licence.spdx, f.licence.url)],
            "sources": [{"title": src.name, "path": src.homepage}],
            "schema": schema,
        })
    licences = {(f.licence.spdx, f.licence.url) for f in manifest.files}
    used = {f.source for f in manifest.files}
    return {
        "$schema": PROFILE_URL,
        "name": "llmtraces-traces",
        "title": f"llmtraces traces {manifest.release.version}",
        "description": "Public LLM inference traces converted into the llmtraces unified "
                       "schema: one Parquet file per trace, one row per request.",
        "version": manifest.release.version,
        "created": f"{manifest.release.date}T00:00:00Z",
        "keywords": list(proj.keywords),
        "licenses": [_licence(spdx, url) for spdx, url in sorted(licences)],
        "contributors": [{"title": a.name, "roles": ["creator"]} for a in proj.authors],
        "sources": [{"title": sources[s].name, "path": sources[s].homepage}
                    for s in sorted(used)],
        "resources": resources,
    }
