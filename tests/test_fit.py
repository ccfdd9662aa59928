"""Modeled scaling: the numerics, fit -> synthesize -> refit, determinism, the real Azure
2023 code trace, and the fit / synthesize verbs."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from llmtraces.cli import main
from llmtraces.errors import InvalidTraceError
from llmtraces.formats.parquet import read_metadata, write
from llmtraces.pipeline.convert import convert_file
from llmtraces.schema import TraceStream, make_batch
from llmtraces.transforms import (
    GammaWindow,
    TraceModel,
    TransformError,
    fit,
    mean_rate,
    synthesize,
    to_table,
)
from llmtraces.transforms._math import Sampler, digamma, gamma_mle, trigamma, zipf_cdf, zipf_mle
from llmtraces.transforms.modeled import ResponseBin, ResponseLengths, ZipfLengths, length_bin


def test_digamma_and_trigamma_known_values():
    euler = 0.5772156649015329
    assert digamma(1.0) == pytest.approx(-euler, abs=1e-12)
    assert digamma(0.5) == pytest.approx(-euler - 2 * math.log(2), abs=1e-12)
    assert digamma(10.0) == pytest.approx(2.251752589066721, abs=1e-12)
    assert trigamma(1.0) == pytest.approx(math.pi ** 2 / 6, abs=1e-12)
    assert trigamma(0.5) == pytest.approx(math.pi ** 2 / 2, abs=1e-11)


@pytest.mark.parametrize("alpha", [0.05, 0.3, 1.0, 4.0, 250.0])
def test_gamma_mle_inverts_its_sufficient_statistics(alpha: float):
    """For Gamma(α, β): E[x] = α/β, E[log x] = ψ(α) - log β; the MLE given exactly these
    statistics must return α and β."""
    beta = 3.0
    a, b = gamma_mle(alpha / beta, digamma(alpha) - math.log(beta))
    assert a == pytest.approx(alpha, rel=1e-9) and b == pytest.approx(beta, rel=1e-9)


def test_zipf_mle_inverts_its_mean_log():
    for s in (-0.5, 0.0, 0.52, 1.1, 2.5):
        cdf = zipf_cdf(s, 3, 5000)
        probs = [cdf[0]] + [cdf[i] - cdf[i - 1] for i in range(1, len(cdf))]
        mean_log = sum(p * math.log(3 + i) for i, p in enumerate(probs))
        assert zipf_mle(mean_log, 3, 5000) == pytest.approx(s, abs=1e-7)
    assert zipf_mle(1.0, 7, 7) == 0.0


def test_samplers_match_their_distributions():
    rng = Sampler("t")
    xs = [rng.gamma(0.4, 2.0) for _ in range(40_000)]
    mean = sum(xs) / len(xs)
    var = sum((x - mean) ** 2 for x in xs) / len(xs)
    assert mean == pytest.approx(0.2, rel=0.03)  # α/β; σ/√n ≈ 0.8%
    assert var == pytest.approx(0.1, rel=0.08)  # α/β²
    # only random() is drawn from, so the stream is Python's documented one
    assert Sampler("s").random() == random.Random("s").random()


# --- fit -> synthesize -> refit --------------------------------------------------------------

def base_model() -> TraceModel:
    """Three 2000 s windows of different burstiness (4, 2 and 4 requests/s), the paper's Zipf
    exponent 1.1 on 1..4096, and response lengths that grow with the request length."""
    windows = [GammaWindow(start_s=0.0, requests=0, gaps=0, alpha=0.5, beta=2.0),
               GammaWindow(start_s=2000.0, requests=0, gaps=0, alpha=1.5, beta=3.0),
               GammaWindow(start_s=4000.0, requests=0, gaps=0, alpha=2.0, beta=8.0)]
    # longer requests, longer and wider responses: bin b spans 5b .. 5b + 100(b+1) tokens
    bins = [ResponseBin(bin=b, lo=1, hi=1, count=100,
                        quantiles=[5 * b + j * (b + 1) for j in range(101)])
            for b in range(0, 48)]
    return TraceModel(window_s=2000.0, span_s=6000.0, gap_floor_s=5e-7, rows=0, failed=0,
                      service="synthetic-test", windows=windows,
                      request_lengths=ZipfLengths(exponent=1.1, min=1, max=4096, rows=0),
                      response_lengths=ResponseLengths(rows=0, bins=bins))


def cdf_position(quantiles: list[int], value: float) -> float:
    """Where ``value`` lies in the piecewise-linear distribution through ``quantiles``."""
    last = len(quantiles) - 1
    for j in range(last):
        lo, hi = quantiles[j], quantiles[j + 1]
        if lo <= value <= hi:
            return (j + ((value - lo) / (hi - lo) if hi > lo else 0.5)) / last
    return 0.0 if value < quantiles[0] else 1.0


def test_synthesized_trace_refits_to_its_parameters():
    """Tolerances: the MLE of α from n gaps has relative sd sqrt(1/(n·α·(α·ψ'(α) - 1)))
    (Fisher information), under 2% here with 4,000-8,000 gaps per window, and β's is of the
    same order; 10% is > 5 sd. The Zipf exponent from ~20,000 lengths has sd < 1%; 5% leaves
    room for nothing but a wrong sampler or fit."""
    model = base_model()
    t = to_table(synthesize(model, seed=11))
    assert 18_000 < t.num_rows < 22_000  # 8000 + 4000 + 8000 expected
    refit = fit(t, window_s=2000.0)
    assert len(refit.windows) == 3
    for want, got in zip(model.windows, refit.windows, strict=True):
        assert got.alpha == pytest.approx(want.alpha, rel=0.10)
        assert got.beta == pytest.approx(want.beta, rel=0.10)
    assert refit.request_lengths.exponent == pytest.approx(1.1, rel=0.05)
    assert refit.service == "synthetic-test" and refit.failed == 0
    # response lengths: in each well-filled bin, the refitted median sits at the model's
    # 50th percentile, within 4 sd of a sample median's CDF position (0.5/sqrt(n))
    want = {b.bin: b.quantiles for b in model.response_lengths.bins}
    checked = 0
    for b in refit.response_lengths.bins:
        assert length_bin(b.lo) == length_bin(b.hi) == b.bin
        if b.count >= 300:
            position = cdf_position(want[b.bin], b.quantiles[50])
            assert abs(position - 0.5) <= 4 * 0.5 / math.sqrt(b.count) + 0.01
            checked += 1
    assert checked >= 5


def test_rps_scales_every_window_and_keeps_burstiness():
    model = base_model()
    assert model.mean_rps == pytest.approx((4 + 2 + 4) / 3)
    t = to_table(synthesize(model, rps=2.0, seed=2))  # the whole span: 12,000 requests
    assert mean_rate(t) == pytest.approx(2.0, rel=0.06)  # count sd ~1.5%
    refit = fit(t, window_s=2000.0)
    for want, got in zip(model.windows, refit.windows, strict=True):
        assert want.alpha is not None and want.beta is not None
        assert got.alpha == pytest.approx(want.alpha, rel=0.1)  # shape kept
        assert got.beta == pytest.approx(want.beta * 2.0 / model.mean_rps, rel=0.1)  # scaled


def test_rps_is_the_rate_over_the_windows_drawn():
    """Rates 4, 2, 4 /s in 2000 s windows: 1000 s draws only from the first window, 5000 s
    from 2000 s of 4, 2000 s of 2 and 1000 s of 4, and 8000 s repeats the first window."""
    model = base_model()
    assert model.rate_over(1000.0) == pytest.approx(4.0)
    assert model.rate_over(5000.0) == pytest.approx((2000 * 4 + 2000 * 2 + 1000 * 4) / 5000)
    assert model.rate_over(8000.0) == pytest.approx((6000 * 10 / 3 + 2000 * 4) / 8000)
    s = synthesize(model, rps=2.0, duration_s=1000.0, seed=3)
    assert s.meta["transforms"][0]["rate_factor"] == pytest.approx(0.5)  # not 2 / mean_rps
    assert s.num_rows / 1000.0 == pytest.approx(2.0, rel=0.08)  # ~2000 gaps of CV 1.4


def test_windows_repeat_and_empty_windows_stay_empty():
    quiet = GammaWindow(start_s=10.0, requests=0, gaps=0, alpha=None, beta=None)
    busy = GammaWindow(start_s=0.0, requests=0, gaps=0, alpha=1.0, beta=10.0)
    model = base_model().model_copy(update={"window_s": 10.0, "span_s": 20.0,
                                            "windows": [busy, quiet]})
    t = to_table(synthesize(model, duration_s=40.0, seed=0))
    secs = [a / 1e6 for a in t.column("arrival_us").to_pylist()]
    # arrivals only in [0, 10) and [20, 30) (plus the gap that crosses a boundary)
    assert all(int(s // 10) % 2 == 0 or s - 10 * int(s // 10) < 2 for s in secs)
    assert sum(20 <= s < 30 for s in secs) > 50


def test_synthesize_is_deterministic_to_the_byte(tmp_path: Path):
    model = base_model()
    paths = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        path = tmp_path / f"{name}.parquet"
        write(synthesize(model, rps=8, duration_s=120, seed=seed), path)
        paths.append(path.read_bytes())
    assert paths[0] == paths[1]
    assert paths[0] != paths[2]
    s = synthesize(model, duration_s=30, seed=1)
    assert s.reopen is not None
    assert pa.Table.from_batches(list(s.reopen(["arrival_us"]))).column(0).equals(
        to_table(s).column("arrival_us"))
    meta = s.meta
    assert meta["rows"] == to_table(synthesize(model, duration_s=30, seed=1)).num_rows
    assert meta["transforms"][0]["op"] == "synthesize" and meta["time_origin"] is None


def test_model_json_round_trip_and_errors(tmp_path: Path):
    model = base_model()
    assert TraceModel.from_json(model.to_json()) == model
    path = tmp_path / "m.json"
    model.save(path)
    assert TraceModel.load(path) == model
    doc = json.loads(path.read_text())
    assert doc["format"] == "llmtraces.trace-model" and doc["version"] == 1
    assert set(doc) >= {"windows", "request_lengths", "response_lengths", "method"}
    path.write_text('{"format": "other"}')
    with pytest.raises(InvalidTraceError, match="not an llmtraces trace model"):
        TraceModel.load(path)
    with pytest.raises(TransformError):
        synthesize(model, rps=0)
    with pytest.raises(TransformError):
        synthesize(model, duration_s=-1)


def _meta(**kw: object) -> dict[str, object]:
    return {"time": {"kind": "relative", "resolution": "1s"}, **kw}


def test_fit_errors_and_zero_gaps():
    rows = {"request_id": [0, 1, 2], "arrival_us": [0, 5, 3], "input_tokens": [1, 2, 3],
            "source_row": [0, 1, 2]}
    with pytest.raises(TransformError, match="row 2 goes back in time"):
        fit(TraceStream(iter([make_batch(3, rows)]), _meta()))
    untimed = TraceStream(iter([make_batch(3, rows)]), {"time": {"kind": "none"}})
    with pytest.raises(TransformError, match="needs arrival times"):
        fit(untimed)
    # 1-second resolution: a 0 µs gap is fitted as 0.5 s and counted
    same = {**rows, "arrival_us": [0, 0, 2_000_000, 3_000_000]}
    same = {k: (v + [v[-1] + 1] if k != "arrival_us" else v) for k, v in same.items()}
    m = fit(TraceStream(iter([make_batch(4, same)]), _meta()))
    assert m.gap_floor_s == 0.5 and m.windows[0].zero_gaps == 1
    assert m.windows[0].gaps == 3 and m.windows[0].requests == 4
    with pytest.raises(TransformError, match="window_s"):
        fit(TraceStream(iter([]), _meta()), window_s=0)


# --- the real Azure 2023 code trace ----------------------------------------------------------

@pytest.fixture(scope="module")
def code_parquet(tmp_path_factory: pytest.TempPathFactory, code_csv: Path) -> Path:
    out = tmp_path_factory.mktemp("code") / "code.parquet"
    convert_file(code_csv, out)
    return out


def test_fit_on_the_azure_code_trace(code_parquet: Path):
    m = fit(code_parquet)
    assert m.rows == 8819 and m.service == "code" and m.failed == 0
    assert [w.start_s for w in m.windows] == [0.0, 1200.0, 2400.0]
    assert sum(w.requests for w in m.windows) == 8819
    assert sum(w.gaps for w in m.windows) == 8818
    for w in m.windows:
        # bursty, as the paper finds for API-like services: CV = 1/sqrt(α) > 1
        assert w.alpha is not None and w.beta is not None
        assert 0.1 < w.alpha < 1.0 and w.beta > 0
    # the Gamma MLE's mean gap is the sample's: the model's rate is the trace's
    assert m.mean_rps == pytest.approx(mean_rate(code_parquet), rel=0.02)
    zl = m.request_lengths
    assert (zl.min, zl.max, zl.rows) == (3, 7437, 8819) and 0 < zl.exponent < 1.5
    bins = m.response_lengths.bins
    assert sum(b.count for b in bins) == 8819
    assert all(b.quantiles == sorted(b.quantiles) and len(b.quantiles) == 101 for b in bins)
    assert m.fitted_from["native_file"] == "AzureLLMInferenceTrace_code.csv"
    assert m.fitted_from["licence"]["spdx"] == "CC-BY-4.0"
    # a synthesized copy has about as many requests over the same span
    t = to_table(synthesize(m, seed=0))
    assert t.num_rows == pytest.approx(8819, rel=0.1)
    assert set(t.column("service").to_pylist()) == {"code"}
    assert max(t.column("input_tokens").to_pylist()) <= 7437


def test_cli_fit_and_synthesize(code_parquet: Path, code_csv: Path, tmp_path: Path):
    runner = CliRunner()
    model = tmp_path / "model.json"
    r = runner.invoke(main, ["fit", str(code_parquet), "-o", str(model), "--window-s", "600"])
    assert r.exit_code == 0, r.output
    assert '"windows": 6' in r.output and TraceModel.load(model).window_s == 600
    # a native file fits the same (read through its reader)
    native = tmp_path / "native.json"
    assert runner.invoke(main, ["fit", str(code_csv), "-o", str(native), "--window-s",
                                "600"]).exit_code == 0
    assert TraceModel.load(native).windows == TraceModel.load(model).windows
    outs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.parquet"
        r = runner.invoke(main, ["synthesize", str(model), "--rps", "4", "--duration", "300",
                                 "--seed", "9", "-o", str(out)])
        assert r.exit_code == 0, r.output
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    t = pq.read_table(tmp_path / "a.parquet")
    assert f"({t.num_rows:,} rows)" in r.output
    assert mean_rate(t) == pytest.approx(4.0, rel=0.25)  # ~1200 bursty requests
    meta = read_metadata(tmp_path / "a.parquet")
    assert meta["transforms"][0]["seed"] == 9 and meta["synthesized_from"]["native_file"]
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    r = runner.invoke(main, ["synthesize", str(bad), "-o", str(tmp_path / "x.parquet")])
    assert r.exit_code == 1 and "not an llmtraces trace model" in r.output
    assert not (tmp_path / "x.parquet").exists()
