"""Bench telemetry: the energy arithmetic on hand-made samples, the telemetry process against a
fake NVML (tests/fake_nvml/pynvml.py: scripted power, an exactly integrating counter, faults),
``--telemetry require``, the /metrics scrape, and that sampling does not slow a replay."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from llmtraces.bench.telemetry import Telemetry, TelemetryError
from llmtraces.bench.telemetry.energy import (
    GpuSeries,
    counter_joules,
    power_joules,
    window_energy,
)
from llmtraces.bench.telemetry.nvml import open_nvml, visible_indices
from llmtraces.bench.telemetry.prometheus import parse, server_load

FAKE_NVML = Path(__file__).resolve().parent / "fake_nvml"
#: the script of every GPU: 70 W idle, 400 W from 0.6 s to 1.2 s, idle again.
POWER = [[0.0, 70.0], [0.6, 400.0], [1.2, 70.0]]


def exact(a: float, b: float) -> float:
    """Joules of :data:`POWER` between ``a`` and ``b`` seconds after t0."""
    edges = sorted({a, b, *(s for s, _ in POWER if a < s < b)})

    def watts(t: float) -> float:
        return [w for s, w in POWER if s <= t][-1]

    return sum((y - x) * watts(x) for x, y in zip(edges, edges[1:], strict=False))


@pytest.fixture
def fake_nvml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``write(scenario)``: the fake pynvml first on sys.path (spawned processes inherit it)
    with ``scenario`` as its script; returns the scenario's t0. The real module comes back
    afterwards."""
    monkeypatch.syspath_prepend(str(FAKE_NVML))
    real = sys.modules.pop("pynvml", None)

    def write(**scenario: Any) -> float:
        t0 = time.monotonic() + 0.5
        scenario.setdefault("t0", t0)
        path = tmp_path / "nvml.json"
        path.write_text(json.dumps(scenario))
        monkeypatch.setenv("LLMTRACES_FAKE_NVML", str(path))
        return float(scenario["t0"])

    yield write
    sys.modules.pop("pynvml", None)
    if real is not None:
        sys.modules["pynvml"] = real


# --- arithmetic on hand-made samples ----------------------------------------------------------

def test_counter_delta_is_interpolated_at_the_edges() -> None:
    t = [0.0, 1.0, 2.0, 3.0]
    e = [10_000, 110_000, 510_000, 610_000]  # 100 W, then 400 W, then 100 W (mJ)
    joules, notes = counter_joules(t, e, 0.5, 2.5, 0.1)
    assert joules == pytest.approx(50 + 400 + 50) and notes == []
    # a failed reading is interpolated across and said so
    joules, notes = counter_joules(t, [10_000, None, 510_000, 610_000], 0.5, 2.5, 0.5)
    assert joules == pytest.approx(375 + 50)  # the 500 J of 0..2 s spread evenly over it
    assert notes == ["1 of 2 counter readings in the window failed; interpolated across them"]


def test_counter_going_back_or_not_covering_the_window_gives_no_figure() -> None:
    joules, notes = counter_joules([0.0, 1.0, 2.0], [5_000, 9_000, 300], 0.2, 1.8, 0.1)
    assert joules is None and "went backwards (9000 -> 300 mJ" in notes[0]
    # a reset outside the window does not matter
    joules, _ = counter_joules([0.0, 1.0, 2.0, 3.0], [9_000, 100, 1_100, 2_100], 1.5, 2.5, 0.1)
    assert joules == pytest.approx(1.0)
    joules, notes = counter_joules([1.0, 2.0], [0, 1000], 0.0, 2.0, 0.1)
    assert joules is None and "does not cover the window" in notes[0]
    assert counter_joules([1.0], [5], 0.0, 2.0, 0.1) == (None, [
        "fewer than two energy-counter readings"])


