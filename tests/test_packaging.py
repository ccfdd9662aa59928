"""Package metadata that users and citation tools read."""

from __future__ import annotations

import tomllib

import yaml

import llmtraces
from conftest import REPO


def test_citation_cff_is_cff_1_2_0_for_this_version():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors", "version", "license"):
        assert cff[key], key
    assert cff["version"] == llmtraces.__version__
    assert all("name" in a or "family-names" in a for a in cff["authors"])


def test_pyproject_declares_the_package():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["name"] == "llmtraces" and meta["version"] == llmtraces.__version__
    assert meta["requires-python"] == ">=3.11"
    assert meta["scripts"] == {"llmtraces": "llmtraces.cli:main"}
    assert {"test", "dev"} <= set(meta["optional-dependencies"])
