"""The data behind each ``llmtraces plot`` figure, with no matplotlib: what the tests check
(a figure is tested by its numbers, not its pixels) and what :mod:`.figures` draws.

Each builder names the published figure it redraws in its docstring.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow.compute as pc
from scipy import stats as st

from ..pipeline.inputs import TraceInput
from ..transforms._stream import replayable
from . import requires  # noqa: F401  (first: one line when the stats extra is missing)
from .fits import for_fitting
from .model import TraceStats


@dataclass(frozen=True)
class Series:
    """One line, step curve or set of bars of a figure."""

    label: str
    x: list[float]
    y: list[float]
    style: str = "line"  # line | step | bar | points


@dataclass(frozen=True)
class FigureData:
    """Everything a figure shows: axes, series, and for a 2-D histogram its grid."""

    kind: str
    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    xlog: bool = False
    ylog: bool = False
    #: A 2-D histogram: x edges, y edges, counts[x][y].
    grid: tuple[list[float], list[float], list[list[int]]] | None = None


@dataclass
class Samples:
    """The per-row values the figures need beyond :class:`TraceStats`."""

    gaps_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray  # rows with both lengths known, aligned with input_tokens
    session_sizes: Counter[int]


def samples(trace: TraceInput) -> Samples:
    """Gaps (file order), paired lengths and session sizes, in one pass of four columns."""
    view = replayable(trace)
    assert view.reopen is not None
    t: list[np.ndarray] = []
    inp: list[np.ndarray] = []
    out: list[np.ndarray] = []
    per_session: Counter[str] = Counter()
    for b in view.reopen(["arrival_us", "input_tokens", "output_tokens", "session_id"]):
        t.append(b.column("arrival_us").drop_null().to_numpy(zero_copy_only=False))
        known = b.column("output_tokens").is_valid()
        inp.append(b.column("input_tokens").filter(known).to_numpy(zero_copy_only=False))
        out.append(b.column("output_tokens").filter(known).to_numpy(zero_copy_only=False))
        vc = pc.value_counts(b.column("session_id").drop_null())
        per_session.update(dict(zip(vc.field("values").to_pylist(),
                                    vc.field("counts").to_pylist(), strict=True)))
    ts = np.concatenate(t).astype(np.int64) if t else np.zeros(0, np.int64)
    return Samples(gaps_s=np.diff(ts) / 1e6,
                   input_tokens=np.concatenate(inp).astype(np.int64) if inp else np.zeros(0),
                   output_tokens=np.concatenate(out).astype(np.int64) if out else np.zeros(0),
                   session_sizes=Counter(per_session.values()))


def _ecdf(x: np.ndarray, points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """The empirical CDF at up to ``points`` quantiles (enough for a smooth curve)."""
    xs = np.sort(x)
    idx = np.unique(np.linspace(0, len(xs) - 1, min(points, len(xs))).round().astype(np.int64))
    return xs[idx], (idx + 1) / len(xs)


def _log_edges(lo: float, hi: float, per_decade: int = 10) -> np.ndarray:
    lo, hi = max(lo, 1.0), max(hi, 1.0)
    n = max(2, int(np.ceil(np.log10(hi / lo + 1e-12) * per_decade)) + 1)
    return np.unique(np.geomspace(lo, hi * (1 + 1e-9), n))


def rate(s: TraceStats, _: Samples) -> FigureData | None:
    """Requests per second over time: BurstGPT Figs. 2-5 (request counts over a week and a
    day) and the Azure LLM 2023/2024 notebooks' load-over-time plots."""
    if s.rate is None:
        return None
    w = s.rate.window_s
    x = [i * w / 60 for i in range(len(s.rate.rps))]
    return FigureData("rate", f"{s.trace}: request rate per {w:g} s", "minutes from the first "
                      "arrival", "requests / s", [Series("rate", x, s.rate.rps, "step")])


def interarrival(s: TraceStats, smp: Samples) -> FigureData | None:
    """Inter-arrival CDF with the fitted Gamma, Weibull and exponential laws: the fits of
    BurstGPT §3.2 (Gamma arrivals, CV = 1/sqrt(shape)) drawn against the data."""
    a = s.arrivals
    if a is None or a.gamma is None or a.weibull is None or a.exponential is None:
        return None
    x = for_fitting(smp.gaps_s, _floor(smp.gaps_s))  # a 0 drawn at half the least gap
    xs, ys = _ecdf(x)
    laws: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = [
        (f"gamma (D={a.gamma.ks_d:.3f})",
         st.gamma(a.gamma.shape, scale=a.gamma.scale_s).cdf),
        (f"weibull (D={a.weibull.ks_d:.3f})",
         st.weibull_min(a.weibull.shape, scale=a.weibull.scale_s).cdf),
        (f"exponential (D={a.exponential.ks_d:.3f})",
         st.expon(scale=a.exponential.scale_s).cdf)]
    series = [Series("trace", xs.tolist(), ys.tolist(), "step")]
    series += [Series(name, xs.tolist(), cdf(xs).tolist()) for name, cdf in laws]
    return FigureData("interarrival", f"{s.trace}: inter-arrival times", "gap (s)",
                      "CDF", series, xlog=True)


def _floor(gaps: np.ndarray) -> float:
    """Half the smallest positive gap: where a 0 gap is drawn on a log axis."""
    pos = gaps[gaps > 0]
    return float(pos.min()) / 2 if len(pos) else 1e-6


