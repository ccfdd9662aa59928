"""BurstGPT's modeled scaling: fit a trace model, synthesize new traces from it.

:func:`fit` reads a trace once, over five columns, and models it as the BurstGPT paper
(§3, §4.2-4.3) does: inter-arrival times follow a Gamma distribution whose shape α and rate β
are fitted per window (20 minutes by default), request lengths follow a Zipf distribution, and
response lengths follow their empirical distribution given the request length.
:func:`synthesize` draws a new trace from such a :class:`TraceModel`, optionally at another
mean rate, deterministically for a seed.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from ..atomic import atomic_path
from ..errors import InvalidTraceError
from ..schema import SCHEMA_VERSION, make_batch
from ._math import Sampler, gamma_mle, zipf_cdf, zipf_mle
from ._stream import (
    BATCH_ROWS,
    TraceLike,
    TraceView,
    TransformError,
    arange,
    open_trace,
    require_timing,
)

#: Response-length bins per doubling of the request length.
BINS_PER_OCTAVE = 4
#: Quantiles kept per response-length bin: the 0th..100th percentiles.
QUANTILES = 101
#: Fewer gaps than this in a window: no Gamma fit; the window is Poisson at its own rate.
MIN_GAPS = 2

_COLUMNS = ["arrival_us", "input_tokens", "output_tokens", "failed", "model", "service"]


METHOD = {
    "arrivals": "per-window Gamma MLE of inter-arrival gaps (Minka 2002: generalised Newton "
                "on the shape from mean and mean log gap; rate = shape / mean gap)",
    "request_lengths": "bounded Zipf on [min, max] input_tokens, exponent by MLE",
    "response_lengths": f"empirical percentiles of output_tokens per request-length bin "
                        f"({BINS_PER_OCTAVE} per octave), non-failed rows",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GammaWindow(_Model):
    """One window of the arrival process."""

    start_s: float = Field(description="Window start, seconds after the trace's first arrival.")
    requests: int = Field(description="Arrivals in the window.")
    gaps: int = Field(description="Inter-arrival gaps that start in the window (fitted data).")
    zero_gaps: int = Field(0, description="Gaps of 0 µs, fitted as half the time resolution.")
    alpha: float | None = Field(description="Gamma shape (CV = 1/sqrt(alpha)); null: not "
                                "fitted (fewer than 2 gaps), Poisson at requests/window_s.")
    beta: float | None = Field(description="Gamma rate, 1/s (mean gap alpha/beta seconds).")

    def rate(self, window_s: float) -> float:
        """Expected requests per second in this window."""
        if self.alpha is not None and self.beta is not None:
            return self.beta / self.alpha
        return self.requests / window_s


class ZipfLengths(_Model):
    """Request lengths: P(k) ~ k^-exponent on [min, max] (a bounded Zipf), fitted by MLE."""

    distribution: Literal["zipf"] = "zipf"
    exponent: float
    min: int
    max: int
    rows: int = Field(description="Rows fitted (input_tokens >= 1).")
    zeros: int = Field(0, description="Rows with 0 input tokens, left out of the fit.")


class ResponseBin(_Model):
    """Output lengths of the requests whose input length falls in one bin."""

    bin: int = Field(description=f"floor({BINS_PER_OCTAVE} * log2(input_tokens)).")
    lo: int = Field(description="Smallest input length seen in the bin.")
    hi: int = Field(description="Largest input length seen in the bin.")
    count: int
    quantiles: list[int] = Field(description="0th..100th percentile of output_tokens.")


class ResponseLengths(_Model):
    """Response lengths given the request length: binned, empirical."""

    bins_per_octave: int = BINS_PER_OCTAVE
    rows: int = Field(description="Rows fitted: not failed, output_tokens known.")
    bins: list[ResponseBin]


class TraceModel(_Model):
    """A fitted trace model; :meth:`to_json` / :meth:`from_json` round-trip it exactly.

    Examples
    --------
    >>> import llmtraces
    >>> m = fit(llmtraces.load("azure-llm-2023", trace="code"))
    >>> TraceModel.from_json(m.to_json()) == m
    True
    """

    format: Literal["llmtraces.trace-model"] = "llmtraces.trace-model"
    version: Literal[1] = 1
    method: dict[str, str] = Field(default_factory=lambda: dict(METHOD))
    window_s: float
    span_s: float = Field(description="Seconds from the first to the last arrival fitted.")
    gap_floor_s: float = Field(description="What a gap of 0 µs is fitted as.")
    rows: int
    failed: int = Field(description="Rows marked failed in the fitted trace.")
    model: str | None = Field(None, description="The trace's only model, if it has one.")
    service: str | None = Field(None, description="The trace's only service, if it has one.")
    windows: list[GammaWindow]
    request_lengths: ZipfLengths
    response_lengths: ResponseLengths
    fitted_from: dict[str, Any] = Field(default_factory=dict)

    @property
    def mean_rps(self) -> float:
        """Expected rate over the fitted span: the windows' rates weighted by how much of
        each the span covers (the last window is usually partial)."""
        total = weight = 0.0
        for w in self.windows:
            part = min(self.window_s, max(self.span_s - w.start_s, 0.0))
            total += w.rate(self.window_s) * part
            weight += part
        if not weight:  # a span of 0 s: every window counts the same
            rates = [w.rate(self.window_s) for w in self.windows]
            return sum(rates) / len(rates) if rates else 0.0
        return total / weight

    def rate_over(self, duration_s: float) -> float:
        """Expected rate of a trace of ``duration_s`` seconds drawn from the model: the rates
        of the windows it covers (repeating past the last), weighted by the time in each."""
        rates = [w.rate(self.window_s) for w in self.windows]
        if not rates or not duration_s > 0:
            return 0.0
        whole, rest = divmod(duration_s, self.window_s)
        cycles, extra = divmod(int(whole), len(rates))
        total = (cycles * sum(rates) + sum(rates[:extra])) * self.window_s \
            + rates[extra] * rest
        return total / duration_s

    def to_json(self) -> str:
        """The model as JSON text (keys in a fixed order, floats exact)."""
        return self.model_dump_json(indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> TraceModel:
        """A model from :meth:`to_json` text; a bad document raises pydantic's error."""
        return cls.model_validate_json(text)

    def save(self, path: Path) -> None:
        """Write the JSON to ``path`` atomically."""
        with atomic_path(Path(path)) as tmp:
            tmp.write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> TraceModel:
        """Read a model saved by :meth:`save`."""
        try:
            return cls.from_json(Path(path).read_bytes())
        except ValueError as exc:
            raise InvalidTraceError(f"{path}: not an llmtraces trace model: "
                                    f"{str(exc).splitlines()[0]}") from None


