"""``release verify --rebuild``: convert every trace of a release again from its native file
and compare: the same bytes where the tool versions match, else the same rows and content
hash (a re-encoding is noted, a change of rows is a failure)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..fetching.download import fetch
from ..paths import home
from ..pipeline.convert import convert_source
from ..registry import get_source
from .manifest import read_manifest
from .parts import write_part
from .provenance import tool_versions
from .verdict import VerifyResult


def compare_rebuilt(folder: Path, result: VerifyResult, root: Path | None) -> None:
    """Reconvert each file of the release at ``folder`` from the cache (fetching a missing
    native as ``llmtraces fetch`` would) into a scratch folder, and record differences in
    ``result``."""
    manifest = read_manifest(folder)
    now = tool_versions()
    same_tools = all(now[k] == getattr(manifest.build, k)
                     for k in ("llmtraces", "pyarrow", "zstandard", "libzstd"))
    cache = home(root)
    with tempfile.TemporaryDirectory(prefix="llmtraces-rebuild-") as tmp:
        for f in manifest.files:
            source = get_source(f.source)
            fetch(source.id, f.trace, root=cache)
            ((_, part, _, _),) = convert_source(source.id, f.trace, root=cache,
                                                dataset=Path(tmp) / "dataset", strict=True)
            again = write_part(part, Path(tmp) / f.key)
            if again.sha256 == f.sha256:
                continue
            if again.content_sha256 != f.content_sha256 or again.rows != f.rows:
                result.fail(f.key, f"rebuilt from {f.native.file}: {again.rows} rows, "
                                   f"content {again.content_sha256[:12]}...; the release has "
                                   f"{f.rows} rows, content {f.content_sha256[:12]}...")
            elif same_tools:
                result.fail(f.key, "rebuilt with the same tool versions into different "
                                   f"bytes (sha256 {again.sha256[:12]}...): the build is not "
                                   "deterministic here")
            else:
                result.notes.append(
                    f"{f.key}: re-encoded by other tool versions (same rows and content "
                    f"hash, new bytes)")