def lengths(s: TraceStats, smp: Samples) -> FigureData | None:
    """Input and output length CDFs: the prompt and generated token distributions of
    Splitwise (ISCA'24) §III, as the Azure LLM 2023 notebook redraws them, and BurstGPT
    Fig. 7 (request and response tokens)."""
    if not len(smp.input_tokens):
        return None
    series = []
    for name, v in (("input", smp.input_tokens), ("output", smp.output_tokens)):
        xs, ys = _ecdf(np.maximum(v, 1))
        series.append(Series(name, xs.astype(float).tolist(), ys.tolist(), "step"))
    return FigureData("lengths", f"{s.trace}: request lengths", "tokens", "CDF", series,
                      xlog=True)


def joint(s: TraceStats, smp: Samples) -> FigureData | None:
    """Joint histogram of input and output lengths (log bins): BurstGPT Fig. 8 (response
    lengths per request)."""
    if not len(smp.input_tokens):
        return None
    x, y = np.maximum(smp.input_tokens, 1), np.maximum(smp.output_tokens, 1)
    xe, ye = _log_edges(x.min(), x.max()), _log_edges(y.min(), y.max())
    counts, _, _ = np.histogram2d(x, y, bins=[xe, ye])
    return FigureData("joint", f"{s.trace}: input vs output tokens (r={s.lengths.pearson})",
                      "input tokens", "output tokens", xlog=True, ylog=True,
                      grid=(xe.tolist(), ye.tolist(), counts.astype(int).tolist()))


def zipf(s: TraceStats, smp: Samples) -> FigureData | None:
    """Input-length frequencies on log-log axes with the fitted power law P(L=k) ~ k^-s
    (BurstGPT's Zipf of request lengths, §3.3 and Fig. 7), per log bin."""
    z = s.lengths.input.zipf
    if z is None:
        return None
    k = smp.input_tokens[smp.input_tokens >= 1]
    edges = _log_edges(z.k_min, z.k_max + 1)
    counts, _ = np.histogram(k, bins=edges)
    widths = np.diff(edges)
    mids = np.sqrt(edges[:-1] * edges[1:])
    support = np.arange(z.k_min, z.k_max + 1, dtype=np.float64)
    pmf = support ** -z.exponent
    pmf /= pmf.sum()
    model, _ = np.histogram(support, bins=edges, weights=pmf)
    keep = counts > 0
    return FigureData(
        "zipf", f"{s.trace}: input lengths, Zipf s={z.exponent:.3f} (D={z.ks_d:.3f})",
        "input tokens", "probability per token", [
            Series("trace", mids[keep].tolist(), (counts / len(k) / widths)[keep].tolist(),
                   "points"),
            Series("Zipf fit", mids.tolist(), (model / widths).tolist())],
        xlog=True, ylog=True)


def failures(s: TraceStats, _: Samples) -> FigureData | None:
    """Share of failed requests per window over time: BurstGPT Fig. 11 (failure rates)."""
    f = s.failures
    if f is None or not f.share_by_window:
        return None
    pts = [(i * f.window_s / 60, v) for i, v in enumerate(f.share_by_window) if v is not None]
    return FigureData("failures", f"{s.trace}: failed share per {f.window_s:g} s "
                      f"(overall {100 * (f.share or 0):.1f} %)", "minutes from the first "
                      "arrival", "failed share", [Series("failed", [p[0] for p in pts],
                                                         [p[1] for p in pts], "step")])


def sessions(s: TraceStats, smp: Samples) -> FigureData | None:
    """Sessions by their number of requests: BurstGPT Fig. 9 (requests in a conversation)."""
    if not smp.session_sizes:
        return None
    sizes = sorted(smp.session_sizes)
    return FigureData("sessions", f"{s.trace}: requests per session", "requests in the "
                      "session", "sessions", [Series("sessions", [float(v) for v in sizes],
                                                     [float(smp.session_sizes[v])
                                                      for v in sizes], "bar")],
                      xlog=sizes[-1] > 50, ylog=True)


def prefix(s: TraceStats, _: Samples) -> FigureData | None:
    """Prefix-cache hit ratio against cache capacity (LRU), with the infinite cache as a
    line: the cache-capacity analysis of the Mooncake technical report (§4) and FAST'25."""
    p = s.prefix
    if p is None or not p.lru:
        return None
    x = [c.capacity_share for c in p.lru]
    return FigureData("prefix", f"{s.trace}: prefix-cache hits ({p.distinct_blocks:,} "
                      "distinct blocks)", "capacity (share of distinct blocks)",
                      "token-weighted hit ratio", [
                          Series("LRU", x, [c.token_hit_ratio for c in p.lru]),
                          Series("infinite cache", [x[0], x[-1]],
                                 [p.token_hit_ratio or 0.0] * 2)], xlog=True)


def gamma(s: TraceStats, _: Samples) -> FigureData | None:
    """Per-window Gamma shape over time, with the CV it implies: BurstGPT Fig. 6
    (burstiness every 20 minutes)."""
    a = s.arrivals
    if a is None:
        return None
    pts = [(w.start_s / 3600, w.shape, w.cv) for w in a.windows if w.shape is not None]
    if not pts:
        return None
    return FigureData("gamma", f"{s.trace}: Gamma shape per {a.window_s:g} s window",
                      "hours from the first arrival", "shape alpha (CV = 1/sqrt(alpha))", [
                          Series("shape", [p[0] for p in pts], [float(p[1] or 0) for p in pts],
                                 "points"),
                          Series("1/CV^2 measured", [p[0] for p in pts if p[2]],
                                 [float(p[2]) ** -2 for p in pts if p[2]], "points")],
                      ylog=True)


#: Figure kind -> its data builder, in the order ``plot`` draws them.
KINDS: dict[str, Callable[[TraceStats, Samples], FigureData | None]] = {
    "rate": rate, "interarrival": interarrival, "lengths": lengths, "joint": joint,
    "zipf": zipf, "failures": failures, "sessions": sessions, "prefix": prefix,
    "gamma": gamma}
