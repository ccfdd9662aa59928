"""CHANGELOG.md: what changed since a previous release (``--previous DIR|MANIFEST``), trace
by trace: added, removed, changed rows (content hash), or re-encoded (same rows, new bytes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .manifest import Manifest


@dataclass
class Changes:
    """Keys of the files in each class of change."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    reencoded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def compare(new: Manifest, old: Manifest) -> Changes:
    """Sort each file key of the two releases into its class of change."""
    before = {f.key: f for f in old.files}
    after = {f.key: f for f in new.files}
    out = Changes(added=sorted(after.keys() - before.keys()),
                  removed=sorted(before.keys() - after.keys()))
    for key in sorted(after.keys() & before.keys()):
        a, b = after[key], before[key]
        if a.content_sha256 != b.content_sha256:
            out.changed.append(key)
        elif a.sha256 != b.sha256:
            out.reencoded.append(key)
        else:
            out.unchanged.append(key)
    return out


def changelog(new: Manifest, old: Manifest | None) -> str:
    """CHANGELOG.md for ``new``; the first release (no ``old``) lists every file as added."""
    head = ["# Changelog", "", f"## {new.release.version} ({new.release.date})", ""]
    if old is None:
        body = ["First release: every file is new.", ""]
        body += [f"- added `{f.key}` ({f.rows:,} requests)" for f in new.files]
        return "\n".join(head + body) + "\n"
    after = {f.key: f for f in new.files}
    before = {f.key: f for f in old.files}
    ch = compare(new, old)
    body = [f"Compared with {old.release.version} ({old.release.date}): {len(ch.added)} added, "
            f"{len(ch.removed)} removed, {len(ch.changed)} changed, {len(ch.reencoded)} "
            f"re-encoded, {len(ch.unchanged)} unchanged.", ""]
    body += [f"- added `{k}` ({after[k].rows:,} requests)" for k in ch.added]
    body += [f"- removed `{k}`" for k in ch.removed]
    body += [f"- changed `{k}`: rows {before[k].rows:,} -> {after[k].rows:,}, content "
             f"{before[k].content_sha256[:12]} -> {after[k].content_sha256[:12]}"
             for k in ch.changed]
    body += [f"- re-encoded `{k}`: same rows (content {after[k].content_sha256[:12]}), new "
             f"bytes (sha256 {before[k].sha256[:12]} -> {after[k].sha256[:12]})"
             for k in ch.reencoded]
    tools = [name for name in ("llmtraces", "pyarrow", "zstandard", "libzstd")
             if getattr(new.build, name) != getattr(old.build, name)]
    if tools:
        body += ["", "Tool versions changed: " + ", ".join(
            f"{t} {getattr(old.build, t)} -> {getattr(new.build, t)}" for t in tools) + "."]
    if new.schema_version != old.schema_version:
        body += ["", f"Unified schema {old.schema_version} -> {new.schema_version}."]
    return "\n".join(head + body) + "\n"