def test_power_integral_and_the_fallback_when_there_is_no_counter() -> None:
    t = [0.0, 1.0, 2.0]
    joules, _ = power_joules(t, [100.0, 300.0, 300.0], 0.5, 2.0, 0.1)
    assert joules == pytest.approx(0.5 * (200 + 300) / 2 + 300)
    g = GpuSeries(0, "GPU-a", t, [None, None, None], [100.0, 100.0, 100.0], "average")
    got = window_energy([g], 0.0, 2.0, 0.1)
    assert got.joules == pytest.approx(200) and got.method == "power_integral"
    assert got.reason is not None and "1-s average" in got.reason
    assert got.avg_power_w == pytest.approx(100) and got.gpus == ["GPU-a"]
    two = [GpuSeries(0, "a", t, [0, 1000, 2000], [1.0] * 3),
           GpuSeries(1, "b", t, [0, 2000, 4000], [2.0] * 3)]
    both = window_energy(two, 0.0, 2.0, 0.1)
    assert both.joules == pytest.approx(6.0) and both.method == "nvml_counter"
    assert [g["joules"] for g in both.per_gpu] == pytest.approx([2.0, 4.0])
    assert window_energy([], 0, 1, 0.1).reason == "no GPU was metered"


def test_prometheus_names_of_each_engine_normalise_alike() -> None:
    vllm = parse('vllm:num_requests_running{model_name="m",engine="0"} 3\n'
                 'vllm:num_requests_running{model_name="m",engine="1"} 2\n'
                 'vllm:num_requests_waiting{model_name="m"} 4.0\n'
                 'vllm:gpu_cache_usage_perc{model_name="m"} 0.9\n'
                 'vllm:kv_cache_usage_perc{model_name="m"} 0.5\n# HELP x y\nbad line\n')
    assert server_load(vllm) == server_load(parse(
        "sglang:num_running_reqs 5\nsglang:num_queue_reqs 4\nsglang:token_usage 0.5\n"))
    assert server_load(vllm).running == 5 and server_load(vllm).kv_usage == 0.5
    lc = server_load(parse("llamacpp:requests_processing 1\nllamacpp:requests_deferred 0\n"))
    assert (lc.running, lc.waiting, lc.kv_usage) == (1, 0, None)
    assert parse('a{l="q\\"x"} 1 1700000000')["a"] == [({"l": 'q\\"x'}, 1.0)]


def test_cuda_visible_devices_chooses_the_gpus() -> None:
    def uuid(i: int) -> str:
        return f"GPU-{i}aaa"

    assert visible_indices(4, None, uuid) == [0, 1, 2, 3]
    assert visible_indices(4, "2,0", uuid) == [2, 0]
    assert visible_indices(4, "GPU-3", uuid) == [3]
    assert visible_indices(4, "weird", uuid) == [0, 1, 2, 3]


def test_no_pynvml_is_a_reason_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    reader, reason = open_nvml()
    assert reader is None and reason is not None and "pip install 'llmtraces[gpu]'" in reason


# --- the telemetry process against the fake NVML ------------------------------------------------

