"""Where things live: the cache home, its whole layout, and the files shipped in the package.

The cache, under :func:`home` (``$LLMTRACES_HOME`` or the user cache folder)::

    raw/<source-id>/<file>              a verified native file (or archive)
    raw/<source-id>/<file>.verified     its stamp: size, mtime and the pin it was checked against
    raw/<source-id>/<file>.part         a download in progress (resumed with Range)
    raw/<source-id>/<file>.lock         the lock one download holds
    raw/<source-id>/<file>.rejected     bytes that failed their check, kept for a look
    raw/<source-id>/.listing.json       a host's saved file list (``[discover]`` sources)
    raw/<source-id>/.members-*/         scratch for one archive member at a time
    parquet/source=<id>/trace=<trace>/part-0.parquet   a converted trace (Hive layout)
    tokenizers/hf/<repo>/<revision>/    tokenizer files fetched from the Hub

Every module asks here rather than joining names itself.
"""

from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parent


def home(override: str | os.PathLike[str] | None = None) -> Path:
    """Cache root: ``override``, else ``$LLMTRACES_HOME``, else the user cache directory."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("LLMTRACES_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs  # late: only this fallback needs it, and every command imports paths

    return Path(platformdirs.user_cache_dir("llmtraces"))


def raw_dir(source_id: str, root: Path) -> Path:
    """Folder holding the verified native files of one source."""
    return root / "raw" / source_id


def parquet_root(root: Path) -> Path:
    """Root of the Hive-partitioned dataset of converted traces."""
    return root / "parquet"


def converted_path(source_id: str, trace_id: str, root: Path,
                   dataset: Path | None = None) -> Path:
    """Where one converted trace goes: a Hive partition of ``dataset`` (default
    ``<root>/parquet``), i.e. ``source=<id>/trace=<trace>/part-0.parquet``."""
    base = dataset if dataset is not None else parquet_root(root)
    return base / f"source={source_id}" / f"trace={trace_id}" / "part-0.parquet"


def stamp_path(dest: Path) -> Path:
    """The verification stamp beside a cached file."""
    return dest.with_name(dest.name + ".verified")


def part_path(dest: Path) -> Path:
    """Where a download of ``dest`` lands until it is checked."""
    return dest.with_name(dest.name + ".part")


def lock_path(dest: Path) -> Path:
    """The lock file one download of ``dest`` holds (across threads and processes)."""
    return dest.with_name(dest.name + ".lock")


def rejected_path(part: Path) -> Path:
    """Where the bytes of a failed download are kept aside."""
    return part.with_name(part.name.removesuffix(".part") + ".rejected")


def listing_path(source_id: str, root: Path) -> Path:
    """A ``[discover]`` source's saved host file list."""
    return raw_dir(source_id, root) / ".listing.json"


#: Prefix of the scratch folders archive members are extracted into, inside ``raw_dir``.
MEMBERS_PREFIX = ".members-"


def tokenizer_dir(repo: str, revision: str, root: Path) -> Path:
    """Where a Hub tokenizer's files are cached."""
    return root / "tokenizers" / "hf" / repo.replace("/", "--") / revision.replace("/", "--")


def _packaged(name: str, repo_name: str) -> Path:
    # A wheel carries registry/ and schemas/ inside the package (pyproject force-include);
    # a source checkout or editable install reads them from the repository root.
    inside = _PKG / name
    return inside if inside.is_dir() else _PKG.parent / repo_name


def registry_dir() -> Path:
    """Folder of ``<source-id>.toml`` registry files: ``$LLMTRACES_REGISTRY``, else the shipped one.

    The override serves private or patched registries (and tests) with no code change.
    """
    env = os.environ.get("LLMTRACES_REGISTRY")
    return Path(env).expanduser() if env else _packaged("_registry", "registry")


def schemas_dir() -> Path:
    """Folder of the shipped JSON Schemas."""
    return _packaged("_schemas", "schemas")


def bundled_dir() -> Path:
    """Folder of trace files shipped in the package, laid out as ``<source-id>/<file-name>``."""
    return _PKG / "data"
