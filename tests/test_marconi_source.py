"""The `marconi` registry source: one Google-Drive tarball whose 30 members are the traces.

A tarball in the exact upstream layout (``traces/<name>.jsonl`` members in Marconi's JSONL) is
served on 127.0.0.1 as a mirror and as a Drive-shaped endpoint; fetch, convert, validate and
load run as a user runs them. Members are read one at a time from the tarball; unsafe members
and missing ones are refused with their names; the licence restriction is said on every
export; `registry update-hashes` pins the archive and its members.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import tomllib
from pathlib import Path

import pytest
from httpserver import LoopbackServer, Route

import llmtraces
from conftest import FIXTURES, Cli, build_registry
from llmtraces.fetching.repin import update_hashes
from llmtraces.formats.parquet import read_metadata
from llmtraces.registry import load_registry

JSONL = FIXTURES / "marconi" / "lmsys_sps=0.5_nums=2.jsonl"
FILE_ID = "1D8f68sBWJHyCfJZdEYCBK2M0iHmSDE6M"
LMSYS = "traces/lmsys_sps=0.5_nums=100.jsonl"
SWE = "traces/swebench_sps=1_art=7.5_nums=100.jsonl"


def tarball(members: dict[str, bytes], *, folder: bool = True) -> bytes:
    """A .tar.gz like `tar -czf traces.tar.gz traces/`: a folder entry, then the files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        if folder:
            d = tarfile.TarInfo("traces")
            d.type = tarfile.DIRTYPE
            tar.addfile(d)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def second_trace() -> bytes:
    """Another member: the fixture's first three records re-timed (ts x 2)."""
    lines = JSONL.read_text().splitlines()[:3]
    return ("\n".join(line.replace('"ts": 2.0', '"ts": 4.0') for line in lines) + "\n").encode()


@pytest.fixture()
def marconi(tmp_path: Path, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch):
    """The shipped registry on the loopback server; the tarball at /marconi/traces.tar.gz."""
    reg = build_registry(tmp_path / "registry", server.url, {})
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(reg))
    monkeypatch.setenv("LLMTRACES_GDRIVE_URL", server.url)
    data = tarball({LMSYS: JSONL.read_bytes(), SWE: second_trace()})
    server.routes["/marconi/traces.tar.gz"] = Route(data)
    return server, data, reg


def test_registry_lists_the_thirty_members():
    src = llmtraces.source("marconi")
    assert len(src.traces) == 30 and list(src.archives) == ["traces"]
    assert {t.member.path for t in src.traces.values() if t.member} >= {LMSYS, SWE}
    assert src.traces["lmsys_sps0.5"].service == "conversation"
    assert src.traces["swebench_sps1_art7.5"].service == "agent"
    assert not src.licence.redistributable and not src.licence.commercial_use
    assert src.archives["traces"].gdrive is not None


def test_fetch_convert_validate_load_from_a_mirror(marconi, home: Path, cli: Cli):
    server, data, _ = marconi
    r = cli("fetch", "marconi", "--trace", "lmsys_sps0.5", "--mirror", server.url)
    assert r.exit_code == 0, r.output
    assert (home / "raw" / "marconi" / "traces.tar.gz").read_bytes() == data
    assert [p for p, _ in server.log] == ["/marconi/traces.tar.gz"]  # Drive never asked
    r = cli("convert", "marconi", "--trace", "lmsys_sps0.5")
    assert r.exit_code == 0, r.output
    assert "CC-BY-NC-4.0 (no redistribution, non-commercial)" in r.output
    assert cli("validate", "marconi", "--trace", "lmsys_sps0.5").exit_code == 0
    t = llmtraces.load("marconi", trace="lmsys_sps0.5")
    assert t.num_rows == 6
    assert t.column("arrival_us").to_pylist() == [0, 2_000_000, 6_666_667, 9_333_333,
                                                  11_333_333, 20_000_000]
    assert t.column("input_token_ids")[0].as_py()[:3] == [1, 8853, 29878]
    assert set(t.column("service").to_pylist()) == {"conversation"}
    dest = home / "parquet" / "source=marconi" / "trace=lmsys_sps0.5" / "part-0.parquet"
    meta = read_metadata(dest)
    assert meta["native_file"] == "lmsys_sps=0.5_nums=100.jsonl"
    assert meta["native_sha256"] == hashlib.sha256(JSONL.read_bytes()).hexdigest()
    assert meta["native_archive"]["member"] == LMSYS
    assert meta["native_verified"] is False  # Drive publishes no checksum; nothing pinned yet
    assert meta["licence"]["redistributable"] is False
    # The scratch copy of the member is gone; only the archive stays in the cache.
    assert sorted(p.name for p in (home / "raw" / "marconi").iterdir()
                  if not p.name.endswith((".lock", ".verified"))) == ["traces.tar.gz"]


