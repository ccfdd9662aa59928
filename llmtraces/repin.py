"""Maintainers: re-pin a source's files after an upstream change, in one command.

:func:`update_hashes` downloads each file of a source through the normal download stack (with
its pins lifted, into a scratch folder, never the cache), measures its size, sha256, md5 and git
blob id, and rewrites exactly those fields of the registry file, keeping every comment and
other line. The rewritten file is validated before it replaces the old one.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_path
from .checksums import compute
from .download import Log, _quiet_log, candidate_urls, fetch_file
from .paths import registry_dir
from .registry import _load_dir, get_source, load_source_file

PINNED = ("size", "sha256", "md5", "git_blob", "unverified")


@dataclass(frozen=True)
class Pin:
    """What one file measured as."""

    trace: str
    url: str
    size: int
    sha256: str
    md5: str
    git_blob: str


def pin_table(text: str, table: str, pin: Pin) -> str:
    """Registry TOML ``text`` with the size and checksums of ``[table]`` set to ``pin``."""
    start = text.find(f"[{table}]")
    if start < 0:
        raise ValueError(f"no [{table}] table")
    end = text.find("\n[", start + 1)
    end = len(text) if end < 0 else end
    body = re.sub(rf"(?m)^({'|'.join(PINNED)}) = .*\n?", "", text[start:end])
    lines = (f"size = {pin.size}\nsha256 = \"{pin.sha256}\"\nmd5 = \"{pin.md5}\"\n"
             f"git_blob = \"{pin.git_blob}\"\n")
    body = re.sub(r"(?m)^(url = .*\n)", lambda m: m.group(1) + lines, body, count=1)
    return text[:start] + body + text[end:]


def update_hashes(source_id: str, trace: str | None = None, *, registry: Path | None = None,
                  mirror: str | None = None, show_progress: bool = False,
                  log: Log = _quiet_log) -> list[Pin]:
    """Download the files of ``source_id`` (or one trace) and rewrite their pins."""
    directory = registry or registry_dir()
    source = get_source(source_id, directory)
    path = directory / f"{source.id}.toml"
    text = path.read_text(encoding="utf-8")
    pins: list[Pin] = []
    with tempfile.TemporaryDirectory(prefix="llmtraces-repin-") as tmp:
        for trace_id, tr in source.select(trace).items():
            unpinned = tr.file.model_copy(update={
                "size": None, "sha256": None, "md5": None, "git_blob": None, "bundled": False,
                "unverified": "being re-pinned by `llmtraces registry update-hashes`"})
            dest = Path(tmp) / tr.file.name
            urls = [u for u in candidate_urls(source, tr.file, mirror)
                    if not u.startswith("file://")]  # the upstream, not our own copy
            url = fetch_file(unpinned, dest, urls, show_progress=show_progress, log=log)
            got = compute(dest, ("sha256", "md5", "git_blob"))
            pin = Pin(trace_id, url, dest.stat().st_size, **got)
            text = pin_table(text, f"traces.{trace_id}.file", pin)
            pins.append(pin)
            dest.unlink()
    with atomic_path(path) as new:
        new.write_text(text, encoding="utf-8")
        _validate(new, path.name)
    _load_dir.cache_clear()  # the next lookup reads the new pins
    return pins


def _validate(candidate: Path, name: str) -> None:
    # load_source_file checks that the id matches the file name, so check a same-named copy.
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / name
        copy.write_bytes(candidate.read_bytes())
        load_source_file(copy)
