"""``llmtraces release unpack``: a release's traces back into the cache's Hive layout
(``parquet/source=<id>/trace=<trace>/part-0.parquet``), so that a published record serves as
a mirror of converted traces: ``llmtraces.load("<source>/<trace>")`` then reads them offline."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..atomic import atomic_path
from ..paths import converted_path, home
from .bundle import opened_bundle
from .manifest import read_manifest
from .verify import verify_folder


def _unpack_folder(folder: Path, root: Path) -> list[Path]:
    verify_folder(folder).raise_if_failed()  # only checked bytes reach the cache
    out = []
    for f in read_manifest(folder).files:
        dest = converted_path(f.source, f.trace, root)
        with atomic_path(dest) as tmp:
            shutil.copyfile(folder / f.key, tmp)
        out.append(dest)
    return out


def unpack_release(path: Path, *, root: Path | None = None) -> list[Path]:
    """Verify the release folder or bundle at ``path``, then copy each of its traces to its
    place in the cache at ``root`` (default: the cache home); returns the paths written."""
    path = Path(path)
    cache = home(root)
    if path.is_dir():
        return _unpack_folder(path, cache)
    with opened_bundle(path) as folder:
        return _unpack_folder(folder, cache)
