"""The accepted ranges of the numeric options every verb shares (``--window``, ``--rps``,
``--speedup``, ``--timeout``, ...), and one check for them.

Every number must be finite and in a sensible range, never "no limit" by accident: one table
(:data:`RANGES`, also in docs/replay.md), one message shape (``--rps: nan is out of range;
expected a finite number of requests/s >= 1e-06``), for ``convert``, ``replay`` and ``bench``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from .errors import LLMTracesError, OptionError

#: The longest schedule a replay accepts, in seconds (about 3 years): past it a time option
#: is a typo (``--rps 1e-300``), not a plan.
MAX_SPAN_S = 1e8
#: Bounds of trace times (``--window``): microseconds of these still fit an int64.
MAX_TIME_S = 1e12
#: Token counts and vocabulary sizes stay below this.
MAX_TOKENS = 2**31 - 1

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
    return f"{x:g}".replace("e+", "e")


def accepted(option: str) -> str:
    """What ``option`` accepts, in words: ``seconds in (0, 1,000,000]``."""
    lo, hi, lo_open, unit = RANGES[option]
    what = f"{unit} " if unit else ""
    if hi == math.inf:
        return f"a finite number{' of ' + unit if unit else ''} >= {num(lo)}"
    return f"{what}in {'(' if lo_open else '['}{num(lo)}, {num(hi)}]"


def check_range(option: str, value: float, name: str | None = None, *,
                error: type[LLMTracesError] = OptionError) -> None:
    """Raise ``error`` unless ``value`` is in ``option``'s range of :data:`RANGES`; NaN and
    infinities never pass. ``name`` is the option as shown."""
    lo, hi, lo_open, _ = RANGES[option]
    finite = not isinstance(value, float) or math.isfinite(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not finite or \
            not (value > lo if lo_open else value >= lo) or not value <= hi:
        shown = num(value) if isinstance(value, int | float) else repr(value)
        raise error(f"{name or option}: {shown} is out of range; expected {accepted(option)}")


def check_ranges(pairs: Iterable[tuple[str, float | None]], *,
                 error: type[LLMTracesError] = OptionError) -> None:
    """:func:`check_range` of every ``(option, value)`` whose value is set (not None)."""
    for option, value in pairs:
        if value is not None:
            check_range(option, value, error=error)


def parse_window(text: str | None, option: str = "--window") -> tuple[float, float] | None:
    """``START:DURATION`` seconds -> ``(start, duration)``, each checked against
    :data:`RANGES`; None for None; else one :class:`OptionError` line naming the option."""
    if text is None:
        return None
    start, sep, length = text.partition(":")
    try:
        span = (float(start), float(length))
    except ValueError:
        sep = ""
    if not sep:
        raise OptionError(f"{option}: {text!r} is not START:DURATION; expected two numbers of "
                          "seconds, e.g. 3600:1200")
    check_range("--window START", span[0], f"{option} START")
    check_range("--window DURATION", span[1], f"{option} DURATION")
    return span