def _resolution_us(meta: dict[str, Any]) -> float:
    time = meta.get("time") if isinstance(meta.get("time"), dict) else None
    text = str((time or {}).get("resolution") or "")
    m = re.fullmatch(r"\s*([0-9.]+)\s*(ns|us|µs|ms|s)\s*", text)
    if not m:
        return 1.0
    scale = {"ns": 1e-3, "us": 1.0, "µs": 1.0, "ms": 1e3, "s": 1e6}[m.group(2)]
    return float(m.group(1)) * scale


def _percentiles(counts: dict[int, int]) -> list[int]:
    values = sorted(counts)
    total = sum(counts.values())
    out, cum, i = [], 0, 0
    for j in range(QUANTILES):
        rank = max(1, math.ceil(j * total / (QUANTILES - 1)))
        while cum + counts[values[i]] < rank:
            cum += counts[values[i]]
            i += 1
        out.append(values[i])
    return out


def length_bin(tokens: int) -> int:
    """The response-length bin of a request of ``tokens`` input tokens (-1 for 0)."""
    return math.floor(BINS_PER_OCTAVE * math.log2(tokens)) if tokens > 0 else -1


def _batches(stream: TraceView) -> Iterator[pa.RecordBatch]:
    return stream.reopen(_COLUMNS) if stream.reopen is not None else stream.batches


