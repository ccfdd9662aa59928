"""Files generated from the code and the registry are current (python -m llmtraces._generate)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import REPO
from llmtraces._generate import files_table, main, sources_table, with_section
from llmtraces.registry import load_registry

GENERATED = ["README.md", "docs/schema.md", "schemas/trace.schema.json",
             "schemas/registry.schema.json",
             *(f"docs/sources/{sid}.md" for sid in sorted(load_registry(REPO / "registry")))]


def test_generated_files_are_current(tmp_path: Path) -> None:
    """Regenerating a copy of the repository changes nothing."""
    for rel in [*GENERATED, *(f"registry/{p.name}" for p in (REPO / "registry").glob("*.toml"))]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, tmp_path / rel)
    main(tmp_path)
    stale = [rel for rel in GENERATED
             if (tmp_path / rel).read_bytes() != (REPO / rel).read_bytes()]
    assert not stale, f"stale: {stale}; run `python -m llmtraces._generate`"


def test_every_source_has_a_page_with_its_files_table() -> None:
    for sid, source in load_registry(REPO / "registry").items():
        page = (REPO / "docs" / "sources" / f"{sid}.md").read_text(encoding="utf-8")
        assert files_table(source) in page, sid
    assert sources_table(list(load_registry(REPO / "registry").values())) in \
        (REPO / "README.md").read_text(encoding="utf-8")


def test_tables_carry_the_pins() -> None:
    reg = load_registry(REPO / "registry")
    burst = files_table(reg["burstgpt"])
    assert "52,283,111" in burst and "4bb3783693d0a435" in burst and "Git LFS oid" in burst
    assert "**unverified**" in burst  # without_fails_3 has no published checksum
    assert "**not redistributable**" in sources_table(list(reg.values()))


def test_a_page_without_markers_is_an_error() -> None:
    with pytest.raises(ValueError, match="no <!-- files:start -->"):
        with_section("# a page\n", "files", "| table |")
