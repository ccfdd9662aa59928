"""``llmtraces plot``: each figure tested by the data behind it, and the files by their bytes
(two runs give identical files) and validity, not their pixels."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from llmtraces.characterize.compute import stats
from llmtraces.characterize.figdata import KINDS, FigureData, samples
from llmtraces.characterize.figures import PlotError, figures, plot
from llmtraces.cli import plot as plot_cli
from llmtraces.testing import tiny_trace

REPO = Path(__file__).resolve().parents[1]
MOONCAKE = REPO / "tests" / "fixtures" / "mooncake" / "synthetic_trace.jsonl"


@pytest.fixture(scope="module")
def mooncake() -> dict[str, FigureData]:
    return {f.kind: f for f in figures(MOONCAKE)}


def test_kinds_listed_for_help_are_the_builders() -> None:
    assert list(plot_cli.KINDS) == list(KINDS)


def test_mooncake_has_the_figures_its_columns_allow(mooncake: dict[str, FigureData]) -> None:
    # no failures, no sessions in the Mooncake files
    assert list(mooncake) == ["rate", "interarrival", "lengths", "joint", "zipf", "prefix",
                              "gamma"]


def test_figure_data_matches_the_statistics(mooncake: dict[str, FigureData]) -> None:
    s = stats(MOONCAKE)
    assert s.rate is not None and s.prefix is not None
    assert mooncake["rate"].series[0].y == s.rate.rps
    xe, ye, counts = mooncake["joint"].grid  # type: ignore[misc]
    assert int(np.sum(counts)) == 3993 and len(counts) == len(xe) - 1
    for series in mooncake["lengths"].series:
        assert series.y[-1] == 1.0 and series.y == sorted(series.y) and series.x == sorted(
            series.x)
    lru = mooncake["prefix"].series[0]
    assert lru.y == [c.token_hit_ratio for c in s.prefix.lru]
    assert mooncake["prefix"].series[1].y == [s.prefix.token_hit_ratio] * 2
    trace, *laws = mooncake["interarrival"].series
    assert len(laws) == 3 and trace.y[-1] == 1.0
    for law in laws:
        assert law.y == sorted(law.y) and 0 <= law.y[0] and law.y[-1] <= 1
    # the Zipf panel: per-token densities; the fitted power law falls with the length
    z = mooncake["zipf"]
    assert s.lengths.input.zipf is not None and f"s={s.lengths.input.zipf.exponent:.3f}" in z.title
    assert z.series[1].y == sorted(z.series[1].y, reverse=True) and max(z.series[0].y) < 1


def test_sessions_and_failures_of_the_tiny_trace() -> None:
    figs = {f.kind: f for f in figures(tiny_trace(), ["sessions", "failures"], window_s=2.0)}
    bars = figs["sessions"].series[0]
    assert (bars.x, bars.y) == ([2.0, 3.0], [2.0, 1.0])  # s2, s3 of two requests; s1 of three
    assert figs["failures"].series[0].y == [pytest.approx(0.2), 0.0, 0.0]
    smp = samples(tiny_trace())
    assert sum(smp.session_sizes.values()) == 3


def test_files_repeat_byte_for_byte(tmp_path: Path) -> None:
    kinds = ["rate", "prefix"]
    first = plot(MOONCAKE, tmp_path / "a", kinds)
    second = plot(MOONCAKE, tmp_path / "b", kinds)
    assert [p.name for p in first] == ["rate.png", "rate.svg", "prefix.png", "prefix.svg"]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert first[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = ET.parse(first[1]).getroot()
    assert svg.tag.endswith("svg") and b"<dc:date>" not in first[1].read_bytes()
    assert not list(tmp_path.glob("a/.*"))  # no temporary file left behind


def test_a_figure_the_trace_cannot_give_is_one_line(cli, tmp_path: Path) -> None:
    with pytest.raises(PlotError, match="no data for this figure"):
        figures(MOONCAKE, ["sessions"])
    result = cli("plot", str(MOONCAKE), "--kind", "failures", "-o", str(tmp_path / "out"))
    assert result.exit_code == 1 and "--kind failures" in result.output
    assert not (tmp_path / "out").exists()
    result = cli("plot", str(MOONCAKE), "--kind", "nope", "-o", str(tmp_path / "out"))
    assert result.exit_code == 2


def test_cli_plot_writes_each_kind(cli, tmp_path: Path) -> None:
    result = cli("plot", str(MOONCAKE), "--kind", "gamma", "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert result.output.split() == [str(tmp_path / "gamma.png"), str(tmp_path / "gamma.svg")]
