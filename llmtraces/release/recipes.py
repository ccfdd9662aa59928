"""recipes.json: for each source whose licence forbids redistribution, how a holder of the
data rebuilds its part of the release and checks it: the commands, and the expected native
pins, rows and content hash of every trace (a hash reveals nothing of the data)."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from ..fetching.discover import with_discovered
from ..fetching.natives import split_cached
from ..paths import registry_dir
from ..registry import Source
from .parts import Fetching, converted_part, write_part


def _native(source: Source, trace_id: str) -> dict[str, Any]:
    pins = source.traces[trace_id].pins
    return {"file": pins.name, "bytes": pins.size, "sha256": pins.sha256, "md5": pins.md5,
            "git_blob": pins.git_blob, "rows": pins.rows}


def recipe(source: Source, how: Fetching) -> dict[str, Any]:
    """The recipe of one restricted source. Traces whose native file is in the cache get
    their expected ``rows``, ``sha256`` (of the release-pinned Parquet bytes) and
    ``content_sha256``, computed in a scratch folder that is deleted; others get null, with
    the registry's native pins to check the download against."""
    toml = registry_dir() / f"{source.id}.toml"
    source = with_discovered(source, how.root)  # a [discover] source's saved file list
    cached, _ = split_cached(source, list(source.traces), how.root)
    traces: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="llmtraces-recipe-") as tmp:
        for trace_id in source.traces:
            expected = None
            if trace_id in cached:
                part = converted_part(source, trace_id, Fetching(
                    how.root, True, None, how.show_progress, how.log))
                written = write_part(part, Path(tmp) / f"{trace_id}.parquet")
                written.path.unlink()
                expected = {"rows": written.rows, "sha256": written.sha256,
                            "content_sha256": written.content_sha256}
            traces[trace_id] = {"native": _native(source, trace_id), "expected": expected}
    return {
        "source": source.id,
        "name": source.name,
        "reason": "the licence forbids redistribution: the data is not in this release",
        "licence": {"spdx": source.licence.spdx, "url": source.licence.url,
                    "attribution": source.licence.attribution},
        "citation": {"text": source.citation.text, "doi": source.citation.doi},
        "registry_file_sha256": hashlib.sha256(toml.read_bytes()).hexdigest()
        if toml.is_file() else None,
        "commands": [f"llmtraces info {source.id}", f"llmtraces fetch {source.id}",
                     f"llmtraces convert {source.id}",
                     f"python -m llmtraces.release.content_hash "
                     f"<home>/parquet/source={source.id}/trace=<trace>/part-0.parquet"],
        "check": "the content_sha256 and rows printed by the last command must equal "
                 "traces.<trace>.expected (null: not computed by the release maker)",
        "traces": traces,
    }
