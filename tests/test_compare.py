"""``llmtraces compare A B``: the side-by-side statistics and the two-sample distances."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import llmtraces
from llmtraces.characterize.compare import compare, distance, samples

REPO = Path(__file__).resolve().parents[1]
CODE = REPO / "llmtraces" / "data" / "azure-llm-2023" / "AzureLLMInferenceTrace_code.csv"
MOONCAKE = REPO / "tests" / "fixtures" / "mooncake" / "synthetic_trace.jsonl"


def test_a_trace_against_itself_is_at_distance_zero() -> None:
    c = compare(CODE, CODE)
    assert c.a == c.b
    for d in c.distances.values():
        assert (d.ks_d, d.wasserstein) == (0.0, 0.0) and d.n_a == d.n_b
    assert c.distances["gaps_s"].n_a == 8818 and c.distances["input_tokens"].n_a == 8819


def test_time_scaling_moves_only_the_gaps() -> None:
    fast = llmtraces.time_scale(CODE, speedup=2)
    c = compare(CODE, fast)
    gaps = samples(CODE)["gaps_s"]
    # halving every gap: the optimal coupling pairs each gap with its half, so W1 = mean / 2
    assert c.distances["gaps_s"].wasserstein == pytest.approx(gaps.mean() / 2, rel=1e-6)
    assert c.distances["input_tokens"].ks_d == 0 and c.distances["output_tokens"].ks_d == 0
    assert c.b.size.span_s == pytest.approx(c.a.size.span_s / 2, rel=1e-6)


def test_distance_of_known_samples() -> None:
    d = distance(np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]), "s")
    assert (d.ks_d, d.n_a, d.n_b) == (1.0, 3, 3) and d.wasserstein == pytest.approx(3.0)
    empty = distance(np.array([]), np.array([1.0]), "s")
    assert empty.ks_d is None and empty.wasserstein is None


def test_cli_compare(cli) -> None:
    result = cli("compare", str(CODE), str(MOONCAKE))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:2] == ["A: azure-llm-2023/code", "B: mooncake/synthetic"]
    assert any(line.split()[:3] == ["rows", "8,819", "3,993"] for line in lines)
    assert any(line.split()[:1] == ["input_tokens"] for line in lines)
    result = cli("compare", str(CODE), str(MOONCAKE), "--json")
    data = json.loads(result.output)
    assert set(data["distances"]) == {"gaps_s", "input_tokens", "output_tokens"}
    assert 0 < data["distances"]["input_tokens"]["ks_d"] <= 1
    result = cli("compare", str(CODE), "no-such-source")
    assert result.exit_code != 0 and "unknown source" in result.output
