"""Checks of a replay's options before anything is sent or written: every number finite and
in a sensible range (never "no limit" by accident), an endpoint URL without credentials, and
an output folder that holds no earlier run unless overwriting was asked for.

Each failure is one :class:`ReplayError` line naming the option, the value and what is
accepted; the ranges are in :data:`llmtraces.ranges.RANGES` (and docs/replay.md).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from .. import ranges
from ..ranges import MAX_SPAN_S, MAX_TIME_S, MAX_TOKENS, RANGES, accepted, num
from .errors import ReplayError

__all__ = ["MAX_SPAN_S", "MAX_TIME_S", "MAX_TOKENS", "OUTPUTS", "RANGES", "accepted",
           "check_endpoint", "check_out", "check_range", "check_ranges", "clear_outputs", "num",
           "redact"]

#: What ``replay`` writes into its output folder (``--overwrite`` removes these only).
OUTPUTS = ("requests.parquet", "requests.parts", "summary.json", "timeseries.parquet")


def check_range(option: str, value: float, name: str | None = None) -> None:
    """:func:`llmtraces.ranges.check_range`, raising :class:`ReplayError`."""
    ranges.check_range(option, value, name, error=ReplayError)


def check_ranges(pairs: Iterable[tuple[str, float | None]]) -> None:
    """:func:`llmtraces.ranges.check_ranges`, raising :class:`ReplayError`."""
    ranges.check_ranges(pairs, error=ReplayError)


def redact(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``, for messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return f"{scheme}://{netloc}{slash}{path}"


def check_endpoint(url: str) -> None:
    """Raise :class:`ReplayError` unless ``url`` is an ``http(s)://host[:port][/path]`` URL
    without credentials, query or fragment. Credentials are refused (never sent, never
    echoed): they would end up in logs and ``summary.json``; the key goes in ``--api-key``."""
    shown = redact(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ReplayError(f"--endpoint: {shown!r} is not a server URL; expected "
                          "http://HOST[:PORT][/v1[/completions|/chat/completions]]")
    if "@" in parts.netloc:
        raise ReplayError(f"--endpoint: credentials in the URL ({shown}) are not accepted, "
                          "so that they never reach a log or summary.json; expected a URL "
                          "without user:password@, and the token in --api-key or "
                          "$OPENAI_API_KEY")
    if parts.query or parts.fragment or (port is not None and port == 0):
        raise ReplayError(f"--endpoint: {shown!r} has a query, a fragment or port 0; expected "
                          "http://HOST[:PORT][/v1[/completions|/chat/completions]]")


def check_out(out: Path, overwrite: bool) -> None:
    """Raise :class:`ReplayError` when ``out`` is a file, or a folder with anything in it
    and ``overwrite`` is false: an earlier run's outputs are never replaced by accident."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReplayError(f"-o {out}: a file is there; expected a new or empty folder")
    if overwrite or not out.is_dir():
        return
    names = sorted(os.listdir(out))
    if names:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise ReplayError(f"-o {out}: the folder is not empty ({shown}); expected a new or "
                          "empty folder, or --overwrite to replace an earlier run's outputs")


def clear_outputs(out: Path) -> None:
    """Remove an earlier run's outputs (:data:`OUTPUTS`) from ``out``; other files stay."""
    for name in OUTPUTS:
        path = Path(out) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
