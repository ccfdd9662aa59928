"""What a source's licence forbids, said the same way by ``list``, ``info``, every export and
the release tooling (which must be able to leave restricted sources out)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .atomic import atomic_path
from .registry import Licence, Source

NO_REDISTRIBUTION = "no redistribution"
NON_COMMERCIAL = "non-commercial"


def restrictions(licence: Licence | dict[str, Any] | None) -> tuple[str, ...]:
    """The restrictive terms of a licence (registry model or the dict stored in trace
    metadata): ``("no redistribution", "non-commercial")``, or ``()`` for open data."""
    if licence is None:
        return ()
    terms = licence.model_dump() if isinstance(licence, Licence) else licence
    found = []
    if not terms.get("redistributable", True):
        found.append(NO_REDISTRIBUTION)
    if not terms.get("commercial_use", True):
        found.append(NON_COMMERCIAL)
    return tuple(found)


def notice(meta: dict[str, Any]) -> str | None:
    """One line to print with an export of a restricted trace, from its trace metadata."""
    terms = restrictions(meta.get("licence"))
    if not terms:
        return None
    lic = meta.get("licence") or {}
    source = meta.get("source") or (
        f"{meta.get('native_file')} ({meta['licence_source']} data)"
        if meta.get("licence_source") else meta.get("native_file")) or "this trace"
    what = []
    if NO_REDISTRIBUTION in terms:
        what.append("do not share or re-host this file or anything derived from it")
    if NON_COMMERCIAL in terms:
        what.append("non-commercial use only")
    return (f"licence: {source} is {lic.get('spdx', '?')} ({', '.join(terms)}): "
            f"{'; '.join(what)}. Terms: {lic.get('url', '?')}")


def sidecar_path(dest: Path) -> Path:
    """Where the licence note of an exported file goes: ``<file>.LICENCE.txt`` beside it."""
    return dest.with_name(dest.name + ".LICENCE.txt")


def write_sidecar(dest: Path, meta: dict[str, Any]) -> Path | None:
    """Beside an export of a restricted trace in a format with no room for metadata, a note
    of its licence, so the restriction travels with the file. None for open data."""
    line = notice(meta)
    if line is None:
        return None
    lic = meta.get("licence") or {}
    cite = (meta.get("citation") or {}).get("text", "")
    text = (f"{dest.name}: exported by llmtraces from {meta.get('source') or 'a trace'} "
            f"({meta.get('native_file')}).\n\n{line}\n\nCredit: {lic.get('attribution', '')}\n"
            f"Cite: {cite}\n")
    path = sidecar_path(dest)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def redistributable(sources: Iterable[Source], *, allow_non_commercial: bool = True
                    ) -> list[Source]:
    """The sources a public bundle (mirror, release, package data) may carry.

    Examples
    --------
    >>> import llmtraces
    >>> ids = [s.id for s in redistributable(llmtraces.sources())]
    >>> "azure-llm-2023" in ids
    True
    """
    return [s for s in sources if s.licence.redistributable
            and (allow_non_commercial or s.licence.commercial_use)]
