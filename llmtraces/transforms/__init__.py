"""Transforms of unified traces and BurstGPT-style modeled scaling.

Row selections (:func:`window`, :func:`head`, :func:`sample`, :func:`filter`), :func:`merge`,
and time-axis changes (:func:`time_scale`, :func:`rate_scale`, :func:`rebase`) take a trace
(a :class:`TraceView`, a pyarrow Table, a path or a registry id) and return a
:class:`TraceView`: re-readable, streamed batch by batch to any writer, with ``to_table()``,
``to_pandas()`` and ``num_rows``; each records itself in the metadata's ``transforms`` list.
:func:`fit` models a trace as BurstGPT does (per-window Gamma inter-arrivals, Zipf request
lengths, response lengths conditional on request length) and :func:`synthesize` draws a new
trace from such a :class:`TraceModel`. See ``docs/transforms.md``.

The view itself (:class:`TraceView`, :func:`open_trace`, :func:`to_table`) is defined in
:mod:`llmtraces.pipeline` and importable from here.
"""

from __future__ import annotations

from ..pipeline.inputs import TraceLike, open_trace, to_table
from ..pipeline.view import ReplayableStream, TraceView, TransformError
from ._stream import EmptyResultWarning, replayable
from .fitting import fit
from .merging import merge
from .modeled import GammaWindow, TraceModel
from .ops import filter, head, mean_rate, rate_scale, rebase, time_scale, window
from .pipeline import Plan
from .sampling import sample
from .servegen_read import read_servegen
from .synthesis import synthesize

__all__ = ["EmptyResultWarning", "GammaWindow", "Plan", "ReplayableStream", "TraceLike",
           "TraceModel", "TraceView", "TransformError", "filter", "fit", "head", "mean_rate",
           "merge", "open_trace", "rate_scale", "read_servegen", "rebase", "replayable", "sample",
           "synthesize", "time_scale", "to_table", "window"]
