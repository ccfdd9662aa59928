"""Google Drive shared files, including the large-file ("can't scan for viruses") step.

``GET <base>/uc?export=download&id=<id>`` answers a small file directly (after redirects). For
a large one it answers an HTML page whose ``download-form`` carries the real link
(``drive.usercontent.google.com/download`` with ``id``, ``confirm`` and ``uuid`` inputs); older
pages instead set a ``download_warning`` cookie whose value is the ``confirm`` token. Drive
publishes no checksum, so the registry must pin one (or say ``unverified``).
``$LLMTRACES_GDRIVE_URL`` replaces ``https://drive.google.com`` (tests, proxies).
"""

from __future__ import annotations

import os
from html.parser import HTMLParser
from urllib.parse import urlencode, urljoin

import requests

from ...errors import DownloadError
from ...registry import FileEntry, is_web_url, shown

DEFAULT_BASE = "https://drive.google.com"
#: Drive gives no size or checksum, so a hand-imported file needs no call to it.
GIVES_PINS = False
_MAX_PAGE = 1 << 20


def base_url() -> str:
    """The Drive server to ask: ``$LLMTRACES_GDRIVE_URL`` or drive.google.com."""
    return os.environ.get("LLMTRACES_GDRIVE_URL", DEFAULT_BASE).rstrip("/")


class _DownloadForm(HTMLParser):
    """Collects the action and inputs of the page's download form."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.inputs: dict[str, str] = {}
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and (a.get("id") == "download-form" or "download" in a.get("action", "")):
            self.action, self._inside = a.get("action"), True
        elif tag == "input" and self._inside and a.get("name"):
            self.inputs[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside = False


def resolve(entry: FileEntry, session: requests.Session, timeout: float
            ) -> tuple[FileEntry, str, dict[str, str]]:
    """``entry`` unchanged and the URL that serves the file's bytes."""
    assert entry.gdrive is not None
    url = f"{base_url()}/uc?{urlencode({'export': 'download', 'id': entry.gdrive.id})}"
    try:
        resp = session.get(url, stream=True, timeout=timeout)
    except requests.RequestException as exc:
        raise DownloadError(f"Google Drive file {entry.gdrive.id}: cannot reach {url}: {exc}") \
            from None
    with resp:
        if resp.status_code != 200:
            raise DownloadError(f"Google Drive file {entry.gdrive.id}: HTTP {resp.status_code} "
                                "(a private or removed file, or a wrong id)")
        if "text/html" not in resp.headers.get("Content-Type", ""):
            return entry, resp.url, {}  # small file: this (redirected) URL serves the bytes
        page = resp.raw.read(_MAX_PAGE, decode_content=True).decode("utf-8", "replace")
        cookies = dict(resp.cookies)
    form = _DownloadForm()
    form.feed(page)
    if form.action:
        action = urljoin(resp.url, form.action)
        if not is_web_url(action):  # a page names no local file to copy into the cache
            raise DownloadError(f"Google Drive file {entry.gdrive.id}: the download form's "
                                f"link {shown(form.action)} is not an http:// or https:// URL")
        return entry, f"{action}?{urlencode(form.inputs)}", {}
    token = next((v for k, v in cookies.items() if k.startswith("download_warning")), None)
    if token:
        return entry, f"{url}&{urlencode({'confirm': token})}", {}
    why = ("its download quota is exceeded; try later, or download it in a browser and use "
           "`llmtraces fetch --file`") if "quota" in page.lower() else (
           "the page has no download link: the file may be private or removed")
    raise DownloadError(f"Google Drive file {entry.gdrive.id}: {why}")