def test_energy_matches_the_scripted_power_and_faults_are_reported(fake_nvml: Any,
                                                                   tmp_path: Path) -> None:
    gpus = [{"uuid": "GPU-ok", "power": POWER, "offset_mj": 10**9},
            {"uuid": "GPU-avg", "power": POWER, "instant": False, "energy_fail": [[0.8, 1.0]]},
            {"uuid": "GPU-reset", "power": POWER, "reset_at": 0.9, "offset_mj": 10**9},
            {"uuid": "GPU-nocounter", "power": POWER, "energy": False}]
    t0 = fake_nvml(gpus=gpus)
    tel = Telemetry(tmp_path / "p", engine_pid=None, metrics_url=None, interval_s=0.05)
    with tel:
        assert tel.available and [g["uuid"] for g in tel.ready["gpus"]] == [
            g["uuid"] for g in gpus]
        assert tel.ready["system"] == {"driver": "550.54.15", "cuda": "12.4"}
        while time.monotonic() < t0 + 1.6:
            time.sleep(0.05)
    assert exact(0.3, 1.4) == pytest.approx(70 * 0.3 + 400 * 0.6 + 70 * 0.2)
    # the window starts 0.3 s into the script, or later if the process came up late
    start = max(0.3, tel.series()[0].t[0] - t0 + 0.05)
    got = tel.energy(t0 + start, t0 + 1.4)
    want = exact(start, 1.4)
    ok, avg, reset, nocounter = got.per_gpu
    assert ok["joules"] == pytest.approx(want, rel=0.01) and ok["notes"] == []
    assert avg["joules"] == pytest.approx(want, rel=0.01)
    assert "counter readings in the window failed; interpolated" in avg["notes"][0]
    assert reset["joules"] is None and "went backwards" in reset["notes"][0]
    assert nocounter["method"] == "power_integral"
    assert nocounter["joules"] == pytest.approx(want, rel=0.05)
    assert got.joules is None and got.method == "mixed"
    assert got.reason is not None and "GPU 2: the energy counter went backwards" in got.reason
    rows = pq.read_table(tmp_path / "p" / "telemetry.parquet").to_pylist()
    sources = {(r["gpu"], r["power_source"]) for r in rows}
    assert (0, "instant") in sources and (1, "average") in sources
    assert {r["energy_mj"] is None for r in rows if r["gpu"] == 1} == {True, False}
    assert tel.done["errors"]["energy"][0] > 0
    assert pq.read_table(tmp_path / "p" / "server_metrics.parquet").num_rows == 0


def test_no_gpu_gives_null_energy_with_the_reason_and_require_fails(fake_nvml: Any,
                                                                      tmp_path: Path) -> None:
    fake_nvml(init_error="DriverNotLoaded", gpus=[])
    with Telemetry(tmp_path / "a", engine_pid=None, metrics_url=None) as tel:
        assert not tel.available
    got = tel.energy(0.0, 1.0)
    assert got.joules is None and got.reason is not None and "Driver Not Loaded" in got.reason
    assert (tmp_path / "a" / "telemetry.parquet").is_file()
    with pytest.raises(TelemetryError, match="--telemetry require: no GPU telemetry: NVML is "
                                             "not available"):
        Telemetry(tmp_path / "b", engine_pid=None, metrics_url=None, require=True).start()


def test_metrics_and_the_engine_process_are_sampled(fake_nvml: Any, tmp_path: Path) -> None:
    pytest.importorskip("aiohttp")
    pytest.importorskip("psutil")
    from llmtraces.serve.sim import SimServer
    fake_nvml(gpus=[{"power": [[0.0, 100.0]]}])
    with SimServer(prefill_tps=1e6, decode_tps=1e4) as sim:
        with Telemetry(tmp_path, engine_pid=os.getpid(), metrics_url=sim.url + "/metrics",
                       interval_s=0.05, metrics_interval_s=0.1):
            time.sleep(0.6)
    m = pq.read_table(tmp_path / "server_metrics.parquet").to_pylist()
    assert len(m) >= 3 and all(r["status"] == 200 and r["running"] == 0 for r in m)
    assert "vllm:num_requests_running" in m[0]["raw"]
    host = [r for r in pq.read_table(tmp_path / "telemetry.parquet").to_pylist()
            if r["source"] == "host"]
    assert len(host) >= 5 and all(r["rss_bytes"] > 0 and r["processes"] >= 1 for r in host)


