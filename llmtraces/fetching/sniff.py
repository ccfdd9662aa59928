"""A look at a download's first bytes, for files whose checksum is not pinned: an HTML error
page, a Git LFS pointer or a JSON error object served with 200 in place of the trace is refused
rather than cached (with nothing pinned, nothing else would catch it)."""

from __future__ import annotations

import json
from pathlib import Path

from ..registry import FileEntry

_HEAD = 4096
_MAGIC = {".gz": b"\x1f\x8b", ".tgz": b"\x1f\x8b", ".zip": b"PK", ".parquet": b"PAR1"}


def _kind(name: str, entry: FileEntry) -> str:
    """The file's expected kind from its name: a binary suffix, ``.csv``, ``.jsonl``, or ``""``."""
    lower = name.lower()
    if entry.compression == "gzip":
        return ".gz"
    return next((s for s in (*_MAGIC, ".csv", ".jsonl") if lower.endswith(s)), "")


def _error_object(line: bytes) -> bool:
    """True for a small JSON object carrying an ``error``/``message`` field."""
    try:
        obj = json.loads(line)
    except ValueError:
        return False
    return isinstance(obj, dict) and len(obj) <= 4 and \
        bool({"error", "errors", "message", "detail"} & set(obj))


def sniff(path: Path, entry: FileEntry) -> str | None:
    """Why ``path`` cannot be the file ``entry`` names (an error page, a pointer), or None."""
    with path.open("rb") as fh:
        head = fh.read(_HEAD)
    kind = _kind(entry.name, entry)
    if kind in _MAGIC:
        if head.startswith(_MAGIC[kind]):
            return None
        expected = f"a {kind} file"
    else:
        expected = f"a {kind or 'data'} file"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<"):
        return f"the first bytes are an HTML/XML page ({shown(text)}), not {expected}"
    if text.startswith(b"version https://git-lfs"):
        return f"the file is a Git LFS pointer, not {expected}"
    if kind in _MAGIC:
        return f"the first bytes ({shown(text)}) are not those of {expected}"
    if text.startswith((b"{", b"[")) and (kind == ".csv" or _error_object(
            text.split(b"\n", 1)[0])):
        return f"the first bytes are a JSON error object ({shown(text)}), not {expected}"
    return None


def shown(head: bytes) -> str:
    """The first line of ``head``, short and printable, for a message."""
    line = head.split(b"\n", 1)[0][:60].decode("utf-8", "replace")
    return repr(line)
