"""croissant.json: the release as Croissant 1.1 JSON-LD (ML venues and mlcroissant read it):
one FileObject per Parquet file and one RecordSet per file over the unified columns."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from ..registry import Source
from ..schema import COLUMNS
from .manifest import Manifest
from .project import Project

CONFORMS_TO = "http://mlcommons.org/croissant/1.1"
#: The media type mlcroissant knows Parquet by (it does not know IANA's registered one).
PARQUET_ENCODING = "application/x-parquet"

#: The standard Croissant context (spec section "Croissant context"; the keys mlcroissant
#: 1.1.1 checks for).
CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isArray": "cr:isArray",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}


def _data_type(t: pa.DataType) -> tuple[str, bool]:
    """The Croissant dataType of an Arrow type, and whether it is a list (``isArray``)."""
    if pa.types.is_list(t):
        return _data_type(t.value_type)[0], True
    if pa.types.is_boolean(t):
        return "sc:Boolean", False
    if pa.types.is_integer(t):
        return "sc:Integer", False
    if pa.types.is_floating(t):
        return "sc:Float", False
    return "sc:Text", False


def _record_set(file_id: str) -> dict[str, Any]:
    name = file_id.removesuffix(".parquet")
    fields = []
    for c in COLUMNS:
        data_type, is_array = _data_type(c.type)
        field: dict[str, Any] = {
            "@type": "cr:Field", "@id": f"{name}/{c.name}", "name": c.name,
            "description": c.description, "dataType": data_type,
            "source": {"fileObject": {"@id": file_id}, "extract": {"column": c.name}},
        }
        if is_array:
            field["isArray"] = True
        fields.append(field)
    return {"@type": "cr:RecordSet", "@id": name, "name": name,
            "description": f"The requests of {file_id}, one per row.", "field": fields}


def croissant(manifest: Manifest, sources: dict[str, Source], proj: Project
              ) -> dict[str, Any]:
    """The Croissant 1.1 description of a release; ``contentUrl`` is relative to the folder
    of croissant.json (mlcroissant resolves it there). ``url`` is the DOI's once the release
    has one (a deposit stamps it); before that no URL exists to give."""
    licences = sorted({f.licence.url for f in manifest.files})
    cites = sorted({sources[f.source].citation.text for f in manifest.files})
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CONFORMS_TO,
        "name": f"llmtraces-traces-{manifest.release.version}",
        "description": "Public LLM inference traces converted into the llmtraces unified "
                       "schema: one Parquet file per trace, one row per request. Each file "
                       "keeps its upstream licence (LICENSES.md).",
        "version": manifest.release.version,
        "datePublished": manifest.release.date,
        "license": licences,
        "creator": [{"@type": "sc:Organization" if a.family is None else "sc:Person",
                     "name": a.name} for a in proj.authors],
        "keywords": list(proj.keywords),
        "citeAs": " ".join(cites),
        "isBasedOn": sorted({sources[f.source].homepage for f in manifest.files}),
        "distribution": [{"@type": "cr:FileObject", "@id": f.key, "name": f.key,
                          "contentUrl": f.key, "contentSize": f"{f.bytes} B",
                          "encodingFormat": PARQUET_ENCODING, "sha256": f.sha256}
                         for f in manifest.files],
        "recordSet": [_record_set(f.key) for f in manifest.files],
    }
    if manifest.release.doi:
        doc["url"] = f"https://doi.org/{manifest.release.doi}"
    return doc