def test_telemetry_does_not_slow_the_replay(fake_nvml: Any, tmp_path: Path) -> None:
    """Dispatch lateness of the same replay (150 requests at 100/s against serve-sim in its own
    process) with the telemetry process sampling (NVML at 20 Hz, /metrics at 10 Hz, the
    engine's process tree) and without it, before and after: p99 within 20 ms."""
    pytest.importorskip("aiohttp")
    from llmtraces.bench.engines import make_engine
    from llmtraces.replay.runner import ReplayConfig, replay
    from llmtraces.replay.schedule import Timing
    from llmtraces.transforms import head, to_table
    code = Path(__file__).resolve().parents[1] / "llmtraces" / "data" / "azure-llm-2023" / \
        "AzureLLMInferenceTrace_code.csv"
    trace = to_table(head(code, 150))
    fake_nvml(gpus=[{"power": POWER}, {"power": POWER}])
    eng = make_engine("sim", engine_args=["--prefill-tps", "2000000", "--decode-tps", "20000",
                                          "--batch-slots", "256", "--kv-tokens", "4194304"],
                      ready_timeout_s=60)
    url = eng.start(tmp_path / "engine")
    try:
        def p99(out: Path) -> float:
            cfg = ReplayConfig(endpoint=url, timing=Timing(rps=100.0), timeout_s=30.0,
                               grace_s=2.0)
            return float(replay(trace, out, cfg)["fidelity"]["lateness_ms"]["p99"])

        without = p99(tmp_path / "without-before")
        with Telemetry(tmp_path / "tel", engine_pid=eng.pid, metrics_url=eng.metrics_url,
                       interval_s=0.05, metrics_interval_s=0.1) as tel:
            with_tel = p99(tmp_path / "with")
        assert tel.available and tel.done["rows"] > 0 and tel.done["scrapes"] > 0
        without = max(without, p99(tmp_path / "without-after"))  # the machine's noise, twice
    finally:
        eng.stop()
    assert with_tel < without + 20.0, (with_tel, without)


# --- env.json ------------------------------------------------------------------------------------