def fit(trace: TraceLike, window_s: float = 1200.0) -> TraceModel:
    """Fit a BurstGPT trace model: per-window Gamma arrivals, Zipf request lengths, and
    response lengths conditional on request length.

    One pass over ``arrival_us``, ``input_tokens``, ``output_tokens``, ``failed``, ``model``
    and ``service``; memory holds per-window sums and one count per (length bin, output
    length) pair. Windows start at the first arrival; a gap belongs to the window where it
    starts. Arrivals must be in time order.

    Parameters
    ----------
    trace : TraceView, pyarrow.Table, path or registry id
        A unified trace with timing.
    window_s : float
        Window length in seconds (the paper's 20 minutes by default).

    Returns
    -------
    TraceModel

    Examples
    --------
    >>> m = fit("azure-llm-2023/code")
    >>> len(m.windows), round(m.windows[0].alpha, 3), round(m.request_lengths.exponent, 3)
    (3, 0.24, 0.523)
    """
    if not window_s > 0:
        raise TransformError(f"fit: window_s must be > 0 (got {window_s})")
    stream = open_trace(trace)
    require_timing(stream.meta, "fit")
    floor_s = max(_resolution_us(stream.meta), 1.0) / 2 / 1e6
    win_us = round(window_s * 1e6)
    stats: dict[int, list[float]] = {}  # window -> [requests, gaps, zero gaps, sum, sum log]
    lengths: dict[int, dict[int, int]] = {}  # length bin -> output length -> count
    bin_range: dict[int, list[int]] = {}
    rows = failed = zeros = fitted_len = 0
    sum_log_len = 0.0
    k_min: int | None = None
    k_max: int | None = None
    first: int | None = None
    prev: int | None = None
    models: set[str | None] = set()
    services: set[str | None] = set()
    for batch in _batches(stream):
        n = batch.num_rows
        if not n:
            continue
        arr = batch.column("arrival_us")
        if arr.null_count:
            raise TransformError("fit needs arrival times, but the trace has rows with a null "
                                 "arrival_us (no timing)")
        if first is None:
            first = prev = arr[0].as_py()
        assert prev is not None
        ext = pa.concat_arrays([pa.array([prev], pa.int64()), arr])
        gaps = pc.pairwise_diff(ext).slice(1)
        if pc.min(gaps).as_py() < 0:
            at = rows + pc.indices_nonzero(pc.less(gaps, 0))[0].as_py()
            raise TransformError(f"fit needs arrivals in time order; row {at} goes back in "
                                 "time (sort the trace first)")
        starts = ext.slice(0, n)
        if rows == 0:  # the first row starts no gap
            gaps, starts = gaps.slice(1), starts.slice(1)
        gap_s = pc.divide(gaps.cast(pa.float64()), 1e6)
        zero = pc.equal(gaps, 0)
        gap_s = pc.if_else(zero, floor_s, gap_s)
        # window of each gap's start; windows of the arrivals themselves
        gwin = pc.divide(pc.subtract(starts, first), win_us)
        awin = pc.divide(pc.subtract(arr, first), win_us)
        g = pa.table({"w": gwin, "g": gap_s, "l": pc.ln(gap_s), "z": zero.cast(pa.int64())}
                     ).group_by("w").aggregate([("g", "count"), ("z", "sum"), ("g", "sum"),
                                                ("l", "sum")])
        for w, cnt, z, s, sl in zip(*(g.column(c).to_pylist() for c in (
                "w", "g_count", "z_sum", "g_sum", "l_sum")), strict=True):
            acc = stats.setdefault(w, [0, 0, 0, 0.0, 0.0])
            acc[1] += cnt
            acc[2] += z
            acc[3] += s
            acc[4] += sl
        a = pa.table({"w": awin}).group_by("w").aggregate([("w", "count")])
        for w, cnt in zip(a.column("w").to_pylist(), a.column("w_count").to_pylist(),
                          strict=True):
            stats.setdefault(w, [0, 0, 0, 0.0, 0.0])[0] += cnt
        prev = arr[n - 1].as_py()
        # request lengths
        k = batch.column("input_tokens")
        pos = pc.greater(k, 0)
        kpos = k.filter(pos)
        zeros += n - len(kpos)
        if len(kpos):
            fitted_len += len(kpos)
            sum_log_len += pc.sum(pc.ln(kpos.cast(pa.float64()))).as_py()
            mm = pc.min_max(kpos)
            k_min = mm["min"].as_py() if k_min is None else min(k_min, mm["min"].as_py())
            k_max = mm["max"].as_py() if k_max is None else max(k_max, mm["max"].as_py())
        # response lengths given request length
        marked = pc.fill_null(batch.column("failed"), False)
        failed += pc.sum(marked.cast(pa.int64())).as_py() or 0
        out = batch.column("output_tokens")
        ok = pc.and_(pc.invert(marked), pc.is_valid(out))
        kb = pc.if_else(pc.greater(k, 0), pc.floor(pc.multiply(pc.log2(pc.if_else(
            pc.greater(k, 0), k, 1).cast(pa.float64())), BINS_PER_OCTAVE)), -1.0)
        r = pa.table({"b": kb.cast(pa.int64()), "o": out, "k": k}).filter(ok)
        r = r.group_by(["b", "o"]).aggregate([("k", "count"), ("k", "min"), ("k", "max")])
        for b, o, cnt, lo, hi in zip(*(r.column(c).to_pylist() for c in (
                "b", "o", "k_count", "k_min", "k_max")), strict=True):
            per = lengths.setdefault(b, {})
            per[o] = per.get(o, 0) + cnt
            span = bin_range.setdefault(b, [lo, hi])
            span[0], span[1] = min(span[0], lo), max(span[1], hi)
        for name, seen in (("model", models), ("service", services)):
            if len(seen) <= 1:
                seen.update(pc.unique(batch.column(name)).to_pylist())
        rows += n
    if rows == 0 or first is None or k_min is None or k_max is None:
        raise TransformError("fit needs a trace with rows (and input lengths >= 1)")
    windows = []
    for w in range(max(stats) + 1):
        req, cnt, z, total, total_log = stats.get(w, [0, 0, 0, 0.0, 0.0])
        alpha = beta = None
        if cnt >= MIN_GAPS:
            alpha, beta = gamma_mle(total / cnt, total_log / cnt)
        windows.append(GammaWindow(start_s=w * win_us / 1e6, requests=int(req), gaps=int(cnt),
                                   zero_gaps=int(z), alpha=alpha, beta=beta))
    exponent = zipf_mle(sum_log_len / fitted_len, k_min, k_max)
    bins = [ResponseBin(bin=b, lo=bin_range[b][0], hi=bin_range[b][1],
                        count=sum(lengths[b].values()), quantiles=_percentiles(lengths[b]))
            for b in sorted(lengths)]
    meta = stream.meta
    return TraceModel(
        window_s=window_s, span_s=(prev - first) / 1e6 if prev is not None else 0.0,
        gap_floor_s=floor_s, rows=rows, failed=failed,
        model=next(iter(models)) if len(models) == 1 else None,
        service=next(iter(services)) if len(services) == 1 else None,
        windows=windows,
        request_lengths=ZipfLengths(exponent=exponent, min=k_min, max=k_max, rows=fitted_len,
                                    zeros=zeros),
        response_lengths=ResponseLengths(rows=sum(b.count for b in bins), bins=bins),
        fitted_from={k: meta.get(k) for k in ("source", "trace", "native_file",
                                              "native_sha256", "time_origin", "licence",
                                              "citation", "transforms") if k in meta},
    )


