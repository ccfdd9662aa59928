"""``python -m llmtraces._scaffold ID`` writes the four files of a new source, and no more."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from llmtraces._scaffold import main, scaffold
from llmtraces.errors import RegistryError
from llmtraces.registry import load_source_file


def test_writes_the_four_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["acme-chat-2026", "--format", "acme-jsonl", "--root", str(tmp_path)]) == 0
    names = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert names == ["docs/sources/acme-chat-2026.md", "llmtraces/formats/acme.py",
                     "registry/acme-chat-2026.toml", "tests/test_acme_chat_2026.py"]
    assert "wrote" in capsys.readouterr().out
    toml = tomllib.loads((tmp_path / "registry/acme-chat-2026.toml").read_text())
    assert toml["id"] == "acme-chat-2026" and toml["format"] == "acme-jsonl"
    module = (tmp_path / "llmtraces/formats/acme.py").read_text()
    compile(module, "acme.py", "exec")
    assert 'name = "acme-jsonl"' in module and "class AcmeFormat(NativeFormat)" in module
    compile((tmp_path / "tests/test_acme_chat_2026.py").read_text(), "t.py", "exec")
    assert "<!-- files:start -->" in (tmp_path / "docs/sources/acme-chat-2026.md").read_text()


def test_the_registry_skeleton_must_be_filled_in(tmp_path: Path) -> None:
    scaffold("acme", tmp_path)
    with pytest.raises(RegistryError, match="sha256"):
        load_source_file(tmp_path / "registry" / "acme.toml")


def test_without_a_format_no_module_and_auto(tmp_path: Path) -> None:
    paths = scaffold("acme", tmp_path)
    assert len(paths) == 3 and not (tmp_path / "llmtraces").exists()
    assert 'format = "auto"' in (tmp_path / "registry/acme.toml").read_text()


def test_refuses_to_overwrite_and_bad_ids(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    scaffold("acme", tmp_path)
    assert main(["acme", "--root", str(tmp_path)]) == 2
    assert "would overwrite" in capsys.readouterr().err
    assert main(["Acme Chat", "--root", str(tmp_path)]) == 2
    assert "expected lower-case" in capsys.readouterr().err
