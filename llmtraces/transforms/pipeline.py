"""The transforms of ``llmtraces convert``, applied in one fixed order.

Order: merge, filter, window, sample, head, rebase, then the time scale (speedup or rps).
Selections come before the time axis is moved so that ``--window`` names times of the input
and ``--rps`` sets the rate of what is finally written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..formats.parquet import is_unified
from ..pipeline.inputs import TraceLike, open_trace, parquet_stream
from ..pipeline.view import TraceView, TransformError
from .merging import merge
from .ops import filter, head, rate_scale, rebase, time_scale, window
from .sampling import sample

#: The order in which :meth:`Plan.apply` applies the options, as the docs list it.
ORDER = ("merge", "filter", "window", "sample", "head", "rebase", "speedup", "rps")


@dataclass
class Plan:
    """Which transforms to apply, with their parameters; empty by default.

    Examples
    --------
    >>> import llmtraces, pyarrow as pa
    >>> plan = Plan(window=(0.0, 60.0), head=10, rebase=True)
    >>> s = plan.apply(llmtraces.load("azure-llm-2023", trace="code"))
    >>> [t["op"] for t in s.meta["transforms"]]
    ['window', 'head', 'rebase']
    """

    merge: list[Path] = field(default_factory=list)
    model: list[str] = field(default_factory=list)
    service: list[str] = field(default_factory=list)
    failed: bool | None = None
    window: tuple[float, float] | None = None
    sample_fraction: float | None = None
    sample_n: int | None = None
    seed: int = 0
    head: int | None = None
    rebase: bool = False
    speedup: float | None = None
    rps: float | None = None

    def __post_init__(self) -> None:
        if self.speedup is not None and self.rps is not None:
            raise TransformError("give one of speedup and rps: both set the time scale")
        if self.sample_fraction is not None and self.sample_n is not None:
            raise TransformError("give one of a sample fraction and a sample size")

    def empty(self) -> bool:
        """True when there is nothing to apply."""
        return self == Plan(seed=self.seed)

    def apply(self, trace: TraceLike, path: Path | None = None) -> TraceView:
        """Apply the plan to ``trace`` (a stream, Table or path) in :data:`ORDER`.

        ``path`` is where ``trace`` was read from, as :func:`llmtraces.convert_file` passes
        it: a unified Parquet file is then re-read as a replayable stream, so first passes
        read its columns instead of spooling it.
        """
        if self.empty():
            return open_trace(trace)
        stream = (parquet_stream(path) if path is not None and is_unified(path)
                  else open_trace(trace))
        if self.merge:
            stream = merge([stream, *self.merge])
        if self.model or self.service or self.failed is not None:
            stream = filter(stream, model=self.model or None, service=self.service or None,
                            failed=self.failed)
        if self.window is not None:
            stream = window(stream, *self.window)
        if self.sample_fraction is not None or self.sample_n is not None:
            stream = sample(stream, fraction=self.sample_fraction, n=self.sample_n,
                            seed=self.seed)
        if self.head is not None:
            stream = head(stream, self.head)
        if self.rebase:
            stream = rebase(stream)
        if self.speedup is not None:
            stream = time_scale(stream, self.speedup)
        if self.rps is not None:
            stream = rate_scale(stream, self.rps)
        return stream
