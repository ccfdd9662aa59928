"""Transforms of unified traces and BurstGPT-style modeled scaling.

Row selections (:func:`window`, :func:`head`, :func:`sample`, :func:`filter`), :func:`merge`,
and time-axis changes (:func:`time_scale`, :func:`rate_scale`, :func:`rebase`) take a trace
(a :class:`~llmtraces.formats.TraceStream`, a pyarrow Table or a path) and return a stream that
any writer consumes batch by batch; each records itself in the metadata's ``transforms`` list.
:func:`fit` models a trace as BurstGPT does (per-window Gamma inter-arrivals, Zipf request
lengths, response lengths conditional on request length) and :func:`synthesize` draws a new
trace from such a :class:`TraceModel`. See ``docs/transforms.md``.
"""

from __future__ import annotations

from ._stream import (
    ReplayableStream,
    TraceLike,
    TransformError,
    open_trace,
    replayable,
    to_table,
)
from .modeled import GammaWindow, TraceModel, fit, synthesize
from .ops import filter, head, mean_rate, merge, rate_scale, rebase, sample, time_scale, window
from .pipeline import Plan

__all__ = ["GammaWindow", "Plan", "ReplayableStream", "TraceLike", "TraceModel",
           "TransformError", "filter", "fit", "head", "mean_rate", "merge", "open_trace",
           "rate_scale", "rebase", "replayable", "sample", "synthesize", "time_scale",
           "to_table", "window"]
