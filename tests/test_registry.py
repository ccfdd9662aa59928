"""Registry files: schema-valid, loud on malformed entries, and true to the published files."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

import jsonschema
import pytest

from conftest import REPO, SOURCE, Cli
from llmtraces.errors import RegistryError
from llmtraces.fetching.checksums import compute
from llmtraces.formats import check_formats
from llmtraces.paths import bundled_dir
from llmtraces.registry import json_schema_text, load_registry, load_source_file

REGISTRY = REPO / "registry"
GOOD = (REGISTRY / f"{SOURCE}.toml").read_text(encoding="utf-8")


def test_registry_schema_file_is_in_sync():
    committed = (REPO / "schemas" / "registry.schema.json").read_text(encoding="utf-8")
    assert committed == json_schema_text(), "run: python -m llmtraces._generate"


@pytest.mark.parametrize("path", sorted(REGISTRY.glob("*.toml")), ids=lambda p: p.stem)
def test_every_registry_file_validates(path: Path):
    schema = json.loads((REPO / "schemas" / "registry.schema.json").read_text())
    with path.open("rb") as fh:
        jsonschema.validate(tomllib.load(fh), schema)
    source = load_source_file(path)
    assert source.id == path.stem and source.citation.bibtex.startswith("@")


def bad_registry(tmp_path: Path, old: str, new: str) -> Path:
    assert old in GOOD
    d = tmp_path / "reg"
    d.mkdir()
    (d / f"{SOURCE}.toml").write_text(GOOD.replace(old, new, 1), encoding="utf-8")
    return d


@pytest.mark.parametrize(("old", "new", "field"), [
    ('sha256 = "54e9', 'sha256 = "XYZ', "traces.code.file.sha256"),
    ("size = 320117", 'size = "big"', "traces.code.file.size"),
    ("rows = 8819", "rows = -1", "traces.code.file.rows"),
    ('spdx = "CC-BY-4.0"', 'spdks = "CC-BY-4.0"', "licence.spdks"),
    ('kind = "absolute"', 'kind = "sometimes"', "time.kind"),
    ('url = "https://raw', 'url = "ftp://raw', "traces.code.file.url"),
    ('id = "azure-llm-2023"', 'id = "azure"', "id"),
])
def test_malformed_entry_names_file_and_field(tmp_path, old, new, field):
    d = bad_registry(tmp_path, old, new)
    with pytest.raises(RegistryError) as err:
        load_registry(d)
    assert f"{d / (SOURCE + '.toml')}: {field}" in str(err.value)


def test_unknown_reader_is_refused_where_the_source_is_read(tmp_path, monkeypatch, cli: Cli):
    """The registry is models only; convert checks the reader names, naming the field."""
    d = bad_registry(tmp_path, 'format = "azure-csv"', 'format = "excel"')
    source = load_registry(d)[SOURCE]
    with pytest.raises(RegistryError, match=r"registry entry azure-llm-2023: format: unknown "
                                            r"native format 'excel'"):
        check_formats(source)
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(d))
    result = cli("convert", SOURCE, "--trace", "code")
    assert result.exit_code != 0 and "format: unknown native format 'excel'" in result.output


def test_every_shipped_reader_name_exists():
    for source in load_registry().values():
        check_formats(source)


def test_file_without_checksum_is_refused(tmp_path):
    code_pins = ("54e9a6d2", "5429a38b", "62bd8109")  # the code file's three checksums
    text = "\n".join(line for line in GOOD.splitlines()
                     if not any(pin in line for pin in code_pins))
    d = tmp_path / "reg"
    d.mkdir()
    (d / f"{SOURCE}.toml").write_text(text, encoding="utf-8")
    with pytest.raises(RegistryError, match=r"traces.code.file: Value error, a file needs"):
        load_registry(d)


def test_bundling_needs_a_redistributable_licence(tmp_path):
    d = bad_registry(tmp_path, "redistributable = true", "redistributable = false")
    with pytest.raises(RegistryError, match="forbids redistribution"):
        load_registry(d)


def test_not_toml_is_refused(tmp_path):
    d = bad_registry(tmp_path, "[licence]", "[licence")
    with pytest.raises(RegistryError, match="not valid TOML"):
        load_registry(d)


def test_cli_fails_loudly_on_a_bad_registry(tmp_path, monkeypatch, cli: Cli):
    d = bad_registry(tmp_path, "rows = 8819", "rows = -1")
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(d))
    result = cli("list")
    assert result.exit_code == 1 and "traces.code.file.rows" in result.output


def test_azure_facts_match_the_real_file(code_csv: Path):
    source = load_registry(REGISTRY)[SOURCE]
    code = source.traces["code"].file
    assert (code.size, code.rows) == (320117, 8819)
    digests = compute(code_csv, ("sha256", "md5", "git_blob"))
    assert digests == {"sha256": code.sha256, "md5": code.md5, "git_blob": code.git_blob}
    conv = source.traces["conv"].file
    assert (conv.size, conv.rows) == (719188, 19366)
    for f in (code, conv):  # pinned to the commit that added the files, not to master
        assert "/790921015d50dd6aae7f7e47f39ba0e235ad6b08/" in f.url
    assert source.licence.spdx == "CC-BY-4.0" and source.licence.redistributable


@pytest.mark.parametrize("source_id", sorted(p.stem for p in REGISTRY.glob("*.toml")))
def test_bundled_copies_are_the_published_files(source_id: str):
    source = load_registry(REGISTRY)[source_id]
    for trace_id in source.traces:
        f = source.download(trace_id)
        path = bundled_dir() / source.id / f.name
        assert path.is_file() == f.bundled
        if f.bundled:
            assert hashlib.sha256(path.read_bytes()).hexdigest() == f.sha256
            assert (path.parent / "ATTRIBUTION.md").is_file()


def test_git_blob_checksum_matches_git(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"hello\n")
    # `printf 'hello\n' | git hash-object --stdin`
    assert compute(p, ("git_blob",))["git_blob"] == "ce013625030ba8dba906f756967f9e9ca394464a"
