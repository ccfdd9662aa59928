"""The Google Drive backend against Drive-shaped endpoints served on 127.0.0.1."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from httpserver import LoopbackServer, Route

import llmtraces
from llmtraces.errors import ChecksumError, DownloadError

FILE_ID = "1D8f68sBWJHyCfJZdEYCBK2M0iHmSDE6M"
UC = f"/uc?export=download&id={FILE_ID}"
CONFIRM_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>
</head><body><p>Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="{base}/download" method="get">
<input type="submit" id="uc-download-link" value="Download anyway"/>
<input type="hidden" name="id" value="{id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="0f1e">
</form></body></html>"""


def drive_registry(tmp_path: Path, server: LoopbackServer, data: bytes) -> Path:
    reg = tmp_path / "registry"
    reg.mkdir(parents=True)
    (reg / "drive-test.toml").write_text(f'''
id = "drive-test"
name = "A shared Google Drive file"
description = "Test source resolved through the Drive confirmation step."
homepage = "{server.url}/"
format = "azure-csv"

[licence]
spdx = "CC-BY-NC-4.0"
url = "{server.url}/licence"
redistributable = true
commercial_use = false
attribution = "test"

[citation]
text = "test"
bibtex = "@misc{{t, title={{t}}}}"

[time]
kind = "absolute"
native_format = "ISO"
resolution = "1us"
origin = "first row"

[traces.t]
description = "one file"

[traces.t.file]
name = "trace.csv"
url = "{server.url}/file/d/{FILE_ID}/view"
gdrive = {{ id = "{FILE_ID}" }}
size = {len(data)}
sha256 = "{hashlib.sha256(data).hexdigest()}"
''', encoding="utf-8")
    return reg


@pytest.fixture()
def drive(tmp_path, server: LoopbackServer, monkeypatch, code_csv):
    data = code_csv.read_bytes()
    monkeypatch.setenv("LLMTRACES_GDRIVE_URL", server.url)
    monkeypatch.setenv("LLMTRACES_REGISTRY", str(drive_registry(tmp_path, server, data)))
    return server, data


def test_large_file_confirmation_form(drive, home):
    server, data = drive
    html = CONFIRM_PAGE.format(base=server.url, id=FILE_ID).encode()
    server.routes[UC] = Route(html, headers={"Content-Type": "text/html; charset=utf-8"})
    real = f"/download?id={FILE_ID}&export=download&confirm=t&uuid=0f1e"
    server.routes[real] = Route(data)
    (got,) = llmtraces.fetch("drive-test")
    assert got.origin == server.url + real and got.path.read_bytes() == data
    assert [p for p, _ in server.log] == [UC, real]


def test_small_file_served_directly(drive, home):
    server, data = drive
    server.routes[UC] = Route(redirect_to=f"{server.url}/usercontent/{FILE_ID}")
    server.routes[f"/usercontent/{FILE_ID}"] = Route(
        data, headers={"Content-Type": "application/octet-stream"})
    (got,) = llmtraces.fetch("drive-test")
    assert got.path.read_bytes() == data
    assert got.origin == f"{server.url}/usercontent/{FILE_ID}"


def test_old_cookie_confirmation(drive, home):
    server, data = drive
    server.routes[UC] = Route(b"<html>warning</html>", headers={
        "Content-Type": "text/html", "Set-Cookie": "download_warning_123=Xy9z; Path=/"})
    server.routes[f"{UC}&confirm=Xy9z"] = Route(data)
    (got,) = llmtraces.fetch("drive-test")
    assert got.path.read_bytes() == data


def test_quota_page_and_wrong_bytes(drive, home):
    server, data = drive
    server.routes[UC] = Route(b"<html>Sorry, the download quota for this file has been "
                              b"exceeded.</html>", headers={"Content-Type": "text/html"})
    with pytest.raises(DownloadError, match="download quota is exceeded.*--file"):
        llmtraces.fetch("drive-test")
    server.routes[UC] = Route(data[:-1] + b"0", headers={"Content-Type": "text/csv"})
    with pytest.raises(ChecksumError):
        llmtraces.fetch("drive-test")
    assert not (home / "raw" / "drive-test" / "trace.csv").exists()


def test_file_import_needs_no_drive_call(drive, code_csv, home):
    server, data = drive
    (got,) = llmtraces.fetch("drive-test", file=code_csv)
    assert got.path.read_bytes() == data and server.log == []
