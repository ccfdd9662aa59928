"""ServeGen workload descriptions: reading the three categories into a TraceModel,
synthesizing at the per-window rates and PMFs, the per-window CV report, errors, and the
`servegen` registry source."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pyarrow.compute as pc
import pytest
from httpserver import LoopbackServer, Route

from llmtraces.errors import InvalidTraceError, NoSuchFileError
from llmtraces.formats.parquet import read_metadata
from llmtraces.transforms import TraceModel, synthesize
from llmtraces.transforms.servegen_check import summarize, window_cv_report
from llmtraces.transforms.servegen_model import Pmf
from llmtraces.transforms.servegen_read import parse_pmf, read_servegen

FIX = Path(__file__).parent / "fixtures" / "servegen"
LANGUAGE = FIX / "language" / "m-large" / "chunk-1-trace.csv"
REASON = FIX / "reason" / "deepseek-r1" / "chunk-33-trace.csv"
MULTIMODAL = FIX / "multimodal" / "mm-image" / "chunk-20-trace.csv"
DAY = 86400.0


def _window(table, start_s: float, window_s: float = 600.0):
    """Rows of ``table`` arriving in [start_s, start_s + window_s)."""
    t = table["arrival_us"]
    mask = pc.and_(pc.greater_equal(t, int(start_s * 1e6)),
                   pc.less(t, int((start_s + window_s) * 1e6)))
    return table.filter(mask)


def _within(sample_mean: float, pmf: Pmf, n: int, sds: float = 5.0) -> bool:
    """True when a mean of ``n`` draws is within ``sds`` standard errors of the PMF's mean."""
    mean = pmf.mean()
    var = math.fsum(p * (v - mean) ** 2 for v, p in zip(pmf.values, pmf.probs, strict=True))
    return abs(sample_mean - mean) <= sds * math.sqrt(var / n) + 1e-9


@pytest.mark.parametrize(("path", "category", "windows", "active", "model"), [
    (LANGUAGE, "language", 2016, 248, "m-large"),
    (REASON, "reason", 144, 8, "deepseek-r1"),
    (MULTIMODAL, "multimodal", 144, 13, "mm-image"),
])
def test_each_category_reads(path: Path, category: str, windows: int, active: int,
                             model: str):
    m = read_servegen(path)
    sg = m.servegen
    assert sg is not None and sg.category == category and m.service == category
    assert m.model == model and sg.window_s == 600.0 and m.span_s == windows * 600.0
    assert len(sg.windows) == windows
    assert sum(1 for w in sg.windows if w.law is not None) == active
    assert {w.law for w in sg.windows} <= {None, "gamma", "weibull"}
    assert m.request_lengths is None and m.windows == []
    assert m.fitted_from["native_sha256"] == \
        __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    for lw in sg.lengths:
        for pmf in lw.fields.values():
            assert pmf.values == sorted(pmf.values) and abs(sum(pmf.probs) - 1) < 1e-6
    assert TraceModel.from_json(m.to_json()) == m


def test_the_first_rows_are_read_as_written():
    sg = read_servegen(LANGUAGE).servegen
    assert sg is not None
    w = next(w for w in sg.windows if w.law is not None)
    # 31800,0.043333333333333335,1.0486253901923495,Gamma,0.909409031757566,0.0885850089...
    assert (w.start_s, w.rate, w.law, w.shape) == (31800.0, 0.043333333333333335, "gamma",
                                                   0.909409031757566)
    assert w.law_cv() == pytest.approx(w.cv, rel=1e-8)  # a Gamma fit keeps the file's CV
    assert [lw.start_s for lw in sg.lengths][:2] == [21600.0, 43200.0]  # "0" is all {}
    assert sg.lengths_at(31800.0) is sg.lengths[0]


def test_synthesize_holds_each_windows_rate_and_arrival_order():
    m = read_servegen(LANGUAGE)
    view = synthesize(m, duration_s=DAY, seed=7)
    table = view.to_table()
    targets = view.meta["window_targets"]
    assert targets["window_s"] == 600.0 and targets["category"] == "language"
    assert table.num_rows == sum(targets["requests"]) > 30_000
    arrivals = table["arrival_us"].to_pylist()
    assert arrivals == sorted(arrivals)
    for start, rate in zip(targets["start_s"], targets["rate"], strict=True):
        want = rate * 600
        got = _window(table, start).num_rows
        assert abs(got - want) <= 3 * math.sqrt(want) + 1, (start, got, want)
    # windows with an empty pattern get nothing
    busy = {round(s) for s in targets["start_s"]}
    counts = pc.value_counts(pc.divide(table["arrival_us"], 600_000_000)).to_pylist()
    assert {c["values"] * 600 for c in counts} <= busy


