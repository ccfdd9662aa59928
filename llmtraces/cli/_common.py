"""Helpers shared by the CLI verbs: the cache home, stderr logging, progress switches and
sizes. (The numeric options' ranges are :mod:`llmtraces.ranges`.)"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import click

from ..paths import home


def root(ctx: click.Context) -> Path:
    """The cache home chosen by ``--home`` / ``$LLMTRACES_HOME`` / the default."""
    return home(ctx.obj.get("home") if ctx.obj else None)


def show_progress(quiet: bool) -> bool:
    """Progress bars only for a person at a terminal, and never with ``--quiet``."""
    return not quiet and sys.stderr.isatty()


def log_to_stderr(quiet: bool) -> Callable[[str], None]:
    """A logger for download fallbacks: stderr, silenced by ``--quiet``."""
    def log(msg: str) -> None:
        if not quiet:
            click.echo(msg, err=True)
    return log


def terminal_width() -> int | None:
    """Columns to fit output to: ``$COLUMNS``, else the terminal's width; None (no limit) when
    stdout is a pipe or a file and ``$COLUMNS`` is unset, so ``grep`` sees whole lines."""
    if os.environ.get("COLUMNS") or sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def human_bytes(n: int) -> str:
    """``1536`` -> ``1.5 KiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
