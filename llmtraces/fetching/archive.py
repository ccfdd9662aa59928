"""Read members of a .tar / .tar.gz / .zip (e.g. Marconi's ``traces.tar.gz``) without
extracting it.

Only regular files are yielded. A member with an absolute path, a ``..`` component, or that is
a symlink, hardlink, device or FIFO is refused with an error naming it, before anything is
read, so a malicious archive can neither write outside a target nor point at other files. The
bytes read from members are bounded by ``limit``: a member (or the members together) larger
than that is refused as it is read, which guards against decompression bombs.
"""

from __future__ import annotations

import fnmatch
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, cast

from ..atomic import atomic_path
from ..errors import LLMTracesError
from ..text.limits import MAX_MEMBER_ENV, max_member_bytes, size_text

#: Default bound on the bytes read from an archive's members (64 GiB).
DEFAULT_LIMIT = 64 << 30
_CHUNK = 1 << 20


class UnsafeArchiveError(LLMTracesError):
    """An archive member that could write or read outside its place, or too many bytes."""


class CorruptArchiveError(LLMTracesError):
    """A member whose bytes do not match its header (CRC, size, truncated stream)."""


ZIP_MAGIC = b"PK\x03\x04"
#: Upper 16 bits of a zip entry's external attributes hold the Unix mode (type bits 0o170000).
_S_IFMT, _S_IFREG, _S_IFDIR = 0o170000, 0o100000, 0o040000


def is_archive(path: Path) -> bool:
    """True if ``path`` is a zip file or a (possibly compressed) tar archive."""
    path = Path(path)
    with path.open("rb") as fh:
        if fh.read(4) == ZIP_MAGIC:
            return True
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _is_zip(path: Path) -> bool:
    with Path(path).open("rb") as fh:
        return fh.read(4) == ZIP_MAGIC


def _check_path(archive: Path, name: str) -> None:
    where = f"{archive}: member {name!r}"
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{where}: absolute path refused")
    if ".." in path.parts or ".." in name.replace("\\", "/").split("/"):
        raise UnsafeArchiveError(f"{where}: '..' path component refused")


def _check(archive: Path, member: tarfile.TarInfo) -> None:
    """Refuse a member that is not a plain file at a plain relative path."""
    _check_path(archive, member.name)
    where = f"{archive}: member {member.name!r}"
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(f"{where}: link to {member.linkname!r} refused")
    if member.isdev() or member.isfifo():
        raise UnsafeArchiveError(f"{where}: device or FIFO refused")


def _check_size(archive: Path, name: str, size: int, budget: int, limit: int) -> None:
    """Refuse a member whose declared size is over the member cap or the archive's budget."""
    cap = max_member_bytes()
    if size > cap:
        raise UnsafeArchiveError(f"{archive}: member {name!r}: {size:,} bytes, over the "
                                 f"{size_text(cap)} a member may unpack to; refused (raise "
                                 f"{MAX_MEMBER_ENV} for a larger trace)")
    if size > budget:
        raise UnsafeArchiveError(f"{archive}: member {name!r}: {size:,} bytes, over the limit "
                                 f"of {limit:,}; refused")


class _Bounded:
    """A read-only file object that fails once the member's cap or the archive's byte budget
    is spent (a header may lie about the size)."""

    def __init__(self, raw: IO[bytes], archive: Path, name: str, budget: list[int]) -> None:
        self.raw, self.archive, self.name, self.budget = raw, archive, name, budget
        self.left = max_member_bytes()

    def read(self, size: int = -1) -> bytes:
        # tarfile never returns more than the member's declared size, checked against the budget
        try:
            data = self.raw.read(size if size is not None and size >= 0 else -1)
        except (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError) as exc:
            raise CorruptArchiveError(f"{self.archive}: member {self.name!r} is damaged or its "
                                      f"header lies about its size ({exc}); refused") from None
        self.budget[0] -= len(data)
        self.left -= len(data)
        if self.left < 0:
            raise UnsafeArchiveError(f"{self.archive}: member {self.name!r}: more than the "
                                     f"{size_text(max_member_bytes())} a member may unpack "
                                     f"to; refused (raise {MAX_MEMBER_ENV} for a larger "
                                     "trace)")
        if self.budget[0] < 0:
            raise UnsafeArchiveError(f"{self.archive}: member {self.name!r}: more bytes than "
                                     "the limit allows; refused")
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.raw.close()


def iter_members(path: Path, pattern: str = "*", *, limit: int = DEFAULT_LIMIT
                 ) -> Iterator[tuple[str, IO[bytes]]]:
    """Yield ``(name, file)`` for each regular-file member whose name matches ``pattern``.

    Every member is checked (matching or not) as it is reached; an unsafe one raises
    :class:`UnsafeArchiveError` (members before it have been yielded, none after).
    At most ``limit`` bytes are read from members in all; each file object is valid until the
    next member is yielded.
    """
    path = Path(path)
    budget = [limit]
    if _is_zip(path):
        yield from _iter_zip(path, pattern, limit, budget)
        return
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            _check(path, member)
            if not member.isfile() or not fnmatch.fnmatchcase(member.name, pattern):
                continue
            _check_size(path, member.name, member.size, budget[0], limit)
            raw = tar.extractfile(member)
            if raw is None:  # pragma: no cover - isfile() members always have data
                continue
            fh = _Bounded(raw, path, member.name, budget)
            try:
                yield member.name, cast(IO[bytes], fh)
            finally:
                fh.close()


def _zip_infos(path: Path, zf: zipfile.ZipFile) -> Iterator[zipfile.ZipInfo]:
    """The zip's file entries, each checked: no unsafe path, no symlink or special file."""
    for info in zf.infolist():
        _check_path(path, info.filename)
        kind = (info.external_attr >> 16) & _S_IFMT
        if info.is_dir() or kind == _S_IFDIR:
            continue
        if kind not in (0, _S_IFREG):
            raise UnsafeArchiveError(f"{path}: member {info.filename!r}: a link or special "
                                     "file refused")
        yield info


def _iter_zip(path: Path, pattern: str, limit: int, budget: list[int]
              ) -> Iterator[tuple[str, IO[bytes]]]:
    with zipfile.ZipFile(path) as zf:
        for info in _zip_infos(path, zf):
            if not fnmatch.fnmatchcase(info.filename, pattern):
                continue
            _check_size(path, info.filename, info.file_size, budget[0], limit)
            # zipfile stops at the declared size and checks the CRC; the budget bounds the rest.
            fh = _Bounded(zf.open(info), path, info.filename, budget)
            try:
                yield info.filename, cast(IO[bytes], fh)
            finally:
                fh.close()


def list_members(path: Path) -> list[str]:
    """Names of the archive's regular-file members, each checked like :func:`iter_members`."""
    path = Path(path)
    if _is_zip(path):
        with zipfile.ZipFile(path) as zf:
            return [info.filename for info in _zip_infos(path, zf)]
    names = []
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            _check(path, member)
            if member.isfile():
                names.append(member.name)
    return names


def extract_member(path: Path, name: str, dest: Path, *, limit: int = DEFAULT_LIMIT) -> Path:
    """Copy member ``name`` of the archive to ``dest`` atomically (complete or absent)."""
    for member, fh in iter_members(path, limit=limit):
        if member == name:
            with atomic_path(Path(dest)) as tmp, tmp.open("wb") as out:
                shutil.copyfileobj(fh, out, _CHUNK)
            return Path(dest)
    raise LLMTracesError(f"{path}: no regular file member {name!r}")