def test_rps_scales_every_window_and_repeats_past_the_end():
    m = read_servegen(REASON)
    sg = m.servegen
    assert sg is not None
    assert m.rate_over(DAY) == pytest.approx(sum(w.rate for w in sg.windows) * 600 / DAY)
    own = synthesize(m, duration_s=DAY, seed=1).to_table().num_rows
    assert own == m.rows  # every window's round(rate x 600)
    double = synthesize(m, rps=2 * m.rate_over(DAY), duration_s=DAY, seed=1)
    assert double.to_table().num_rows == pytest.approx(2 * own, abs=10)
    two_days = synthesize(m, duration_s=2 * DAY, seed=1).to_table()
    assert two_days.num_rows == pytest.approx(2 * own, abs=10)
    assert _window(two_days, DAY + 57000).num_rows == _window(two_days, 57000).num_rows


def test_same_seed_same_trace():
    m = read_servegen(MULTIMODAL)
    a = synthesize(m, duration_s=DAY, seed=5).to_table()
    assert a.equals(synthesize(m, duration_s=DAY, seed=5).to_table())
    assert not a.equals(synthesize(m, duration_s=DAY, seed=6).to_table())


def test_language_lengths_follow_each_windows_pmfs():
    m = read_servegen(LANGUAGE)
    sg = m.servegen
    assert sg is not None
    table = synthesize(m, duration_s=DAY, seed=2).to_table()
    # every window from 21600 s up to 43200 s uses the PMFs of dataset window 21600
    part = _window(table, 21600.0, 21600.0)
    pmfs = sg.lengths_at(21600.0).fields  # type: ignore[union-attr]
    n = part.num_rows
    assert n > 10_000
    for name in ("input_tokens", "output_tokens"):
        mean = pc.mean(part[name]).as_py()
        assert _within(mean, pmfs[name], n), (name, mean, pmfs[name].mean())
        assert set(part[name].to_pylist()) <= set(pmfs[name].values)
    assert part["extra"].null_count == n and part["num_images"].null_count == n


def test_reason_output_and_reasoning_share():
    m = read_servegen(REASON)
    sg = m.servegen
    assert sg is not None
    table = synthesize(m, duration_s=DAY, seed=4).to_table()
    part = _window(table, 43200.0, 21600.0)  # 12:00-18:00: windows 55200..59400
    pmfs = sg.lengths_at(55200.0).fields  # type: ignore[union-attr]
    n = part.num_rows
    assert n > 10_000
    extras = [json.loads(e) for e in part["extra"].to_pylist()]
    outputs = part["output_tokens"].to_pylist()
    for x, out in zip(extras, outputs, strict=True):
        assert 0 <= x["reason_ratio"] <= 1 and x["reason_tokens"] == round(x["reason_ratio"] * out)
    assert _within(sum(outputs) / n, pmfs["output_tokens"], n)
    assert _within(sum(x["reason_ratio"] for x in extras) / n, pmfs["reason_ratio"], n)
    assert _within(pc.mean(part["input_tokens"]).as_py(), pmfs["input_tokens"], n)


def test_multimodal_images_are_counted_in_the_input():
    m = read_servegen(MULTIMODAL)
    sg = m.servegen
    assert sg is not None
    table = synthesize(m, duration_s=DAY, seed=3).to_table()
    part = _window(table, 7200.0, 1200.0)  # windows 7200 and 7800: dataset window 0
    pmfs = sg.lengths_at(7200.0).fields  # type: ignore[union-attr]
    n = part.num_rows
    assert n > 3_000
    extras = [json.loads(e) for e in part["extra"].to_pylist()]
    for x, k, inp in zip(extras, part["num_images"].to_pylist(),
                         part["input_tokens"].to_pylist(), strict=True):
        assert len(x["image_tokens"]) == k >= 1
        assert inp == x["text_tokens"] + sum(x["image_tokens"]) + sum(x["audio_tokens"]) \
            + sum(x["video_tokens"])
    assert _within(pc.mean(part["num_images"]).as_py(), pmfs["image_count"], n)
    images = [t for x in extras for t in x["image_tokens"]]
    assert _within(sum(images) / len(images), pmfs["image_tokens"], len(images))
    want_input = pmfs["text_tokens"].mean() + pmfs["image_count"].mean() * \
        pmfs["image_tokens"].mean()
    assert pc.mean(part["input_tokens"]).as_py() == pytest.approx(want_input, rel=0.05)


