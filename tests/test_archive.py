"""llmtraces.fetching.archive: members streamed without extracting; malicious members refused by
name, the byte budget enforced, and nothing written outside the target."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from llmtraces.errors import LLMTracesError
from llmtraces.fetching.archive import UnsafeArchiveError, extract_member, iter_members


def add(tar: tarfile.TarFile, name: str, data: bytes = b"", **kw: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in kw.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if data else None)


def make(path: Path, members: list[tuple[str, bytes, dict]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:  # type: ignore[call-overload]
        for name, data, kw in members:
            add(tar, name, data, **kw)
    return path


@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_regular_members_stream(tmp_path: Path, mode: str):
    t = make(tmp_path / "t.tar", [("traces/a.jsonl", b"a\n", {}),
                                  ("traces/sub", b"", {"type": tarfile.DIRTYPE}),
                                  ("traces/b.csv", b"b\n", {})], mode)
    assert [(n, f.read()) for n, f in iter_members(t)] == [("traces/a.jsonl", b"a\n"),
                                                          ("traces/b.csv", b"b\n")]
    assert [n for n, _ in iter_members(t, "*.csv")] == ["traces/b.csv"]
    dest = tmp_path / "out" / "a.jsonl"
    assert extract_member(t, "traces/a.jsonl", dest) == dest and dest.read_bytes() == b"a\n"
    with pytest.raises(LLMTracesError, match="no regular file member 'missing'"):
        extract_member(t, "missing", tmp_path / "m")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(("name", "kw", "message"), [
    ("../evil", {}, "'..' path component"),
    ("traces/../../evil", {}, "'..' path component"),
    ("/abs/evil", {}, "absolute path"),
    ("traces/link", {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, "link to"),
    ("traces/hard", {"type": tarfile.LNKTYPE, "linkname": "traces/a.jsonl"}, "link to"),
    ("traces/dev", {"type": tarfile.CHRTYPE}, "device or FIFO"),
    ("traces/fifo", {"type": tarfile.FIFOTYPE}, "device or FIFO"),
])
def test_malicious_members_are_refused(tmp_path: Path, name: str, kw: dict, message: str):
    target = tmp_path / "target"
    target.mkdir()
    data = b"" if kw else b"evil\n"
    t = make(tmp_path / "bad.tar.gz", [("traces/a.jsonl", b"a\n", {}), (name, data, kw)])
    with pytest.raises(UnsafeArchiveError, match=message) as err:
        for _ in iter_members(t):
            pass
    assert repr(name) in str(err.value)
    with pytest.raises(UnsafeArchiveError):
        extract_member(t, name, target / "x")
    with pytest.raises(UnsafeArchiveError):  # even the good member: the archive is refused
        extract_member(t, "nothing-matches", target / "y")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["bad.tar.gz", "target"]


def test_byte_limit(tmp_path: Path):
    t = make(tmp_path / "big.tar.gz", [("a", b"x" * 600, {}), ("b", b"y" * 600, {})])
    assert sum(len(f.read()) for _, f in iter_members(t, limit=1200)) == 1200
    with pytest.raises(UnsafeArchiveError, match="'b'.*over the limit of 1,000"):
        for _, f in iter_members(t, limit=1000):
            f.read()
    with pytest.raises(UnsafeArchiveError, match="'a'.*over the limit"):
        extract_member(t, "a", tmp_path / "out" / "a", limit=100)
    assert not (tmp_path / "out" / "a").exists()
    assert list(tmp_path.rglob(".*tmp")) == []


def test_member_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """One member may unpack to at most LLMTRACES_MAX_MEMBER_BYTES, whatever the budget."""
    big = b"x" * ((1 << 20) + 1)
    t = make(tmp_path / "big.tar.gz", [("small", b"s" * 10, {}), ("huge", big, {})])
    monkeypatch.setenv("LLMTRACES_MAX_MEMBER_BYTES", str(1 << 20))
    seen = []
    with pytest.raises(UnsafeArchiveError) as err:
        for name, f in iter_members(t):
            seen.append((name, len(f.read())))
    assert seen == [("small", 10)]
    assert str(err.value) == (f"{t}: member 'huge': 1,048,577 bytes, over the 1 MiB a member "
                              "may unpack to; refused (raise LLMTRACES_MAX_MEMBER_BYTES for a "
                              "larger trace)")
    monkeypatch.setenv("LLMTRACES_MAX_MEMBER_BYTES", "12")
    with pytest.raises(LLMTracesError, match="LLMTRACES_MAX_MEMBER_BYTES='12': expected a "
                                             "whole number from 1,048,576"):
        list(iter_members(t))


def test_member_cap_holds_when_the_header_lies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Reading stops at the cap even for a member whose header passed the size check (a
    header that understates its member)."""
    import zipfile

    from llmtraces.fetching import archive as archive_module

    z = tmp_path / "z.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("t.csv", b"a" * 5000)
    monkeypatch.setattr(archive_module, "max_member_bytes", lambda: 4096)
    monkeypatch.setattr(archive_module, "_check_size", lambda *a: None)  # the header "passes"
    read = []
    with pytest.raises(UnsafeArchiveError, match="'t.csv': more than the 4 KiB a member may "
                                                 "unpack to"):
        for _, f in iter_members(z):
            while chunk := f.read(1024):
                read.append(len(chunk))
    assert sum(read) == 4096



def test_zip_members_stream_and_unsafe_ones_are_refused(tmp_path: Path):
    import stat
    import zipfile

    from llmtraces.fetching.archive import is_archive, list_members

    z = tmp_path / "t.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("traces/", b"")
        zf.writestr("traces/a.jsonl", b"a\n" * 100)
        zf.writestr("traces/b.csv", b"b\n")
    assert is_archive(z) and list_members(z) == ["traces/a.jsonl", "traces/b.csv"]
    assert [(n, f.read()) for n, f in iter_members(z, "*.csv")] == [("traces/b.csv", b"b\n")]
    with pytest.raises(UnsafeArchiveError, match="over the limit"):
        for _, f in iter_members(z, limit=50):
            f.read()
    plain = tmp_path / "plain.csv"
    plain.write_bytes(b"a,b\n")
    assert not is_archive(plain)
    for name, mode, message in [("../evil", 0, "'..' path component"),
                                ("/abs", 0, "absolute path"),
                                ("traces/link", stat.S_IFLNK | 0o777, "link or special")]:
        bad = tmp_path / "bad.zip"
        with zipfile.ZipFile(bad, "w") as zf:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, b"/etc/passwd")
        with pytest.raises(UnsafeArchiveError, match=message):
            list_members(bad)
        with pytest.raises(UnsafeArchiveError, match=message):
            list(iter_members(bad))
