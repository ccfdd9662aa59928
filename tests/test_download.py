"""The download stack against a real loopback HTTP server: verification, faults, cache, import."""

from __future__ import annotations

import gzip
import socket
import time
from pathlib import Path

import pytest
from httpserver import Route

import llmtraces
from conftest import CODE_NAME, CONV_NAME, SOURCE, Cli, build_registry
from llmtraces.errors import ChecksumError, DownloadError, NotCachedError


def conv_dest(home: Path) -> Path:
    return home / "raw" / SOURCE / CONV_NAME


def test_404_everywhere_is_one_clear_error(test_registry, server, home: Path, cli: Cli):
    result = cli("fetch", SOURCE, "--trace", "conv", "--mirror", server.url)
    assert result.exit_code == 1
    msg = result.output
    assert f"could not fetch {CONV_NAME}" in msg
    for prefix in (f"{server.url}/{SOURCE}/", f"{server.url}/upstream/", f"{server.url}/mirror1/"):
        assert f"{prefix}{CONV_NAME}: HTTP 404" in msg
    assert not conv_dest(home).exists()
    # Tried in order: --mirror, upstream, registry mirrors.
    assert [p.split("/")[1] for p, _ in server.log] == [SOURCE, "upstream", "mirror1"]


def test_upstream_then_registry_mirror_fallback(test_registry, server, conv_csv, home: Path):
    server.routes[f"/mirror1/{CONV_NAME}"] = Route(conv_csv.read_bytes())
    (got,) = llmtraces.fetch(SOURCE, "conv")
    assert got.origin == f"{server.url}/mirror1/{CONV_NAME}"
    assert conv_dest(home).read_bytes() == conv_csv.read_bytes()


def test_wrong_bytes_same_size_never_enter_the_cache(test_registry, server, conv_csv, home,
                                                     cli: Cli):
    data = bytearray(conv_csv.read_bytes())
    data[60] ^= 1  # one flipped bit, same size
    server.routes[f"/upstream/{CONV_NAME}"] = Route(bytes(data))
    with pytest.raises(ChecksumError, match=r"sha256 is [0-9a-f]{64}, expected") as err:
        llmtraces.fetch(SOURCE, "conv")
    assert "kept for inspection" in str(err.value) and "upstream may have changed" in str(err.value)
    assert not conv_dest(home).exists()
    rejected = conv_dest(home).with_name(CONV_NAME + ".rejected")
    assert rejected.read_bytes() == bytes(data)
    result = cli("fetch", SOURCE, "--trace", "conv")
    assert result.exit_code == 1 and "expected" in result.output


def test_error_page_is_caught_by_size(test_registry, server, home):
    server.routes[f"/upstream/{CONV_NAME}"] = Route(b"<html>rate limited</html>")
    with pytest.raises(DownloadError, match="error page"):
        llmtraces.fetch(SOURCE, "conv")
    assert not conv_dest(home).exists()


def test_cached_file_is_not_downloaded_again(test_registry, mirror, home):
    llmtraces.fetch(SOURCE, "conv", mirror=mirror.url)
    n = len(mirror.log)
    (again,) = llmtraces.fetch(SOURCE, "conv", mirror=mirror.url)
    assert again.origin == "cache" and len(mirror.log) == n


def test_corrupted_cache_is_replaced(test_registry, mirror, conv_csv, home):
    llmtraces.fetch(SOURCE, "conv", mirror=mirror.url)
    dest = conv_dest(home)
    dest.write_bytes(dest.read_bytes()[:-1] + b"9")  # same size, different bytes
    (again,) = llmtraces.fetch(SOURCE, "conv", mirror=mirror.url)
    assert again.origin != "cache" and dest.read_bytes() == conv_csv.read_bytes()


def test_mirror_failure_falls_back_to_bundled_copy(server, code_csv, home):
    # The shipped registry: code is bundled, so a dead mirror still gives a verified file.
    messages: list[str] = []
    from llmtraces.fetching.download import fetch

    (got,) = fetch(SOURCE, "code", root=home, mirror=server.url, log=messages.append)
    assert got.origin.startswith("file://") and got.path.read_bytes() == code_csv.read_bytes()
    assert any("HTTP 404" in m for m in messages)


def test_env_mirror(test_registry, mirror, monkeypatch, home, cli: Cli):
    monkeypatch.setenv("LLMTRACES_MIRROR", mirror.url)
    result = cli("fetch", SOURCE, "--trace", "conv")
    assert result.exit_code == 0, result.output
    assert f"from {mirror.url}/{SOURCE}/{CONV_NAME}" in result.output