def test_weibull_windows_fall_short_of_their_cv_and_the_report_says_so(tmp_path: Path, cli):
    out = tmp_path / "lang.parquet"
    r = cli("synthesize", str(LANGUAGE), "--duration", str(DAY), "--seed", "1", "-o", str(out))
    assert r.exit_code == 0, r.output
    assert "window_targets" in read_metadata(out)
    rows = window_cv_report(out)  # from the metadata alone
    assert rows == window_cv_report(out, LANGUAGE)
    assert all(r["requests"] == r["requests_target"] for r in rows)
    weibull = [r for r in rows if r["law"] == "weibull"]
    gamma = [r for r in rows if r["law"] == "gamma"]
    assert len(weibull) >= 20 and gamma
    # most Weibull laws cannot reach the stated CV, and the samples fall shorter still
    assert sum(r["law_cv"] < r["cv_target"] for r in weibull) >= 3 * len(weibull) // 4
    summary = summarize(rows)
    assert summary["weibull"]["median_cv_ratio"] < 0.7
    assert summary["weibull"]["reached"] <= len(weibull) // 4
    assert all(r["law_cv"] == pytest.approx(r["cv_target"], rel=1e-6) for r in gamma)
    # `llmtraces stats` of the synthesized trace reports the same windows and the shortfall
    r = cli("stats", str(out), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["model_windows"] == json.loads(json.dumps(rows))
    text = cli("stats", str(out)).output
    assert (f"model     weibull windows: {summary['weibull']['reached']} of {len(weibull)} "
            "reach their stated CV") in text


def test_report_needs_targets():
    from llmtraces.pipeline.view import TransformError
    m = read_servegen(REASON)
    plain = synthesize(m, duration_s=DAY, seed=1).to_table().replace_schema_metadata(None)
    with pytest.raises(TransformError, match="window_targets"):
        window_cv_report(plain)
    assert len(window_cv_report(plain, REASON)) == 8


def _copy(tmp_path: Path, source: Path) -> Path:
    dest = tmp_path / source.name
    shutil.copy(source, dest)
    shutil.copy(source.with_name(source.name.replace("-trace.csv", "-dataset.json")),
                dest.with_name(dest.name.replace("-trace.csv", "-dataset.json")))
    return dest


@pytest.mark.parametrize(("line", "message"), [
    ("600,0,0,,0", "expected 6 fields"),
    ("600,fast,0,,0,0", "rate must be a finite number >= 0"),
    ("600,1,nan,Gamma,1,1", "cv must be a finite number >= 0"),
    ("600,1,1,Pareto,1,1", "pattern must be Gamma, Weibull or empty"),
    ("600,1.5,1,,0,0", "rate > 0 with an empty pattern"),
    ("600,1,1,Weibull,0,1", "needs rate, arg1 (shape) and arg2 (scale) > 0"),
    ("-600,0,0,,0,0", "window_start_s must be whole seconds"),
    ("0,0,0,,0,0", "window starts must increase"),
])
def test_a_malformed_row_names_file_and_line(tmp_path: Path, line: str, message: str):
    path = _copy(tmp_path, REASON)
    rows = path.read_text().splitlines()
    rows[1] = line
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(InvalidTraceError) as err:
        read_servegen(path)
    text = str(err.value)
    assert text.startswith(f"{path}:2: error: ") and message in text and "\n" not in text


def test_uneven_windows_are_refused(tmp_path: Path):
    path = _copy(tmp_path, REASON)
    rows = path.read_text().splitlines()
    rows[2] = rows[2].replace("1200,", "1300,", 1)
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(InvalidTraceError, match=r":3: error: windows must be evenly spaced"):
        read_servegen(path)


def test_missing_dataset_names_the_file(tmp_path: Path, cli):
    path = tmp_path / "chunk-9-trace.csv"
    shutil.copy(REASON, path)
    with pytest.raises(NoSuchFileError, match="chunk-9-dataset.json: no such file"):
        read_servegen(path)
    r = cli("synthesize", str(path), "-o", str(tmp_path / "x.parquet"))
    assert r.exit_code != 0 and "chunk-9-dataset.json: no such file" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_a_bad_pmf_names_the_dataset_line(tmp_path: Path):
    path = _copy(tmp_path, REASON)
    ds = path.with_name("chunk-33-dataset.json")
    lines = ds.read_text().splitlines()
    k = next(i for i, x in enumerate(lines) if '"output_tokens": "{5' in x)
    lines[k] = '    "output_tokens": "{1: 0.5, 2: __import__(\'os\')}",'
    ds.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidTraceError) as err:
        read_servegen(path)
    assert str(err.value).startswith(f"{ds}:{k + 1}: error: window ")
    assert "output_tokens: expected a dict literal" in str(err.value)


