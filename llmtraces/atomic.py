"""Atomic writes: output appears complete at its final path, or not at all."""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from .errors import LLMTracesError

#: OS errors that say the output cannot be written (not that the input cannot be read).
_OUTPUT_ERRNOS = {errno.EFBIG, errno.ENOSPC, errno.EDQUOT, errno.EROFS}


class OutputError(LLMTracesError, OSError):
    """The output path cannot be written (no such folder, read-only, disk or size limit)."""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one owned by another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _owner(name: str, prefix: str) -> int | None:
    """The pid in ``<prefix><pid>.<hex>.tmp`` / ``<prefix><pid>-<rest>``; None if none."""
    digits = name[len(prefix):].split(".", 1)[0].split("-", 1)[0]
    return int(digits) if digits.isdigit() else None


def sweep_stale(folder: Path, prefix: str) -> None:
    """Remove the entries of ``folder`` named ``<prefix><pid>...`` whose process is gone
    (temporary files and scratch folders left by a killed run)."""
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid = _owner(entry.name, prefix)
        if pid is None or pid == os.getpid() or pid_alive(pid):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


#: The temporary files :func:`atomic_path` makes: ``.<name>.<pid>.<8 hex>.tmp``.
_TMP_NAME = re.compile(r"\..+\.(\d+)\.[0-9a-f]{8}\.tmp")


def sweep_stale_tmp(folder: Path) -> None:
    """Remove the temporary files of :func:`atomic_path` in ``folder`` whose process is gone
    (left by a run killed with SIGKILL, which no handler can clean)."""
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return
    for entry in entries:
        found = _TMP_NAME.fullmatch(entry.name)
        if found is None or int(found[1]) == os.getpid() or pid_alive(int(found[1])):
            continue
        if entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)


def _output_error(dest: Path, exc: OSError) -> OutputError:
    """One line naming the output path and the OS error."""
    code = errno.errorcode.get(exc.errno or 0, "")
    why = exc.strerror or str(exc).replace(f"[Errno {exc.errno}] ", "")
    return OutputError(f"{dest}: cannot write here: {why}" + (f" ({code})" if code else ""))


@contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` only if the block succeeds.

    On any exception (Ctrl-C included) the temporary file is removed and ``dest`` is untouched.
    Temporary files that killed runs left beside ``dest`` are removed first; an error writing
    the output (no such folder, no space, file size limit) is an :class:`OutputError`.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file (not a folder) is in the way
        raise OutputError(f"{dest}: cannot write here: {dest.parent} is not a folder") from None
    except OSError as exc:
        raise _output_error(dest, exc) from None
    sweep_stale_tmp(dest.parent)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, dest)
    except OutputError:
        raise
    except OSError as exc:
        if exc.errno in _OUTPUT_ERRNOS or exc.filename in (str(tmp), str(dest)) \
                or str(tmp) in str(exc):
            raise _output_error(dest, exc) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """Turn a termination signal into KeyboardInterrupt, whose path cleans up."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise KeyboardInterrupt (in the main thread), so
    temporary files are removed as on Ctrl-C; the previous handlers come back after."""
    wanted = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]
    try:
        old = {s: signal.signal(s, _interrupt) for s in wanted}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