def test_resume_after_dropped_connection(test_registry, server, conv_csv, home):
    data = conv_csv.read_bytes()
    server.routes[f"/upstream/{CONV_NAME}"] = Route(data, drop_after=100)
    (got,) = llmtraces.fetch(SOURCE, "conv")
    assert got.path.read_bytes() == data
    ranges = [h.get("Range") for p, h in server.log]
    assert ranges == [None, "bytes=100-"]


def test_server_ignoring_range_restarts(test_registry, server, conv_csv, home):
    data = conv_csv.read_bytes()
    server.routes[f"/upstream/{CONV_NAME}"] = Route(data, drop_after=100, honour_range=False)
    (got,) = llmtraces.fetch(SOURCE, "conv")
    assert got.path.read_bytes() == data


def test_retries_503_and_429_with_retry_after(test_registry, server, conv_csv, home):
    server.routes[f"/upstream/{CONV_NAME}"] = Route(conv_csv.read_bytes(), fail_first=[503, 429],
                                                   retry_after="0")
    (got,) = llmtraces.fetch(SOURCE, "conv")
    assert got.path.is_file() and len(server.log) == 3
    assert all(h["User-Agent"].startswith("llmtraces/") for _, h in server.log)


def test_gzip_content_encoding_does_not_change_the_bytes(tmp_path, server, code_csv):
    # A .csv.gz served with Content-Encoding: gzip (as some blob stores do) must be stored as
    # served; a client that decoded it would hash the CSV and fail the check.
    import hashlib

    from llmtraces.fetching.download import fetch_file
    from llmtraces.registry import FileEntry

    payload = gzip.compress(code_csv.read_bytes())
    server.routes["/x.csv.gz"] = Route(payload, gzip_encoding=True)
    entry = FileEntry(name="x.csv.gz", url=f"{server.url}/x.csv.gz", size=len(payload),
                      sha256=hashlib.sha256(payload).hexdigest(), compression="gzip")
    dest = tmp_path / "x.csv.gz"
    assert fetch_file(entry, dest, [entry.url]) == entry.url
    assert dest.read_bytes() == payload
    assert llmtraces.load(dest).num_rows == 8819


def test_file_import_is_verified(test_registry, conv_csv, tmp_path, home, cli: Cli):
    result = cli("fetch", SOURCE, "--file", str(conv_csv))
    assert result.exit_code == 0, result.output
    assert "conv" in result.output and conv_dest(home).read_bytes() == conv_csv.read_bytes()
    bad = tmp_path / CONV_NAME
    bad.write_bytes(conv_csv.read_bytes()[:-3])
    conv_dest(home).unlink()
    result = cli("fetch", SOURCE, "--trace", "conv", "--file", str(bad))
    assert result.exit_code == 1 and "size is" in result.output
    assert not conv_dest(home).exists()


def test_file_import_without_trace_needs_a_match(test_registry, tmp_path, cli: Cli):
    other = tmp_path / "mine.csv"
    other.write_bytes(b"x" * 10)
    result = cli("fetch", SOURCE, "--file", str(other))
    assert result.exit_code == 1 and "pass --trace" in result.output


def test_offline_never_touches_the_network(test_registry, mirror, home, cli: Cli):
    with pytest.raises(NotCachedError, match=rf"put the file at .*{CONV_NAME}") as err:
        llmtraces.fetch(SOURCE, "conv", mirror=mirror.url, offline=True)
    assert mirror.log == []
    # The hint is a command that runs as printed.
    assert f"`llmtraces fetch {SOURCE} --trace conv --file PATH`" in str(err.value)
    result = cli("fetch", SOURCE, "--offline")
    assert result.exit_code == 1
    assert f"`llmtraces fetch {SOURCE} --trace conv --file PATH`" in result.output
    # The bundled code file is local, so offline still works for it.
    (got,) = llmtraces.fetch(SOURCE, "code", offline=True)
    assert got.path.name == CODE_NAME


def test_quiet_and_non_tty_print_no_progress(test_registry, mirror, cli: Cli):
    result = cli("fetch", SOURCE, "--mirror", mirror.url, "--quiet")
    assert result.exit_code == 0 and result.output == ""


def test_unknown_source_and_trace(cli: Cli):
    result = cli("fetch", "no-such-trace")
    assert result.exit_code == 1
    assert "unknown source 'no-such-trace'; known sources: azure-llm-2023" in result.output
    result = cli("fetch", SOURCE, "--trace", "chat")
    assert result.exit_code == 1 and "has no trace 'chat'; it has: code, conv" in result.output
    result = cli("convert", "no-such-trace")
    assert result.exit_code == 1 and "unknown source 'no-such-trace'" in result.output
    result = cli("validate", "no-such-trace")
    assert result.exit_code == 1 and "unknown source" in result.output


