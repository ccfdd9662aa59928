"""``llmtraces replay`` against serve-sim (and a small recording server) on 127.0.0.1:
outputs, exact lengths, sessions and hash blocks, metrics on hand-made rows, fault classes,
Ctrl-C and crashes, a down server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

pytest.importorskip("aiohttp")

from replay_helpers import RecordingServer  # noqa: E402

import llmtraces  # noqa: E402
from conftest import Cli  # noqa: E402
from llmtraces.replay import client, metrics  # noqa: E402
from llmtraces.replay.errors import ReplayError  # noqa: E402
from llmtraces.replay.prompts import TextRenderer, id_range  # noqa: E402
from llmtraces.replay.recorder import PARTS, Recorder, finalize, rows_table  # noqa: E402
from llmtraces.replay.runner import ReplayConfig, replay  # noqa: E402
from llmtraces.replay.schedule import Schedule, Timing  # noqa: E402
from llmtraces.serve.sim import SimServer  # noqa: E402
from llmtraces.testing import tiny_trace  # noqa: E402
from llmtraces.transforms import head, to_table  # noqa: E402

CODE = Path(llmtraces.__file__).parent / "data" / "azure-llm-2023" / \
    "AzureLLMInferenceTrace_code.csv"
FAST = {"prefill_tps": 2_000_000.0, "decode_tps": 20_000.0, "batch_slots": 256,
        "kv_tokens": 1 << 22, "max_queue": 4096}


@pytest.fixture(scope="module")
def code200() -> pa.Table:
    """The first 200 requests of the real Azure 2023 code trace."""
    return to_table(head(CODE, 200))


@pytest.fixture
def sim() -> Any:
    with SimServer(**FAST) as srv:
        yield srv


def cfg(url: str, **kw: Any) -> ReplayConfig:
    kw.setdefault("timeout_s", 10.0)
    kw.setdefault("grace_s", 2.0)
    return ReplayConfig(endpoint=url, **kw)


def rows(out: Path) -> list[dict[str, Any]]:
    return sorted(pq.read_table(out / "requests.parquet").to_pylist(),
                  key=lambda r: r["request_id"])


def tiny_fast(speedup: float = 10.0, **changes: Any) -> pa.Table:
    """The tiny trace, optionally with columns replaced (e.g. hash_ids=None)."""
    t = tiny_trace()
    for name, value in changes.items():
        i = t.schema.get_field_index(name)
        t = t.set_column(i, t.schema.field(name), pa.nulls(t.num_rows, t.schema.field(name).type)
                         if value is None else value)
    return t


# --- end to end against serve-sim -------------------------------------------------------------

def test_azure_code_slice_against_sim(sim, code200, tmp_path):
    out = tmp_path / "out"
    summary = replay(code200, out, cfg(sim.url, timing=Timing(speedup=60), window_s=0.25,
                                       slo=metrics.Slo(e2e_ms=60_000)))
    got = rows(out)
    assert [r["request_id"] for r in got] == list(range(200))
    trace = code200.to_pylist()
    for r, t in zip(got, trace, strict=True):
        assert r["ok"] and r["status"] == 200 and r["error"] is None
        assert r["input_tokens"] == r["prompt_tokens"] == t["input_tokens"]
        assert r["output_tokens_asked"] == r["output_tokens"] == t["output_tokens"]
        assert r["usage_source"] == "usage" and r["short_output"] is False
        assert r["chunks"] == len(r["chunk_times_s"]) == r["output_tokens"]
        assert r["scheduled_s"] == pytest.approx(t["arrival_us"] / 1e6 / 60, abs=1e-6)
        assert r["sent_s"] >= r["scheduled_s"]
        assert r["sent_s"] <= r["first_token_s"] <= r["end_s"]
        assert r["chunk_times_s"] == sorted(r["chunk_times_s"])
    m = summary["metrics"]
    assert m["requests"] == {"total": 200, "sent": 200, "ok": 200, "failed": 0,
                             "short_output": 0, "without_usage": 0}
    assert m["output_tokens"] == sum(t["output_tokens"] for t in trace)
    assert m["input_tokens"] == sum(t["input_tokens"] for t in trace)
    assert m["goodput"]["requests"] == 200 and m["failures"] == {}
    assert summary["fidelity"]["requests"] == 200
    assert summary["server"]["prompt_format"] == "ids" and summary["server"]["vocab_size"] == 32000
    assert sim.stats()["completed"] == 200
    ts = pq.read_table(out / "timeseries.parquet")
    assert pc.sum(ts["requests"]).as_py() == 200 and "e2e_p99_s" in ts.column_names
    assert json.loads((out / "summary.json").read_text())["stop_reason"] == "completed"
    assert not (out / PARTS).exists()


def test_sessions_and_hash_blocks_reach_the_prefix_cache(sim, tmp_path):
    replay(tiny_trace(), tmp_path / "o", cfg(sim.url, timing=Timing(speedup=4)))
    got = {r["request_id"]: r for r in rows(tmp_path / "o")}
    assert all(r["ok"] for r in got.values())
    assert [got[i]["prompt_tokens"] for i in range(12)] == tiny_trace()["input_tokens"].to_pylist()
    # s1's turn 1 (660 tokens) starts with turn 0's 600 (hash blocks 0, 1): 37 blocks of 16
    assert got[4]["cached_tokens"] >= 592
    assert got[1]["cached_tokens"] == 0    # its own blocks 2, 3, 4


def test_history_and_hash_ids_in_what_the_server_received(tmp_path):
    with RecordingServer() as srv:
        replay(tiny_trace(), tmp_path / "a", cfg(srv.url, timing=Timing(speedup=50)))
        hashed = {json.dumps(b["prompt"][:3]): b for b in srv.bodies}
        by_len = {len(b["prompt"]): b["prompt"] for b in srv.bodies}
        srv.bodies.clear()
        replay(tiny_fast(hash_ids=None), tmp_path / "b", cfg(srv.url, timing=Timing(speedup=50)))
        plain = {len(b["prompt"]): b["prompt"] for b in srv.bodies}
    assert len(hashed) <= 12 and sorted(by_len) == sorted(tiny_trace()["input_tokens"].to_pylist())
    lo, hi = id_range(32000)
    assert all(lo <= i < hi for p in by_len.values() for i in p)
    # hash ids: same id, same block. s1: 600 (blocks 0,1), 660 (0,1), 800 (0,1)
    assert by_len[660][:600] == by_len[600] and by_len[800][:660] == by_len[660]
    assert by_len[512][:16] != by_len[600][:16]        # block 14 vs block 0
    # no hash ids: a turn is its parent's prompt + the parent's output + new tokens
    assert plain[660][:600] == plain[600] and plain[660][600:640] != plain[600][:40]
    assert plain[800][:690] == plain[660] + plain[800][660:690]
    assert plain[800][:660] == plain[660]
    assert plain[1030][:600] != plain[600]              # not a session: nothing shared
    # deterministic: the same trace and seed give the same prompts
    again = tmp_path / "c"
    with RecordingServer() as srv:
        replay(tiny_fast(hash_ids=None), again, cfg(srv.url, timing=Timing(speedup=50)))
        assert {len(b["prompt"]): b["prompt"] for b in srv.bodies} == plain


def test_chat_messages_carry_the_history_as_text_of_exact_length(tmp_path):
    with RecordingServer() as srv:
        replay(tiny_trace(), tmp_path / "o", cfg(srv.url, api="chat",
                                                 timing=Timing(speedup=50), stream=False))
        bodies = srv.bodies
    by_len = {RecordingServer.count(b): b["messages"] for b in bodies}
    assert sorted(by_len) == sorted(tiny_trace()["input_tokens"].to_pylist())
    t0, t1, t2 = by_len[600], by_len[660], by_len[800]
    assert [m["role"] for m in t0] == ["user"]
    assert [m["role"] for m in t1] == ["user", "assistant", "user"]
    assert [len(m["content"].split()) for m in t1] == [600, 40, 20]
    assert [m["role"] for m in t2] == ["user", "assistant", "user", "assistant", "user"]
    assert t2[:3] == t1 and t1[0] == t0[0]
    assert [len(m["content"].split()) for m in t2] == [600, 40, 20, 30, 110]
    rows_ = rows(tmp_path / "o")
    assert all(r["ok"] and r["ttft_s"] is None and r["e2e_s"] > 0 for r in rows_)


def test_text_prompts_are_exact_for_o200k_and_serve_sim(sim, tmp_path):
    renderer = TextRenderer("o200k_base")
    assert renderer.exact
    text = renderer.text(list(range(0, 50_000, 37)))
    assert renderer.counter.count([text]) == [len(range(0, 50_000, 37))]
    replay(tiny_trace(), tmp_path / "o", cfg(sim.url, prompt_format="text",
                                             timing=Timing(speedup=20)))
    for r in rows(tmp_path / "o"):
        assert r["ok"] and r["prompt_tokens"] == r["input_tokens"]


def test_trace_token_ids_are_sent_as_they_are(tmp_path):
    with RecordingServer() as srv:
        replay(tiny_trace(), tmp_path / "o", cfg(srv.url, prompt_source="ids",
                                                 timing=Timing(speedup=50)))
        sent = [b["prompt"] for b in srv.bodies]
    own = [r["input_token_ids"] for r in tiny_trace().to_pylist() if r["input_token_ids"]]
    assert all(ids in sent for ids in own)
    # ids past the vocabulary are not sent: one clear error class
    with RecordingServer(vocab_size=1000) as srv:
        replay(tiny_trace(), tmp_path / "v", cfg(srv.url, prompt_source="ids",
                                                 timing=Timing(speedup=50)))
    bad = [r for r in rows(tmp_path / "v") if r["error"] == "bad_prompt"]
    assert {r["request_id"] for r in bad} == {7, 9}
    assert all(r["sent_s"] is None and "outside the vocabulary" in r["error_detail"] for r in bad)


def test_no_ignore_eos_and_extra_fields_and_short_outputs(sim, tmp_path):
    with RecordingServer() as srv:
        replay(tiny_trace(), tmp_path / "o", cfg(srv.url, timing=Timing(speedup=50),
                                                 ignore_eos=False,
                                                 extra={"cache_prompt": False}))
        body = srv.bodies[0]
    assert "ignore_eos" not in body and "min_tokens" not in body
    assert body["cache_prompt"] is False and body["stream_options"] == {"include_usage": True}
    # serve-sim draws a length in [1, max_tokens] without ignore_eos: short outputs flagged
    summary = replay(tiny_trace(), tmp_path / "s", cfg(sim.url, timing=Timing(speedup=20),
                                                       ignore_eos=False))
    short = [r for r in rows(tmp_path / "s") if r["short_output"]]
    assert short and all(r["output_tokens"] < r["output_tokens_asked"] for r in short)
    assert summary["metrics"]["requests"]["short_output"] == len(short)


def test_max_concurrency_queues_in_the_client(tmp_path):
    burst = tiny_fast(arrival_us=pa.array([0] * 12, pa.int64()))
    with SimServer(prefill_tps=1e6, decode_tps=400.0) as srv:
        summary = replay(burst, tmp_path / "o", cfg(srv.url, max_concurrency=3))
        assert srv.stats()["peak_running"] <= 3
    got = rows(tmp_path / "o")
    assert all(r["ok"] for r in got)
    queued = [r for r in got if r["queue_s"] > 0.005]
    assert len(queued) >= 8
    assert summary["fidelity"]["queue_ms"]["max"] > 10  # ms, like --slo


# --- timing -----------------------------------------------------------------------------------

def test_schedule_options(code200):
    def dues(**kw: Any) -> list[float]:
        return [s.due_s for s in Schedule(code200, Timing(**kw))]

    own = dues()
    arr = [a / 1e6 for a in code200["arrival_us"].to_pylist()]
    assert own == pytest.approx([a - arr[0] for a in arr])
    assert dues(speedup=4) == pytest.approx([a / 4 for a in own], abs=1e-6)
    fast = dues(rps=10)
    assert (len(fast) - 1) / (fast[-1] - fast[0]) == pytest.approx(10, rel=1e-6)
    assert len(dues(max_requests=7)) == 7
    win = dues(window=(10, 20))
    assert win[0] == 0 and all(d < 20 for d in win)
    assert max(dues(duration_s=5.0)) < 5.0
    poisson = dues(arrivals="poisson", rps=50, seed=3)
    assert len(poisson) == 200 and poisson == dues(arrivals="poisson", rps=50, seed=3)
    assert (len(poisson) - 1) / poisson[-1] == pytest.approx(50, rel=0.25)
    gamma = dues(arrivals="gamma", rps=50, cv=3, seed=1)
    assert poisson != gamma and (len(gamma) - 1) / gamma[-1] == pytest.approx(50, rel=0.6)
    modeled = list(Schedule(code200, Timing(modeled=True, rps=20, duration_s=5, seed=1)))
    assert modeled and modeled[-1].due_s < 5
    assert [s.request.input_tokens for s in modeled] == \
        code200["input_tokens"].to_pylist()[: len(modeled)]
    with pytest.raises(ReplayError, match="needs --rps"):
        Timing(arrivals="poisson").check()
    with pytest.raises(ReplayError, match="one of --speedup and --rps"):
        Timing(speedup=2, rps=3).check()


# --- metrics on hand-made rows ----------------------------------------------------------------

def _hand_rows() -> pa.Table:
    def row(**kw: Any) -> dict[str, Any]:
        return kw
    return rows_table([
        row(request_id=0, scheduled_s=0.0, ready_s=0.0, sent_s=0.0005, lateness_s=0.0005,
            queue_s=0.0, first_token_s=0.1005, chunk_times_s=[0.1005, 0.2005, 0.4005],
            end_s=0.4005, ttft_s=0.1, e2e_s=0.4, tpot_s=0.15, input_tokens=10,
            prompt_tokens=10, output_tokens_asked=3, output_tokens=3, usage_source="usage",
            short_output=False, status=200, ok=True),
        row(request_id=1, scheduled_s=1.0, ready_s=1.0, sent_s=1.002, lateness_s=0.002,
            queue_s=0.0, first_token_s=1.202, chunk_times_s=[1.202, 1.302], end_s=1.502,
            ttft_s=0.2, e2e_s=0.5, tpot_s=0.3, input_tokens=20, prompt_tokens=20,
            output_tokens_asked=4, output_tokens=2, usage_source="usage", short_output=True,
            status=200, ok=True),
        row(request_id=2, scheduled_s=2.0, ready_s=2.0, sent_s=2.02, lateness_s=0.02,
            queue_s=0.0, end_s=2.03, e2e_s=0.01, input_tokens=30, output_tokens_asked=5,
            status=503, ok=False, error="http_503", chunk_times_s=[]),
        row(request_id=3, scheduled_s=3.0, ready_s=3.0, sent_s=3.0, lateness_s=0.0,
            queue_s=0.0, end_s=4.0, e2e_s=1.0, input_tokens=40, output_tokens_asked=5,
            ok=False, error="timeout", chunk_times_s=[1.0, 2.0]),
    ])


def test_metrics_exact_on_hand_made_rows():
    t = _hand_rows()
    s = metrics.summarize(t, percentiles=[50, 90], slo=metrics.Slo(ttft_ms=150))
    assert s["duration_s"] == pytest.approx(4.0 - 0.0005)
    d = 4.0 - 0.0005
    assert s["requests"] == {"total": 4, "sent": 4, "ok": 2, "failed": 2, "short_output": 1,
                             "without_usage": 0}
    # latencies in ms, as --slo takes them and every key says (the rows hold seconds)
    assert s["ttft_ms"]["mean"] == pytest.approx(150)
    assert s["ttft_ms"]["p50"] == pytest.approx(150) and s["ttft_ms"]["p90"] == \
        pytest.approx(190)
    assert s["ttft_ms"]["min"] == pytest.approx(100) and s["ttft_ms"]["std"] == \
        pytest.approx(50)
    assert s["tpot_ms"]["mean"] == pytest.approx(225)
    # ITL: the ok requests' chunk gaps 0.1, 0.2 and 0.1 (the timed-out one is left out)
    assert s["itl_ms"]["count"] == 3 and s["itl_ms"]["mean"] == pytest.approx(400 / 3)
    assert s["itl_ms"]["p50"] == pytest.approx(100) and s["itl_ms"]["max"] == pytest.approx(200)
    assert s["e2e_ms"]["mean"] == pytest.approx(450) and s["jitter_ms"] == pytest.approx(50)
    assert s["normalised_latency_ms"]["mean"] == pytest.approx((400 / 3 + 250) / 2)
    assert not [k for k in s if k.endswith("_s") and k != "duration_s"]  # no seconds left
    assert s["input_tokens"] == 30 and s["output_tokens"] == 5
    assert s["input_throughput_tps"] == pytest.approx(30 / d)
    assert s["output_throughput_tps"] == pytest.approx(5 / d)
    assert s["request_throughput_rps"] == pytest.approx(2 / d)
    assert s["achieved_rate_rps"] == pytest.approx(3 / (3.0 - 0.0005))
    assert s["scheduled_rate_rps"] == pytest.approx(1.0)
    assert s["failure_rate"] == 0.5
    assert s["failures"] == {"http_503": {"count": 1, "rate": 0.25},
                             "timeout": {"count": 1, "rate": 0.25}}
    assert s["goodput"] == {"slo_ms": {"ttft_ms": 150}, "requests": 1, "share": 0.25,
                            "rps": pytest.approx(1 / d)}
    tpot = metrics.summarize(t, slo=metrics.Slo(tpot_ms=200, e2e_ms=450))["goodput"]
    assert tpot["requests"] == 1

    f = metrics.fidelity(t)
    assert f["lateness_ms"]["p50"] == pytest.approx(1.25)
    assert f["lateness_ms"]["max"] == pytest.approx(20)
    assert f["late_over_1ms"] == 0.5 and f["late_over_10ms"] == 0.25
    assert f["drift_ms"] == pytest.approx(((3.0 - 0.0005) - 3.0) * 1000)
    assert f["queue_ms"]["max"] == 0
    assert not f["kept_up"] and "could not keep up" in f["warning"]

    ts = metrics.timeseries(t, 2.0, percentiles=[50]).to_pylist()
    assert [w["requests"] for w in ts] == [2, 2] and [w["rate_rps"] for w in ts] == [1.0, 1.0]
    assert [w["failure_rate"] for w in ts] == [0.0, 1.0]
    assert ts[0]["e2e_mean_s"] == pytest.approx(0.45) and ts[0]["e2e_std_s"] == \
        pytest.approx(0.05)
    assert ts[0]["output_throughput_tps"] == 2.5 and ts[1]["e2e_mean_s"] is None
    assert ts[0]["ttft_p50_s"] == pytest.approx(0.15)


def test_itl_memory_is_bounded_by_stride():
    pool = metrics._ItlPool(cap=1000)
    for i in range(10):
        pool.add(pa.array([float(i)] * 500))
    assert pool.seen == 5000 and pool.kept <= 1000 and pool.stride == 8
    assert pc.mean(pool.values()).as_py() == pytest.approx(4.5, abs=0.2)


def test_slo_and_percentile_parsing():
    assert metrics.Slo.parse("ttft=500,tpot=50") == metrics.Slo(500.0, 50.0, None)
    assert metrics.parse_percentiles("99,50,90") == [50, 90, 99]
    with pytest.raises(ValueError, match="expected ttft"):
        metrics.Slo.parse("latency=3")
    with pytest.raises(ValueError, match="outside"):
        metrics.parse_percentiles("101")


# --- faults -----------------------------------------------------------------------------------

FOUR = tiny_fast(arrival_us=pa.array([i * 1000 for i in range(12)], pa.int64()))


@pytest.mark.parametrize(("fault", "stream", "want"), [
    ("error", True, "http_500"), ("reset", True, "stream_cut"),
    ("reset", False, "connection_reset"), ("malformed", True, "malformed"),
    ("malformed", False, "malformed"), ("slow", True, "timeout")])
def test_sim_faults_are_classified_and_the_run_goes_on(tmp_path, fault, stream, want):
    with SimServer(fail_rate=1.0, faults=(fault,), slow_first_byte_s=3.0, **FAST) as srv:
        s = replay(FOUR, tmp_path / "o", cfg(srv.url, stream=stream, timeout_s=0.4,
                                              timing=Timing(max_requests=4)))
    got = rows(tmp_path / "o")
    assert len(got) == 4 and all(r["error"] == want and not r["ok"] for r in got), \
        [(r["error"], r["error_detail"]) for r in got]
    assert s["metrics"]["failures"] == {want: {"count": 4, "rate": 1.0}}


def test_queue_full_and_bad_ids_are_http_classes(tmp_path):
    burst = tiny_fast(arrival_us=pa.array([0] * 12, pa.int64()))
    with SimServer(prefill_tps=1e5, decode_tps=200.0, batch_slots=1, max_queue=1) as srv:
        replay(burst, tmp_path / "q", cfg(srv.url))
        replay(FOUR, tmp_path / "v", cfg(srv.url, vocab_size=10_000_000,
                                         timing=Timing(max_requests=3)))
    classes = [r["error"] for r in rows(tmp_path / "q")]
    assert classes.count("http_503") >= 8 and classes.count(None) >= 2
    v = rows(tmp_path / "v")
    assert [r["error"] for r in v] == ["http_400"] * 3 and "out of range" in v[0]["error_detail"]


@pytest.mark.parametrize(("mode", "want"), [("nodone", "stream_cut"),
                                            ("error_event", "stream_error")])
def test_stream_end_faults(tmp_path, mode, want):
    with RecordingServer(mode=mode) as srv:
        replay(FOUR, tmp_path / "o", cfg(srv.url, timing=Timing(max_requests=3)))
    assert [r["error"] for r in rows(tmp_path / "o")] == [want] * 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused_is_classified():
    from llmtraces.replay.http import Pool

    async def main() -> client.Outcome:
        pool = Pool(f"http://127.0.0.1:{_free_port()}/v1/completions", {})
        return await client.send(pool, b"{}", stream=True, timeout=5)
    out = asyncio.run(main())
    assert out.error == "connection_refused" and out.status is None


def test_a_down_server_is_one_clear_error(tmp_path, cli: Cli):
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(ReplayError, match="cannot reach the server .*connection refused"):
        replay(tiny_trace(), tmp_path / "o", cfg(url))
    path = llmtraces.testing.write_tiny_trace(tmp_path / "tiny.parquet")
    res = cli("replay", str(path), "--endpoint", url, "-o", str(tmp_path / "cli"))
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [
        f"Error: cannot reach the server at {url} (connection refused: is the server running "
        "on that port?)"]


def test_api_key_is_sent_and_never_written(tmp_path, monkeypatch, cli: Cli):
    key = "sk-test-secret-123"
    path = llmtraces.testing.write_tiny_trace(tmp_path / "tiny.parquet")
    with SimServer(api_key=key, **FAST) as srv:
        with pytest.raises(ReplayError, match="refused the API key"):
            replay(tiny_trace(), tmp_path / "no", cfg(srv.url))
        monkeypatch.setenv("OPENAI_API_KEY", key)
        res = cli("replay", str(path), "--endpoint", srv.url, "--speedup", "20", "-o",
                  str(tmp_path / "o"), "--json")
    assert res.exit_code == 0, res.output
    assert key not in res.output
    assert json.loads(res.output)["metrics"]["requests"]["ok"] == 12
    for f in (tmp_path / "o").iterdir():
        assert key.encode() not in f.read_bytes()


# --- interruption and crashes -----------------------------------------------------------------

def test_sigint_keeps_every_finished_request(tmp_path, code200):
    path = tmp_path / "code.parquet"
    pq.write_table(code200, path)
    out = tmp_path / "o"
    with SimServer(**FAST) as srv:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from llmtraces.cli import main; main()", "replay",
             str(path), "--endpoint", srv.url, "--rps", "40", "-o", str(out), "--grace", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})
        deadline = time.monotonic() + 15
        while not (out / PARTS).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130, stderr.decode()
    got = pq.read_table(out / "requests.parquet")
    assert 10 <= got.num_rows < 200
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "interrupted"
    assert summary["metrics"]["requests"]["total"] == got.num_rows
    assert b"requests" in stdout and not (out / PARTS).exists()


def test_a_crash_mid_run_leaves_a_readable_requests_file(tmp_path, monkeypatch):
    from llmtraces.replay import prompts

    real = prompts.PromptBuilder.build
    calls = {"n": 0}

    def flaky(self: Any, req: Any, out: int) -> Any:
        calls["n"] += 1
        if calls["n"] > 5:
            raise RuntimeError("boom")
        return real(self, req, out)

    monkeypatch.setattr(prompts.PromptBuilder, "build", flaky)
    with SimServer(**FAST) as srv, pytest.raises(RuntimeError, match="boom"):
        replay(tiny_trace(), tmp_path / "o", cfg(srv.url, timing=Timing(speedup=20)))
    got = pq.read_table(tmp_path / "o" / "requests.parquet")
    assert got.num_rows == 5
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["stop_reason"] == "crashed" and "boom" in summary["crash"]


def test_parts_survive_a_hard_kill_and_finalize(tmp_path):
    rec = Recorder(tmp_path, flush_rows=2)
    for i in range(5):
        rec.add({"request_id": i, "scheduled_s": float(i), "ok": True})
    rec.flush()
    deadline = time.monotonic() + 5
    while len(list((tmp_path / PARTS).glob("part-*.parquet"))) < 3 and \
            time.monotonic() < deadline:
        time.sleep(0.01)
    # no close(): as after SIGKILL; the parts are complete files
    assert pq.read_table(tmp_path / PARTS).num_rows == 5
    table = pq.read_table(finalize(tmp_path))
    assert table["request_id"].to_pylist() == [0, 1, 2, 3, 4]
    assert not (tmp_path / PARTS).exists()


@pytest.mark.parametrize("missing", ["aiohttp", "httptools"])
def test_imports_without_aiohttp_and_the_verb_says_how_to_install(tmp_path, missing):
    path = llmtraces.testing.write_tiny_trace(tmp_path / "tiny.parquet")
    code = (
        f"import sys; sys.modules[{missing!r}] = None\n"
        "import llmtraces.replay, llmtraces.replay.metrics, llmtraces.replay.schedule\n"
        "import llmtraces.replay.prompts, llmtraces.replay.recorder\n"
        "from llmtraces.cli import main\n"
        f"main(['replay', {str(path)!r}, '-o', {str(tmp_path / 'o')!r}])\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 1
    assert "pip install 'llmtraces[replay]'" in res.stderr
