"""SHA256SUMS and MD5SUMS in coreutils format (``sha256sum -c`` checks them): one line per
file, ``<hex>  <name>``, sorted by name, covering every file of the folder but the two lists."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..fetching.checksums import compute
from .deposit_local import STATE_NAME
from .errors import ReleaseError
from .layout import MD5SUMS, SHA256SUMS, SUM_FILES, write_text


def file_hashes(path: Path) -> tuple[int, str, str]:
    """Size, sha256 and md5 of a file, read once (the fetch stack's checksums)."""
    digests = compute(path, ("sha256", "md5"))
    return path.stat().st_size, digests["sha256"], digests["md5"]


def listed_files(folder: Path) -> list[str]:
    """The names of the files the sums cover: every entry of ``folder`` but the two lists,
    sorted by their UTF-8 bytes (the order of ``LC_ALL=C ls``)."""
    names = [p.name for p in folder.iterdir()
             if p.name not in SUM_FILES and p.name != STATE_NAME]  # deposit's resume state
    return sorted(names, key=lambda n: n.encode("utf-8"))


def sums_text(entries: Iterable[tuple[str, str]]) -> str:
    """Coreutils checksum lines (text mode: two spaces) for ``(hex, name)`` pairs."""
    return "".join(f"{digest}  {name}\n" for digest, name in entries)


def write_sums(folder: Path) -> dict[str, tuple[int, str, str]]:
    """Write SHA256SUMS and MD5SUMS for every other file of ``folder``; returns name ->
    (bytes, sha256, md5)."""
    facts = {}
    for name in listed_files(folder):
        path = folder / name
        if not path.is_file() or path.is_symlink():
            raise ReleaseError(f"{path}: a release holds regular files only")
        facts[name] = file_hashes(path)
    write_text(folder / SHA256SUMS, sums_text((f[1], n) for n, f in facts.items()))
    write_text(folder / MD5SUMS, sums_text((f[2], n) for n, f in facts.items()))
    return facts


def read_sums(path: Path, width: int) -> dict[str, str]:
    """A coreutils checksum list: name -> hex digest of ``width`` characters; one line naming
    the list and the line that is not ``<hex>  <name>``."""
    out: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReleaseError(f"{path}: cannot read: {exc}") from None
    for number, line in enumerate(text.splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != width or not name or name.startswith("*") \
                or any(c not in "0123456789abcdef" for c in digest):
            raise ReleaseError(f"{path}:{number}: expected '<{width} hex digits>  <file "
                               f"name>', got {line[:80]!r}")
        if name in out:
            raise ReleaseError(f"{path}:{number}: {name} is listed twice")
        out[name] = digest
    return out
