"""Zenodo records: the record API gives each file's size, md5 and download link.

``GET <base>/api/records/<id>`` returns ``{"files": [{"key", "size", "checksum": "md5:<hex>",
"links": {"content" | "self": url}}]}`` (InvenioRDM). A record id names one version, so the
version DOI ``10.5281/zenodo.<id>`` is what the registry pins. ``$LLMTRACES_ZENODO_URL``
replaces ``https://zenodo.org`` (a local mirror of the API, or tests).
"""

from __future__ import annotations

import os
from typing import Any

import requests

from ...errors import DownloadError
from ...registry import FileEntry

DEFAULT_BASE = "https://zenodo.org"
#: The record publishes size and md5: ask even when the user imports the file by hand.
GIVES_PINS = True


def base_url() -> str:
    """The Zenodo server to ask: ``$LLMTRACES_ZENODO_URL`` or zenodo.org."""
    return os.environ.get("LLMTRACES_ZENODO_URL", DEFAULT_BASE).rstrip("/")


def record_files(session: requests.Session, record: str, timeout: float) -> list[dict[str, Any]]:
    """The ``files`` list of a Zenodo record, or a clear error."""
    url = f"{base_url()}/api/records/{record}"
    try:
        resp = session.get(url, timeout=timeout)
    except requests.RequestException as exc:
        raise DownloadError(f"Zenodo record {record}: cannot reach {url}: {exc}") from None
    if resp.status_code != 200:
        raise DownloadError(f"Zenodo record {record}: HTTP {resp.status_code} from {url} (a "
                            "draft or restricted record needs its owner to publish it)")
    try:
        files = resp.json()["files"]
        assert isinstance(files, list)
    except (ValueError, KeyError, AssertionError):
        raise DownloadError(f"Zenodo record {record}: {url} did not return a record with a "
                            "files list") from None
    return files


def resolve(entry: FileEntry, session: requests.Session, timeout: float
            ) -> tuple[FileEntry, str, dict[str, str]]:
    """``entry`` with the size and md5 the record publishes, and the file's download URL.

    Pins already in the registry must agree with the record: a difference means the record
    was edited or the registry points at the wrong version.
    """
    assert entry.zenodo is not None
    ref = entry.zenodo
    files = record_files(session, ref.record, timeout)
    found = next((f for f in files if f.get("key") == ref.key), None)
    if found is None:
        keys = ", ".join(str(f.get("key")) for f in files) or "(none)"
        raise DownloadError(f"Zenodo record {ref.record} has no file {ref.key!r}; it has: {keys}")
    algo, _, digest = str(found.get("checksum", "")).partition(":")
    size = found.get("size")
    update: dict[str, Any] = {}
    if isinstance(size, int):
        if entry.size is not None and entry.size != size:
            raise DownloadError(f"Zenodo record {ref.record}: {ref.key} is {size:,} bytes, the "
                                f"registry pins {entry.size:,}")
        update["size"] = size
    if algo == "md5" and digest:
        if entry.md5 is not None and entry.md5 != digest:
            raise DownloadError(f"Zenodo record {ref.record}: {ref.key} has md5 {digest}, the "
                                f"registry pins {entry.md5}")
        update.update(md5=digest, unverified=None)
    links = found.get("links") or {}
    url = links.get("content") or links.get("self")
    if not url:
        url = f"{base_url()}/records/{ref.record}/files/{ref.key}?download=1"
    return entry.model_copy(update=update), str(url), {}
