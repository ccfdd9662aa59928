"""Helpers shared by the CLI verbs: the cache home, stderr logging, progress switches, and the
parsing of the time options that ``convert`` and ``replay`` share (``--window``, ``--speedup``,
``--rps``)."""

from __future__ import annotations

import math
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


#: Largest ``--window`` START or DURATION in seconds: their microseconds still fit an int64.
WINDOW_MAX_S = 1e12


def _number(option: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise click.BadParameter(f"not a number: {text!r}", param_hint=option) from None


def parse_window(text: str | None, option: str = "--window") -> tuple[float, float] | None:
    """``START:DURATION`` seconds -> ``(start, duration)``; both finite, START >= 0 and
    DURATION > 0, each at most :data:`WINDOW_MAX_S`; else one line naming the option."""
    if text is None:
        return None
    start, sep, length = text.partition(":")
    if not sep:
        raise click.BadParameter(f"expected START:DURATION in seconds, e.g. 3600:1200 "
                                 f"(got {text!r})", param_hint=option)
    span = (_number(option, start), _number(option, length))
    if not (0 <= span[0] <= WINDOW_MAX_S and 0 < span[1] <= WINDOW_MAX_S):
        raise click.BadParameter(
            f"{text!r} is out of range; expected START in [0, 1e12] and DURATION in (0, 1e12] "
            "seconds, both finite", param_hint=option)
    return span


def check_positive(option: str, value: float | None) -> None:
    """A ``--speedup`` / ``--rps`` value: finite and > 0 (NaN and infinity are refused)."""
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise click.BadParameter(f"{value:g} is out of range; expected a finite number > 0",
                                 param_hint=option)
