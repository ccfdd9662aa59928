"""`llmtraces registry update-hashes`: an upstream change is a one-command fix."""

from __future__ import annotations

import hashlib

import pytest
from httpserver import Route

import llmtraces
from conftest import CONV_NAME, SOURCE, Cli
from llmtraces.errors import DownloadError


def test_update_hashes_repins_a_changed_upstream(test_registry, server, conv_csv, home, cli: Cli):
    changed = conv_csv.read_bytes() + b"\r\n2023-11-16 18:15:56.0000000,10,20"
    server.routes[f"/upstream/{CONV_NAME}"] = Route(changed)
    toml = test_registry / f"{SOURCE}.toml"
    before = toml.read_text(encoding="utf-8")
    with pytest.raises(DownloadError, match="a changed upstream"):
        llmtraces.fetch(SOURCE, "conv")

    result = cli("registry", "update-hashes", SOURCE, "--trace", "conv", "-q")
    assert result.exit_code == 0, result.output
    sha = hashlib.sha256(changed).hexdigest()
    assert f"{SOURCE} conv: {len(changed):,} bytes, sha256 {sha}" in result.output
    after = toml.read_text(encoding="utf-8")
    assert f'sha256 = "{sha}"' in after and f"size = {len(changed)}" in after
    assert f'md5 = "{hashlib.md5(changed).hexdigest()}"' in after
    # Everything else is untouched: comments, quirks, the code file's pins.
    assert after.splitlines()[:3] == before.splitlines()[:3]
    assert 'sha256 = "54e9a6d2a4bd06ba1e060304b900abbc74cbea53de96506e60fe5bb4f2277fb6"' in after
    # Re-pinning downloads into a scratch folder, never into the cache.
    assert not (home / "raw" / SOURCE / CONV_NAME).exists()

    (got,) = llmtraces.fetch(SOURCE, "conv")
    assert got.path.read_bytes() == changed


def test_update_hashes_of_every_trace_needs_every_file(test_registry, server, code_csv,
                                                      conv_csv, cli: Cli):
    server.routes[f"/upstream/{CONV_NAME}"] = Route(conv_csv.read_bytes())
    result = cli("registry", "update-hashes", SOURCE, "-q")
    assert result.exit_code == 1 and "AzureLLMInferenceTrace_code.csv: HTTP 404" in result.output
    server.routes["/upstream/AzureLLMInferenceTrace_code.csv"] = Route(code_csv.read_bytes())
    toml = test_registry / f"{SOURCE}.toml"
    before = toml.read_text(encoding="utf-8")
    result = cli("registry", "update-hashes", SOURCE, "-q")
    assert result.exit_code == 0, result.output
    # Nothing changed upstream, so the pins are the same values (md5/git_blob now added).
    after = toml.read_text(encoding="utf-8")
    for line in before.splitlines():
        if line.startswith(("size = ", "sha256 = ")):
            assert line in after


def test_update_hashes_unknown_source(test_registry, cli: Cli):
    result = cli("registry", "update-hashes", "nope")
    assert result.exit_code == 1 and "unknown source 'nope'" in result.output


def test_pin_table_finds_a_table_whose_keys_are_quoted_needlessly():
    """registry/marconi.toml writes ``[traces."lmsys_sps1".member]``; the re-pin of that member
    (found by tests/test_docs.py running docs/sources/marconi.md) must find it."""
    from llmtraces.fetching.repin import Pin, pin_table, toml_table

    text = ('[traces."lmsys_sps1".member]\narchive = "traces"\npath = "traces/a.jsonl"\n\n'
            '[traces."lmsys_sps0.5".member]\npath = "traces/b.jsonl"\n')
    pin = Pin("lmsys_sps1", "u", 3, "ab" * 32, "cd" * 16, "ef" * 20)
    out = pin_table(text, toml_table("traces", "lmsys_sps1", "member"), pin, after="path")
    first, second = out.split("\n\n")
    assert "size = 3\n" in first and "size" not in second
    with pytest.raises(ValueError, match=r"no \[traces.lmsys_sps2.member\] table"):
        pin_table(text, toml_table("traces", "lmsys_sps2", "member"), pin, after="path")
