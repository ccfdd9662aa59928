"""Where a source's native bytes are on disk: cached files, and archive members extracted one
at a time into a scratch folder beside the cache (so a 6 GB archive never unpacks whole).

Convert and validate both walk a source's traces through :func:`native_files`, so a trace
that is a member of a tarball is handled exactly like one that is a file of its own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from ..atomic import sweep_stale
from ..errors import InvalidTraceError
from ..paths import MEMBERS_PREFIX, raw_dir
from ..registry import Source
from ..text import named
from .archive import DEFAULT_LIMIT, iter_members, list_members
from .download import cached_path
from .stamps import is_cached, verified_by


def _normal(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def resolve_members(archive: Path, wanted: dict[str, str]) -> dict[str, str]:
    """Archive member name -> trace id, for ``wanted`` (trace id -> registry member path).

    A registry path is matched exactly (a leading ``./`` ignored on both sides), else by a
    unique member of the same file name: upstream archives differ in their top folder.
    A path that matches nothing, or whose file name matches several members, is an error.
    """
    names = list_members(archive)
    by_path = {_normal(n): n for n in names}
    by_name: dict[str, list[str]] = {}
    for n in names:
        by_name.setdefault(PurePosixPath(n).name, []).append(n)
    found: dict[str, str] = {}
    for trace_id, path in wanted.items():
        hit = by_path.get(_normal(path))
        if hit is None:
            same = by_name.get(PurePosixPath(path).name, [])
            if len(same) != 1:
                what = (f"several members are called {PurePosixPath(path).name}: {same}" if same
                        else f"it has {len(names)} file(s): {', '.join(names[:8])}"
                        + (", ..." if len(names) > 8 else ""))
                raise InvalidTraceError(f"{archive}: no member {path!r} for trace {trace_id}; "
                                        f"{what}")
            hit = same[0]
        found[hit] = trace_id
    return found


def split_cached(source: Source, trace_ids: list[str], root: Path
                 ) -> tuple[list[str], dict[str, Path]]:
    """The traces whose native file (or archive) is verified in the cache, and for the others
    the path their file would have: convert and validate use the first and name the second."""
    present, missing = [], {}
    for tid in trace_ids:
        entry = source.download(tid)
        dest = raw_dir(source.id, root) / entry.name
        if is_cached(dest, entry):
            present.append(tid)
        else:
            missing[tid] = dest
    return present, missing


def native_files(source: Source, trace_ids: list[str], root: Path
                 ) -> Iterator[tuple[str, Path, bool]]:
    """``(trace_id, path, verified)`` for each trace, in the order the bytes are reached.

    A trace with its own file yields its verified cached path. Archive members are extracted
    one at a time (each archive read once, whatever the number of its traces) into a scratch
    folder and deleted when the caller moves on; ``verified`` is False for them, since the
    member's own pins (if any) are checked when it is read. While a member is out, messages
    name it ``archive:member`` (:func:`llmtraces.text.label_of`), not its scratch copy.
    """
    by_archive: dict[str, dict[str, str]] = {}
    for tid in trace_ids:
        member = source.traces[tid].member
        if member is None:
            path = cached_path(source, tid, root)
            yield tid, path, verified_by(path) is not None
        else:
            by_archive.setdefault(member.archive, {})[tid] = member.path
    for key, wanted in by_archive.items():
        entry = source.archives[key]
        archive = cached_path(source, next(iter(wanted)), root)
        names = resolve_members(archive, wanted)
        scratch = raw_dir(source.id, root)
        sweep_stale(scratch, MEMBERS_PREFIX)  # scratch of killed runs (pid in the name)
        with tempfile.TemporaryDirectory(prefix=f"{MEMBERS_PREFIX}{os.getpid()}-",
                                         dir=scratch) as tmp:
            for name, fh in iter_members(archive, limit=entry.unpacked_limit or DEFAULT_LIMIT):
                found = names.get(name)
                if found is None:
                    continue
                path = Path(tmp) / PurePosixPath(name).name
                with path.open("wb") as out:
                    shutil.copyfileobj(fh, out, 1 << 20)
                try:
                    # Messages name the archive and the member, not the scratch copy.
                    with named(path, f"{archive}:{name}"):
                        yield found, path, False
                finally:
                    path.unlink(missing_ok=True)
