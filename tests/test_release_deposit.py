"""``llmtraces release deposit`` against a stateful Zenodo-shaped server on 127.0.0.1
(tests/zenodo_server.py): the happy path, faults, resume after SIGKILL, new versions,
publishing only when asked, the token kept secret, and a round trip through ``fetch``."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from httpserver import LoopbackServer
from release_helpers import populate
from zenodo_server import Fault, ZenodoServer

import llmtraces
from conftest import Cli
from llmtraces.errors import OptionError
from llmtraces.fetching.transfer import Settings
from llmtraces.release.deposit import DepositOptions
from llmtraces.release.deposit import deposit as deposit_folder
from llmtraces.release.deposit_local import (
    MAX_BYTES,
    STATE_NAME,
    DepositInputError,
    LocalFile,
    check_limits,
)
from llmtraces.release.zenodo_client import (
    ZenodoAuthError,
    ZenodoClient,
    ZenodoError,
    check_base_url,
    rate_limit_wait,
)

TOKEN = "zt-S3cr3t-0123456789abcdefXYZ"
BUCKET_PUT = r"/api/files/[0-9a-f]+/"
METADATA = {"upload_type": "dataset", "title": "llmtraces traces 1.0.0",
            "creators": [{"name": "Doe, Jane", "affiliation": "Example University"}],
            "description": "<p>Converted LLM inference traces.</p>", "access_right": "open",
            "license": "cc-by-4.0", "version": "1.0.0", "publication_date": "2026-12-01",
            "keywords": ["LLM", "traces"],
            "related_identifiers": [{"identifier": "10.5281/zenodo.15858418",
                                     "relation": "isDerivedFrom",
                                     "resource_type": "dataset"}]}


@pytest.fixture()
def zen(monkeypatch: pytest.MonkeyPatch) -> Iterator[ZenodoServer]:
    """The fake Zenodo, with ``$ZENODO_TOKEN`` set to its token and short waits."""
    srv = ZenodoServer(token=TOKEN).start()
    monkeypatch.setenv("ZENODO_TOKEN", TOKEN)
    monkeypatch.setenv("LLMTRACES_DL_MAX_WAIT", "0.2")
    yield srv
    srv.stop()


def make_release(folder: Path, files: dict[str, bytes], metadata: dict | None = None) -> Path:
    """A release folder as ``release build`` lays it out: the files, MD5SUMS and SHA256SUMS
    covering them, and the Zenodo metadata in ``.zenodo.json``."""
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    for algo, name in ((hashlib.md5, "MD5SUMS"), (hashlib.sha256, "SHA256SUMS")):
        (folder / name).write_text("".join(f"{algo(d).hexdigest()}  {n}\n"
                                           for n, d in sorted(files.items())))
    (folder / ".zenodo.json").write_text(json.dumps(metadata or METADATA, indent=2) + "\n")
    return folder


@pytest.fixture()
def release(tmp_path: Path, code_csv: Path) -> Path:
    return make_release(tmp_path / "llmtraces-traces-1.0.0", {
        "README.md": b"# llmtraces traces 1.0.0\n", "CITATION.cff": b"cff-version: 1.2.0\n",
        "demo__trace.csv": code_csv.read_bytes()})


def local_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")}


def deposit(cli: Cli, folder: Path, zen: ZenodoServer, *args: str,
            input: str | None = None) -> Result:
    return cli("release", "deposit", str(folder), "--zenodo-url", zen.url, *args, input=input)


def assert_no_token(zen: ZenodoServer, folder: Path, *texts: str) -> None:
    """The token is in no output, exception, URL the server saw, or file of the folder; it
    travelled only as the Authorization header."""
    for text in texts:
        assert TOKEN not in text
    for seen in zen.seen:
        assert TOKEN not in seen.path
        rest = {k: v for k, v in seen.headers.items() if k.lower() != "authorization"}
        assert TOKEN not in json.dumps(rest)
    for path in folder.iterdir():
        assert TOKEN.encode() not in path.read_bytes(), path


def requests_to(zen: ZenodoServer, method: str, fragment: str = "") -> list[str]:
    return [s.path for s in zen.seen if s.method == method and fragment in s.path]


def test_happy_path_leaves_a_draft(cli: Cli, zen: ZenodoServer, release: Path) -> None:
    result = deposit(cli, release, zen)
    assert result.exit_code == 0, result.output
    (dep,) = zen.depositions.values()
    assert not dep.submitted and dep.doi is None
    assert {f.key: f.data for f in dep.files} == local_files(release)
    assert dep.metadata == METADATA
    assert "not published" in result.stdout and f"{zen.url}/deposit/{dep.id}" in result.stdout
    assert not requests_to(zen, "POST", "/actions/publish")
    assert all(s.headers["Authorization"] == f"Bearer {TOKEN}" and
               s.headers["User-Agent"].startswith("llmtraces/") for s in zen.seen)
    state = json.loads((release / STATE_NAME).read_text())
    assert state["deposition_id"] == dep.id and state["zenodo_url"] == zen.url
    assert state["files"]["demo__trace.csv"]["md5"] == \
        hashlib.md5((release / "demo__trace.csv").read_bytes()).hexdigest()
    assert state["published"] is None
    assert_no_token(zen, release, result.output)


def test_publish_then_fetch_gives_equal_bytes(cli: Cli, zen: ZenodoServer, release: Path,
                                              tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    result = deposit(cli, release, zen, "--publish", "--yes")
    assert result.exit_code == 0, result.output
    (dep,) = zen.depositions.values()
    assert dep.submitted and f"DOI 10.5072/zenodo.{dep.id}" in result.stdout
    assert json.loads((release / STATE_NAME).read_text())["published"]["doi"] == dep.doi
    registry = tmp_path / "registry"
    registry.mkdir()
    (registry / "zen-rt.toml").write_text(f'''
id = "zen-rt"
name = "A trace from a deposited release"
description = "Round trip through the fake Zenodo."
homepage = "{zen.url}/records/{dep.id}"
format = "azure-csv"

[licence]
spdx = "CC-BY-4.0"
url = "{zen.url}/licence"
redistributable = true
commercial_use = true
attribution = "test"

[citation]
text = "test"
bibtex = "@misc{{t, title={{t}}}}"

[time]
kind = "absolute"
native_format = "ISO"
resolution = "1us"
origin = "first row"

[traces.code]
description = "the deposited trace"

[traces.code.file]
name = "demo__trace.csv"
url = "{zen.url}/records/{dep.id}/files/demo__trace.csv?download=1"
zenodo = {{ record = "{dep.id}", key = "demo__trace.csv" }}
''', encoding="utf-8")
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(registry))
    monkeypatch.setenv("LLMTRACES_ZENODO_URL", zen.url)
    fetched = cli("fetch", "zen-rt")
    assert fetched.exit_code == 0, fetched.output
    assert requests_to(zen, "GET", f"/api/records/{dep.id}/files/demo__trace.csv/content")
    (got,) = llmtraces.fetch("zen-rt")
    assert got.origin == "cache"
    assert got.path.read_bytes() == (release / "demo__trace.csv").read_bytes()


def test_publish_asks_first_and_a_rerun_resumes(cli: Cli, zen: ZenodoServer,
                                                release: Path) -> None:
    declined = deposit(cli, release, zen, "--publish", input="n\n")
    assert declined.exit_code == 0, declined.output
    (dep,) = zen.depositions.values()
    assert not dep.submitted and not requests_to(zen, "POST", "/actions/publish")
    puts = len(requests_to(zen, "PUT", "/api/files/"))
    accepted = deposit(cli, release, zen, "--publish", input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert list(zen.depositions) == [dep.id] and dep.submitted
    assert len(requests_to(zen, "PUT", "/api/files/")) == puts  # nothing uploaded twice
    again = deposit(cli, release, zen, "--publish", "--yes")
    assert again.exit_code == 0 and f"DOI {dep.doi}" in again.stdout
    assert "was already published; nothing sent" in again.stdout
    assert len(zen.depositions) == 1 and len(requests_to(zen, "POST", "/publish")) == 1


def test_rate_limit_waits_for_the_reset_header(cli: Cli, zen: ZenodoServer, release: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3's own log lines too
    reset = str(int(time.time()) + 3600)
    zen.faults += [Fault("POST", "/api/deposit/depositions", status=429,
                         headers={"Retry-After": "3600"}),
                   Fault("PUT", BUCKET_PUT + "README.md", status=429,
                         headers={"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0",
                                  "X-RateLimit-Reset": reset})]
    result = deposit(cli, release, zen)
    assert result.exit_code == 0, result.output
    assert "create a deposition: HTTP 429 (rate limited): waiting 0.2 s (Retry-After, " \
        "capped from 3600 s by LLMTRACES_DL_MAX_WAIT), then try 2/5" in result.stderr
    assert "upload README.md: HTTP 429 (rate limited): waiting 0.2 s (X-RateLimit-Reset" \
        in result.stderr
    assert len(zen.depositions) == 1 and len(requests_to(zen, "POST")) == 1 + 1
    assert "127.0.0.1" in caplog.text
    assert_no_token(zen, release, result.output, caplog.text)


def test_rate_limit_wait_reads_each_header() -> None:
    settings = Settings(backoff_s=0.5)
    assert rate_limit_wait({"Retry-After": "7"}, 1000.0, settings, 1) == (7.0, "Retry-After")
    assert rate_limit_wait({"Retry-After": "Thu, 01 Jan 1970 00:16:50 GMT"}, 1000.0,
                           settings, 1) == (10.0, "Retry-After")
    assert rate_limit_wait({"X-RateLimit-Reset": "1012"}, 1000.0, settings, 1) == \
        (12.0, "X-RateLimit-Reset")
    assert rate_limit_wait({"X-RateLimit-Reset": "990"}, 1000.0, settings, 1)[0] == 0.0
    assert rate_limit_wait({}, 1000.0, settings, 3) == (2.0, "no reset header; backing off")


def test_server_errors_are_retried(cli: Cli, zen: ZenodoServer, release: Path) -> None:
    zen.faults += [Fault("POST", "/api/deposit/depositions", status=503),
                   Fault("PUT", BUCKET_PUT + "demo__trace.csv", status=500, times=2)]
    result = deposit(cli, release, zen)
    assert result.exit_code == 0, result.output
    assert "upload demo__trace.csv: HTTP 500 (fault); trying again in 0 s (try 3/5)" \
        in result.stderr
    assert len(zen.depositions) == 1
    assert len(requests_to(zen, "PUT", "/demo__trace.csv")) == 3
    (dep,) = zen.depositions.values()
    assert {f.key: f.data for f in dep.files} == local_files(release)


def test_dropped_upload_is_sent_again_from_the_start(cli: Cli, zen: ZenodoServer,
                                                     release: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    zen.faults.append(Fault("PUT", BUCKET_PUT + "demo__trace.csv", kind="drop", after=4096))
    result = deposit(cli, release, zen)
    assert result.exit_code == 0, result.output
    assert "upload demo__trace.csv: connection lost or refused; sending again from the " \
        "start" in result.stderr
    (dep,) = zen.depositions.values()
    assert {f.key: f.data for f in dep.files} == local_files(release)
    assert_no_token(zen, release, result.output, caplog.text)


def test_wrong_md5_is_retried_then_a_clear_error(cli: Cli, zen: ZenodoServer, release: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    zen.faults.append(Fault("PUT", BUCKET_PUT + "README.md", kind="bad_md5"))
    once = deposit(cli, release, zen)
    assert once.exit_code == 0, once.output
    assert "upload README.md: Zenodo stored md5" in once.stderr
    (release / STATE_NAME).unlink()
    monkeypatch.setenv("LLMTRACES_DL_TRIES", "3")
    zen.faults.append(Fault("PUT", BUCKET_PUT + "CITATION.cff", kind="bad_md5", times=99))
    failed = deposit(cli, release, zen)
    assert failed.exit_code == 1
    line = failed.output.strip().splitlines()[-1]
    assert line.startswith("Error: upload CITATION.cff: Zenodo stored md5 ")
    assert "after 3 tries; rerun later (the deposit resumes)" in line
    assert "Traceback" not in failed.output
    zen.faults.clear()
    resumed = deposit(cli, release, zen)
    assert resumed.exit_code == 0, resumed.output
    assert len(zen.depositions) == 2  # the first run's draft, and the failed run's, resumed
    dep = zen.depositions[max(zen.depositions)]
    assert {f.key: f.data for f in dep.files} == local_files(release)
    assert_no_token(zen, release, once.output, failed.output, resumed.output,
                    str(failed.exception), repr(failed.exception), caplog.text)


def test_more_than_100_files_are_refused_up_front(cli: Cli, zen: ZenodoServer,
                                                  tmp_path: Path) -> None:
    folder = make_release(tmp_path / "big", {f"t{i:03d}.parquet": b"x" for i in range(100)})
    result = deposit(cli, folder, zen)
    assert result.exit_code == 1
    assert "has 102 files; a Zenodo record takes at most 100: rebuild it as one archive " \
        "with llmtraces release build --layout bundle and deposit the .tar.zst" in result.output
    assert zen.seen == []


def test_more_than_50_gb_is_refused(tmp_path: Path) -> None:
    files = [LocalFile(f"t{i}.parquet", tmp_path / f"t{i}", MAX_BYTES // 2, "0" * 32)
             for i in range(3)]
    with pytest.raises(DepositInputError, match=r"holds 75,000,000,000 bytes; a Zenodo "
                                                r"record takes at most 50,000,000,000"):
        check_limits(tmp_path, files)
    check_limits(tmp_path, files[:2])  # exactly 50 GB is allowed


def test_bad_or_missing_token_is_one_line_without_retry(cli: Cli, zen: ZenodoServer,
                                                        release: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.setenv("ZENODO_TOKEN", "not-the-token")
    bad = deposit(cli, release, zen)
    assert bad.exit_code == 1
    assert bad.output.count("\n") == 1 and "Zenodo refused the token (HTTP 401" in bad.output
    assert len(zen.seen) == 1 and not (release / STATE_NAME).exists()
    assert "not-the-token" not in bad.output
    with pytest.raises(ZenodoAuthError, match="HTTP 401") as err:  # the library's error
        deposit_folder(DepositOptions(release, zen.url))
    assert "not-the-token" not in str(err.value) + repr(err.value)
    assert len(zen.seen) == 2
    monkeypatch.delenv("ZENODO_TOKEN")
    missing = deposit(cli, release, zen)
    assert missing.exit_code == 1 and "set ZENODO_TOKEN to a personal access token" in \
        missing.output
    assert len(zen.seen) == 2


def test_killed_mid_upload_resumes_the_same_draft(zen: ZenodoServer, release: Path,
                                                  tmp_path: Path) -> None:
    zen.faults.append(Fault("PUT", BUCKET_PUT + "demo__trace.csv", kind="slow", chunk=4096,
                            delay=0.05))
    code = "import sys; from llmtraces.cli import main; sys.exit(main())"
    args = [sys.executable, "-c", code, "release", "deposit", str(release), "--zenodo-url",
            zen.url]
    log = tmp_path / "killed.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=os.environ)
        try:
            assert zen.upload_started.wait(60), "the upload never started"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    (dep,) = zen.depositions.values()
    assert "demo__trace.csv" not in {f.key for f in dep.files}
    zen.faults.clear()
    rerun = subprocess.run(args, capture_output=True, text=True, env=os.environ, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming draft deposition {dep.id}" in rerun.stderr
    assert list(zen.depositions) == [dep.id]
    assert {f.key: f.data for f in dep.files} == local_files(release)
    for name in ("CITATION.cff", "MD5SUMS", "README.md", "SHA256SUMS"):
        assert len(requests_to(zen, "PUT", f"/{name}")) == 1, name
    assert not [p for p in release.iterdir() if p.name.endswith(".tmp")]
    assert_no_token(zen, release, log.read_text(), rerun.stdout, rerun.stderr)


def test_new_version_deletes_inherited_files(cli: Cli, zen: ZenodoServer, release: Path,
                                             tmp_path: Path) -> None:
    first = deposit(cli, release, zen, "--publish", "--yes")
    assert first.exit_code == 0, first.output
    (v1,) = zen.depositions.values()
    inherited = {f.key for f in v1.files}
    v2_meta = {**METADATA, "version": "1.1.0", "title": "llmtraces traces 1.1.0"}
    v2_dir = make_release(tmp_path / "llmtraces-traces-1.1.0", {
        "README.md": b"# llmtraces traces 1.0.0\n",  # same bytes as v1's: still re-sent
        "demo__other.csv": b"a,b\n1,2\n"}, v2_meta)
    second = deposit(cli, v2_dir, zen, "--new-version-of", str(v1.id), "--publish", "--yes")
    assert second.exit_code == 0, second.output
    v2 = zen.depositions[max(zen.depositions)]
    assert v2.id != v1.id and v2.conceptrecid == v1.conceptrecid and v2.submitted
    assert len(requests_to(zen, "DELETE", f"/depositions/{v2.id}/files/")) == len(inherited)
    assert {f.key: f.data for f in v2.files} == local_files(v2_dir)
    assert v2.metadata == v2_meta
    assert {f.key for f in v1.files} == inherited  # the old version is untouched
    assert json.loads((v2_dir / STATE_NAME).read_text())["new_version_of"] == v1.id
    assert_no_token(zen, v2_dir, second.output)


def test_dry_run_sends_nothing(cli: Cli, zen: ZenodoServer, release: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZENODO_TOKEN")
    result = deposit(cli, release, zen, "--dry-run", "--publish", "--yes")
    assert result.exit_code == 0, result.output
    assert zen.seen == [] and not (release / STATE_NAME).exists()
    assert f"POST {zen.url}/api/deposit/depositions (a new draft)" in result.stdout
    assert "PUT <bucket>/demo__trace.csv (320,117 bytes, md5 " in result.stdout
    assert result.stdout.strip().endswith("POST actions/publish")
    plain = deposit(cli, release, zen, "--dry-run")
    assert "stop at the draft (not published without --publish)" in plain.stdout


def test_unsafe_urls_and_foreign_links_are_refused(cli: Cli, zen: ZenodoServer,
                                                   release: Path) -> None:
    result = cli("release", "deposit", str(release), "--zenodo-url", "http://zenodo.org")
    assert result.exit_code == 2 and "plain http is allowed only to 127.0.0.1" in result.output
    with pytest.raises(OptionError, match="plain http"):
        check_base_url("http://10.0.0.1:8000")
    client = ZenodoClient(zen.url, TOKEN, Settings(), print)
    assert client.same_origin(f"{zen.url}/api/files/abc", "bucket")
    with pytest.raises(ZenodoError, match=r"bucket link on another host \(evil.example\)"):
        client.same_origin("https://evil.example/api/files/abc", "bucket")
    assert client.redact(f"x {TOKEN} y") == "x *** y"


def test_state_of_another_server_is_not_resumed(cli: Cli, zen: ZenodoServer,
                                                release: Path) -> None:
    assert deposit(cli, release, zen).exit_code == 0
    state = json.loads((release / STATE_NAME).read_text())
    state["zenodo_url"] = "https://sandbox.zenodo.org"
    (release / STATE_NAME).write_text(json.dumps(state))
    result = deposit(cli, release, zen)
    assert result.exit_code == 1
    assert "is a deposit on https://sandbox.zenodo.org: pass that server" in result.output
    assert len(zen.depositions) == 1


def test_missing_metadata_field_is_named(cli: Cli, zen: ZenodoServer, tmp_path: Path) -> None:
    meta = {k: v for k, v in METADATA.items() if k != "creators"}
    folder = make_release(tmp_path / "rel", {"a.parquet": b"x"}, meta)
    result = deposit(cli, folder, zen)
    assert result.exit_code == 1
    assert ".zenodo.json: creators is missing or empty" in result.output and zen.seen == []


def test_a_built_release_deposits_and_still_verifies(cli: Cli, zen: ZenodoServer,
                                                     tmp_path: Path, server: LoopbackServer,
                                                     home: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    populate(tmp_path, server.url, monkeypatch, home)
    built = cli("release", "build", "--sources", "azure-llm-2023,mooncake", "--version", "1.0.0",
                "--date", "2026-12-01", "--offline", "-o", str(tmp_path / "dist"))
    assert built.exit_code == 0, built.output
    folder = tmp_path / "dist" / "llmtraces-traces-1.0.0"
    result = deposit(cli, folder, zen, "--publish", "--yes")
    assert result.exit_code == 0, result.output
    (dep,) = zen.depositions.values()
    md5sums = dict(reversed(line.split("  ", 1)) for line in
                   (folder / "MD5SUMS").read_text().splitlines())
    assert {f.key: f.md5 for f in dep.files if not f.key.endswith("SUMS")} == md5sums
    assert dep.metadata == json.loads((folder / ".zenodo.json").read_text())
    verified = cli("release", "verify", str(folder))  # the state file is no part of it
    assert verified.exit_code == 0, verified.output


def test_a_bundle_deposits_as_one_file(cli: Cli, zen: ZenodoServer, tmp_path: Path,
                                       server: LoopbackServer, home: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    populate(tmp_path, server.url, monkeypatch, home)
    built = cli("release", "build", "--sources", "mooncake", "--version", "1.0.0", "--date",
                "2026-12-01", "--offline", "--layout", "bundle", "-o", str(tmp_path / "dist"))
    assert built.exit_code == 0, built.output
    bundle = tmp_path / "dist" / "llmtraces-traces-1.0.0.tar.zst"
    result = deposit(cli, bundle, zen)
    assert result.exit_code == 0, result.output
    (dep,) = zen.depositions.values()
    assert [(f.key, f.data) for f in dep.files] == [(bundle.name, bundle.read_bytes())]
    assert dep.metadata["version"] == "1.0.0" and dep.metadata["upload_type"] == "dataset"
    state = tmp_path / "dist" / f".{bundle.name}.deposit-state.json"
    assert json.loads(state.read_text())["deposition_id"] == dep.id
    again = deposit(cli, bundle, zen)
    assert again.exit_code == 0 and "kept 1 already there" in again.stdout
    assert len(zen.depositions) == 1
