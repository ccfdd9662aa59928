"""``llmtraces release build``: the issue's command offline from the cache, byte-identical
builds under different clocks, homes and working folders, licence rules (restricted sources
get a recipe, a restricted source alone or a restricted cached part aborts with nothing
written, non-commercial only when allowed), the changelog against a previous release, the
deterministic bundle, and the metadata files against their schemas."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import jsonschema
import pyarrow.parquet as pq
import pytest
import zstandard
from httpserver import LoopbackServer
from release_helpers import TRACES, populate

from conftest import Cli
from llmtraces.formats.parquet import read_metadata
from llmtraces.paths import converted_path
from llmtraces.registry import load_dir, load_registry
from llmtraces.release import provenance
from llmtraces.release.build import BuildOptions, build_release
from llmtraces.release.content_hash import content_sha256
from llmtraces.release.datapackage import profile
from llmtraces.release.errors import ReleaseError
from llmtraces.release.layout import write_pinned
from llmtraces.release.licences import select
from llmtraces.release.manifest import json_schema_text, read_manifest
from llmtraces.release.unpack import unpack_release

REPO = Path(__file__).resolve().parents[1]
NAME = "llmtraces-traces-1.0.0"
BOTH = ("azure-llm-2023", "mooncake")


@pytest.fixture()
def cached(tmp_path: Path, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch,
           home: Path) -> Path:
    """A test registry and a cache holding every trace of azure-llm-2023 and mooncake."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    return populate(tmp_path, server.url, monkeypatch, home)


def build(out: Path, *, version: str = "1.0.0", sources: tuple[str, ...] = BOTH,
          **options: object) -> Path:
    opts = BuildOptions(version=version, sources=sources, date="2026-12-01", offline=True,
                        **options)  # type: ignore[arg-type]
    return build_release(opts, out).path


def tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_the_issues_command_offline_from_the_cache(cached: Path, cli: Cli, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764547200")  # 2025-12-01 00:00 UTC
    monkeypatch.setenv("LLMTRACES_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    result = cli("release", "build", "--sources", "azure-llm-2023,mooncake", "--version",
                 "1.0.0", "-o", "dist")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "dist" / NAME
    assert "6 traces, 9,428 requests" in result.output
    names = {p.name for p in folder.iterdir()}
    assert names == {".zenodo.json", "CHANGELOG.md", "CITATION.cff", "LICENSES.md",
                     "LICENSE-Apache-2.0.txt",
                     "MANIFEST.json", "MD5SUMS", "README.md", "SHA256SUMS", "croissant.json",
                     "datapackage.json", *(f"{s}__{t}.parquet" for s, t in TRACES)}
    manifest = read_manifest(folder)
    assert manifest.release.date == "2025-12-01" and manifest.release.version == "1.0.0"
    assert {(f.source, f.trace): f.rows for f in manifest.files} == TRACES
    assert "Licence: Apache-2.0, https://github.com/kvcache-ai/Mooncake/blob/main/LICENSE-APACHE "\
        "(full text: `LICENSE-Apache-2.0.txt`)" in (folder / "LICENSES.md").read_text()
    assert (folder / "LICENSE-Apache-2.0.txt").read_text().count("Apache License") == 1
    for f in manifest.files:  # each file is a unified trace with its licence inside
        meta = read_metadata(folder / f.key)
        assert meta["licence"]["redistributable"] and meta["source"] == f.source
        assert pq.read_metadata(folder / f.key).num_rows == f.rows
    sums = (folder / "SHA256SUMS").read_text().splitlines()
    assert [line.split("  ")[1] for line in sums] == sorted(names - {"SHA256SUMS", "MD5SUMS"})
    text = "\n".join(p.read_text() for p in folder.iterdir() if not p.name.endswith("parquet"))
    for leak in (str(tmp_path), os.environ.get("USER") or "\0", os.uname().nodename):
        assert leak not in text


def test_sha256sum_and_md5sum_check_the_release(cached: Path, tmp_path: Path) -> None:
    folder = build(tmp_path / "dist")
    for tool, sums in (("sha256sum", "SHA256SUMS"), ("md5sum", "MD5SUMS")):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
        done = subprocess.run([tool, "-c", sums], cwd=folder, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.count(": OK") == len(list(folder.iterdir())) - 2
    (folder / "README.md").write_text("edited\n")
    done = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=folder, capture_output=True,
                          text=True)
    assert done.returncode == 1 and "README.md: FAILED" in done.stdout


def test_two_builds_are_byte_identical_under_other_clocks_homes_and_folders(
        cached: Path, tmp_path: Path, server: LoopbackServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = build(Path("one"))
    # A second cache in another home, another working folder, a clock ten years on, and
    # natives with other mtimes: nothing of it may reach the bytes.
    other_home = tmp_path / "b" / "home"
    other = tmp_path / "b"
    other.mkdir()
    monkeypatch.setenv("LLMTRACES_HOME", str(other_home))
    monkeypatch.setenv("HOME", str(other))
    populate(other, server.url, monkeypatch, other_home)
    for native in (other_home / "raw").rglob("*"):
        if native.is_file():
            os.utime(native, (1_000_000_000, 1_000_000_000))
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 10 * 365 * 86400)
    monkeypatch.chdir(other)
    second = build(Path("two"))
    assert second.resolve() != first.resolve()
    a, b = tree(tmp_path / first), tree(other / second)
    assert list(a) == list(b)
    assert [n for n in a if a[n] != b[n]] == []


def test_a_restricted_source_alone_fails_and_writes_nothing(cached: Path, cli: Cli,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "dist"
    result = cli("release", "build", "--sources", "lmsys-chat-1m", "--version", "1.0.0",
                 "--date", "2026-12-01", "--offline", "-o", str(out))
    assert result.exit_code == 1
    assert "nothing to release: lmsys-chat-1m may not be redistributed" in result.output
    assert not out.exists()


def test_restricted_sources_get_a_recipe_not_data(cached: Path, tmp_path: Path) -> None:
    folder = build(tmp_path / "dist", sources=("azure-llm-2023", "marconi", "lmsys-chat-1m"))
    manifest = read_manifest(folder)
    assert {f.source for f in manifest.files} == {"azure-llm-2023"}
    assert [(e.source, e.recipe) for e in manifest.excluded] == [
        ("lmsys-chat-1m", "recipes.json#lmsys-chat-1m"), ("marconi", "recipes.json#marconi")]
    recipes = json.loads((folder / "recipes.json").read_text())["recipes"]
    marconi = recipes["marconi"]
    assert len(marconi["traces"]) == 30 and marconi["licence"]["spdx"] == "CC-BY-NC-4.0"
    assert "llmtraces fetch marconi" in marconi["commands"]
    assert not any("marconi" in p.name or "lmsys" in p.name for p in folder.glob("*.parquet"))
    licences = (folder / "LICENSES.md").read_text()
    assert "marconi: CC-BY-NC-4.0: no redistribution" in licences
    assert "LICENSE-Apache-2.0.txt" not in licences and \
        not (folder / "LICENSE-Apache-2.0.txt").exists()  # only CC BY 4.0 data here


def test_a_restricted_part_in_the_cache_aborts_the_build(cached: Path, tmp_path: Path,
                                                         home: Path, cli: Cli) -> None:
    assert cli("convert", "azure-llm-2023", "--trace", "conv").exit_code == 0
    part = converted_path("azure-llm-2023", "conv", home)
    meta = read_metadata(part)
    meta["licence"] = {**meta["licence"], "redistributable": False}
    write_pinned(part, part, meta)  # as a conversion under an older, stricter registry
    out = tmp_path / "dist"
    with pytest.raises(ReleaseError, match=r"part-0.parquet: its embedded licence "
                                           r"\(CC-BY-4.0\) forbids redistribution"):
        build(out)
    assert list(out.iterdir()) == []  # no release, no staging folder


def test_non_commercial_only_when_allowed(cached: Path, tmp_path: Path) -> None:
    toml = cached / "mooncake.toml"
    toml.write_text(toml.read_text().replace("commercial_use = true", "commercial_use = false"))
    load_dir.cache_clear()  # the registry is read once per process
    with pytest.raises(ReleaseError, match="--sources mooncake: its licence .* forbids "
                                           "commercial use; pass --allow-non-commercial"):
        build(tmp_path / "a")
    folder = build(tmp_path / "b", allow_non_commercial=True)
    manifest = read_manifest(folder)
    assert {f.source for f in manifest.files if f.non_commercial} == {"mooncake"}
    assert "non-commercial use only" in (folder / "LICENSES.md").read_text()
    assert "Apache-2.0, non-commercial" in (folder / "README.md").read_text()


def test_selection_rules_for_all_sources() -> None:
    registry = load_registry(REPO / "registry")
    chosen = select(registry, None, allow_non_commercial=False)
    assert {s.id for s in chosen.recipes} == {"lmsys-chat-1m", "marconi", "llm-trace-archive"}
    assert {s.id for s in chosen.data} == set(registry) - {s.id for s in chosen.recipes}
    with pytest.raises(ReleaseError, match="unknown source 'nope'"):
        select(registry, ["nope"], allow_non_commercial=False)


def test_changelog_against_a_previous_manifest(cached: Path, tmp_path: Path) -> None:
    first = build(tmp_path / "v1")
    data = json.loads((first / "MANIFEST.json").read_text())
    files = {f["key"]: f for f in data["files"]}
    files["mooncake__arxiv.parquet"]["content_sha256"] = "0" * 64      # its rows changed
    files["mooncake__synthetic.parquet"]["sha256"] = "1" * 64          # only its bytes
    del files["azure-llm-2023__conv.parquet"]                          # new in 1.1.0
    files["gone__x.parquet"] = {**files["mooncake__toolagent.parquet"], "key": "gone__x.parquet"}
    data["files"] = sorted(files.values(), key=lambda f: f["key"])
    previous = tmp_path / "MANIFEST.json"
    previous.write_text(json.dumps(data))
    second = build(tmp_path / "v2", version="1.1.0", previous=previous)
    log = (second / "CHANGELOG.md").read_text()
    assert "## 1.1.0 (2026-12-01)" in log
    assert "Compared with 1.0.0 (2026-12-01): 1 added, 1 removed, 1 changed, 1 re-encoded, " \
           "3 unchanged." in log
    assert "- added `azure-llm-2023__conv.parquet` (9 requests)" in log
    assert "- removed `gone__x.parquet`" in log
    assert "- changed `mooncake__arxiv.parquet`" in log
    assert "- re-encoded `mooncake__synthetic.parquet`: same rows" in log
    # A previous release folder works too, and an equal one changes nothing.
    third = build(tmp_path / "v3", version="1.0.1", previous=first)
    assert "0 added, 0 removed, 0 changed, 0 re-encoded, 6 unchanged" in \
        (third / "CHANGELOG.md").read_text()


def test_the_bundle_is_deterministic_and_verifiable(cached: Path, tmp_path: Path, cli: Cli,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    a = build(tmp_path / "a", layout="bundle")
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 86400 * 999)
    b = build(tmp_path / "b", layout="bundle")
    assert a.name == f"{NAME}.tar.zst" and a.read_bytes() == b.read_bytes()
    assert zstandard.get_frame_parameters(a.read_bytes()[:18]).content_size > 0
    with a.open("rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as raw, \
            tarfile.open(fileobj=raw, mode="r|") as tar:
        members = [(m.name, m.mode, m.uid, m.gid, m.uname, m.mtime, m.pax_headers)
                   for m in tar]
    assert members[0] == (NAME, 0o755, 0, 0, "", 1796083200, {})
    assert [m[0] for m in members[1:]] == sorted(m[0] for m in members[1:])
    assert {m[1:-1] for m in members[1:]} == {(0o644, 0, 0, "", 1796083200)}
    assert all(m[-1] == {} for m in members)  # no PAX records: nothing but the fixed fields
    result = cli("release", "verify", str(a))
    assert result.exit_code == 0, result.output
    later = build(tmp_path / "c", version="1.0.1", previous=a)
    assert "6 unchanged" in (later / "CHANGELOG.md").read_text()
    unpacked = unpack_release(a, root=tmp_path / "mirror")
    assert sorted(p.parent.parent.name + "/" + p.parent.name for p in unpacked) == sorted(
        f"source={s}/trace={t}" for s, t in TRACES)


def test_the_metadata_files_validate(cached: Path, tmp_path: Path) -> None:
    folder = build(tmp_path / "dist")
    package = json.loads((folder / "datapackage.json").read_text())
    jsonschema.Draft7Validator(profile()).validate(package)
    assert package["$schema"] == "https://datapackage.org/profiles/2.0/datapackage.json"
    code = next(r for r in package["resources"] if r["path"] == "azure-llm-2023__code.parquet")
    assert code["licenses"][0]["name"] == "CC-BY-4.0" and code["hash"].startswith("sha256:")
    jsonschema.Draft202012Validator(json.loads(json_schema_text())).validate(
        json.loads((folder / "MANIFEST.json").read_text()))
    zenodo = json.loads((folder / ".zenodo.json").read_text())
    assert zenodo["upload_type"] == "dataset" and "doi" not in zenodo
    assert zenodo["license"] == "cc-by-4.0" and zenodo["publication_date"] == "2026-12-01"
    relations = {(r["relation"], r["identifier"]) for r in zenodo["related_identifiers"]}
    assert ("references", "10.1109/ISCA59077.2024.00019") in relations
    assert sum(r == "isDerivedFrom" for r, _ in relations) == 2
    crois = json.loads((folder / "croissant.json").read_text())
    assert crois["conformsTo"] == "http://mlcommons.org/croissant/1.1"
    assert {d["contentUrl"] for d in crois["distribution"]} == \
        {f"{s}__{t}.parquet" for s, t in TRACES}


def test_croissant_loads_in_mlcroissant(cached: Path, tmp_path: Path) -> None:
    mlc = pytest.importorskip("mlcroissant")
    folder = build(tmp_path / "dist")
    dataset = mlc.Dataset(jsonld=str(folder / "croissant.json"))
    records = list(dataset.records(record_set="azure-llm-2023__conv"))
    assert len(records) == 9
    first = records[0]
    assert first["azure-llm-2023__conv/input_tokens"] == pq.read_table(
        folder / "azure-llm-2023__conv.parquet").column("input_tokens")[0].as_py()
    (arxiv,) = [r for r in dataset.records(record_set="mooncake__arxiv")][:1]
    assert isinstance(arxiv["mooncake__arxiv/hash_ids"], list)


def test_the_content_hash_ignores_the_encoding(cached: Path, tmp_path: Path) -> None:
    folder = build(tmp_path / "dist", sources=("mooncake",))
    entry = read_manifest(folder).files[0]
    other = tmp_path / "other.parquet"
    pq.write_table(pq.read_table(folder / entry.key), other, compression="gzip",
                   row_group_size=7, use_dictionary=False)
    assert content_sha256(other) == (entry.content_sha256, entry.rows)
    done = subprocess.run([sys.executable, "-m", "llmtraces.release.content_hash", str(other)],
                          capture_output=True, text=True, check=True)
    assert done.stdout == f"{entry.content_sha256}  {entry.rows}  {other}\n"
    table = pq.read_table(other)
    pq.write_table(table.slice(1), other)
    assert content_sha256(other)[0] != entry.content_sha256


def test_the_committed_release_schema_is_current() -> None:
    assert (REPO / "schemas" / "release.schema.json").read_text() == json_schema_text()


def test_release_dates_never_come_from_the_clock(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert provenance.release_date("2026-02-28") == ("2026-02-28", 1772236800)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1772236800")
    assert provenance.release_date(None) == ("2026-02-28", 1772236800)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ReleaseError, match="SOURCE_DATE_EPOCH='yesterday'"):
        provenance.release_date(None)
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    monkeypatch.setattr(provenance, "_CHECKOUT", tmp_path)  # not a git checkout
    with pytest.raises(ReleaseError, match="no release date: pass --date"):
        provenance.release_date(None)
    with pytest.raises(ReleaseError, match="--date '2026-02-30': not a calendar date"):
        provenance.release_date("2026-02-30")


def test_bad_options_are_one_line_errors(cached: Path, cli: Cli, tmp_path: Path) -> None:
    out = str(tmp_path / "dist")
    result = cli("release", "build", "--sources", "mooncake", "--version", "1.0", "--date",
                 "2026-12-01", "-o", out)
    assert result.exit_code == 1 and "--version '1.0': expected a semantic version" in \
        result.output
    result = cli("release", "build", "--version", "1.0.0", "-o", out)
    assert result.exit_code == 2 and "give either --sources ID,... or --all" in result.output
    build(tmp_path / "dist", sources=("mooncake",))
    with pytest.raises(ReleaseError, match="already exists; a release is never overwritten"):
        build(tmp_path / "dist", sources=("mooncake",))
