"""Who made a release and how to name it: read from the project's CITATION.cff (the source
checkout's), else from the installed package's metadata."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .._version import __version__
from .errors import ReleaseError

#: CITATION.cff of the checkout the package runs from; a wheel has none.
CITATION_CFF = Path(__file__).resolve().parents[2] / "CITATION.cff"
KEYWORDS = ("llm", "inference", "traces", "workload", "benchmark", "parquet")


@dataclass(frozen=True)
class Author:
    """A creator: a person (family and given names) or an entity (name)."""

    name: str
    family: str | None = None
    given: str | None = None
    orcid: str | None = None
    affiliation: str | None = None

    def zenodo(self) -> dict[str, str]:
        """Zenodo's creator object: ``{"name": "Family, Given", ...}``."""
        out = {"name": f"{self.family}, {self.given}" if self.family and self.given
               else self.name}
        if self.orcid:
            out["orcid"] = self.orcid.rsplit("/", 1)[-1]
        if self.affiliation:
            out["affiliation"] = self.affiliation
        return out

    def cff(self) -> dict[str, str]:
        """The CFF person or entity."""
        out = ({"family-names": self.family, "given-names": self.given}
               if self.family and self.given else {"name": self.name})
        if self.orcid:
            out["orcid"] = self.orcid
        if self.affiliation:
            out["affiliation"] = self.affiliation
        return out


@dataclass(frozen=True)
class Project:
    """The software that makes the release, and its authors (the dataset's creators)."""

    authors: tuple[Author, ...]
    keywords: tuple[str, ...]
    software_title: str
    software_version: str


def _author(entry: dict[str, Any]) -> Author:
    family, given = entry.get("family-names"), entry.get("given-names")
    name = entry.get("name") or " ".join(p for p in (given, family) if p)
    return Author(str(name), family, given, entry.get("orcid"), entry.get("affiliation"))


def project(path: Path = CITATION_CFF) -> Project:
    """The project facts from ``path`` (CITATION.cff) when it exists, else the package's
    metadata; a CITATION.cff that is not YAML with ``authors`` is an error naming it."""
    if path.is_file():
        try:
            import yaml  # type: ignore[import-untyped]  # lazy: optional, for CITATION.cff only
        except ImportError:
            raise ReleaseError(f"{path}: reading it needs PyYAML: pip install pyyaml") from None
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ReleaseError(f"{path}: not a readable CITATION.cff: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("authors"), list) \
                or not data["authors"]:
            raise ReleaseError(f"{path}: authors: expected a list of authors")
        return Project(tuple(_author(a) for a in data["authors"] if isinstance(a, dict)),
                       tuple(str(k) for k in data.get("keywords") or KEYWORDS),
                       str(data.get("title") or "llmtraces"),
                       str(data.get("version") or __version__))
    meta = metadata.metadata("llmtraces")
    names = (meta.get_all("Author") or []) + [
        e.split("<")[0].strip() for e in meta.get_all("Author-email") or []]
    author = next((n for n in names if n), "llmtraces developers")
    return Project((Author(author),), KEYWORDS, "llmtraces", __version__)