def test_one_pass_converts_every_member_present_and_names_the_missing(marconi, home: Path,
                                                                       cli: Cli):
    server, _, _ = marconi
    assert cli("fetch", "marconi", "--mirror", server.url).exit_code == 0
    assert [p for p, _ in server.log].count("/marconi/traces.tar.gz") == 1  # once, 30 traces
    r = cli("convert", "marconi")  # the test tarball has 2 of the 30 members
    assert r.exit_code == 1
    assert "no member 'traces/lmsys_sps=0.25_nums=100.jsonl' for trace lmsys_sps0.25" in r.output
    assert "it has 2 file(s)" in r.output
    r = cli("convert", "marconi", "--trace", "swebench_sps1_art7.5")
    assert r.exit_code == 0, r.output
    t = llmtraces.load("marconi", trace="swebench_sps1_art7.5")
    assert t.column("arrival_us").to_pylist() == [0, 4_000_000, 6_666_667]
    assert set(t.column("service").to_pylist()) == {"agent"}


def test_an_archive_with_another_top_folder_matches_by_file_name(marconi, home: Path, cli: Cli):
    server, _, _ = marconi
    server.routes["/marconi/traces.tar.gz"] = Route(tarball(
        {"./data/lmsys_sps=0.5_nums=100.jsonl": JSONL.read_bytes()}, folder=False))
    assert cli("fetch", "marconi", "--trace", "lmsys_sps0.5", "--mirror", server.url
               ).exit_code == 0
    r = cli("convert", "marconi", "--trace", "lmsys_sps0.5")
    assert r.exit_code == 0, r.output
    assert llmtraces.load("marconi", trace="lmsys_sps0.5").num_rows == 6


def test_an_unsafe_member_stops_conversion(marconi, home: Path, cli: Cli):
    server, _, _ = marconi
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        evil = tarfile.TarInfo("traces/lmsys_sps=0.5_nums=100.jsonl")
        evil.type, evil.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(evil)
    server.routes["/marconi/traces.tar.gz"] = Route(buf.getvalue())
    assert cli("fetch", "marconi", "--trace", "lmsys_sps0.5", "--mirror", server.url
               ).exit_code == 0
    r = cli("convert", "marconi", "--trace", "lmsys_sps0.5")
    assert r.exit_code == 1
    assert "link to '/etc/passwd' refused" in r.output
    assert not (home / "parquet" / "source=marconi").exists()


def test_a_bad_record_in_a_member_names_member_and_line(marconi, home: Path, cli: Cli):
    server, _, _ = marconi
    bad = JSONL.read_text().replace('"num_input_tokens": 11,', '"num_input_tokens": 12,', 1)
    server.routes["/marconi/traces.tar.gz"] = Route(tarball({LMSYS: bad.encode()}))
    assert cli("fetch", "marconi", "--trace", "lmsys_sps0.5", "--mirror", server.url
               ).exit_code == 0
    r = cli("convert", "marconi", "--trace", "lmsys_sps0.5")
    assert r.exit_code == 1
    assert "lmsys_sps=0.5_nums=100.jsonl:2: error: num_input_tokens: num_input_tokens is 12 " \
           "but input_tokens holds 11 ids" in r.output


def test_fetch_through_the_drive_confirmation_step(marconi, home: Path):
    server, data, _ = marconi
    uc = f"/uc?export=download&id={FILE_ID}"
    form = (f'<html><form id="download-form" action="{server.url}/download" method="get">'
            f'<input type="hidden" name="id" value="{FILE_ID}">'
            '<input type="hidden" name="confirm" value="t"></form></html>').encode()
    server.routes[uc] = Route(form, headers={"Content-Type": "text/html; charset=utf-8"})
    server.routes[f"/download?id={FILE_ID}&confirm=t"] = Route(data)
    (got,) = llmtraces.fetch("marconi", "lmsys_sps0.5")
    assert got.path.read_bytes() == data and got.origin.endswith("confirm=t")


