"""Checks of a replay's options before anything is sent or written: every number finite and
in a sensible range (never "no limit" by accident), an endpoint URL without credentials, and
an output folder that holds no earlier run unless overwriting was asked for.

Each failure is one :class:`ReplayError` line naming the option, the value and what is
accepted; the ranges are in :data:`RANGES` (and docs/replay.md).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ReplayError

#: The longest schedule a replay accepts, in seconds (about 3 years): past it a time option
#: is a typo (``--rps 1e-300``), not a plan.
MAX_SPAN_S = 1e8
#: Bounds of trace times (``--window``): microseconds of these still fit an int64.
MAX_TIME_S = 1e12
#: Token counts and vocabulary sizes stay below this.
MAX_TOKENS = 2**31 - 1
#: What ``replay`` writes into its output folder (``--overwrite`` removes these only).
OUTPUTS = ("requests.parquet", "requests.parts", "summary.json", "timeseries.parquet")

#: option -> (low, high, low excluded, unit): the accepted values of each numeric option.
RANGES: dict[str, tuple[float, float, bool, str]] = {
    "--speedup": (1e-6, math.inf, False, ""),
    "--rps": (1e-6, math.inf, False, "requests/s"),
    "--duration": (0.0, MAX_SPAN_S, True, "seconds"),
    "--cv": (0.01, 100.0, False, ""),
    "--window START": (0.0, MAX_TIME_S, False, "seconds"),
    "--window DURATION": (0.0, MAX_TIME_S, True, "seconds"),
    "--max-requests": (1, 2**63 - 1, False, ""),
    "--timeout": (0.0, 1e6, True, "seconds"),
    "--grace": (0.0, 1e6, False, "seconds"),
    "--window-s": (1e-3, MAX_SPAN_S, False, "seconds"),
    "--max-concurrency": (1, 1_000_000, False, ""),
    "--default-output-tokens": (1, MAX_TOKENS, False, ""),
    "--vocab-size": (2, MAX_TOKENS, False, ""),
    "--percentiles": (0.0, 100.0, False, ""),
    "--slo": (0.0, 1e9, True, "ms"),
}


def num(x: float) -> str:
    """A number as an option message shows it: ``1e-300``, ``nan``, ``600``, ``1,000,000``."""
    if isinstance(x, int) or (math.isfinite(x) and x == int(x) and abs(x) < 1e7):
        return f"{int(x):,}" if abs(x) >= 10_000 else str(int(x))
    return f"{x:g}"


def accepted(option: str) -> str:
    """What ``option`` accepts, in words: ``seconds in (0, 1,000,000]``."""
    lo, hi, lo_open, unit = RANGES[option]
    what = f"{unit} " if unit else ""
    if hi == math.inf:
        return f"a finite number{' of ' + unit if unit else ''} >= {num(lo)}"
    return f"{what}in {'(' if lo_open else '['}{num(lo)}, {num(hi)}]"


def check_range(option: str, value: float, name: str | None = None) -> None:
    """Raise :class:`ReplayError` unless ``value`` is in ``option``'s range of
    :data:`RANGES`; NaN and infinities never pass. ``name`` is the option as shown."""
    lo, hi, lo_open, _ = RANGES[option]
    finite = not isinstance(value, float) or math.isfinite(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not finite or \
            not (value > lo if lo_open else value >= lo) or not value <= hi:
        shown = num(value) if isinstance(value, int | float) else repr(value)
        raise ReplayError(f"{name or option}: {shown} is out of range; expected "
                          f"{accepted(option)}")


def check_ranges(pairs: Iterable[tuple[str, float | None]]) -> None:
    """:func:`check_range` of every ``(option, value)`` whose value is set (not None)."""
    for option, value in pairs:
        if value is not None:
            check_range(option, value)


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
