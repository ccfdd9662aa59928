"""``compare A B``: two traces' statistics side by side, and how far apart their inter-arrival
gaps and lengths are: the two-sample Kolmogorov-Smirnov distance D (largest gap between the
empirical CDFs) and the Wasserstein-1 distance (area between them, in the unit of the values)."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats as st

from ..pipeline.inputs import TraceInput
from ..transforms._stream import replayable
from . import requires  # noqa: F401  (first: one line when the stats extra is missing)
from .compute import stats
from .model import TraceStats
from .render import num, pct, span, table

#: What is compared: name -> (column, unit).
SAMPLES = {"gaps_s": "s", "input_tokens": "tokens", "output_tokens": "tokens"}


class Distance(BaseModel):
    """How far apart one quantity of the two traces is."""

    model_config = ConfigDict(extra="forbid")
    n_a: int
    n_b: int
    ks_d: float | None = Field(description="Two-sample KS distance (null: an empty sample).")
    wasserstein: float | None = Field(description="Wasserstein-1 distance, in the unit.")
    unit: str


class Comparison(BaseModel):
    """What ``llmtraces compare A B --json`` prints."""

    model_config = ConfigDict(extra="forbid")
    a: TraceStats
    b: TraceStats
    distances: dict[str, Distance]


def samples(trace: TraceInput) -> dict[str, np.ndarray]:
    """Gaps between consecutive timed rows (file order) and the known lengths of a trace."""
    view = replayable(trace)
    assert view.reopen is not None
    parts: dict[str, list[np.ndarray]] = {"t": [], "input_tokens": [], "output_tokens": []}
    for batch in view.reopen(["arrival_us", "input_tokens", "output_tokens"]):
        for key, col in (("t", "arrival_us"), ("input_tokens", "input_tokens"),
                         ("output_tokens", "output_tokens")):
            parts[key].append(batch.column(col).drop_null().to_numpy(
                zero_copy_only=False).astype(np.float64))
    joined = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    t = joined.pop("t")
    return {"gaps_s": np.diff(t) / 1e6, **joined}


def distance(x: np.ndarray, y: np.ndarray, unit: str) -> Distance:
    """KS D and Wasserstein-1 of two samples (null where either is empty)."""
    if not len(x) or not len(y):
        return Distance(n_a=len(x), n_b=len(y), ks_d=None, wasserstein=None, unit=unit)
    return Distance(n_a=len(x), n_b=len(y), ks_d=float(st.ks_2samp(x, y).statistic),
                    wasserstein=float(st.wasserstein_distance(x, y)), unit=unit)


def compare(a: TraceInput, b: TraceInput, *, window_s: float = 60.0,
            gamma_window_s: float = 1200.0) -> Comparison:
    """Both traces' :func:`~llmtraces.characterize.compute.stats` and the distances between
    their gaps, input and output lengths."""
    sa, sb = samples(a), samples(b)
    return Comparison(
        a=stats(a, window_s=window_s, gamma_window_s=gamma_window_s),
        b=stats(b, window_s=window_s, gamma_window_s=gamma_window_s),
        distances={k: distance(sa[k], sb[k], unit) for k, unit in SAMPLES.items()})


def _side(s: TraceStats) -> list[str]:
    a, li, lo, p = s.arrivals, s.lengths.input, s.lengths.output, s.prefix
    return [f"{s.size.rows:,}", span(s.size.span_s), num(s.size.mean_rate_rps),
            num(a.cv if a else None), num(a.gamma.shape if a and a.gamma else None),
            num(li.mean), num(li.p50), num(li.p99), num(lo.mean), num(lo.p50), num(lo.p99),
            num(s.lengths.pearson),
            pct(s.failures.share) if s.failures else "-",
            pct(p.token_hit_ratio) if p else "-"]


LABELS = ["rows", "span", "mean rate (req/s)", "gap CV", "gamma shape", "input mean",
          "input p50", "input p99", "output mean", "output p50", "output p99", "pearson r",
          "failed", "prefix hit (token-weighted)"]


def render_comparison(c: Comparison) -> str:
    """The two traces side by side, then the distances."""
    rows = [["", "A", "B"]] + [[label, x, y] for label, x, y in zip(
        LABELS, _side(c.a), _side(c.b), strict=True)]
    dist = [["", "KS D", "Wasserstein", "unit", "n A", "n B"]]
    dist += [[k, num(d.ks_d), num(d.wasserstein), d.unit, f"{d.n_a:,}", f"{d.n_b:,}"]
             for k, d in c.distances.items()]
    return "\n".join([f"A: {c.a.trace}", f"B: {c.b.trace}"] + table(rows) + ["distances"]
                     + table(dist, align="lrrlrr"))
