"""Downloads under real-world faults: killed processes, concurrent fetches, redirects, liars."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from httpserver import LoopbackServer, Route

from llmtraces.errors import DownloadError
from llmtraces.fetching.download import fetch_file
from llmtraces.registry import FileEntry

SIZE = 4 << 20  # 4 MiB


@pytest.fixture(scope="module")
def payload() -> bytes:
    # Deterministic, incompressible bytes.
    out = bytearray()
    block = b"llmtraces"
    while len(out) < SIZE:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:SIZE])


def entry_for(server: LoopbackServer, path: str, data: bytes) -> FileEntry:
    return FileEntry(name=Path(path).name, url=f"{server.url}{path}", size=len(data),
                     sha256=hashlib.sha256(data).hexdigest())


FETCH_CHILD = r"""
import sys
from pathlib import Path
from llmtraces.fetching.download import fetch_file
from llmtraces.registry import FileEntry
entry = FileEntry.model_validate_json(sys.argv[1])
print(fetch_file(entry, Path(sys.argv[2]), [entry.url]), flush=True)
"""


def child(entry: FileEntry, dest: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, LLMTRACES_DL_BACKOFF="0")
    return subprocess.Popen([sys.executable, "-c", FETCH_CHILD, entry.model_dump_json(),
                             str(dest)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def test_sigkill_mid_download_then_restart_resumes(tmp_path, server, payload):
    server.routes["/big.bin"] = Route(payload, chunk=64 << 10, chunk_delay=0.02)
    entry = entry_for(server, "/big.bin", payload)
    dest = tmp_path / "big.bin"
    part = dest.with_name(dest.name + ".part")
    proc = child(entry, dest)
    deadline = time.monotonic() + 20
    while (not part.exists() or part.stat().st_size < SIZE // 4) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    got = part.stat().st_size
    assert 0 < got < SIZE and not dest.exists()  # killed mid-body: only the .part exists
    server.routes["/big.bin"] = Route(payload)
    assert fetch_file(entry, dest, [entry.url]) == entry.url
    assert dest.read_bytes() == payload  # re-verified in full
    assert server.log[-1][1].get("Range") == f"bytes={got}-"  # continued where it stopped


def test_two_concurrent_fetches_download_once(tmp_path, server, payload):
    server.routes["/big.bin"] = Route(payload, chunk=256 << 10, chunk_delay=0.01)
    entry = entry_for(server, "/big.bin", payload)
    dest = tmp_path / "big.bin"
    procs = [child(entry, dest) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    origins = sorted(o[0].strip() for o in outs)
    assert origins == ["cache", entry.url]  # one downloaded, the other found it verified
    assert [p for p, _ in server.log] == ["/big.bin"]
    assert dest.read_bytes() == payload


def test_threads_in_one_process_share_the_lock(tmp_path, server, payload):
    server.routes["/big.bin"] = Route(payload, chunk=256 << 10, chunk_delay=0.005)
    entry = entry_for(server, "/big.bin", payload)
    dest = tmp_path / "big.bin"
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(
        fetch_file(entry, dest, [entry.url]))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["cache", "cache", entry.url]


def test_redirect_is_followed(tmp_path, server, payload):
    server.routes["/real.bin"] = Route(payload)
    server.routes["/moved.bin"] = Route(redirect_to=f"{server.url}/real.bin")
    entry = entry_for(server, "/moved.bin", payload)
    assert fetch_file(entry, tmp_path / "moved.bin", [entry.url]) == entry.url
    assert [p for p, _ in server.log] == ["/moved.bin", "/real.bin"]


def test_lying_content_length_is_refused(tmp_path, server, payload):
    server.routes["/lie.bin"] = Route(payload, content_length=SIZE + 10)
    entry = entry_for(server, "/lie.bin", payload)
    with pytest.raises(DownloadError, match="server announces 4,194,314 bytes"):
        fetch_file(entry, tmp_path / "lie.bin", [entry.url])
    assert not (tmp_path / "lie.bin").exists()


def test_connection_dropped_twice_still_completes(tmp_path, server, payload):
    server.routes["/flaky.bin"] = Route(payload, drop_after=1 << 20, drop_times=2)
    entry = entry_for(server, "/flaky.bin", payload)
    messages: list[str] = []
    dest = tmp_path / "flaky.bin"
    assert fetch_file(entry, dest, [entry.url], log=messages.append) == entry.url
    assert dest.read_bytes() == payload
    assert [h.get("Range") for _, h in server.log] == [None, "bytes=1048576-",
                                                       "bytes=2097152-"]
    assert sum("connection lost" in m for m in messages) == 2


def test_stalled_server_times_out_after_the_set_tries(tmp_path, server, payload, monkeypatch):
    monkeypatch.setenv("LLMTRACES_DL_TIMEOUT", "0.2")
    monkeypatch.setenv("LLMTRACES_DL_TRIES", "3")
    server.routes["/slow.bin"] = Route(payload, chunk=1 << 16, chunk_delay=1.0)
    entry = entry_for(server, "/slow.bin", payload)
    start = time.monotonic()
    with pytest.raises(DownloadError, match="connection lost after 3 tries"):
        fetch_file(entry, tmp_path / "slow.bin", [entry.url])
    assert len(server.log) == 3 and time.monotonic() - start < 10
    assert not (tmp_path / "slow.bin").exists()
