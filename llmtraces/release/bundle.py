"""``--layout bundle``: the release folder as one deterministic ``.tar.zst``.

The tar is PAX, members sorted by the bytes of their path, regular files (0644) under one
folder (0755), owner and group 0 with empty names, every mtime the release's
SOURCE_DATE_EPOCH. It is written to a temporary file first so that the zstd frame carries its
content size, then compressed at :data:`LEVEL` with checksums and :data:`THREADS` worker
threads (any count >= 1 gives the same bytes; 0, the single-threaded API, would differ).
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import zstandard

from ..atomic import atomic_path
from .errors import ReleaseError

LEVEL = 10
THREADS = 1
SUFFIX = ".tar.zst"
_CHUNK = 1 << 20


def _info(name: str, epoch: int, *, size: int = 0, folder: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if folder else tarfile.REGTYPE
    info.mode = 0o755 if folder else 0o644
    info.size = 0 if folder else size
    info.mtime = epoch
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_bundle(folder: Path, dest: Path, epoch: int) -> None:
    """Pack release ``folder`` into ``dest`` (``<folder name>.tar.zst``), atomically."""
    names = sorted((p.name for p in folder.iterdir()), key=lambda n: n.encode("utf-8"))
    with tempfile.TemporaryFile(dir=dest.parent) as raw:
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(_info(folder.name, epoch, folder=True))
            for name in names:
                path = folder / name
                if not path.is_file() or path.is_symlink():
                    raise ReleaseError(f"{path}: a release holds regular files only")
                with path.open("rb") as fh:
                    tar.addfile(_info(f"{folder.name}/{name}", epoch,
                                      size=path.stat().st_size), fh)
        size = raw.tell()
        raw.seek(0)
        params = zstandard.ZstdCompressionParameters.from_level(
            LEVEL, threads=THREADS, write_checksum=True, write_content_size=True)
        compressor = zstandard.ZstdCompressor(compression_params=params)
        with atomic_path(dest) as tmp, tmp.open("wb") as out:
            with compressor.stream_writer(out, size=size, closefd=False) as writer:
                shutil.copyfileobj(raw, writer, _CHUNK)


@contextmanager
def opened_bundle(bundle: Path) -> Iterator[Path]:
    """The release folder inside ``bundle``, extracted into a temporary folder removed on exit
    (members are checked by tarfile's ``data`` filter: no links, devices or paths outside)."""
    if not bundle.name.endswith(SUFFIX):
        raise ReleaseError(f"{bundle}: expected a release folder or a {SUFFIX} bundle")
    with tempfile.TemporaryDirectory(prefix="llmtraces-bundle-") as tmp:
        try:
            with bundle.open("rb") as fh, \
                    zstandard.ZstdDecompressor().stream_reader(fh) as reader, \
                    tarfile.open(fileobj=reader, mode="r|") as tar:
                tar.extractall(tmp, filter="data")
        except (OSError, tarfile.TarError, zstandard.ZstdError) as exc:
            raise ReleaseError(f"{bundle}: not a readable {SUFFIX} bundle: {exc}") from None
        inside = [p for p in Path(tmp).iterdir()]
        if len(inside) != 1 or not inside[0].is_dir():
            raise ReleaseError(f"{bundle}: expected one release folder inside, found "
                               f"{', '.join(sorted(p.name for p in inside)) or 'nothing'}")
        yield inside[0]