def synthesize(model: TraceModel, rps: float | None = None, duration_s: float | None = None,
               seed: int = 0) -> TraceView:
    """A new unified trace drawn from ``model``.

    Arrivals form a renewal process whose gaps follow the Gamma of the window the previous
    arrival is in (a window with no fit is Poisson at its own rate; one with no requests is
    skipped); the first request arrives at 0. Past the model's last window, the windows repeat.
    ``rps`` scales every window's rate β by the same factor so that the expected rate over
    ``duration_s`` is ``rps`` (BurstGPT's adjusting of β; the windows the duration covers
    are the ones that count, see :meth:`TraceModel.rate_over`); the shapes α, and so the
    burstiness, are kept. Input lengths
    come from the Zipf fit, output lengths from the percentiles of the input length's bin (the
    nearest bin with data where it has none). Every row is a successful request
    (``failed`` false) of the model's ``model`` / ``service`` where the fitted trace had one.

    Only :meth:`random.Random.random` is drawn from, whose sequence Python keeps stable, so
    the same model and seed give the same trace, byte for byte, on every machine.

    Parameters
    ----------
    model : TraceModel
    rps : float, optional
        Target mean rate (requests per second); default: the model's own.
    duration_s : float, optional
        Length of the trace in seconds; default: the fitted trace's span.
    seed : int

    Returns
    -------
    TraceView
        Batches of up to 131,072 rows; reading it again gives the same rows.

    Examples
    --------
    >>> m = fit("azure-llm-2023/code")
    >>> t = synthesize(m, rps=5, duration_s=60, seed=1).to_table()
    >>> t.num_rows, t["arrival_us"][0].as_py()
    (360, 0)
    """
    if rps is not None and not (rps > 0 and math.isfinite(rps)):
        raise TransformError(f"synthesize: rps must be a positive number (got {rps})")
    duration = model.span_s if duration_s is None else float(duration_s)
    if not (duration > 0 and math.isfinite(duration)):
        raise TransformError(f"synthesize: duration must be > 0 s (got {duration_s})")
    own = model.rate_over(duration)
    if own <= 0:
        raise TransformError("synthesize: the model has no requests")
    factor = 1.0 if rps is None else rps / own
    digest = hashlib.sha256(model.to_json().encode()).hexdigest()
    from .._version import __version__

    meta: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "source": None, "trace": "synthetic",
        "native_file": None, "native_sha256": None, "native_verified": False,
        "native_format": None, "converter": f"llmtraces {__version__}", "rows": None,
        "time": {"kind": "relative", "native_format": "synthesized", "zone": None,
                 "zone_assumed": False, "resolution": "1us",
                 "origin": "the first synthesized request"},
        "time_origin": None,
        "licence": model.fitted_from.get("licence"),
        "citation": model.fitted_from.get("citation"),
        "tokenizer": None, "native_layout": {},
        "synthesized_from": model.fitted_from,
        "transforms": [{"op": "synthesize", "model_sha256": digest, "rps": rps,
                        "duration_s": duration, "seed": seed, "rate_factor": factor}],
    }

    def read() -> Iterator[pa.RecordBatch]:
        rows = 0
        for batch in _generate(model, factor, duration, seed):
            rows += batch.num_rows
            yield batch
        meta["rows"] = rows

    def reopen(columns: Any) -> Iterator[pa.RecordBatch]:
        for batch in _generate(model, factor, duration, seed):
            yield batch.select([c for c in batch.schema.names if c in set(columns)])

    return TraceView(meta, read, reopen=reopen)


