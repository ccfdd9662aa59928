"""ServeGen workload descriptions as part of a :class:`~llmtraces.transforms.TraceModel`.

Alibaba's ServeGen (Xiang et al., arXiv:2505.09999; github.com/alibaba/ServeGen, Apache-2.0)
publishes, per client, the request rate, inter-arrival CV and fitted arrival law of every
600 s window (``chunk-N-trace.csv``) and the length PMFs of every 6 h window
(``chunk-N-dataset.json``). :class:`ServeGenWorkload` holds both, as read by
:func:`~llmtraces.transforms.servegen_read.read_servegen`.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Category = Literal["language", "reason", "multimodal"]
Law = Literal["gamma", "weibull"]

#: The length fields of each category's dataset windows (ServeGen's ``Category``).
FIELDS: dict[str, tuple[str, ...]] = {
    "language": ("input_tokens", "output_tokens"),
    "reason": ("input_tokens", "output_tokens", "reason_ratio"),
    "multimodal": ("text_tokens", "image_tokens", "audio_tokens", "video_tokens",
                   "image_count", "audio_count", "video_count", "output_tokens"),
}

METHOD = {
    "arrivals": "ServeGen per-window rate and arrival law (Gamma or Weibull, shape from the "
                "file): round(rate x window) arrivals per window, placed by N+1 gaps of the "
                "window's law scaled to fill the window (ServeGen construct._sample_iats)",
    "lengths": "ServeGen per-window PMFs (the latest dataset window at or before the arrival "
               "window), each field drawn independently",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Pmf(_Model):
    """A probability mass function: ``probs[i]`` is the probability of ``values[i]``."""

    values: list[float] = Field(description="Support, ascending (token counts, or ratios).")
    probs: list[float] = Field(description="Probabilities, summing to 1.")

    def mean(self) -> float:
        """The expected value."""
        return math.fsum(v * p for v, p in zip(self.values, self.probs, strict=True))

    def cdf(self) -> list[float]:
        """The cumulative probabilities, the last exactly 1 (for inverse-CDF draws)."""
        total = math.fsum(self.probs)
        out, run = [], 0.0
        for p in self.probs:
            run += p
            out.append(run / total)
        out[-1] = 1.0
        return out


class ArrivalWindow(_Model):
    """One row of ``chunk-N-trace.csv``: a window's rate, CV and arrival law."""

    start_s: float = Field(description="Window start, seconds from the file's origin.")
    rate: float = Field(description="Requests per second in the window.")
    cv: float = Field(description="CV of the window's inter-arrival gaps, as the file states.")
    law: Law | None = Field(description="Arrival law; null: no requests (empty pattern).")
    shape: float = Field(description="Law's shape (Gamma a, Weibull c); ServeGen's arg 1.")
    scale: float = Field(description="Law's scale, s; ServeGen's arg 2 (rescaled away: the "
                         "window's gaps are scaled to fill it).")

    def law_cv(self) -> float | None:
        """The CV of the law itself: 1/sqrt(a) for Gamma, sqrt(G(1+2/c)/G(1+1/c)^2 - 1) for
        Weibull (G: the Gamma function); None for an empty window."""
        if self.law == "gamma":
            return 1.0 / math.sqrt(self.shape)
        if self.law == "weibull":
            c = self.shape
            log_ratio = math.lgamma(1 + 2 / c) - 2 * math.lgamma(1 + 1 / c)
            return math.sqrt(math.expm1(log_ratio)) if log_ratio < 700 else math.inf
        return None


class LengthWindow(_Model):
    """One window of ``chunk-N-dataset.json``: a PMF per length field."""

    start_s: float
    fields: dict[str, Pmf]


class ServeGenWorkload(_Model):
    """A client's ServeGen workload description: arrival windows and length windows."""

    category: Category
    window_s: float = Field(description="Arrival window length, s (600 in the release).")
    windows: list[ArrivalWindow]
    lengths: list[LengthWindow] = Field(description="Windows with data (ServeGen skips "
                                        "those with an empty PMF), ascending.")

    def lengths_at(self, start_s: float) -> LengthWindow | None:
        """The length window in force at ``start_s``: the latest one starting at or before
        it (ServeGen ``ClientPoolView._get_dataset_window``)."""
        found = None
        for w in self.lengths:
            if w.start_s > start_s:
                break
            found = w
        return found

    def rates(self) -> list[float]:
        """Each arrival window's rate (0 for an empty one)."""
        return [w.rate if w.law is not None else 0.0 for w in self.windows]


__all__ = ["FIELDS", "METHOD", "ArrivalWindow", "Category", "LengthWindow", "Pmf",
           "ServeGenWorkload"]
