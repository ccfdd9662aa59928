"""Zenodo records: the record API gives each file's size, md5 and download link.

``GET <base>/api/records/<id>`` returns ``{"files": [{"key", "size", "checksum": "md5:<hex>",
"links": {"content" | "self": url}}]}`` (InvenioRDM). A record id names one version, so the
version DOI ``10.5281/zenodo.<id>`` is what the registry pins. ``$LLMTRACES_ZENODO_URL``
replaces ``https://zenodo.org`` (a local mirror of the API, or tests).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

import requests

from ...errors import DownloadError
from ...registry import FileEntry, is_web_url, name_problem, shown

DEFAULT_BASE = "https://zenodo.org"
#: The record publishes size and md5: ask even when the user imports the file by hand.
GIVES_PINS = True


def base_url() -> str:
    """The Zenodo server to ask: ``$LLMTRACES_ZENODO_URL`` or zenodo.org."""
    return os.environ.get("LLMTRACES_ZENODO_URL", DEFAULT_BASE).rstrip("/")


@dataclass(frozen=True)
class RecordFile:
    """One checked entry of a record's ``files``: its key, and what the record says of it."""

    key: str
    size: int | None
    #: the md5 hex digest, when the checksum is one (``md5:<hex>``)
    md5: str | None
    #: ``links.content`` or ``links.self`` (http or https), when the record gives one
    url: str | None

    def download_url(self, record: str, base: str) -> str:
        """The link the record gives, else the file's usual address on ``base``."""
        return self.url or f"{base}/records/{record}/files/{quote(self.key)}?download=1"


def parse_file(record: str, index: int, f: object) -> RecordFile:
    """One entry of a record's ``files``, checked; :class:`DownloadError` names the record
    and the field when it is not what the API documents (a host answer is never trusted)."""
    where = f"Zenodo record {record}: files[{index}]"
    if not isinstance(f, dict):
        raise DownloadError(f"{where}: expected an object, got {shown(f)}")
    key = f.get("key")
    if not isinstance(key, str):
        raise DownloadError(f"{where}.key: expected a file name, got {shown(key)}")
    why = name_problem(key)
    if why:
        raise DownloadError(f"{where}.key: {shown(key)} {why}: not a plain file name")
    size = f.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise DownloadError(f"{where}.size: expected a number of bytes, got {shown(size)}")
    checksum = f.get("checksum")
    if checksum is not None and not isinstance(checksum, str):
        raise DownloadError(f"{where}.checksum: expected '<algorithm>:<hex digest>', got "
                            f"{shown(checksum)}")
    algo, _, digest = (checksum or "").partition(":")
    if algo == "md5" and not re.fullmatch(r"[0-9a-f]{32}", digest):
        raise DownloadError(f"{where}.checksum: {shown(checksum)} is not an md5 hex digest")
    return RecordFile(key=key, size=size, md5=digest if algo == "md5" else None,
                      url=_link(where, f.get("links")))


def _link(where: str, links: object) -> str | None:
    """The download link of a ``links`` object: http or https only."""
    if links is None:
        return None
    if not isinstance(links, dict):
        raise DownloadError(f"{where}.links: expected an object, got {shown(links)}")
    for name in ("content", "self"):
        url = links.get(name)
        if url is None:
            continue
        if not isinstance(url, str) or not is_web_url(url):
            raise DownloadError(f"{where}.links.{name}: {shown(url)} is not an http:// or "
                                "https:// URL")
        return url
    return None


def parse_files(record: str, files: object) -> list[RecordFile]:
    """A record's whole ``files`` list, each entry checked by :func:`parse_file`."""
    if not isinstance(files, list):
        raise DownloadError(f"Zenodo record {record}: files: expected a list, got "
                            f"{shown(files)}")
    return [parse_file(record, i, f) for i, f in enumerate(files)]


def record_files(session: requests.Session, record: str, timeout: float) -> list[dict[str, Any]]:
    """The ``files`` list of a Zenodo record as the API gives it, every entry checked by
    :func:`parse_file`, or a clear error."""
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
    except (ValueError, KeyError, TypeError):
        raise DownloadError(f"Zenodo record {record}: {url} did not return a record with a "
                            "files list") from None
    parse_files(record, files)
    return cast(list[dict[str, Any]], files)


def resolve(entry: FileEntry, session: requests.Session, timeout: float
            ) -> tuple[FileEntry, str, dict[str, str]]:
    """``entry`` with the size and md5 the record publishes, and the file's download URL.

    Pins already in the registry must agree with the record: a difference means the record
    was edited or the registry points at the wrong version.
    """
    assert entry.zenodo is not None
    ref = entry.zenodo
    files = parse_files(ref.record, record_files(session, ref.record, timeout))
    found = next((f for f in files if f.key == ref.key), None)
    if found is None:
        keys = ", ".join(f.key for f in files[:20]) or "(none)"
        raise DownloadError(f"Zenodo record {ref.record} has no file {ref.key!r}; it has: "
                            f"{keys}{' ...' if len(files) > 20 else ''}")
    update: dict[str, Any] = {}
    if found.size is not None:
        if entry.size is not None and entry.size != found.size:
            raise DownloadError(f"Zenodo record {ref.record}: {ref.key} is {found.size:,} bytes, "
                                f"the registry pins {entry.size:,}")
        update["size"] = found.size
    if found.md5 is not None:
        if entry.md5 is not None and entry.md5 != found.md5:
            raise DownloadError(f"Zenodo record {ref.record}: {ref.key} has md5 {found.md5}, the "
                                f"registry pins {entry.md5}")
        update.update(md5=found.md5, unverified=None)
    return entry.model_copy(update=update), found.download_url(ref.record, base_url()), {}