def _generate(model: TraceModel, factor: float, duration: float, seed: int
              ) -> Iterator[pa.RecordBatch]:
    times = Sampler(f"llmtraces:{seed}:arrivals")
    draws = Sampler(f"llmtraces:{seed}:lengths")
    win = model.window_s
    windows = [(w.alpha, w.beta * factor if w.beta is not None else None,
                w.requests / win * factor) for w in model.windows]
    zl = model.request_lengths
    cdf = zipf_cdf(zl.exponent, zl.min, zl.max)
    by_bin = {b.bin: b.quantiles for b in model.response_lengths.bins}
    known = sorted(by_bin)
    nearest: dict[int, list[int] | None] = {}

    def quantiles_for(k: int) -> list[int] | None:
        b = length_bin(k)
        if b not in nearest:
            nearest[b] = (by_bin[min(known, key=lambda x: (abs(x - b), x))]
                          if known else None)
        return nearest[b]

    t = 0.0
    rid = 0
    done = False
    while not done:
        arrivals: list[int] = []
        inputs: list[int] = []
        outputs: list[int | None] = []
        while len(arrivals) < BATCH_ROWS:
            if t >= duration:
                done = True
                break
            arrivals.append(round(t * 1e6))
            k = zl.min + draws.index(cdf)
            inputs.append(k)
            q = quantiles_for(k)
            outputs.append(draws.quantile(q) if q is not None else None)
            # the next arrival: a gap from the window the current one is in
            while True:
                i = int(t // win)
                alpha, beta, poisson = windows[i % len(windows)]
                if alpha is not None and beta is not None:
                    t += times.gamma(alpha, beta)
                    break
                if poisson > 0:
                    t += times.exponential(poisson)
                    break
                t = (i + 1) * win  # an empty window: no arrivals in it
                if t >= duration:
                    break
        n = len(arrivals)
        if not n:
            break
        cols: dict[str, Any] = {
            "request_id": arange(rid, n), "source_row": arange(rid, n),
            "arrival_us": pa.array(arrivals, pa.int64()),
            "input_tokens": pa.array(inputs, pa.int64()),
            "output_tokens": pa.array(outputs, pa.int64()),
            "failed": pa.array([False] * n, pa.bool_()),
        }
        if model.model is not None:
            cols["model"] = pa.array([model.model] * n, pa.string())
        if model.service is not None:
            cols["service"] = pa.array([model.service] * n, pa.string())
        rid += n
        yield make_batch(n, cols)


def model_summary(model: TraceModel) -> dict[str, Any]:
    """A few headline numbers of a model, for the CLI."""
    fitted = [w for w in model.windows if w.alpha is not None]
    return {
        "windows": len(model.windows), "fitted_windows": len(fitted),
        "mean_rps": round(model.mean_rps, 6),
        "alpha_median": sorted(w.alpha for w in fitted if w.alpha)[len(fitted) // 2]
        if fitted else None,
        "zipf_exponent": round(model.request_lengths.exponent, 6),
        "response_bins": len(model.response_lengths.bins),
    }


__all__ = ["GammaWindow", "ResponseBin", "ResponseLengths", "TraceModel", "ZipfLengths", "fit",
           "length_bin", "synthesize"]
