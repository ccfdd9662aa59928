"""`llmtraces registry update-hashes`: an upstream change is a one-command fix."""

from __future__ import annotations

import hashlib

import pytest
from click.testing import CliRunner
from conftest import CONV_NAME, SOURCE
from httpserver import Route

import llmtraces
from llmtraces.cli import main
from llmtraces.errors import DownloadError


def test_update_hashes_repins_a_changed_upstream(test_registry, server, conv_csv, home):
    changed = conv_csv.read_bytes() + b"\r\n2023-11-16 18:15:56.0000000,10,20"
    server.routes[f"/upstream/{CONV_NAME}"] = Route(changed)
    toml = test_registry / f"{SOURCE}.toml"
    before = toml.read_text(encoding="utf-8")
    with pytest.raises(DownloadError, match="a changed upstream"):
        llmtraces.fetch(SOURCE, "conv")

    result = CliRunner().invoke(main, ["registry", "update-hashes", SOURCE, "--trace", "conv",
                                       "-q"])
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
                                                      conv_csv):
    server.routes[f"/upstream/{CONV_NAME}"] = Route(conv_csv.read_bytes())
    result = CliRunner().invoke(main, ["registry", "update-hashes", SOURCE, "-q"])
    assert result.exit_code == 1 and "AzureLLMInferenceTrace_code.csv: HTTP 404" in result.output
    server.routes["/upstream/AzureLLMInferenceTrace_code.csv"] = Route(code_csv.read_bytes())
    toml = test_registry / f"{SOURCE}.toml"
    before = toml.read_text(encoding="utf-8")
    result = CliRunner().invoke(main, ["registry", "update-hashes", SOURCE, "-q"])
    assert result.exit_code == 0, result.output
    # Nothing changed upstream, so the pins are the same values (md5/git_blob now added).
    after = toml.read_text(encoding="utf-8")
    for line in before.splitlines():
        if line.startswith(("size = ", "sha256 = ")):
            assert line in after


def test_update_hashes_unknown_source(test_registry):
    result = CliRunner().invoke(main, ["registry", "update-hashes", "nope"])
    assert result.exit_code == 1 and "unknown source 'nope'" in result.output
