"""Shared by the release tests: a registry and cache holding every trace of azure-llm-2023 and
mooncake offline, from the repository's fixtures (the Azure 2023 code file shipped in the
package, the conv fixture, and four slices of the real Mooncake synthetic trace pinned as the
four Mooncake traces), so that ``release build --sources azure-llm-2023,mooncake`` runs with
no network, as a maintainer's cache would."""

from __future__ import annotations

from pathlib import Path

import pytest

import llmtraces
from conftest import CODE_NAME, FIXTURES, REPO, SOURCE, build_registry

MOONCAKE = FIXTURES / "mooncake" / "synthetic_trace.jsonl"
#: Mooncake trace -> (its file name, the lines of the synthetic fixture standing in for it).
MOONCAKE_SLICES = {"conversation": ("conversation_trace.jsonl", 0, 150),
                   "toolagent": ("toolagent_trace.jsonl", 150, 300),
                   "synthetic": ("synthetic_trace.jsonl", 300, 450),
                   "arxiv": ("mooncake_trace.jsonl", 450, 600)}
#: The traces such a release holds, with their rows.
TRACES = {("azure-llm-2023", "code"): 8819, ("azure-llm-2023", "conv"): 9,
          **{("mooncake", t): 150 for t in MOONCAKE_SLICES}}


def populate(tmp_path: Path, base_url: str, monkeypatch: pytest.MonkeyPatch, home: Path
             ) -> Path:
    """Set ``$LLMTRACES_REGISTRY`` to a test registry and fill the cache at ``home`` with the
    native files of azure-llm-2023 and mooncake; returns the registry folder."""
    lines = MOONCAKE.read_bytes().splitlines(keepends=True)
    natives = tmp_path / "natives"
    natives.mkdir()
    pins: dict[tuple[str, str], tuple[bytes, int]] = {
        (SOURCE, "conv"): ((FIXTURES / SOURCE / "conv_head.csv").read_bytes(), 9)}
    files: dict[tuple[str, str], Path] = {
        (SOURCE, "code"): REPO / "llmtraces" / "data" / SOURCE / CODE_NAME,
        (SOURCE, "conv"): FIXTURES / SOURCE / "conv_head.csv"}
    for trace, (name, start, stop) in MOONCAKE_SLICES.items():
        data = b"".join(lines[start:stop])
        pins[("mooncake", trace)] = (data, stop - start)
        (natives / name).write_bytes(data)
        files[("mooncake", trace)] = natives / name
    reg = build_registry(tmp_path / "registry", base_url, pins)
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(reg))
    for (source, trace), path in files.items():
        llmtraces.fetch(source, trace, root=home, file=path, offline=True)
    return reg
