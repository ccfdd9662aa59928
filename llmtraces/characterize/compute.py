""":func:`stats`: every statistic of one trace, in one pass over the columns it needs (and a
second over ``hash_ids`` for the LRU curve, where the trace has them)."""

from __future__ import annotations

from ..pipeline.inputs import TraceInput
from ..pipeline.view import label
from ..transforms._stream import replayable
from ..transforms.servegen_check import window_cv_report
from . import requires  # noqa: F401  (first: one line when the stats extra is missing)
from .arrivals import arrivals, periodicity, rate, size
from .collect import COLUMNS, run
from .failures import failures
from .lengths import lengths
from .model import Images, TargetWindow, TraceStats

#: The columns the LRU pass reads again.
PREFIX_COLUMNS = ["input_tokens", "hash_ids", "hash_block_size"]


def stats(trace: TraceInput, *, window_s: float = 60.0, gamma_window_s: float = 1200.0
          ) -> TraceStats:
    """Workload statistics of a trace: size and span, the rate per ``window_s`` window,
    inter-arrival gaps with Gamma/Weibull/exponential fits (KS distance D) and BurstGPT's
    per-window Gamma (``gamma_window_s``), hour/weekday profiles, input and output lengths
    (percentiles, correlation, Zipf fit), failures, models, services, sessions, images and
    prefix reuse from ``hash_ids``. Needs the ``stats`` extra (numpy, scipy).

    ``trace`` is anything :func:`llmtraces.load` takes. docs/stats.md defines each number;
    ``result.model_dump_json()`` is what ``llmtraces stats --json`` prints.

    Examples
    --------
    >>> import llmtraces
    >>> s = llmtraces.stats("azure-llm-2023/code")
    >>> s.size.rows, s.lengths.input.p50, s.lengths.output.p50
    (8819, 1469.0, 13.0)
    """
    if not window_s > 0 or not gamma_window_s > 0:
        raise ValueError(f"window_s and gamma_window_s must be > 0 (got {window_s}, "
                         f"{gamma_window_s})")
    view = replayable(trace)
    assert view.reopen is not None  # replayable() guarantees a cheap re-read
    acc = run(view.reopen(COLUMNS))
    meta = view.meta
    cols = acc.columns()
    t = cols.arrival_us[cols.timed]
    pre = acc.prefix.result(view.reopen(PREFIX_COLUMNS) if acc.prefix.rows else None)
    images = None
    if acc.image_rows:
        images = Images(rows=acc.image_rows, with_images=acc.image_with,
                        share=acc.image_with / acc.image_rows, images=acc.image_total,
                        mean_per_request=(acc.image_total / acc.image_with if acc.image_with
                                          else None), max=acc.image_max)
    return TraceStats(
        trace=label(meta), source=meta.get("source"),
        size=size(len(cols.input_tokens), t, meta), rate=rate(t, window_s),
        arrivals=arrivals(t, meta, gamma_window_s), periodicity=periodicity(t, meta),
        lengths=lengths(cols.input_tokens, cols.output_tokens, cols.has_output),
        failures=failures(cols.failed, cols.arrival_us, cols.timed, window_s),
        models=dict(acc.models.most_common()), services=dict(acc.services.most_common()),
        sessions=acc.sessions.result(), images=images, prefix=pre,
        model_windows=([TargetWindow(**row) for row in window_cv_report(view)]
                       if meta.get("window_targets") else None))
