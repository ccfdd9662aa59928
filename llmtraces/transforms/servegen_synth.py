"""Draw a unified trace from a ServeGen workload description (:func:`servegen_batches`) and
list what each window was asked for (:func:`window_targets`).

Arrivals follow ServeGen's generator (``servegen/construct.py``, ``_sample_iats``, at
f891d1189eb32b3868dfc443800c4150548c282a): a window's gaps are drawn from its law and scaled so
that they fill the window, so the window holds its rate exactly and keeps the law's shape.
ServeGen draws ceil(rate x window) gaps and drops the arrival that lands on the window's end;
here round(rate x window) arrivals are placed by N+1 gaps, the last running to the window's
end, so a window of 1.625/s over 600 s holds 975 requests, not 974.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from ..pipeline.view import BATCH_ROWS, TransformError
from ..schema import make_batch
from ._math import Sampler
from ._stream import arange
from .servegen_model import ArrivalWindow, LengthWindow, ServeGenWorkload


def _windows(sg: ServeGenWorkload, factor: float, duration: float
             ) -> Iterator[tuple[float, float, ArrivalWindow, int]]:
    """(start, covered seconds, source window, arrivals) of each window the trace covers
    that has requests; past the file's last window, its windows repeat."""
    step = sg.window_s
    for k in range(math.ceil(duration / step)):
        src = sg.windows[k % len(sg.windows)]
        start = k * step
        covered = min(step, duration - start)
        if src.law is None:
            continue
        n = round(src.rate * factor * covered)
        if n > 0:
            yield start, covered, src, n


def window_targets(sg: ServeGenWorkload, factor: float, duration: float) -> dict[str, Any]:
    """What each window with requests was asked for, as columns (for the trace metadata, so
    a check needs no CSV): synthesized start, the file's window start, rate (scaled),
    arrivals placed, the file's CV, the law, its shape and the law's own CV."""
    cols: dict[str, list[Any]] = {k: [] for k in (
        "start_s", "source_start_s", "rate", "requests", "cv", "law", "shape", "law_cv")}
    for start, _covered, src, n in _windows(sg, factor, duration):
        law_cv = src.law_cv()
        for key, value in (("start_s", start), ("source_start_s", src.start_s),
                           ("rate", src.rate * factor), ("requests", n), ("cv", src.cv),
                           ("law", src.law), ("shape", src.shape),
                           ("law_cv", law_cv if law_cv is not None and math.isfinite(law_cv)
                            else None)):
            cols[key].append(value)
    return {"window_s": sg.window_s, "category": sg.category, **cols}


def _gap(times: Sampler, src: ArrivalWindow) -> float:
    """One gap of the window's law, in units of its scale (the scale is normalised away)."""
    if src.law == "gamma":
        return times.gamma(src.shape, 1.0)
    return (-math.log(1.0 - times.random())) ** (1.0 / src.shape)  # Weibull, inverse CDF


class _Lengths:
    """Inverse-CDF draws of one length window's fields, each field independently."""

    def __init__(self, window: LengthWindow, draws: Sampler) -> None:
        self.draws = draws
        self.pmfs = {name: (pmf.values, pmf.cdf()) for name, pmf in window.fields.items()}

    def one(self, name: str) -> float:
        values, cdf = self.pmfs[name]
        return values[self.draws.index(cdf)]

    def count(self, name: str) -> int:
        return int(self.one(name))


def _request(category: str, lengths: _Lengths) -> tuple[int, int, int | None, str | None]:
    """(input tokens, output tokens, images, extra JSON) of one request."""
    if category == "multimodal":
        text = lengths.count("text_tokens")
        items = {kind: [lengths.count(f"{kind}_tokens")
                        for _ in range(lengths.count(f"{kind}_count"))]
                 for kind in ("image", "audio", "video")}
        total = text + sum(sum(v) for v in items.values())
        extra = {"text_tokens": text, **{f"{k}_tokens": v for k, v in items.items()}}
        return (total, lengths.count("output_tokens"), len(items["image"]),
                json.dumps(extra, separators=(",", ":")))
    inp, out = lengths.count("input_tokens"), lengths.count("output_tokens")
    if category == "reason":
        ratio = lengths.one("reason_ratio")
        extra_r = {"reason_ratio": ratio, "reason_tokens": round(ratio * out)}
        return inp, out, None, json.dumps(extra_r, separators=(",", ":"))
    return inp, out, None, None


def servegen_batches(sg: ServeGenWorkload, factor: float, duration: float, seed: int,
                     model: str | None, service: str | None) -> Iterator[pa.RecordBatch]:
    """Unified batches drawn from ``sg`` over ``duration`` seconds, every window's rate
    scaled by ``factor``."""
    times = Sampler(f"llmtraces:{seed}:arrivals")
    draws = Sampler(f"llmtraces:{seed}:lengths")
    cache: dict[float, _Lengths] = {}
    rows: list[tuple[int, int, int, int | None, str | None]] = []
    rid = 0

    def flush() -> pa.RecordBatch:
        n = len(rows)
        arrival, inp, out, images, extra = zip(*rows, strict=True)
        cols: dict[str, Any] = {
            "request_id": arange(rid, n), "source_row": arange(rid, n),
            "arrival_us": pa.array(arrival, pa.int64()),
            "input_tokens": pa.array(inp, pa.int64()),
            "output_tokens": pa.array(out, pa.int64()),
            "failed": pa.array([False] * n, pa.bool_()),
            "service": pa.array([service] * n, pa.string()),
            "model": pa.array([model] * n, pa.string()),
        }
        if sg.category == "multimodal":
            cols["num_images"] = pa.array(images, pa.int32())
        if sg.category != "language":
            cols["extra"] = pa.array(extra, pa.string())
        return make_batch(n, cols)

    for start, covered, src, n in _windows(sg, factor, duration):
        window = sg.lengths_at(src.start_s)
        if window is None:  # read_servegen refuses such files; a hand-built model may not
            raise TransformError(f"synthesize: no ServeGen length PMFs at or before window "
                                 f"{src.start_s:g} s")
        lengths = cache.get(window.start_s) or cache.setdefault(window.start_s,
                                                                _Lengths(window, draws))
        gaps = [_gap(times, src) for _ in range(n + 1)]
        total = math.fsum(gaps) or 1.0
        last_us = round((start + covered) * 1e6) - 1  # arrivals stay inside their window
        run = 0.0
        for g in gaps[:n]:
            run += g
            rows.append((min(round((start + covered * run / total) * 1e6), last_us),
                         *_request(sg.category, lengths)))
            if len(rows) >= BATCH_ROWS:
                yield flush()
                rid += len(rows)
                rows.clear()
    if rows:
        yield flush()


__all__ = ["servegen_batches", "window_targets"]
