"""``llmtraces release build``: fetch, convert and validate sources through the ordinary
pipeline, and lay out a deterministic, licence-aware release folder (or bundle).

Everything is written into a hidden staging folder beside the output, checked with
:func:`llmtraces.release.verify.verify_folder`, and renamed into place only at the end: a
failed build leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ..atomic import sweep_stale
from ..fetching.download import quiet_log
from ..licensing import NO_REDISTRIBUTION, NON_COMMERCIAL, restrictions
from ..paths import home
from ..registry import Licence, Source, load_registry
from ..schema import SCHEMA_VERSION
from .bundle import SUFFIX, opened_bundle, write_bundle
from .changelog import changelog
from .croissant import croissant
from .datapackage import datapackage
from .documents import citation_cff, readme
from .errors import ReleaseError
from .layout import (
    CHANGELOG,
    CITATION,
    CROISSANT,
    DATAPACKAGE,
    LICENSES,
    MANIFEST,
    PARQUET_OPTIONS,
    README,
    RECIPES,
    ZENODO,
    canonical_json,
    file_key,
    folder_name,
    write_text,
)
from .licences import licence_texts, licenses_md, select
from .manifest import (
    SEMVER,
    BuildInfo,
    CitationRef,
    Manifest,
    Native,
    ReleaseFile,
    ReleaseInfo,
    read_manifest,
)
from .parts import Fetching, Written, converted_part, write_part
from .project import Project, project
from .provenance import registry_sha256, release_date, tool_versions
from .recipes import recipe
from .sums import write_sums
from .verify import verify_folder
from .zenodo_meta import zenodo_metadata


@dataclass(frozen=True)
class BuildOptions:
    """What ``release build`` was asked for."""

    version: str
    sources: tuple[str, ...] | None = None  # None: every source (--all)
    date: str | None = None
    offline: bool = False
    mirror: str | None = None
    previous: Path | None = None
    allow_non_commercial: bool = False
    layout: str = "folder"
    show_progress: bool = False
    log: Callable[[str], None] = quiet_log


@dataclass(frozen=True)
class BuildResult:
    """Where the release went and what it holds."""

    path: Path
    manifest: Manifest

    @property
    def summary(self) -> str:
        """One line: files, requests, bytes and what was left out."""
        m = self.manifest
        text = (f"{len(m.files)} traces, {sum(f.rows for f in m.files):,} requests, "
                f"{sum(f.bytes for f in m.files):,} bytes of Parquet")
        if m.excluded:
            text += "; not included: " + ", ".join(f"{e.source} ({e.reason})"
                                                    for e in m.excluded)
        return text


def _previous(path: Path | None) -> Manifest | None:
    """The manifest of the previous release (a folder, its MANIFEST.json, or a bundle)."""
    if path is None:
        return None
    if path.is_file() and path.name.endswith(SUFFIX):
        with opened_bundle(path) as folder:
            return read_manifest(folder)
    return read_manifest(path)


def _entry(source: Source, trace_id: str, key: str, w: Written) -> ReleaseFile:
    """The manifest entry of one written trace, from its embedded metadata."""
    cite = w.meta.get("citation") or {}
    try:
        licence = Licence.model_validate(w.meta.get("licence"))
    except ValidationError:
        raise ReleaseError(f"{w.path.name}: its embedded licence metadata is missing or "
                           "malformed; convert the trace again") from None
    return ReleaseFile(
        key=key, source=source.id, trace=trace_id, bytes=w.bytes, sha256=w.sha256, md5=w.md5,
        rows=w.rows, content_sha256=w.content_sha256,
        native=Native(file=w.meta.get("native_file") or source.traces[trace_id].native_name,
                      sha256=w.meta.get("native_sha256")),
        licence=licence,
        citation=CitationRef(text=cite.get("text", source.citation.text),
                             doi=cite.get("doi", source.citation.doi)),
        non_commercial=not licence.commercial_use)


def _check_terms(part: Path, w: Written, allow_non_commercial: bool) -> None:
    """Refuse a converted part whose embedded licence forbids redistribution (or commercial
    use, without ``--allow-non-commercial``), whatever the registry says now."""
    terms = restrictions(w.meta.get("licence") or {"redistributable": False})
    if NO_REDISTRIBUTION in terms:
        raise ReleaseError(f"{part}: its embedded licence "
                           f"({(w.meta.get('licence') or {}).get('spdx', 'none')}) forbids "
                           "redistribution; it cannot go into a release (remove the file to "
                           "convert it again)")
    if NON_COMMERCIAL in terms and not allow_non_commercial:
        raise ReleaseError(f"{part}: its embedded licence forbids commercial use; pass "
                           "--allow-non-commercial to release it")


def _check_version(version: str) -> None:
    if not re.match(SEMVER, version):
        raise ReleaseError(f"--version {version!r}: expected a semantic version X.Y.Z "
                           "(e.g. 1.0.0)")


def build_release(opts: BuildOptions, output: Path, *, root: Path | None = None
                  ) -> BuildResult:
    """Build release ``opts.version`` into ``output``: ``llmtraces-traces-X.Y.Z/`` (or
    ``.tar.zst`` with ``layout="bundle"``). Nothing is written unless the whole build,
    verification included, succeeds; an existing release of that name is never replaced."""
    _check_version(opts.version)
    if opts.layout not in ("folder", "bundle"):
        raise ReleaseError(f"--layout {opts.layout!r}: expected folder or bundle")
    day, epoch = release_date(opts.date)
    registry = load_registry()
    chosen = select(registry, opts.sources, allow_non_commercial=opts.allow_non_commercial)
    previous = _previous(opts.previous)
    name = folder_name(opts.version)
    output = Path(output)
    final = output / (name + SUFFIX if opts.layout == "bundle" else name)
    if final.exists():
        raise ReleaseError(f"{final}: already exists; a release is never overwritten (remove "
                           "it or choose another --version)")
    how = Fetching(home(root), opts.offline, opts.mirror, opts.show_progress, opts.log)
    proj = project()
    output.mkdir(parents=True, exist_ok=True)
    prefix = f".{name}.build-"
    sweep_stale(output, prefix)
    staging = output / f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}" / name
    try:
        staging.mkdir(parents=True)
        files = []
        for source in chosen.data:
            for trace_id in source.traces:
                part = converted_part(source, trace_id, how)
                key = file_key(source.id, trace_id)
                written = write_part(part, staging / key)
                _check_terms(part, written, opts.allow_non_commercial)
                files.append(_entry(source, trace_id, key, written))
        versions = tool_versions()
        manifest = Manifest(
            schema_version=SCHEMA_VERSION,
            release=ReleaseInfo(version=opts.version, date=day),
            build=BuildInfo(**versions, registry_sha256=registry_sha256(),
                            source_date_epoch=epoch,
                            sources=tuple(sorted(opts.sources)) if opts.sources else ("--all",),
                            allow_non_commercial=opts.allow_non_commercial,
                            layout=opts.layout,  # type: ignore[arg-type]
                            parquet_options=dict(PARQUET_OPTIONS)),
            files=tuple(sorted(files, key=lambda f: f.key)), excluded=tuple(chosen.excluded))
        _write_documents(staging, manifest, registry, proj, previous)
        if chosen.recipes:
            write_text(staging / RECIPES, canonical_json(
                {"recipes": {s.id: recipe(s, how) for s in chosen.recipes}}))
        write_sums(staging)
        verify_folder(staging).raise_if_failed()
        if opts.layout == "bundle":
            write_bundle(staging, final, epoch)
        else:
            os.rename(staging, final)
    finally:
        shutil.rmtree(staging.parent, ignore_errors=True)
    return BuildResult(final, manifest)


def _write_documents(folder: Path, manifest: Manifest, registry: dict[str, Source],
                     proj: Project, previous: Manifest | None) -> None:
    """Every metadata file of a release but the sums and the recipes."""
    write_text(folder / MANIFEST, canonical_json(manifest.model_dump(mode="json")))
    write_text(folder / DATAPACKAGE, canonical_json(datapackage(manifest, registry, proj)))
    write_text(folder / CROISSANT, canonical_json(croissant(manifest, registry, proj)))
    write_text(folder / ZENODO, canonical_json(zenodo_metadata(manifest, registry, proj)))
    write_text(folder / README, readme(manifest, registry))
    write_text(folder / CITATION, citation_cff(manifest, registry, proj))
    write_text(folder / LICENSES, licenses_md(manifest, registry))
    write_text(folder / CHANGELOG, changelog(manifest, previous))
    for name, text in licence_texts(manifest).items():
        write_text(folder / name, text.read_text(encoding="utf-8"))
