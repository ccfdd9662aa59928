"""``llmtraces stats --check``: a trace's statistics against the figures its publisher states
(the registry's ``[traces.<id>.published]`` table)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import LLMTracesError
from ..registry import PublishedStat, get_source
from .model import TraceStats


class PublishedError(LLMTracesError, LookupError):
    """No published figures for a trace, or a ``[published]`` key that names no statistic."""


@dataclass(frozen=True)
class Check:
    """One published statistic, what was measured, and whether they agree."""

    stat: str
    published: float
    measured: float | None
    tolerance: float
    source: str

    @property
    def met(self) -> bool:
        """Whether |measured - published| is within the tolerance."""
        return self.measured is not None and abs(self.measured - self.published) <= (
            self.tolerance + 1e-9 * max(1.0, abs(self.published)))


def published_for(stats: TraceStats) -> dict[str, PublishedStat]:
    """The registry's published figures for the trace ``stats`` describes."""
    if stats.source is None or "/" not in stats.trace:
        raise PublishedError(f"{stats.trace}: not a registry trace, so there are no published "
                             "figures to check (a published file read by its own name is one)")
    trace_id = stats.trace.split("/", 1)[1]
    trace = get_source(stats.source).traces.get(trace_id)
    if trace is None or not trace.published:
        raise PublishedError(f"{stats.trace}: the registry states no published figures for "
                             "this trace (registry/<source>.toml [traces.<id>.published])")
    return trace.published


def check(stats: TraceStats, published: dict[str, PublishedStat] | None = None
          ) -> list[Check]:
    """Each published statistic against the measured one (default: the registry's)."""
    table = published_for(stats) if published is None else published
    flat = stats.flat()
    out = []
    for key, pub in table.items():
        parts = key.split(".")
        absent = any(flat.get(".".join(parts[:i]), 0) is None for i in range(1, len(parts)))
        if key not in flat and not absent:
            raise PublishedError(f"[published] {key!r} names no statistic of `llmtraces stats "
                                 f"--json` (e.g. size.rows, lengths.input.p50)")
        value = flat.get(key)  # None: the section is absent from this trace
        measured = float(value) if isinstance(value, int | float) else None
        out.append(Check(stat=key, published=pub.value, measured=measured,
                         tolerance=pub.tolerance, source=pub.source))
    return out
