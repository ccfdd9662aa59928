"""BurstGPT's trace model: what :func:`~llmtraces.transforms.fit` estimates and
:func:`~llmtraces.transforms.synthesize` draws from.

As the BurstGPT paper (§3, §4.2-4.3) models a trace: inter-arrival times follow a Gamma
distribution whose shape α and rate β are fitted per window (20 minutes by default), request
lengths follow a Zipf distribution, and response lengths follow their empirical distribution
given the request length. :class:`TraceModel` holds such a fit and round-trips through JSON.
A model may instead carry a ServeGen workload description (``servegen``, see
:mod:`~llmtraces.transforms.servegen_model`): per-window rates, arrival laws and length PMFs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..atomic import atomic_path
from ..errors import InvalidTraceError
from .servegen_model import ServeGenWorkload

#: Response-length bins per doubling of the request length.
BINS_PER_OCTAVE = 4
#: Quantiles kept per response-length bin: the 0th..100th percentiles.
QUANTILES = 101
#: Fewer gaps than this in a window: no Gamma fit; the window is Poisson at its own rate.
MIN_GAPS = 2


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
    >>> m = llmtraces.fit(llmtraces.load("azure-llm-2023", trace="code"))
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
    request_lengths: ZipfLengths | None = Field(default=None, description="Null only in a ServeGen "
                                                "model.")
    response_lengths: ResponseLengths | None = Field(default=None, description="Null only in a "
                                                     "ServeGen model.")
    fitted_from: dict[str, Any] = Field(default_factory=dict)
    servegen: ServeGenWorkload | None = Field(
        default=None, description="A ServeGen workload description, which then replaces `windows` "
        "(empty) and the length fits (null).")

    @model_validator(mode="after")
    def _one_kind(self) -> TraceModel:
        fitted = self.request_lengths is not None and self.response_lengths is not None
        if (self.servegen is None) != fitted:
            raise ValueError("a trace model has either request_lengths and response_lengths "
                             "(a fit) or servegen (a ServeGen workload), not both or neither")
        return self

    def _rates(self) -> list[float]:
        """Each window's expected requests per second."""
        if self.servegen is not None:
            return self.servegen.rates()
        return [w.rate(self.window_s) for w in self.windows]

    def _starts(self) -> list[float]:
        """Each window's start, seconds after the first window's."""
        if self.servegen is not None:
            first = self.servegen.windows[0].start_s if self.servegen.windows else 0.0
            return [w.start_s - first for w in self.servegen.windows]
        return [w.start_s for w in self.windows]

    @property
    def mean_rps(self) -> float:
        """Expected rate over the fitted span: the windows' rates weighted by how much of
        each the span covers (the last window is usually partial)."""
        total = weight = 0.0
        rates = self._rates()
        for start, rate in zip(self._starts(), rates, strict=True):
            part = min(self.window_s, max(self.span_s - start, 0.0))
            total += rate * part
            weight += part
        if not weight:  # a span of 0 s: every window counts the same
            return sum(rates) / len(rates) if rates else 0.0
        return total / weight

    def rate_over(self, duration_s: float) -> float:
        """Expected rate of a trace of ``duration_s`` seconds drawn from the model: the rates
        of the windows it covers (repeating past the last), weighted by the time in each."""
        rates = self._rates()
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


def length_bin(tokens: int) -> int:
    """The response-length bin of a request of ``tokens`` input tokens (-1 for 0)."""
    return math.floor(BINS_PER_OCTAVE * math.log2(tokens)) if tokens > 0 else -1


def model_summary(model: TraceModel) -> dict[str, Any]:
    """A few headline numbers of a model, for the CLI."""
    fitted = [w for w in model.windows if w.alpha is not None]
    if model.servegen is not None:
        sg = model.servegen
        return {"category": sg.category, "windows": len(sg.windows),
                "active_windows": sum(1 for w in sg.windows if w.law is not None),
                "length_windows": len(sg.lengths), "mean_rps": round(model.mean_rps, 6)}
    assert model.request_lengths is not None and model.response_lengths is not None
    return {
        "windows": len(model.windows), "fitted_windows": len(fitted),
        "mean_rps": round(model.mean_rps, 6),
        "alpha_median": sorted(w.alpha for w in fitted if w.alpha)[len(fitted) // 2]
        if fitted else None,
        "zipf_exponent": round(model.request_lengths.exponent, 6),
        "response_bins": len(model.response_lengths.bins),
    }


__all__ = ["GammaWindow", "ResponseBin", "ResponseLengths", "TraceModel", "ZipfLengths",
           "length_bin", "model_summary"]
