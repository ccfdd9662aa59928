"""Hugging Face Hub datasets, gated ones included, with the user's own token.

The Hub's tree API (``GET <endpoint>/api/datasets/<repo>/tree/<revision>/<folder>``) gives each
file's size and, for LFS files, its sha256; the bytes come from
``<endpoint>/datasets/<repo>/resolve/<revision>/<path>`` through the normal download stack, with
``Authorization: Bearer <token>`` sent to the Hub only (requests drops it on the redirect to the
CDN). The token is ``$HF_TOKEN``, else the login saved by ``huggingface-cli login`` (read with
``huggingface_hub``, the ``hf`` extra). It is never written to logs, errors or files.
``$HF_ENDPOINT`` replaces ``https://huggingface.co``, as in huggingface_hub.
"""

from __future__ import annotations

import os
import posixpath
import re
from typing import Any
from urllib.parse import quote

import requests

from ...errors import DownloadError
from ...registry import FileEntry, is_web_url, shown

DEFAULT_ENDPOINT = "https://huggingface.co"
#: The Hub publishes size and sha256: ask even when the user imports the file by hand.
GIVES_PINS = True


def endpoint() -> str:
    """The Hub to ask: ``$HF_ENDPOINT`` or huggingface.co."""
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


def token() -> str | None:
    """The user's Hub token: ``$HF_TOKEN``, else huggingface_hub's saved login, else None."""
    env = os.environ.get("HF_TOKEN")
    if env:
        return env
    try:
        from huggingface_hub import get_token
    except ImportError:
        return None
    saved: str | None = get_token()
    return saved


def _refused(repo: str, status: int, has_token: bool) -> DownloadError:
    page = f"{endpoint()}/datasets/{repo}"
    how = ("your token has not been granted access: accept the dataset's terms on " + page
           if has_token else "it is gated: accept its terms on " + page + ", then log in "
           "(`huggingface-cli login`, or set HF_TOKEN; `pip install 'llmtraces[hf]'`)")
    return DownloadError(f"Hugging Face dataset {repo}: HTTP {status}: {how}")


def _listing(resp: requests.Response, api: str) -> list[Any]:
    """The tree API's answer: a JSON list, else one line naming the endpoint."""
    try:
        items = resp.json()
    except ValueError:
        kind = resp.headers.get("Content-Type", "").split(";")[0] or "no content type"
        raise DownloadError(f"Hugging Face tree API {api}: answer is not JSON ({kind}); "
                            "expected a list of files (is $HF_ENDPOINT a Hub?)") from None
    if not isinstance(items, list):
        raise DownloadError(f"Hugging Face tree API {api}: answer is a JSON "
                            f"{type(items).__name__}; expected a list of files")
    return items


def _find(items: list[Any], path: str, api: str) -> dict[str, Any] | None:
    """The listing's item for ``path``; an item that is not an object with a string ``path``
    is one line naming it."""
    for k, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise DownloadError(f"Hugging Face tree API {api}: item {k} has no string "
                                "'path' field; expected objects with path, size, lfs")
        if item["path"] == path:
            return item
    return None


def _pins(found: dict[str, Any], api: str) -> tuple[int | None, str | None]:
    """The size and sha256 the Hub gives for one file, each checked for its type."""
    lfs = found.get("lfs") or {}
    if not isinstance(lfs, dict):
        raise DownloadError(f"Hugging Face tree API {api}: {found['path']}: field 'lfs' is "
                            "not an object")
    size, sha = lfs.get("size", found.get("size")), lfs.get("oid")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise DownloadError(f"Hugging Face tree API {api}: {found['path']}: field 'size' is "
                            f"{str(size)[:40]!r}; expected a byte count >= 0")
    if sha is not None and (not isinstance(sha, str)
                            or not re.fullmatch(r"[0-9a-f]{64}", sha)):
        raise DownloadError(f"Hugging Face tree API {api}: {found['path']}: field 'lfs.oid' "
                            "is not a sha256 hex digest")
    return size, sha


def resolve(entry: FileEntry, session: requests.Session, timeout: float
            ) -> tuple[FileEntry, str, dict[str, str]]:
    """``entry`` with the Hub's size and sha256, the resolve URL, and the auth header for it."""
    assert entry.hf is not None
    ref = entry.hf
    if not is_web_url(endpoint()):  # the resolve URL below is downloaded: never a local file
        raise DownloadError(f"$HF_ENDPOINT={shown(endpoint())}: expected an http:// or "
                            "https:// URL")
    tok = token()
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    rev = quote(ref.revision, safe="")
    folder = posixpath.dirname(ref.path)
    api = f"{endpoint()}/api/datasets/{ref.repo}/tree/{rev}" + (f"/{folder}" if folder else "")
    try:
        resp = session.get(api, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise DownloadError(f"Hugging Face dataset {ref.repo}: cannot reach {api}: "
                            f"{type(exc).__name__}") from None
    if resp.status_code in (401, 403):
        raise _refused(ref.repo, resp.status_code, bool(tok))
    if resp.status_code != 200:
        raise DownloadError(f"Hugging Face dataset {ref.repo}: HTTP {resp.status_code} from {api} "
                            "(wrong repository, revision or folder?)")
    found = _find(_listing(resp, api), ref.path, api)
    if found is None:
        raise DownloadError(f"Hugging Face dataset {ref.repo}@{ref.revision} has no file "
                            f"{ref.path!r}")
    size, sha = _pins(found, api)
    update: dict[str, Any] = {}
    if isinstance(size, int):
        if entry.size is not None and entry.size != size:
            raise DownloadError(f"Hugging Face dataset {ref.repo}: {ref.path} is {size:,} bytes, "
                                f"the registry pins {entry.size:,}")
        update["size"] = size
    if sha:
        if entry.sha256 is not None and entry.sha256 != sha:
            raise DownloadError(f"Hugging Face dataset {ref.repo}: {ref.path} has sha256 {sha}, "
                                f"the registry pins {entry.sha256}")
        update.update(sha256=sha, unverified=None)
    url = f"{endpoint()}/datasets/{ref.repo}/resolve/{rev}/{quote(ref.path)}"
    # Listing is open on gated repositories; the content is not: ask before downloading.
    try:
        head = session.head(url, headers=headers, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        raise DownloadError(f"Hugging Face dataset {ref.repo}: cannot reach {url}: "
                            f"{type(exc).__name__}") from None
    if head.status_code in (401, 403):
        raise _refused(ref.repo, head.status_code, bool(tok))
    return entry.model_copy(update=update), url, headers