def test_env_records_gpus_driver_cuda_engine_and_argv(fake_nvml: Any, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("aiohttp")
    from llmtraces import __version__
    from llmtraces.bench.engines import make_engine
    from llmtraces.bench.env import collect_env, format_env
    from llmtraces.serve.sim import SimServer
    fake_nvml(gpus=[{"name": "NVIDIA H200", "uuid": "GPU-h200", "memory_total": 150 * 2**30,
                     "power": POWER}])
    monkeypatch.setenv("VLLM_SERVER_DEV_MODE", "1")
    monkeypatch.setenv("VLLM_API_KEY", "sk-secret")
    with SimServer(prefill_tps=1e6, decode_tps=1e4, model="sim-model") as sim:
        eng = make_engine("url", endpoint=sim.url)
        eng.start(tmp_path)
        env = collect_env(eng, ["llmtraces", "bench", "point", "t.parquet"])
    assert env["argv"] == ["llmtraces", "bench", "point", "t.parquet"]
    assert env["llmtraces"]["version"] == __version__
    assert env["gpu"]["available"] and env["gpu"]["driver"] == "550.54.15"
    assert env["gpu"]["cuda"] == "12.4"
    (dev,) = env["gpu"]["devices"]
    assert dev["name"] == "NVIDIA H200" and dev["uuid"] == "GPU-h200"
    assert dev["memory_total_bytes"] == 150 * 2**30 and dev["power_limit_w"] == 700
    assert env["engine"]["engine"] == "url:sim" and env["engine"]["model"] == "sim-model"
    assert env["engine"]["engine_version"] == __version__
    assert env["engine"]["environment"]["VLLM_SERVER_DEV_MODE"] == "1"
    assert "sk-secret" not in json.dumps(env)
    text = format_env(env)
    assert "gpu 0      NVIDIA H200 (150.0 GiB, limit 700 W) GPU-h200" in text
    assert "driver     550.54.15  CUDA 12.4" in text and "engine     url:sim" in text
    assert "sk-secret" not in text


def test_env_without_a_gpu_says_why(fake_nvml: Any) -> None:
    from llmtraces.bench.env import collect_env, format_env
    fake_nvml(init_error="LibraryNotFound", gpus=[])
    env = collect_env(None, ["llmtraces", "bench", "env"])
    assert env["gpu"]["available"] is False and env["engine"] is None
    assert "NVML Shared Library Not Found" in env["gpu"]["reason"]
    assert "gpu        none: NVML is not available" in format_env(env)
    json.dumps(env)  # JSON-ready


def test_a_point_meters_only_the_gpus_its_engine_uses(fake_nvml: Any, tmp_path: Path) -> None:
    """``--gpus 1`` (a spec's ``gpus``): NVML indices, which CUDA_VISIBLE_DEVICES does not
    renumber, so the same ids choose the GPUs whose energy is the point's."""
    from llmtraces.bench.engines import make_engine
    from llmtraces.bench.point import PointSettings, _telemetry
    from llmtraces.replay.metrics import Slo

    fake_nvml(gpus=[{"uuid": "GPU-a", "power": POWER}, {"uuid": "GPU-b", "power": POWER}])
    settings = PointSettings(slo=Slo(ttft_ms=100.0), interval_s=0.05)
    for gpus, want in (([1], ["GPU-b"]), ([], ["GPU-a", "GPU-b"])):
        engine = make_engine("url", endpoint="http://127.0.0.1:9", gpus=gpus)
        tel = _telemetry(engine, tmp_path / f"p{len(gpus)}", settings)
        try:
            assert [g["uuid"] for g in tel.ready["gpus"]] == want
        finally:
            tel.stop()


def test_idle_power_and_the_energy_above_it(fake_nvml: Any, tmp_path: Path) -> None:
    """The idle window before the replay (70 W scripted) gives ``idle_power_w``; the measured
    window (400 W for 0.4 s, clear of the steps, where the counter is linear) its energy and
    the energy above idle, (400 - 70) W x 0.4 s."""
    from types import SimpleNamespace

    from llmtraces.bench.energy import energy_fields

    t0 = fake_nvml(gpus=[{"uuid": "GPU-a", "power": POWER}])
    tel = Telemetry(tmp_path / "p", engine_pid=None, metrics_url=None, interval_s=0.05)
    with tel:
        while time.monotonic() < t0 + 1.4:
            time.sleep(0.05)
    start = max(0.1, tel.series()[0].t[0] - t0 + 0.05)
    st = SimpleNamespace(tokens_in_window=1000, attainment=SimpleNamespace(n=10, good=8))
    got = energy_fields(tel, [t0 + 0.7, t0 + 1.1], st, "auto", idle=[t0 + start, t0 + 0.5])
    assert got["energy_j"] == pytest.approx(400 * 0.4, rel=0.02)
    assert got["idle_power_w"] == pytest.approx(70, rel=0.02)
    assert got["energy_above_idle_j"] == pytest.approx(330 * 0.4, rel=0.03)
    assert got["j_per_token"] == pytest.approx(0.16, rel=0.02)
    assert got["j_per_good_request"] == pytest.approx(20, rel=0.02)
    no_idle = energy_fields(tel, [t0 + 0.7, t0 + 1.1], st, "auto")
    assert "idle_power_w" not in no_idle and no_idle["energy_j"] == got["energy_j"]


def test_a_stopped_engines_gpu_memory_is_waited_for(fake_nvml: Any, tmp_path: Path) -> None:
    """A GPU engine's memory (scripted: 40 GiB held until 0.8 s after t0, then back to the
    level before the launch) is waited for after the stop; what is still held past the
    timeout is said, in the note and the server log."""
    from test_bench_engines import fake

    from llmtraces.bench.engines.gpu_release import wait_released
    from llmtraces.bench.telemetry.nvml import memory_used

    gib = 2**30
    t0 = fake_nvml(gpus=[{"uuid": "GPU-a", "power": POWER,
                          "memory_used": [[-1e9, gib], [0.0, 40 * gib], [0.8, gib + 2**20]]}])
    assert memory_used([0]) == {0: gib}
    eng = fake("vllm", gpus=[0])
    eng.start(tmp_path)          # before t0: the baseline is 1 GiB
    while time.monotonic() < t0 + 0.05:
        time.sleep(0.01)
    note = wait_released({0: gib}, [0], timeout_s=0.1, poll_s=0.02)
    assert note is not None and "GPU 0 holds 39.0 GiB more than before the launch" in note
    eng.stop()                   # waits for 0.8 s after t0
    assert time.monotonic() >= t0 + 0.8 and eng.release_note is None
    from llmtraces.bench.engines import make_engine
    assert not make_engine("llamacpp").uses_gpu and not make_engine("sim").uses_gpu
