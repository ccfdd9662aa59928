"""MANIFEST.json: what a release holds, declared as pydantic models; the JSON Schema
``schemas/release.schema.json`` is generated from them (``python -m llmtraces._generate``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..registry import Licence
from .errors import ReleaseError

SEMVER = r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$"
DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
SHA256 = r"^[0-9a-f]{64}$"
MD5 = r"^[0-9a-f]{32}$"
#: A file key: flat (no folder), ASCII, as :func:`llmtraces.release.layout.file_key` makes it.
KEY = r"^[a-z0-9][a-z0-9._-]*__[A-Za-z0-9._=+-]+\.parquet$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReleaseInfo(_Model):
    """The release itself: version, date and (once deposited) its DOIs."""

    version: str = Field(pattern=SEMVER, description="Semantic version, e.g. 1.0.0.")
    date: str = Field(pattern=DATE, description="Release date (YYYY-MM-DD, UTC), from --date, "
                      "SOURCE_DATE_EPOCH or the git commit; never the clock.")
    doi: str | None = Field(default=None, description="Version DOI, once deposited.")
    concept_doi: str | None = Field(default=None, description="Concept DOI (all versions).")


class BuildInfo(_Model):
    """What made the files: byte identity needs the same versions."""

    llmtraces: str
    python: str = Field(description="major.minor.micro")
    pyarrow: str
    zstandard: str
    libzstd: str
    registry_sha256: str = Field(pattern=SHA256, description="sha256 over the registry files "
                                 "(name, NUL, the file's sha256, newline; sorted by name).")
    source_date_epoch: int = Field(ge=0, description="The release date as seconds since the "
                                   "epoch: the mtime inside a bundle.")
    sources: tuple[str, ...] = Field(description="The source ids asked for.")
    allow_non_commercial: bool
    layout: Literal["folder", "bundle"]
    parquet_options: dict[str, object] = Field(description="The pinned Parquet writer options.")


class Native(_Model):
    """The native file a trace was converted from."""

    file: str
    sha256: str | None = Field(default=None, pattern=SHA256)


class CitationRef(_Model):
    """Whom to cite for a file."""

    text: str
    doi: str | None = None


class ReleaseFile(_Model):
    """One trace's Parquet file in the release."""

    key: str = Field(pattern=KEY, description="File name in the release: <source>__<trace>.parquet")
    source: str
    trace: str
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=SHA256)
    md5: str = Field(pattern=MD5)
    rows: int = Field(ge=0)
    content_sha256: str = Field(pattern=SHA256, description="sha256 of the rows as a canonical "
                                "Arrow IPC stream: independent of the Parquet encoding "
                                "(llmtraces.release.content_hash).")
    native: Native
    licence: Licence
    citation: CitationRef
    non_commercial: bool = Field(description="The licence forbids commercial use.")


class Excluded(_Model):
    """A source (or trace) asked for whose data is not in the release, and why."""

    source: str
    reason: str
    recipe: str | None = Field(default=None, description="Where its rebuild recipe is "
                               "(recipes.json#<source>).")


class Manifest(_Model):
    """MANIFEST.json."""

    manifest_version: Literal["1"] = "1"
    schema_version: str = Field(description="Unified trace schema version of the files.")
    release: ReleaseInfo
    build: BuildInfo
    files: tuple[ReleaseFile, ...] = Field(description="Sorted by key.")
    excluded: tuple[Excluded, ...] = ()


def json_schema_text() -> str:
    """The exact text of ``schemas/release.schema.json``, generated from :class:`Manifest`."""
    schema = Manifest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://llmtraces.org/schemas/release.schema.json"
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def read_manifest(path: Path) -> Manifest:
    """The MANIFEST.json at ``path`` (a release folder or the file itself); one line naming the
    file and the field when it is not one."""
    path = Path(path)
    if path.is_dir():
        path = path / "MANIFEST.json"
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise ReleaseError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ReleaseError(f"{path}: not a release manifest: {where}: {first['msg']}") from None
