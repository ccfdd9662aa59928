"""Maintainers: re-pin a source's files after an upstream change, in one command.

:func:`update_hashes` downloads each file of a source through the normal download stack (with
its pins lifted, into a scratch folder, never the cache), measures its size, sha256, md5 and git
blob id, and rewrites exactly those fields of the registry file, keeping every comment and
other line. The rewritten file is validated before it replaces the old one.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_path
from ..paths import home, raw_dir, registry_dir
from ..registry import FileEntry, Source, get_source, load_dir, load_source_file
from .archive import DEFAULT_LIMIT, iter_members
from .checksums import compute
from .discover import with_discovered
from .download import Candidate, Log, candidate_urls, fetch, fetch_file, quiet_log
from .natives import resolve_members

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


def toml_table(*parts: str) -> str:
    """A TOML table name as the registry writes it: ``traces."lmsys_sps0.5".member``."""
    return ".".join(p if re.fullmatch(r"[A-Za-z0-9_-]+", p) else f'"{p}"' for p in parts)


def _header(table: str) -> re.Pattern[str]:
    """The header line of ``[table]`` however its keys are quoted: the registry may quote a
    key that needs no quotes (``[traces."lmsys_sps1".member]``)."""
    keys = [p.strip('"') for p in re.findall(r'"[^"]*"|[^.]+', table)]
    pattern = r"\s*\.\s*".join(rf'(?:{re.escape(k)}|"{re.escape(k)}")' for k in keys)
    return re.compile(rf"(?m)^\[\s*{pattern}\s*\]")


def pin_table(text: str, table: str, pin: Pin, after: str = "url") -> str:
    """Registry TOML ``text`` with the size and checksums of ``[table]`` set to ``pin``,
    written after its ``after`` key (``url`` for files, ``path`` for archive members)."""
    found = _header(table).search(text)
    if found is None:
        raise ValueError(f"no [{table}] table")
    start = found.start()
    end = text.find("\n[", start + 1)
    end = len(text) if end < 0 else end
    body = re.sub(rf"(?m)^({'|'.join(PINNED)}) = .*\n?", "", text[start:end])
    lines = (f"size = {pin.size}\nsha256 = \"{pin.sha256}\"\nmd5 = \"{pin.md5}\"\n"
             f"git_blob = \"{pin.git_blob}\"\n")
    body = re.sub(rf"(?m)^({after} = .*\n)", lambda m: m.group(1) + lines, body, count=1)
    return text[:start] + body + text[end:]


def _pin_members(source: Source, archive: Path, traces: dict[str, str], url: str,
                 text: str, pins: list[Pin]) -> str:
    """Pin the members of one downloaded archive (trace id -> member path) in ``text``."""
    names = resolve_members(archive, traces)
    entry = source.download(next(iter(traces)))
    for name, fh in iter_members(archive, limit=entry.unpacked_limit or DEFAULT_LIMIT):
        tid = names.get(name)
        if tid is None:
            continue
        copy = archive.with_name(archive.name + ".member")
        with copy.open("wb") as out:
            shutil.copyfileobj(fh, out, 1 << 20)
        pin = Pin(tid, f"{url}#{name}", copy.stat().st_size,
                  **compute(copy, ("sha256", "md5", "git_blob")))
        copy.unlink()
        text = pin_table(text, toml_table("traces", tid, "member"), pin, after="path")
        pins.append(pin)
    return text


def update_hashes(source_id: str, trace: str | None = None, *, registry: Path | None = None,
                  mirror: str | None = None, show_progress: bool = False,
                  log: Log = quiet_log) -> list[Pin]:
    """Download the files of ``source_id`` (or one trace) and rewrite their pins."""
    directory = registry or registry_dir()
    source = get_source(source_id, directory)
    path = directory / f"{source.id}.toml"
    text = path.read_text(encoding="utf-8")
    pins: list[Pin] = []
    with tempfile.TemporaryDirectory(prefix="llmtraces-repin-") as tmp:
        done: set[str] = set()
        for trace_id in source.select(trace):
            tr = source.traces[trace_id]
            entry = source.download(trace_id)
            if entry.name in done:
                continue
            done.add(entry.name)
            unpinned = entry.model_copy(update={
                "size": None, "sha256": None, "md5": None, "git_blob": None, "bundled": False,
                "unverified": "being re-pinned by `llmtraces registry update-hashes`"})
            dest = Path(tmp) / entry.name
            urls: list[Candidate] = [u for u in candidate_urls(source, entry, mirror)
                                     if not u.startswith("file://")]  # upstream, not our copy
            url = fetch_file(unpinned, dest, urls, show_progress=show_progress, log=log)
            got = compute(dest, ("sha256", "md5", "git_blob"))
            table = (toml_table("archives", tr.member.archive) if tr.member is not None
                     else toml_table("traces", trace_id, "file"))
            pin = Pin(trace_id if tr.member is None else tr.member.archive, url,
                      dest.stat().st_size, **got)
            text = pin_table(text, table, pin)
            pins.append(pin)
            members = {t: m.path for t in source.select(trace)
                       if (m := source.traces[t].member) is not None
                       and source.download(t).name == entry.name}
            if members:
                text = _pin_members(source, dest, members, url, text, pins)
            dest.unlink()
    if source.discover is not None and trace is None:
        text = _pin_discovered(source, text, mirror, show_progress, log, pins)
    with atomic_path(path) as new:
        new.write_text(text, encoding="utf-8")
        _validate(new, path.name)
    load_dir.cache_clear()  # the next lookup reads the new pins
    return pins


def _toml_file(table: str, entry: FileEntry, pin: Pin) -> str:
    """A ``[table]`` for a file of a Zenodo record, with its measured pins."""
    assert entry.zenodo is not None
    q = json.dumps  # a JSON string is a valid TOML basic string
    return (f"\n[{table}]\nname = {q(entry.name)}\nurl = {q(entry.url)}\n"
            f"zenodo = {{ record = {q(entry.zenodo.record)}, key = {q(entry.zenodo.key)} }}\n"
            f"size = {pin.size}\nsha256 = {q(pin.sha256)}\nmd5 = {q(pin.md5)}\n"
            f"git_blob = {q(pin.git_blob)}\n")


def _pin_discovered(source: Source, text: str, mirror: str | None, show_progress: bool,
                    log: Log, pins: list[Pin]) -> str:
    """Fetch the files a source's host lists (into the cache, checked against the host's
    size and md5) and write each one not yet in the registry as a pinned table: a trace, or
    an archive with one member trace per data file inside it."""
    root = home()
    fetched = fetch(source.id, root=root, mirror=mirror, show_progress=show_progress, log=log)
    full = with_discovered(source, root)
    q = json.dumps
    for key, entry in full.archives.items():
        if key in source.archives:
            continue
        local = raw_dir(source.id, root) / entry.name
        pin = Pin(key, entry.url, local.stat().st_size,
                  **compute(local, ("sha256", "md5", "git_blob")))
        text += _toml_file(toml_table("archives", key), entry, pin)
        pins.append(pin)
        members = {t: m.path for t, tr in full.traces.items()
                   if (m := tr.member) is not None and m.archive == key}
        for tid, member in members.items():
            text += (f"\n[{toml_table('traces', tid)}]\n"
                     f"description = {q(full.traces[tid].description)}\n"
                     f"\n[{toml_table('traces', tid, 'member')}]\narchive = {q(key)}\n"
                     f"path = {q(member)}\n")
        text = _pin_members(full, local, members, entry.url, text, pins)
    for tid, tr in full.traces.items():
        if tid in source.traces or tr.file is None:
            continue
        local = next(f.path for f in fetched if f.path.name == tr.file.name)
        pin = Pin(tid, tr.file.url, local.stat().st_size,
                  **compute(local, ("sha256", "md5", "git_blob")))
        text += (f"\n[{toml_table('traces', tid)}]\ndescription = {q(tr.description)}\n"
                 + _toml_file(toml_table("traces", tid, "file"), tr.file, pin))
        pins.append(pin)
    return text


def _validate(candidate: Path, name: str) -> None:
    # load_source_file checks that the id matches the file name, so check a same-named copy.
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / name
        copy.write_bytes(candidate.read_bytes())
        load_source_file(copy)
