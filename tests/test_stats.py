"""``llmtraces stats`` and ``llmtraces.stats``: each statistic against an independent
computation or a hand-worked trace (docs/stats.md defines them)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pyarrow as pa
import pytest
from scipy.stats import rankdata

import llmtraces
from llmtraces.characterize import requires
from llmtraces.characterize.compute import stats
from llmtraces.characterize.model import TraceStats, json_schema_text
from llmtraces.characterize.prefix import lru_curve
from llmtraces.schema import make_batch, row_index
from llmtraces.testing import tiny_trace

REPO = Path(__file__).resolve().parents[1]
CODE = REPO / "llmtraces" / "data" / "azure-llm-2023" / "AzureLLMInferenceTrace_code.csv"
MOONCAKE = REPO / "tests" / "fixtures" / "mooncake" / "synthetic_trace.jsonl"


@pytest.fixture(scope="module")
def code() -> TraceStats:
    return stats(CODE)


@pytest.fixture(scope="module")
def code_table() -> pa.Table:
    return llmtraces.load(CODE, columns=["arrival_us", "input_tokens", "output_tokens"])


def trace(**cols: list) -> pa.Table:
    """A unified table of the given columns (the rest null)."""
    n = len(next(iter(cols.values())))
    return pa.Table.from_batches([make_batch(n, {"request_id": row_index(0, n),
                                                 "source_row": row_index(0, n), **cols})])


def test_size_and_rate_of_the_azure_code_trace(code: TraceStats, code_table: pa.Table) -> None:
    t = code_table.column("arrival_us").to_numpy()
    assert code.trace == "azure-llm-2023/code" and code.source == "azure-llm-2023"
    assert code.size.rows == code.size.timed_rows == code.size.distinct_arrivals == 8819
    assert code.size.span_s == pytest.approx((t.max() - t.min()) / 1e6)
    assert code.size.mean_rate_rps == pytest.approx(llmtraces.mean_rate(CODE))
    assert code.size.time_origin == "2023-11-16T18:17:03.979960Z"
    assert code.rate is not None
    assert sum(code.rate.rps) * 60 == pytest.approx(8819)  # every request in one window
    assert len(code.rate.rps) == int((t.max() - t.min()) // 60_000_000) + 1
    assert code.rate.peak_to_mean == pytest.approx(max(code.rate.rps) / np.mean(code.rate.rps))


def test_gaps_in_file_order(code: TraceStats, code_table: pa.Table) -> None:
    gaps = np.diff(code_table.column("arrival_us").to_numpy()) / 1e6
    a = code.arrivals
    assert a is not None and a.gaps == 8818 and a.zero_gaps == 0 and a.backward_gaps == 0
    assert a.mean_s == pytest.approx(gaps.mean()) and a.std_s == pytest.approx(gaps.std())
    assert a.cv == pytest.approx(gaps.std() / gaps.mean())
    assert a.gamma and a.weibull and a.exponential
    assert a.exponential.scale_s == pytest.approx(gaps.mean())
    # the code trace is far burstier than Poisson: the exponential fits worst
    assert a.weibull.ks_d < a.exponential.ks_d and a.gamma.ks_d < a.exponential.ks_d
    assert a.gamma.shape is not None and a.gamma.shape < 1
    # BurstGPT's 20-minute windows: 57 minutes make three, each with its own Gamma
    assert [w.start_s for w in a.windows] == [0.0, 1200.0, 2400.0]
    assert sum(w.requests for w in a.windows) == 8819
    assert sum(w.gaps for w in a.windows) == 8818
    for w in a.windows:
        assert w.shape and w.cv_fit == pytest.approx(w.shape ** -0.5)


def test_wall_clock_profiles(code: TraceStats) -> None:
    p = code.periodicity
    assert p is not None and p.zone == "UTC" and p.days == 1
    assert p.weekday == [0, 0, 0, 8819, 0, 0, 0]  # 2023-11-16 was a Thursday
    assert [h for h, c in enumerate(p.hour_of_day) if c] == [18, 19]
    assert sum(p.hour_of_day) == 8819


def test_hours_of_a_trace_whose_origin_is_a_local_midnight() -> None:
    # BurstGPT: seconds from 00:00:00 UTC+8 of an undisclosed day 0; 19,440,110 s is 00:01:50
    # of day 225, and the weekday of day 0 is not published
    s = stats(REPO / "tests" / "fixtures" / "burstgpt" / "head_3.csv")
    p = s.periodicity
    assert p is not None and (p.zone, p.days, p.weekday) == ("UTC+8", 1, None)
    assert p.hour_of_day == [6] + [0] * 23
    assert stats(tiny_trace()).periodicity is None  # relative, origin = first request


def test_lengths_of_the_azure_code_trace(code: TraceStats, code_table: pa.Table) -> None:
    inp = code_table.column("input_tokens").to_numpy()
    out = code_table.column("output_tokens").to_numpy()
    li, lo = code.lengths.input, code.lengths.output
    assert (li.p50, lo.p50) == (1469.0, 13.0)
    assert (li.min, li.max, lo.min, lo.max) == (3, 7437, 6, 1899)
    assert li.mean == pytest.approx(2047.848, abs=1e-3) and lo.mean == pytest.approx(27.883,
                                                                                     abs=1e-3)
    assert li.p99 == pytest.approx(np.percentile(inp, 99))
    assert code.lengths.pearson == pytest.approx(np.corrcoef(inp, out)[0, 1])
    mid_ranks = np.corrcoef(rankdata(inp), rankdata(out))[0, 1]  # Spearman: r of mid-ranks
    assert code.lengths.spearman == pytest.approx(mid_ranks)
    assert li.zipf is not None and li.zipf.rows == 8819 and 0 < li.zipf.ks_d < 1


def test_zipf_recovers_a_known_exponent() -> None:
    rng = np.random.default_rng(7)
    k = np.arange(1, 2001)
    p = k ** -1.3
    lengths = rng.choice(k, size=20_000, p=p / p.sum())
    s = stats(trace(arrival_us=list(range(0, 20_000 * 1000, 1000)),
                    input_tokens=lengths.tolist(), output_tokens=[1] * 20_000))
    z = s.lengths.input.zipf
    assert z is not None and z.exponent == pytest.approx(1.3, abs=0.03) and z.ks_d < 0.02
    assert s.lengths.output.zipf is None  # one distinct value: nothing to fit


def test_fits_recover_poisson_arrivals() -> None:
    rng = np.random.default_rng(3)
    t = np.cumsum(rng.exponential(0.5, 20_000) * 1e6).astype(np.int64)
    s = stats(trace(arrival_us=t.tolist(), input_tokens=[10] * 20_000))
    a = s.arrivals
    assert a and a.gamma and a.weibull and a.exponential
    assert a.gamma.shape == pytest.approx(1, abs=0.05)
    assert a.weibull.shape == pytest.approx(1, abs=0.05)
    assert a.exponential.scale_s == pytest.approx(0.5, rel=0.03)
    assert max(a.gamma.ks_d, a.weibull.ks_d, a.exponential.ks_d) < 0.02
    assert a.cv == pytest.approx(1, abs=0.05)


def test_zero_and_backward_gaps_are_counted_not_dropped() -> None:
    s = stats(trace(arrival_us=[0, 0, 2_000_000, 1_000_000, 3_000_000, None],
                    input_tokens=[1, 2, 3, 4, 5, 6]))
    a = s.arrivals
    assert s.size.rows == 6 and s.size.timed_rows == 5 and s.size.distinct_arrivals == 4
    assert a is not None and (a.gaps, a.zero_gaps, a.backward_gaps) == (4, 1, 1)
    gaps = np.array([0, 2, -1, 2.0])
    assert a.mean_s == pytest.approx(gaps.mean()) and a.cv == pytest.approx(gaps.std() / 0.75)
    assert a.fitted_gaps == 3  # the backward gap cannot be fitted


def test_untimed_trace_has_no_arrival_sections() -> None:
    s = stats(trace(input_tokens=[5, 7], output_tokens=[1, None]))
    assert s.rate is None and s.arrivals is None and s.periodicity is None
    assert s.size.span_s is None and s.size.timed_rows == 0
    assert (s.lengths.output.count, s.lengths.output.nulls) == (1, 1)


def test_sessions_failures_models_services_of_the_tiny_trace() -> None:
    s = stats(tiny_trace(), window_s=2.0)
    assert s.failures is not None and (s.failures.known, s.failures.failed) == (12, 1)
    assert s.failures.share == pytest.approx(1 / 12)
    assert s.failures.share_by_window == [pytest.approx(1 / 5), 0.0, 0.0]  # 0-2 s: 5 rows
    assert s.models == {"model-a": 7, "model-b": 5}
    assert s.services == {"conversation": 7, "api": 5}
    e = s.sessions
    assert e is not None and (e.sessions, e.requests, e.max) == (3, 7, 3)
    assert e.share_single == 0 and e.median == 2 and e.p75 == 2.5
    # s1: 0 -> 1.5 -> 5.0; s2: 1.0 -> 2.5; s3: 3.0 -> 4.0
    assert e.gaps == 4 and e.gap_mean_s == pytest.approx((1.5 + 3.5 + 1.5 + 1.0) / 4)
    assert s.images is None


def test_images_are_counted() -> None:
    s = stats(trace(input_tokens=[1, 2, 3, 4], num_images=[0, 2, None, 5]))
    assert s.images is not None
    assert (s.images.rows, s.images.with_images, s.images.images, s.images.max) == (3, 2, 7, 5)
    assert s.images.mean_per_request == 3.5


def test_prefix_reuse_worked_by_hand() -> None:
    # blocks of 512: the 2nd request shares 2 leading blocks, the 3rd three (1536 tokens,
    # under its 1600), the 4th none; a row without hash_ids is left out
    s = stats(trace(input_tokens=[1500, 1400, 1600, 100, 50],
                    hash_ids=[[1, 2, 3], [1, 2, 4], [1, 2, 3, 5], [9], None],
                    hash_block_size=[512, 512, 512, 512, None]))
    p = s.prefix
    assert p is not None and p.requests == 4 and p.block_sizes == [512]
    assert (p.blocks, p.distinct_blocks, p.input_tokens, p.hit_tokens) == (11, 6, 4600, 2560)
    assert p.token_hit_ratio == pytest.approx(2560 / 4600)
    assert p.request_mean_hit_ratio == pytest.approx((1024 / 1400 + 1536 / 1600) / 4)
    assert p.lru[-1].capacity_share == 1 and p.lru[-1].token_hit_ratio == p.token_hit_ratio


def test_lru_evicts_a_prefix_tail_first() -> None:
    batch = make_batch(3, {"request_id": row_index(0, 3), "source_row": row_index(0, 3),
                           "input_tokens": [300, 300, 300], "hash_ids": [[1, 2, 3], [1, 4],
                                                                         [1, 2]],
                           "hash_block_size": [100, 100, 100]})
    # capacity 3: after request 1 the cache holds 1,2,3 (1 newest); request 2 evicts 3 and
    # hits 1 block; request 3 finds 1 and 2 (2 outlived 3): 100 + 200 of 900 tokens
    (point,) = lru_curve([batch], distinct=4, shares=(0.75,))
    assert point.capacity_blocks == 3 and point.token_hit_ratio == pytest.approx(300 / 900)


def test_prefix_of_the_mooncake_sample_and_its_curve() -> None:
    p = stats(MOONCAKE).prefix
    assert p is not None and p.requests == 3993 and p.distinct_blocks == 43924
    ratios = [c.token_hit_ratio for c in p.lru]
    assert ratios == sorted(ratios) and ratios[-1] == p.token_hit_ratio


def test_json_matches_the_committed_schema(code: TraceStats) -> None:
    committed = (REPO / "schemas" / "stats.schema.json").read_text(encoding="utf-8")
    assert committed == json_schema_text(), "run python -m llmtraces._generate"
    jsonschema.validate(json.loads(code.model_dump_json()), json.loads(committed))


def test_public_name_and_bad_windows() -> None:
    assert llmtraces.stats is stats
    with pytest.raises(ValueError, match="window_s"):
        stats(CODE, window_s=0)


def test_cli_table_and_json(cli) -> None:
    result = cli("stats", str(MOONCAKE))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "mooncake/synthetic"
    assert any(line.startswith("prefix    infinite cache: token-weighted 65.1 %") for line in lines)
    assert any(line.startswith("  input ") and "11,587" in line for line in lines)
    result = cli("stats", str(CODE), "--json", "--window-s", "600")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["rate"]["window_s"] == 600 and data["size"]["rows"] == 8819


def test_cli_errors_are_one_line(cli, tmp_path: Path) -> None:
    result = cli("stats", "no-such-source")
    assert result.exit_code != 0 and "unknown source 'no-such-source'" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("not,a,trace\n1,2,3\n", encoding="utf-8")
    result = cli("stats", str(bad))
    assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1
    result = cli("stats", str(CODE), "--trace", "code")
    assert result.exit_code == 2 and "--trace" in result.output


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    with pytest.raises(ImportError, match=r"pip install 'llmtraces\[stats\]'"):
        importlib.reload(requires)
