"""Synthesize a trace from a BurstGPT trace model: :func:`synthesize`.

Arrivals are a renewal process whose gaps follow each window's Gamma fit; input lengths come
from the Zipf fit and output lengths from the percentiles of the input length's bin. A model
holding a ServeGen workload is drawn by :mod:`~llmtraces.transforms.servegen_synth`. Only
:meth:`random.Random.random` is drawn from (:class:`~llmtraces.transforms._math.Sampler`), so a
model and a seed give the same trace, byte for byte, on every machine.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from .._version import __version__
from ..pipeline.view import BATCH_ROWS, TraceView, TransformError
from ..schema import SCHEMA_VERSION, make_batch
from ._math import Sampler, zipf_cdf
from ._stream import arange
from .modeled import TraceModel, length_bin
from .servegen_synth import servegen_batches, window_targets


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

    A ServeGen model (``model.servegen``) gives each 600 s window round(rate x window)
    arrivals spread by its Gamma or Weibull law, and lengths from the window's PMFs; the
    metadata's ``window_targets`` lists each window's rate, CV and law.

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
    >>> import llmtraces
    >>> m = llmtraces.fit("azure-llm-2023/code")
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
    if model.servegen is not None:
        meta["window_targets"] = window_targets(model.servegen, factor, duration)

    def read() -> Iterator[pa.RecordBatch]:
        rows = 0
        for batch in _batches(model, factor, duration, seed):
            rows += batch.num_rows
            yield batch
        meta["rows"] = rows

    def reopen(columns: Any) -> Iterator[pa.RecordBatch]:
        for batch in _batches(model, factor, duration, seed):
            yield batch.select([c for c in batch.schema.names if c in set(columns)])

    return TraceView(meta, read, reopen=reopen)


def _batches(model: TraceModel, factor: float, duration: float, seed: int
             ) -> Iterator[pa.RecordBatch]:
    """The model's batches: a ServeGen workload's, or a fit's."""
    if model.servegen is not None:
        return servegen_batches(model.servegen, factor, duration, seed, model.model,
                                model.service)
    return _generate(model, factor, duration, seed)


def _generate(model: TraceModel, factor: float, duration: float, seed: int
              ) -> Iterator[pa.RecordBatch]:
    assert model.request_lengths is not None and model.response_lengths is not None
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
