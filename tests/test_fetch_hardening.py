"""Download-stack faults from the reliability probe (issue 17): bad settings, long
Retry-After, a full disk, lying zips, wrong ranges and lock waits each end in one line."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from httpserver import LoopbackServer, Route

from llmtraces.errors import DownloadError, LLMTracesError
from llmtraces.fetching import transfer
from llmtraces.fetching.archive import CorruptArchiveError, extract_member, iter_members
from llmtraces.fetching.download import fetch_file
from llmtraces.fetching.transfer import Settings
from llmtraces.paths import lock_path, part_path
from llmtraces.registry import FileEntry

DATA = bytes(range(256)) * 64


def pinned(server: LoopbackServer, path: str, data: bytes = DATA) -> FileEntry:
    return FileEntry(name=Path(path).name, url=f"{server.url}{path}", size=len(data),
                     sha256=hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize(("name", "value"), [
    ("LLMTRACES_DL_TIMEOUT", "0"), ("LLMTRACES_DL_TIMEOUT", "-1"),
    ("LLMTRACES_DL_TIMEOUT", "nan"), ("LLMTRACES_DL_TIMEOUT", "inf"),
    ("LLMTRACES_DL_TIMEOUT", "abc"), ("LLMTRACES_DL_TRIES", "-3"),
    ("LLMTRACES_DL_TRIES", "1e9"), ("LLMTRACES_DL_TRIES", "2.5"),
    ("LLMTRACES_DL_BACKOFF", "-1"), ("LLMTRACES_DL_MAX_WAIT", "inf"),
])
def test_bad_network_setting_is_one_line(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(LLMTracesError) as err:
        Settings.from_env()
    msg = str(err.value)
    assert msg.startswith(f"${name}={value!r}: expected ") and "\n" not in msg


def test_good_network_settings_are_read(monkeypatch):
    monkeypatch.setenv("LLMTRACES_DL_TRIES", "3")
    monkeypatch.setenv("LLMTRACES_DL_TIMEOUT", "0.5")
    monkeypatch.setenv("LLMTRACES_DL_MAX_WAIT", "0")
    assert Settings.from_env() == Settings(tries=3, timeout_s=0.5, backoff_s=0.0, max_wait_s=0)


def test_long_retry_after_is_capped_and_told(tmp_path, server, monkeypatch):
    server.routes["/f.bin"] = Route(DATA, fail_first=[503], retry_after="100000")
    monkeypatch.setenv("LLMTRACES_DL_MAX_WAIT", "0.1")
    said: list[str] = []
    start = time.monotonic()
    fetch_file(pinned(server, "/f.bin"), tmp_path / "f.bin", [f"{server.url}/f.bin"],
               log=said.append)
    assert time.monotonic() - start < 5
    assert any("f.bin: HTTP 503, asked to retry later; waiting 0.1 s before the next try "
               "(capped from 100000 s by LLMTRACES_DL_MAX_WAIT)" in m for m in said), said


def test_write_error_names_the_file_and_is_not_retried(tmp_path, server, monkeypatch):
    server.routes["/f.bin"] = Route(DATA)

    class Full:
        def __init__(self, *a: object) -> None:
            pass

        def write(self, _: object) -> int:
            raise OSError(28, "No space left on device")

    def fake_write(fout: object, chunk: bytes, part: Path) -> None:
        real(Full(), chunk, part)

    real = transfer._write
    monkeypatch.setattr(transfer, "_write", fake_write)
    with pytest.raises(DownloadError) as err:
        fetch_file(pinned(server, "/f.bin"), tmp_path / "f.bin",
                   [f"{server.url}/f.bin", f"{server.url}/f.bin?again"])
    assert "No space left on device (errno 28)" in str(err.value)
    assert str(part_path(tmp_path / "f.bin")) in str(err.value)
    assert len(server.log) == 1  # no retry, no other URL


EFBIG_CHILD = r"""
import resource, sys
from pathlib import Path
from llmtraces.errors import DownloadError
from llmtraces.fetching.download import fetch_file
from llmtraces.registry import FileEntry
entry = FileEntry.model_validate_json(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    fetch_file(entry, Path(sys.argv[2]), [entry.url])
except DownloadError as exc:
    print(exc)
"""


def test_file_size_limit_reads_as_a_disk_error(tmp_path, server):
    server.routes["/f.bin"] = Route(DATA)
    entry = pinned(server, "/f.bin")
    out = subprocess.run([sys.executable, "-c", EFBIG_CHILD, entry.model_dump_json(),
                          str(tmp_path / "f.bin")], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, LLMTRACES_DL_BACKOFF="0"))
    assert "cannot write" in out.stdout and "File too large" in out.stdout, out
    assert "received stay in it and the next fetch resumes from there (delete it to free " \
        "the space instead)" in out.stdout
    assert "connection lost" not in out.stdout


def test_oversize_part_is_removed(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(DATA + b"extra")
    entry = FileEntry(name="f.bin", url="https://example.invalid/f.bin", size=len(DATA),
                      sha256=hashlib.sha256(DATA).hexdigest())
    dest = tmp_path / "cache" / "f.bin"
    with pytest.raises(LLMTracesError, match="larger than the pinned"):
        fetch_file(entry, dest, [src.as_uri()], offline=True)
    assert not part_path(dest).exists()


def test_wrong_206_restarts_from_zero_next_time(tmp_path, server):
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(DATA[:100])
    server.routes["/f.bin"] = Route(DATA, status=206,
                                    headers={"Content-Range": "bytes 0-9/10"})
    entry = pinned(server, "/f.bin")
    with pytest.raises(DownloadError, match="starts from zero"):
        fetch_file(entry, dest, [f"{server.url}/f.bin"])
    assert not part_path(dest).exists()
    server.routes["/f.bin"] = Route(DATA)
    fetch_file(entry, dest, [f"{server.url}/f.bin"])
    assert dest.read_bytes() == DATA


def test_waiting_for_the_lock_is_told(tmp_path, server):
    from filelock import FileLock

    server.routes["/f.bin"] = Route(DATA)
    dest = tmp_path / "f.bin"
    held = threading.Event()

    def hold() -> None:
        with FileLock(str(lock_path(dest))):
            held.set()
            time.sleep(0.3)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    said: list[str] = []
    fetch_file(pinned(server, "/f.bin"), dest, [f"{server.url}/f.bin"], log=said.append)
    holder.join()
    assert any(m.startswith("waiting for another fetch of f.bin") for m in said)


def _lying_zip(path: Path) -> None:
    """A zip whose member's local and central headers state 10 bytes for 5000."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("t.csv", b"a,b\n" * 1250)
    raw = bytearray(path.read_bytes())
    real = (5000).to_bytes(4, "little")
    at = 0
    while (at := raw.find(real, at)) >= 0:
        raw[at:at + 4] = (10).to_bytes(4, "little")
    path.write_bytes(bytes(raw))


def test_zip_understating_a_member_is_one_line(tmp_path):
    archive = tmp_path / "z.zip"
    _lying_zip(archive)
    with pytest.raises(CorruptArchiveError) as err:
        for _, fh in iter_members(archive):
            fh.read()
    assert f"{archive}: member 't.csv'" in str(err.value)
    with pytest.raises(CorruptArchiveError):
        extract_member(archive, "t.csv", tmp_path / "out.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["z.zip"]


def unpinned(server: LoopbackServer, path: str) -> FileEntry:
    return FileEntry(name=Path(path).name, url=f"{server.url}{path}",
                     unverified="nothing is known")


@pytest.mark.parametrize(("name", "body", "why"), [
    ("t.jsonl", b"<html>Rate limit exceeded</html>", "HTML/XML page"),
    ("t.csv", b'{"error": "not found"}', "JSON error object"),
    ("t.jsonl", b'{"error": "rate limited", "code": 429}\n', "JSON error object"),
    ("t.csv.gz", b"a,b\n1,2\n", "not those of a .gz file"),
    ("t.jsonl", b"version https://git-lfs.github.com/spec/v1\n", "Git LFS pointer"),
])
def test_unpinned_error_page_is_refused_and_kept_aside(tmp_path, server, name, body, why):
    from llmtraces.errors import ChecksumError
    from llmtraces.paths import rejected_path

    server.routes[f"/{name}"] = Route(body)
    dest = tmp_path / name
    with pytest.raises(ChecksumError, match=why):
        fetch_file(unpinned(server, f"/{name}"), dest, [f"{server.url}/{name}"])
    assert not dest.exists() and rejected_path(dest).read_bytes() == body


def test_unpinned_file_is_never_called_verified(tmp_path, server):
    from llmtraces.fetching.stamps import is_cached, pin_kind, verified_by

    server.routes["/t.jsonl"] = Route(b'{"timestamp": 0.0, "input_length": 5}\n')
    entry, dest, said = unpinned(server, "/t.jsonl"), tmp_path / "t.jsonl", []
    fetch_file(entry, dest, [f"{server.url}/t.jsonl"], log=said.append)
    assert pin_kind(dest) == "unpinned" and verified_by(dest) is None
    assert any("unpinned" in m for m in said)
    dest.write_bytes(b"<html>cached before the fix</html>")  # an old cache is re-checked
    assert not is_cached(dest, entry)
