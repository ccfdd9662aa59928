"""``llmtraces release verify`` and ``unpack``: a good release passes (folder, JSON output,
``--rebuild``); a flipped byte, an unlisted or missing file, a planted restricted Parquet file,
a manifest or datapackage against its schema, and a wrong row count each fail and name the
file; ``unpack`` makes a release a mirror that ``llmtraces.load`` reads offline."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from httpserver import LoopbackServer
from release_helpers import TRACES, populate

import llmtraces
from conftest import Cli
from llmtraces.formats.parquet import read_metadata
from llmtraces.release.build import BuildOptions, build_release
from llmtraces.release.content_hash import content_sha256
from llmtraces.release.errors import ReleaseError
from llmtraces.release.layout import write_pinned
from llmtraces.release.sums import file_hashes, write_sums
from llmtraces.release.unpack import unpack_release
from llmtraces.release.verify import verify_release

NAME = "llmtraces-traces-1.0.0"
OPTIONS = BuildOptions(version="1.0.0", sources=("azure-llm-2023", "mooncake"),
                       date="2026-12-01", offline=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One release of azure-llm-2023 and mooncake, built once for the module."""
    tmp = tmp_path_factory.mktemp("built")
    server = LoopbackServer().start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("LLMTRACES_HOME", str(tmp / "home"))
            populate(tmp, server.url, mp, tmp / "home")
            yield build_release(OPTIONS, tmp / "dist").path
    finally:
        server.stop()


@pytest.fixture()
def release(built: Path, tmp_path: Path) -> Path:
    """A private copy of the built release, free to damage."""
    return Path(shutil.copytree(built, tmp_path / NAME))


def failed_files(cli: Cli, folder: Path) -> tuple[int, list[str], str]:
    result = cli("release", "verify", str(folder), "--json")
    data = json.loads(result.output)
    return result.exit_code, data["failed_files"], " | ".join(
        p["problem"] for p in data["problems"])


def test_a_good_release_passes(release: Path, cli: Cli) -> None:
    result = cli("release", "verify", str(release))
    assert result.exit_code == 0, result.output
    assert f"{NAME}: 15 files checked, all good" in result.output
    code, bad, _ = failed_files(cli, release)
    assert (code, bad) == (0, [])


@pytest.mark.parametrize("name", ["mooncake__arxiv.parquet", "README.md", ".zenodo.json",
                                  "MANIFEST.json"])
def test_a_flipped_byte_names_the_file(release: Path, cli: Cli, name: str) -> None:
    path = release / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    result = cli("release", "verify", str(release))
    assert result.exit_code == 1
    assert f"{NAME}/{name}: SHA256SUMS says" in result.output
    assert "FAILED: " in result.output and name in result.output.splitlines()[-1]


def test_unlisted_and_missing_files_fail(release: Path, cli: Cli) -> None:
    (release / "notes.txt").write_text("extra\n")
    (release / "azure-llm-2023__conv.parquet").unlink()
    code, bad, problems = failed_files(cli, release)
    assert code == 1
    assert bad == ["azure-llm-2023__conv.parquet", "notes.txt"]
    assert "not listed in SHA256SUMS" in problems and "listed in SHA256SUMS but missing" in \
        problems and "listed in MANIFEST.json but missing" in problems


def _replace(release: Path, key: str, meta_change: dict[str, object]) -> None:
    """Rewrite one Parquet file with changed trace metadata, then update every hash that
    covers it so that only the change itself can fail."""
    path = release / key
    meta = read_metadata(path)
    meta.update(meta_change)
    write_pinned(path, path, meta)
    rehash(release, key)


def rehash(release: Path, key: str, **manifest_change: object) -> None:
    """Make MANIFEST.json, datapackage.json and the sums agree with the file ``key`` as it
    now is (with ``manifest_change`` to its manifest entry)."""
    size, sha, md5 = file_hashes(release / key)
    manifest = json.loads((release / "MANIFEST.json").read_text())
    (entry,) = [f for f in manifest["files"] if f["key"] == key]
    entry.update(bytes=size, sha256=sha, md5=md5, **manifest_change)
    (release / "MANIFEST.json").write_text(json.dumps(manifest))
    package = json.loads((release / "datapackage.json").read_text())
    (resource,) = [r for r in package["resources"] if r["path"] == key]
    resource.update(bytes=size, hash=f"sha256:{sha}")
    (release / "datapackage.json").write_text(json.dumps(package))
    write_sums(release)


