"""Verification stamps: a cached file is hashed once against its pin, then trusted while its
size and mtime match the stamp written beside it (``<name>.verified``).

Kept apart from the download stack so that reporting what is cached (``llmtraces info``)
imports no HTTP client.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..paths import stamp_path
from .checksums import mismatch, strongest
from .sniff import sniff

if TYPE_CHECKING:
    from ..registry import FileEntry


def _pin(entry: FileEntry) -> tuple[str, str]:
    """The strongest pin; ``unpinned`` when neither a checksum nor a size is known."""
    if entry.size is None and strongest(entry) is None and entry.zenodo is None \
            and entry.hf is None:
        return ("unpinned", "")
    return strongest(entry) or ("size-only", str(entry.size))


def pin_kind(dest: Path) -> str | None:
    """What the cached file was checked against when it entered the cache (``sha256``,
    ``size-only``, ``unpinned``, ...), or None without a stamp."""
    stamp = _read_stamp(dest)
    kind = stamp.get("kind") if isinstance(stamp, dict) else None
    return str(kind) if isinstance(kind, str) else None


def write_stamp(dest: Path, entry: FileEntry) -> None:
    kind, digest = _pin(entry)
    st = dest.stat()
    stamp = stamp_path(dest)
    tmp = stamp.with_name(stamp.name + ".tmp")
    tmp.write_text(json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                               "kind": kind, "digest": digest}))
    os.replace(tmp, stamp)


def _read_stamp(dest: Path) -> object:
    """The verification stamp beside ``dest``, or None when absent or unreadable."""
    try:
        return json.loads(stamp_path(dest).read_text())
    except (OSError, ValueError):
        return None


def verified_by(dest: Path) -> str | None:
    """The checksum kind a cached file was verified with when it entered the cache (``sha256``,
    ``git_blob``, ``md5``, including pins the host gave at fetch time); None when it was
    checked by size only or has no stamp."""
    kind = pin_kind(dest)
    return kind if kind in ("sha256", "git_blob", "md5") else None


def is_cached(dest: Path, entry: FileEntry) -> bool:
    """True if ``dest`` is the pinned file; hashes once, then trusts a stamp of size and mtime."""
    if not dest.is_file() or entry.size not in (None, dest.stat().st_size):
        return False
    kind, digest = _pin(entry)
    st = dest.stat()
    stamp = _read_stamp(dest)
    if stamp == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "kind": kind, "digest": digest}:
        return True
    if (entry.zenodo is not None or entry.hf is not None) and strongest(entry) is None:
        # Pins live with the host (Zenodo, Hub): trust the stamp written when they were checked.
        return isinstance(stamp, dict) and stamp.get("size") == st.st_size and \
            stamp.get("mtime_ns") == st.st_mtime_ns
    if mismatch(dest, entry) is None and (strongest(entry) is not None
                                          or sniff(dest, entry) is None):
        write_stamp(dest, entry)
        return True
    return False

