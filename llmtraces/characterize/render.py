"""The terminal views of ``stats``, ``stats --check`` and ``compare``: short aligned tables."""

from __future__ import annotations

from collections.abc import Sequence

from .model import Lengths, TraceStats
from .published import Check

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def num(x: float | int | None, digits: int = 3) -> str:
    """A number as people read it: thousands separators for counts, ``digits`` significant
    digits for measures, ``-`` for an undefined one."""
    if x is None:
        return "-"
    if isinstance(x, int) or float(x).is_integer() and abs(x) >= 1:
        return f"{int(x):,}"
    if abs(x) >= 10 ** (digits - 1):
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.{digits - len(str(int(abs(x))))}f}"
    return f"{x:.{digits}g}"


def pct(x: float | None) -> str:
    """A share as a percentage with one decimal."""
    return "-" if x is None else f"{100 * x:.1f} %"


def span(seconds: float | None) -> str:
    """A duration in the unit that reads best."""
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def table(rows: Sequence[Sequence[str]], indent: str = "  ", align: str | None = None
          ) -> list[str]:
    """Rows of cells aligned by ``align`` (one ``l`` or ``r`` a column; default: the first
    column left, the others right)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    how = align or "l" + "r" * (len(widths) - 1)
    return [indent + "  ".join(c.ljust(w) if a == "l" else c.rjust(w)
                               for c, w, a in zip(r, widths, how, strict=True)).rstrip()
            for r in rows]


def _length_row(name: str, s: Lengths) -> list[str]:
    z = s.zipf
    return [name, num(s.mean), num(s.std), num(s.min), num(s.p50), num(s.p90), num(s.p99),
            num(s.max), f"{z.exponent:.3f} ({z.ks_d:.3f})" if z else "-"]


def _counts(counts: dict[str, int], top: int = 5) -> str:
    items = list(counts.items())
    text = ", ".join(f"{k} {v:,}" for k, v in items[:top])
    return text + (f", ... ({len(items)} in all)" if len(items) > top else "")


def render(s: TraceStats) -> str:
    """The readable summary of one trace's statistics."""
    z = s.size
    out = [f"{s.trace}",
           f"size      {z.rows:,} rows, {z.timed_rows:,} timed, {z.distinct_arrivals:,} distinct "
           f"arrivals, span {span(z.span_s)}, mean rate {num(z.mean_rate_rps)} req/s"]
    if s.rate:
        out.append(f"rate      per {num(s.rate.window_s)} s window: peak {num(s.rate.peak_rps)} "
                   f"req/s, peak/mean {s.rate.peak_to_mean:.2f}")
    a = s.arrivals
    if a:
        out.append(f"gaps      mean {num(a.mean_s)} s, std {num(a.std_s)} s, CV {num(a.cv)} "
                   f"({a.zero_gaps:,} zero, {a.backward_gaps:,} backward)")
        fits = [f"{name} " + (f"shape {f.shape:.3g} " if f.shape is not None else "")
                + f"scale {f.scale_s:.3g} s D={f.ks_d:.3f}"
                for name, f in (("gamma", a.gamma), ("weibull", a.weibull),
                                ("exponential", a.exponential)) if f is not None]
        if fits:
            out.append("  fits    " + " | ".join(fits))
        shapes = [w.shape for w in a.windows if w.shape is not None]
        if shapes:
            out.append(f"  windows {len(a.windows)} x {num(a.window_s)} s Gamma: shape "
                       f"{min(shapes):.3g}..{max(shapes):.3g}, CV 1/sqrt(shape) "
                       f"{max(shapes) ** -0.5:.3g}..{min(shapes) ** -0.5:.3g}")
    if s.periodicity:
        p = s.periodicity
        hours = [h for h, c in enumerate(p.hour_of_day) if c]
        days = [_DAYS[d] for d, c in enumerate(p.weekday) if c] if p.weekday else ["unknown"]
        busiest = max(range(24), key=lambda h: p.hour_of_day[h])
        hour_span = f"{hours[0]}" if hours[0] == hours[-1] else f"{hours[0]}-{hours[-1]}"
        out.append(f"clock     {p.days} day(s), {p.zone} hours {hour_span} (busiest "
                   f"{busiest}:00), weekdays {' '.join(days)}")
    out.append("lengths")
    rows = [["", "mean", "std", "min", "p50", "p90", "p99", "max", "zipf s (D)"],
            _length_row("input", s.lengths.input), _length_row("output", s.lengths.output)]
    out += table(rows)
    out.append(f"  pearson {num(s.lengths.pearson)}, spearman {num(s.lengths.spearman)}")
    if s.failures:
        out.append(f"failures  {s.failures.failed:,} of {s.failures.known:,} "
                   f"({pct(s.failures.share)})")
    if s.models:
        out.append(f"models    {_counts(s.models)}")
    if s.services:
        out.append(f"services  {_counts(s.services)}")
    if s.sessions:
        e = s.sessions
        out.append(f"sessions  {e.sessions:,} ({e.requests:,} requests): single "
                   f"{pct(e.share_single)}, median {num(e.median)}, p75 {num(e.p75)}, max "
                   f"{e.max:,}; gap mean {num(e.gap_mean_s)} s, median {num(e.gap_median_s)} s")
    if s.images:
        i = s.images
        out.append(f"images    {i.with_images:,} of {i.rows:,} requests ({pct(i.share)}), "
                   f"{i.images:,} images, mean {num(i.mean_per_request)}, max {i.max}")
    if s.prefix:
        x = s.prefix
        out.append(f"prefix    infinite cache: token-weighted {pct(x.token_hit_ratio)}, "
                   f"request-mean {pct(x.request_mean_hit_ratio)} ({x.requests:,} requests, "
                   f"{x.distinct_blocks:,} distinct blocks of "
                   f"{'/'.join(map(str, x.block_sizes))} tokens)")
        if x.lru:
            out.append("  LRU     " + ", ".join(f"{pct(c.capacity_share)}: "
                                               f"{pct(c.token_hit_ratio)}" for c in x.lru))
    for law, n, reached, median in _model_laws(s):
        out.append(f"model     {law} windows: {reached} of {n} reach their stated CV "
                   f"(>= 90 %), median cv / stated {num(median)}")
    return "\n".join(line for line in out if line)


def _model_laws(s: TraceStats) -> list[tuple[str, int, int, float | None]]:
    """Per arrival law of a synthesized trace's model windows: windows, how many reach their
    stated CV, and the median cv / stated cv (ServeGen's Weibull windows fall short)."""
    rows = s.model_windows or []
    out = []
    for law in sorted({w.law for w in rows}):
        mine = [w for w in rows if w.law == law]
        ratios = sorted(w.cv_ratio for w in mine if w.cv_ratio is not None)
        out.append((law, len(mine), sum(w.reached for w in mine),
                    ratios[len(ratios) // 2] if ratios else None))
    return out


def render_checks(trace: str, checks: Sequence[Check]) -> str:
    """``stats --check``: each published figure, the measured one and the verdict."""
    rows = [["statistic", "published", "measured", "tolerance", "", "source"]]
    for c in checks:
        rows.append([c.stat, num(c.published, 6), num(c.measured, 6), num(c.tolerance),
                     "met" if c.met else "NOT MET", c.source])
    met = sum(c.met for c in checks)
    return "\n".join([f"{trace}: {met} of {len(checks)} published figures met"]
                     + table(rows, align="lrrrll"))