def test_a_planted_restricted_parquet_file_fails(release: Path, cli: Cli) -> None:
    meta = read_metadata(release / "mooncake__synthetic.parquet")
    _replace(release, "mooncake__synthetic.parquet",
             {"licence": {**meta["licence"], "redistributable": False}})
    code, bad, problems = failed_files(cli, release)
    assert (code, bad) == (1, ["mooncake__synthetic.parquet"])
    assert "its embedded licence (Apache-2.0) forbids redistribution" in problems
    with pytest.raises(ReleaseError, match="mooncake__synthetic.parquet: its embedded "
                                           "licence"):
        unpack_release(release)  # nothing restricted reaches a cache either


def test_a_non_commercial_file_must_say_so(release: Path, cli: Cli) -> None:
    meta = read_metadata(release / "azure-llm-2023__conv.parquet")
    _replace(release, "azure-llm-2023__conv.parquet",
             {"licence": {**meta["licence"], "commercial_use": False}})
    code, bad, problems = failed_files(cli, release)
    assert (code, bad) == (1, ["azure-llm-2023__conv.parquet"])
    assert "forbids commercial use, and MANIFEST.json does not say so" in problems


def test_a_wrong_row_count_fails(release: Path, cli: Cli) -> None:
    manifest = json.loads((release / "MANIFEST.json").read_text())
    manifest["files"][0]["rows"] += 1
    (release / "MANIFEST.json").write_text(json.dumps(manifest))
    write_sums(release)
    code, bad, problems = failed_files(cli, release)
    assert (code, bad) == (1, ["azure-llm-2023__code.parquet"])
    assert "8819 rows in the file, 8820 in MANIFEST.json" in problems


def test_schemas_are_checked(release: Path, cli: Cli) -> None:
    manifest = json.loads((release / "MANIFEST.json").read_text())
    manifest["release"]["version"] = "one"
    (release / "MANIFEST.json").write_text(json.dumps(manifest))
    package = json.loads((release / "datapackage.json").read_text())
    package["resources"][0]["bytes"] = "many"
    (release / "datapackage.json").write_text(json.dumps(package))
    write_sums(release)
    code, bad, problems = failed_files(cli, release)
    assert (code, bad) == (1, ["MANIFEST.json", "datapackage.json"])
    assert "not valid against release.schema.json: release/version: 'one' does not match" \
        in problems
    assert "not valid against the Data Package v2 profile: resources/0/bytes: 'many' is " \
           "not of type 'integer'" in problems


def test_bad_checksum_lists_fail_in_one_line(release: Path, cli: Cli) -> None:
    (release / "MD5SUMS").write_text("xyz  README.md\n")
    code, bad, problems = failed_files(cli, release)
    assert code == 1 and "MD5SUMS" in bad
    assert problems == "line 1: expected '<32 hex digits>  <file name>', got 'xyz  README.md'"


def test_rebuild_compares_with_a_fresh_conversion(
        release: Path, tmp_path: Path, server: LoopbackServer, home: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    populate(tmp_path, server.url, monkeypatch, home)
    result = verify_release(release, rebuild=True)
    assert result.ok, result.lines()
    # A release whose rows differ from what its natives give is caught by the rebuild: the
    # conv file is replaced by the code file's rows under the conv name, hashes updated.
    conv = release / "azure-llm-2023__conv.parquet"
    meta = read_metadata(conv)
    shutil.copyfile(release / "azure-llm-2023__code.parquet", conv)
    write_pinned(conv, conv, {**meta, "rows": 8819})
    rehash(release, conv.name, rows=8819, content_sha256=content_sha256(conv)[0])
    assert verify_release(release).ok
    again = verify_release(release, rebuild=True)
    assert [f.file for f in again.findings] == [conv.name]
    assert "rebuilt from AzureLLMInferenceTrace_conv.csv: 9 rows" in again.findings[0].problem


def test_unpack_makes_a_mirror_that_load_reads_offline(release: Path, cli: Cli,
                                                       home: Path) -> None:
    result = cli("release", "unpack", str(release))
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == len(TRACES)
    for source, trace in TRACES:
        table = llmtraces.load(f"{source}/{trace}", offline=True)
        original = pq.read_table(release / f"{source}__{trace}.parquet")
        assert table.num_rows == TRACES[(source, trace)]
        assert table.equals(original.select(table.column_names))
    assert not (home / "raw").exists()  # nothing was fetched: the release is the mirror


def test_verify_refuses_what_is_no_release(tmp_path: Path, cli: Cli) -> None:
    stray = tmp_path / "x.zip"
    stray.write_bytes(b"PK")
    result = cli("release", "verify", str(stray))
    assert result.exit_code == 1
    assert "expected a release folder or a .tar.zst bundle" in result.output
