"""File checksums the registry can pin: sha256, md5 and git blob ids, computed in one pass."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

CHUNK = 1 << 20


class _Pinned(Protocol):
    size: int | None
    sha256: str | None
    md5: str | None
    git_blob: str | None


def compute(path: Path, kinds: tuple[str, ...] = ("sha256",)) -> dict[str, str]:
    """Hex digests of ``path`` for each of ``kinds`` (sha256, md5, git_blob), reading it once.

    A git blob id is ``sha1(b"blob <size>\\0" + content)``, i.e. what ``git hash-object`` prints.
    """
    hashers: dict[str, hashlib._Hash] = {}
    for kind in kinds:
        if kind == "git_blob":
            h = hashlib.sha1()
            h.update(b"blob %d\0" % path.stat().st_size)
            hashers[kind] = h
        elif kind in ("sha256", "md5"):
            hashers[kind] = hashlib.new(kind)
        else:
            raise ValueError(f"unknown checksum kind {kind!r}")
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            for h in hashers.values():
                h.update(chunk)
    return {k: h.hexdigest() for k, h in hashers.items()}


def strongest(entry: _Pinned) -> tuple[str, str] | None:
    """The strongest checksum the entry pins, as ``(kind, hexdigest)``: sha256, git blob, md5;
    None for a file whose registry entry is marked ``unverified``."""
    for kind in ("sha256", "git_blob", "md5"):
        value = getattr(entry, kind)
        if value:
            return kind, value
    return None


def mismatch(path: Path, entry: _Pinned) -> str | None:
    """Why ``path`` is not the pinned file (size first, then checksum), or None if it is."""
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        return f"size is {size:,} bytes, expected {entry.size:,}"
    pinned = strongest(entry)
    if pinned is None:
        return None
    kind, want = pinned
    got = compute(path, (kind,))[kind]
    if got != want:
        return f"{kind} is {got}, expected {want}"
    return None