def test_the_mirror_is_tried_before_an_unreachable_drive(marconi, home: Path, monkeypatch):
    server, data, _ = marconi
    monkeypatch.setenv("LLMTRACES_GDRIVE_URL", "http://127.0.0.1:9")  # nothing listens
    (got,) = llmtraces.fetch("marconi", "lmsys_sps0.5", mirror=server.url)
    assert got.path.read_bytes() == data


def test_export_of_a_restricted_trace_carries_its_licence(marconi, home: Path, tmp_path: Path,
                                                          cli: Cli):
    server, _, _ = marconi
    assert cli("convert", "marconi", "--trace", "lmsys_sps0.5", "--mirror", server.url
               ).exit_code == 0
    unified = home / "parquet" / "source=marconi" / "trace=lmsys_sps0.5" / "part-0.parquet"
    out = tmp_path / "k.csv"
    r = cli("convert", str(unified), "--to", "kavier", "-o", str(out), "-q")
    assert r.exit_code == 0, r.output
    assert "no redistribution, non-commercial" in r.output  # said even with --quiet
    note = (tmp_path / "k.csv.LICENCE.txt").read_text()
    assert "CC-BY-NC-4.0" in note and "do not share or re-host" in note
    assert "Pan et al." in note
    # Open data gets no note.
    assert cli("convert", str(FIXTURES / "azure-llm-2023" / "conv_head.csv"), "-o",
               str(tmp_path / "a.parquet")).exit_code == 0
    assert not list(tmp_path.glob("a.parquet.LICENCE.txt"))


def test_info_and_list_say_the_licence_flags(cli: Cli):
    r = cli("info", "marconi")
    assert r.exit_code == 0
    assert "NOT redistributable, NON-COMMERCIAL" in r.output and "WARNING:" in r.output
    assert "traces/swebench_sps=10_art=10_nums=100.jsonl in archive traces" in r.output
    listing = cli("list").output
    line = next(x for x in listing.splitlines() if x.startswith("marconi "))
    assert "30 traces" in line and "no redistribution, non-commercial" in line


def test_release_tooling_can_leave_restricted_sources_out():
    from llmtraces.licensing import redistributable

    kept = {s.id for s in redistributable(llmtraces.sources())}
    assert "marconi" not in kept and "azure-llm-2023" in kept
    assert "marconi" not in {s.id for s in redistributable(llmtraces.sources(),
                                                           allow_non_commercial=True)}


def test_update_hashes_pins_the_archive_and_its_members(marconi, home: Path, cli: Cli):
    server, data, reg = marconi
    server.routes["/upstream/view?usp=sharing"] = Route(data)  # the pinned url, on loopback
    pins = update_hashes("marconi", "lmsys_sps0.5", registry=reg)
    assert [p.trace for p in pins] == ["traces", "lmsys_sps0.5"]
    text = (reg / "marconi.toml").read_text()
    entry = tomllib.loads(text)
    archive = entry["archives"]["traces"]
    assert archive["size"] == len(data)
    assert archive["sha256"] == hashlib.sha256(data).hexdigest()
    assert "unverified" not in archive
    member = entry["traces"]["lmsys_sps0.5"]["member"]
    assert member["sha256"] == hashlib.sha256(JSONL.read_bytes()).hexdigest()
    assert member["size"] == JSONL.stat().st_size
    src = load_registry(reg)["marconi"]
    assert src.traces["lmsys_sps0.5"].member.sha256 == member["sha256"]
    r = cli("convert", "marconi", "--trace", "lmsys_sps0.5", "--mirror", server.url)
    assert r.exit_code == 0, r.output
    # A member whose bytes differ from its pin is refused at conversion.
    (reg / "marconi.toml").write_text(text.replace(member["sha256"], "0" * 64))
    from llmtraces.registry import load_dir

    load_dir.cache_clear()
    r = cli("convert", "marconi", "--trace", "lmsys_sps0.5")
    assert r.exit_code == 1, r.output
    assert "not the published marconi lmsys_sps0.5 file" in r.output
