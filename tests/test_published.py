"""Published figures as tests: the registry's ``[published]`` tables, ``stats --check``, and
the two traces CI can check from files in the package and its fixtures. The rest of the
registry's published figures need the real files: ``pytest -m published`` (network)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llmtraces.characterize.compute import stats
from llmtraces.characterize.model import TraceStats
from llmtraces.characterize.published import PublishedError, check
from llmtraces.errors import RegistryError
from llmtraces.registry import PublishedStat, load_registry, load_source_file

REPO = Path(__file__).resolve().parents[1]
CODE = REPO / "llmtraces" / "data" / "azure-llm-2023" / "AzureLLMInferenceTrace_code.csv"
MOONCAKE = REPO / "tests" / "fixtures" / "mooncake" / "synthetic_trace.jsonl"
#: Traces whose published figures CI checks from shipped files (the rest: -m published).
IN_CI = {"azure-llm-2023/code", "mooncake/synthetic"}


def leaf_paths(schema: dict[str, Any], node: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted paths of the scalar fields of a JSON Schema (refs and nullable unions followed)."""
    if "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    if "anyOf" in node:
        return set().union(*(leaf_paths(schema, n, prefix) for n in node["anyOf"]))
    if node.get("type") == "object" and "properties" in node:
        return set().union(*(leaf_paths(schema, n, f"{prefix}.{k}" if prefix else k)
                             for k, n in node["properties"].items()))
    return {prefix} if node.get("type") in ("integer", "number") else set()


STAT_PATHS = leaf_paths(TraceStats.model_json_schema(), TraceStats.model_json_schema())
PUBLISHED = [(f"{sid}/{tid}", tr.published) for sid, src in load_registry().items()
             for tid, tr in src.traces.items() if tr.published]


def test_every_published_key_names_a_statistic() -> None:
    assert {"size.rows", "lengths.input.p50", "prefix.token_hit_ratio"} <= STAT_PATHS
    assert IN_CI <= {t for t, _ in PUBLISHED}
    for trace, table in PUBLISHED:
        for key, pub in table.items():
            assert key in STAT_PATHS, f"{trace}: [published] {key!r} is no statistic"
            assert pub.source and pub.tolerance >= 0


def test_azure_code_trace_meets_its_published_figures() -> None:
    checks = check(stats(CODE))
    assert {c.stat: c.measured for c in checks} == {
        "size.rows": 8819, "lengths.input.p50": 1469, "lengths.output.p50": 13}
    assert all(c.met for c in checks)


def test_mooncake_sample_meets_its_published_figures() -> None:
    s = stats(MOONCAKE)
    checks = {c.stat: c for c in check(s)}
    assert all(c.met for c in checks.values()), checks
    assert checks["size.rows"].measured == 3993
    assert checks["lengths.input.mean"].measured == pytest.approx(15325, abs=1)
    assert checks["lengths.output.mean"].measured == pytest.approx(149, abs=1)
    # the paper's 66 % "cache ratio": the token-weighted ratio is the closer definition
    assert s.prefix is not None and s.prefix.request_mean_hit_ratio is not None
    assert s.prefix.token_hit_ratio == pytest.approx(0.651, abs=0.001)
    assert abs(s.prefix.token_hit_ratio - 0.66) < abs(s.prefix.request_mean_hit_ratio - 0.66)


def test_check_reports_a_miss_and_an_absent_section() -> None:
    s = stats(CODE)
    table = {"size.rows": PublishedStat(value=9000, tolerance=10, source="made up"),
             "prefix.token_hit_ratio": PublishedStat(value=0.5, tolerance=0.1, source="x"),
             "lengths.output.p50": PublishedStat(value=12.5, tolerance=0.5, source="y")}
    got = {c.stat: (c.measured, c.met) for c in check(s, table)}
    assert got == {"size.rows": (8819, False), "prefix.token_hit_ratio": (None, False),
                   "lengths.output.p50": (13, True)}
    with pytest.raises(PublishedError, match="'lengths.input.p42' names no statistic"):
        check(s, {"lengths.input.p42": PublishedStat(value=1, tolerance=0, source="z")})


def test_cli_check(cli, tmp_path: Path) -> None:
    result = cli("stats", str(MOONCAKE), "--check")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "mooncake/synthetic: 4 of 4 published figures met"
    result = cli("stats", str(CODE), "--check", "--json")
    assert result.exit_code == 0, result.output
    assert [c["met"] for c in json.loads(result.output)["checks"]] == [True, True, True]
    other = tmp_path / "renamed.jsonl"  # not a published file name: no registry trace
    other.write_bytes(MOONCAKE.read_bytes())
    result = cli("stats", str(other), "--check")
    assert result.exit_code == 1 and "not a registry trace" in result.output


def test_registry_refuses_a_negative_tolerance(tmp_path: Path) -> None:
    text = (REPO / "registry" / "mooncake.toml").read_text(encoding="utf-8")
    bad = tmp_path / "mooncake.toml"
    bad.write_text(text.replace('"size.rows" = { value = 3993, tolerance = 0,',
                                '"size.rows" = { value = 3993, tolerance = -1,'),
                   encoding="utf-8")
    with pytest.raises(RegistryError, match=r"traces\.synthetic\.published\.size\.rows"
                       r"\.tolerance"):
        load_source_file(bad)


@pytest.fixture()
def opted_in(request: pytest.FixtureRequest) -> None:
    """Run only when asked for: ``pytest -m published`` (downloads the real files)."""
    if "published" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("needs the real trace files: run with -m published")


@pytest.mark.published
@pytest.mark.parametrize("trace", sorted(t for t, _ in PUBLISHED if t not in IN_CI))
def test_real_trace_meets_its_published_figures(opted_in: None, trace: str) -> None:
    checks = check(stats(trace))
    missed = [c for c in checks if not c.met]
    assert not missed, [(c.stat, c.published, c.measured) for c in missed]