def test_requests_before_any_length_pmf_are_refused(tmp_path: Path):
    path = _copy(tmp_path, REASON)
    path.with_name("chunk-33-dataset.json").write_text(
        '{"0": {"input_tokens": "{}", "output_tokens": "{}", "reason_ratio": "{}"}}')
    with pytest.raises(InvalidTraceError, match=r"chunk-33-dataset.json: no length PMFs at or "
                                                r"before window 55200 s, which has requests"):
        read_servegen(path)


def test_pmf_literals_are_checked():
    assert parse_pmf("{3: 0.25, 1: 0.75}", "input_tokens")[0] == Pmf(values=[1, 3],
                                                                      probs=[0.75, 0.25])
    assert parse_pmf("{}", "input_tokens")[0] == Pmf(values=[], probs=[])
    assert "sum to" in str(parse_pmf("{1: 0.5}", "input_tokens")[1])
    assert "whole numbers" in str(parse_pmf("{1.5: 1.0}", "input_tokens")[1])
    assert "[0, 1]" in str(parse_pmf("{1.5: 1.0}", "reason_ratio")[1])
    assert "twice" in str(parse_pmf("{1: 0.5, 1: 0.5}", "input_tokens")[1])


def test_a_dataset_missing_a_field_is_refused(tmp_path: Path):
    path = _copy(tmp_path, REASON)
    ds = path.with_name("chunk-33-dataset.json")
    doc = json.loads(ds.read_text())
    doc["43200"]["cache_hits"] = "{1: 1.0}"
    ds.write_text(json.dumps(doc, indent=2))
    with pytest.raises(InvalidTraceError, match=r"window 43200: a reason dataset has fields "
                                                r"input_tokens, output_tokens, reason_ratio; "
                                                r"unknown cache_hits"):
        read_servegen(path)


def test_model_kinds_are_exclusive():
    m = read_servegen(REASON)
    with pytest.raises(ValueError, match="either request_lengths"):
        TraceModel.model_validate({**m.model_dump(), "servegen": None})


def test_registry_client_synthesizes_through_the_mirror(tmp_path: Path, home: Path, cli,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        server: LoopbackServer):
    for kind in ("trace.csv", "dataset.json"):
        data = REASON.with_name(f"chunk-33-{kind}").read_bytes()
        server.routes[f"/servegen/reason-deepseek-r1-chunk-33-{kind}"] = Route(data)
    monkeypatch.setenv("LLMTRACES_MIRROR", server.url)
    out = tmp_path / "r.parquet"
    r = cli("synthesize", "servegen/reason-deepseek-r1-33", "--duration", "3600", "-o",
            str(out))
    assert r.exit_code != 0 and "no requests" in r.output  # the client's first hour is idle
    r = cli("synthesize", "servegen/reason-deepseek-r1-33", "--duration", str(DAY), "-o",
            str(out))
    assert r.exit_code == 0, r.output
    meta = read_metadata(out)
    assert meta["synthesized_from"]["source"] == "servegen"
    assert meta["synthesized_from"]["trace"] == "reason-deepseek-r1-33"
    assert meta["licence"]["spdx"] == "Apache-2.0"
    table = __import__("pyarrow.parquet", fromlist=["read_table"]).read_table(out)
    assert set(table["model"].to_pylist()) == {"deepseek-r1"}
    r = cli("synthesize", "servegen/reason-deepseek-r1-33-dataset", "-o", str(out))
    assert r.exit_code != 0 and "no such ServeGen client" in r.output
