"""Where a build's date and version facts come from: never the clock, the host or a path."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import zstandard

from .._version import __version__
from ..paths import registry_dir
from .errors import ReleaseError

_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
#: The checkout the package runs from (a git commit date is read there, if it is one).
_CHECKOUT = Path(__file__).resolve().parents[2]


def _day(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d")


def release_date(date: str | None) -> tuple[str, int]:
    """The release date (``YYYY-MM-DD``) and its epoch seconds: ``date`` (``--date``, at 00:00
    UTC), else ``$SOURCE_DATE_EPOCH``, else the last commit of the git checkout the package
    runs from; an error, never the clock, when there is none of them."""
    if date is not None:
        if not _DATE.match(date):
            raise ReleaseError(f"--date {date!r}: expected YYYY-MM-DD")
        try:
            day = dt.datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=dt.UTC)
        except ValueError:
            raise ReleaseError(f"--date {date!r}: not a calendar date") from None
        return date, int(day.timestamp())
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env is not None:
        if not env.strip().isdigit():
            raise ReleaseError(f"SOURCE_DATE_EPOCH={env!r}: expected whole seconds since "
                               "1970-01-01 UTC")
        return _day(int(env)), int(env)
    epoch = _git_commit_time(_CHECKOUT)
    if epoch is None:
        raise ReleaseError("no release date: pass --date YYYY-MM-DD or set SOURCE_DATE_EPOCH "
                           "(a build never reads the clock, and the package is not in a git "
                           "checkout whose commit date could serve)")
    return _day(epoch), epoch


def _git_commit_time(checkout: Path) -> int | None:
    """The committer time of HEAD in ``checkout``, or None when it is not a git checkout."""
    git = shutil.which("git")
    if git is None or not (checkout / ".git").exists():
        return None
    try:
        out = subprocess.run([git, "-C", str(checkout), "log", "-1", "--format=%ct"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return int(out.strip()) if out.strip().isdigit() else None


def registry_sha256(directory: Path | None = None) -> str:
    """A hash of the registry in use: for each ``*.toml`` sorted by name, the name, a NUL,
    the file's sha256 and a newline, hashed with sha256."""
    folder = directory or registry_dir()
    outer = hashlib.sha256()
    for path in sorted(folder.glob("*.toml"), key=lambda p: p.name):
        outer.update(f"{path.name}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n"
                     .encode())
    return outer.hexdigest()


def tool_versions() -> dict[str, str]:
    """The versions that decide the bytes of a release."""
    return {"llmtraces": __version__, "python": platform.python_version(),
            "pyarrow": pa.__version__, "zstandard": zstandard.__version__,
            "libzstd": ".".join(str(n) for n in zstandard.ZSTD_VERSION)}