def test_unverified_entry_is_checked_by_size_and_says_so(tmp_path, server, conv_csv):
    from llmtraces.fetching.download import fetch_file
    from llmtraces.registry import FileEntry

    data = conv_csv.read_bytes()
    server.routes["/u.csv"] = Route(data)
    entry = FileEntry(name="u.csv", url=f"{server.url}/u.csv", size=len(data),
                      unverified="no checksum published upstream")
    messages: list[str] = []
    dest = tmp_path / "u.csv"
    assert fetch_file(entry, dest, [entry.url], log=messages.append) == entry.url
    assert any("checked by size only" in m for m in messages)
    assert fetch_file(entry, dest, [entry.url]) == "cache"
    server.routes["/u.csv"] = Route(data[:-1])
    dest.unlink()
    with pytest.raises(DownloadError, match="server announces"):
        fetch_file(entry, dest, [entry.url])


def test_file_dropped_under_its_checksum_name_is_used(test_registry, conv_csv, home, server):
    import hashlib

    folder = home / "raw" / SOURCE
    folder.mkdir(parents=True)
    dropped = folder / hashlib.sha256(conv_csv.read_bytes()).hexdigest()
    dropped.write_bytes(conv_csv.read_bytes())
    (got,) = llmtraces.fetch(SOURCE, "conv", offline=True)
    assert got.origin == dropped.as_uri() and server.log == []
    assert got.path.read_bytes() == conv_csv.read_bytes()


BURSTGPT_FILES = [f"BurstGPT_{n}.csv" for n in
                  ("1", "2", "3", "without_fails_1", "without_fails_2", "without_fails_3")]


def unreachable_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: str) -> None:
    """The shipped registry with every file URL on ``base``, and the default retry backoff
    (seconds per retry), so a retry that should not happen would show."""
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(build_registry(tmp_path / "reg", base, {})))
    monkeypatch.delenv("LLMTRACES_DL_BACKOFF")


def assert_one_line_per_file_and_a_hint(output: str, why: str) -> None:
    lines = output.splitlines()
    assert lines[0] == "Error: could not fetch 6 of 6 files of burstgpt:"
    for line, name in zip(lines[1:7], BURSTGPT_FILES, strict=True):
        assert line.startswith(f"  {name}: {why}") and len(line) < 100, line
    (hint,) = lines[7:]  # nothing logged besides: the error says it all
    for advice in ("--offline", "--mirror BASE", "LLMTRACES_DL_TRIES",
                   "`llmtraces fetch burstgpt --trace T --file PATH`"):
        assert advice in hint


def test_refused_connection_is_not_retried(tmp_path, monkeypatch, cli: Cli):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    unreachable_registry(tmp_path, monkeypatch, f"http://127.0.0.1:{port}")
    attempts: list[object] = []
    guarded = socket.socket.connect  # the conftest guard: loopback only

    def counting(sock: socket.socket, address: object) -> object:
        if isinstance(address, tuple) and address[1] == port:
            attempts.append(address)
        return guarded(sock, address)

    monkeypatch.setattr(socket.socket, "connect", counting)
    start = time.monotonic()
    result = cli("fetch", "burstgpt")
    assert result.exit_code == 1
    assert_one_line_per_file_and_a_hint(
        result.output, f"cannot connect to 127.0.0.1:{port}: connection refused")
    # Once: no retry of the refusal, and the 5 other files do not ask the dead host again.
    assert len(attempts) == 1 and time.monotonic() - start < 5


def test_unknown_host_name_is_looked_up_once(tmp_path, monkeypatch, cli: Cli):
    unreachable_registry(tmp_path, monkeypatch, "http://nonexistent.invalid")
    lookups: list[str] = []
    real = socket.getaddrinfo

    def resolve(host: str, *args: object, **kwargs: object) -> object:
        if host == "nonexistent.invalid":  # answered here: no resolver is ever asked
            lookups.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    result = cli("fetch", "burstgpt")
    assert result.exit_code == 1
    assert_one_line_per_file_and_a_hint(result.output,
                                        "cannot resolve host name nonexistent.invalid")
    assert lookups == ["nonexistent.invalid"]


def test_one_failed_file_does_not_stop_the_others(test_registry, server, conv_csv, home):
    server.routes[f"/mirror1/{CONV_NAME}"] = Route(b"short")
    with pytest.raises(DownloadError) as err:
        llmtraces.fetch(SOURCE)  # conv fails; code (bundled) is fetched all the same
    assert (home / "raw" / SOURCE / CODE_NAME).is_file() and not conv_dest(home).exists()
    text = str(err.value)
    assert text.startswith(f"could not fetch {CONV_NAME}: {server.url}/upstream/{CONV_NAME}: "
                           "HTTP 404")
    assert "error page" in text and "--trace conv --file PATH" in text.splitlines()[-1]
    assert err.value.traces == ("conv",)
