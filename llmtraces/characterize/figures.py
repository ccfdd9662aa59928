"""``llmtraces plot``: the figures of :mod:`.figdata` drawn with matplotlib (Agg, no display)
into PNG and SVG files whose bytes repeat from run to run (no date, no software stamp, a fixed
SVG id salt). Needs the ``plot`` extra."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..atomic import atomic_path
from ..errors import LLMTracesError
from ..pipeline.inputs import TraceInput
from .compute import stats
from .figdata import KINDS, FigureData, samples

try:
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure
except ImportError as exc:
    raise ImportError(f"llmtraces plot needs matplotlib ({exc.name} is missing): pip install "
                      "'llmtraces[plot]'") from None

#: File formats written for each figure.
FORMATS = ("png", "svg")
#: Settings that make the bytes repeat: fixed SVG ids, no embedded fonts' subsets by date.
RC: dict[Any, Any] = {"svg.hashsalt": "llmtraces", "svg.fonttype": "path", "path.simplify": False,
      "font.family": "DejaVu Sans", "figure.dpi": 100}
#: Metadata written per format (None removes matplotlib's default entry).
METADATA = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None}}


class PlotError(LLMTracesError, ValueError):
    """A figure that cannot be drawn for this trace (e.g. no hash_ids for ``prefix``)."""


def draw(data: FigureData) -> Figure:
    """One figure from its data."""
    fig = Figure(figsize=(6.4, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if data.grid is not None:
        xe, ye, counts = data.grid
        mesh = ax.pcolormesh(xe, ye, [list(r) for r in zip(*counts, strict=True)],
                             norm=LogNorm(vmin=1), cmap="viridis")
        fig.colorbar(mesh, ax=ax, label="requests")
    for s in data.series:
        if s.style == "step":
            ax.step(s.x, s.y, where="post", label=s.label)
        elif s.style == "bar":
            ax.bar(s.x, s.y, label=s.label)
        elif s.style == "points":
            ax.plot(s.x, s.y, "o", markersize=3, label=s.label)
        else:
            ax.plot(s.x, s.y, label=s.label)
    if data.xlog:
        ax.set_xscale("log")
    if data.ylog:
        ax.set_yscale("log")
    ax.set_title(data.title, fontsize=10)
    ax.set_xlabel(data.xlabel)
    ax.set_ylabel(data.ylabel)
    if len(data.series) > 1:
        ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def figures(trace: TraceInput, kinds: list[str] | None = None, *, window_s: float = 60.0,
            gamma_window_s: float = 1200.0) -> list[FigureData]:
    """The data of each figure asked for (default: every one the trace has data for); a kind
    asked for by name that the trace cannot give is a :class:`PlotError`."""
    wanted = kinds or list(KINDS)
    unknown = [k for k in wanted if k not in KINDS]
    if unknown:
        raise PlotError(f"--kind {unknown[0]!r}: no such figure; choose from "
                        f"{', '.join(KINDS)}")
    s = stats(trace, window_s=window_s, gamma_window_s=gamma_window_s)
    smp = samples(trace)
    out = []
    for k in wanted:
        data = KINDS[k](s, smp)
        if data is None and kinds:
            raise PlotError(f"--kind {k}: {s.trace} has no data for this figure (see "
                            "docs/stats.md for what each needs)")
        if data is not None:
            out.append(data)
    return out


def save(data: FigureData, folder: Path) -> list[Path]:
    """``<folder>/<kind>.png`` and ``.svg``, each written atomically."""
    written = []
    with matplotlib.rc_context(RC):
        fig = draw(data)
        for fmt in FORMATS:
            dest = folder / f"{data.kind}.{fmt}"
            with atomic_path(dest) as tmp:
                fig.savefig(tmp, format=fmt, metadata=METADATA[fmt])
            written.append(dest)
    return written


def plot(trace: TraceInput, folder: Path, kinds: list[str] | None = None, *,
         window_s: float = 60.0, gamma_window_s: float = 1200.0) -> list[Path]:
    """Draw the figures of a trace into ``folder``; the files written."""
    written: list[Path] = []
    for data in figures(trace, kinds, window_s=window_s, gamma_window_s=gamma_window_s):
        written += save(data, Path(folder))
    return written
