"""``llmtraces replay --ray``: the workers as Ray actors on a local Ray instance (2 CPUs),
against the recording server on 127.0.0.1; the clock offset measurement and the start gate
of one actor, without Ray."""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

pytest.importorskip("aiohttp")

from replay_helpers import RecordingServer  # noqa: E402

from conftest import Cli  # noqa: E402
from llmtraces.api import export  # noqa: E402
from llmtraces.replay import ray_workers  # noqa: E402
from llmtraces.replay.errors import ReplayError  # noqa: E402
from llmtraces.replay.ray_workers import ReplayActor, clock_offset, replay_ray  # noqa: E402
from llmtraces.replay.runner import ReplayConfig, replay  # noqa: E402
from llmtraces.replay.schedule import Timing  # noqa: E402
from llmtraces.testing import tiny_trace  # noqa: E402

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="ray is not installed (pip install 'llmtraces[ray]')")


def cfg(url: str, **kw: Any) -> ReplayConfig:
    kw.setdefault("timeout_s", 10.0)
    kw.setdefault("grace_s", 2.0)
    return ReplayConfig(endpoint=url, **kw)


def key(out: Path) -> list[tuple[int, float, int, int | None]]:
    t = pq.read_table(out / "requests.parquet").to_pylist()
    return sorted((r["request_id"], r["scheduled_s"], r["input_tokens"], r["output_tokens"])
                  for r in t)


@pytest.fixture(scope="module")
def local_ray() -> Any:
    """A local Ray instance with 2 CPUs (its start takes ~10 s on a busy 2-core machine)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning",
             log_to_driver=False)
    yield ray
    ray.shutdown()


@needs_ray
def test_two_ray_workers_send_what_one_process_sends(tmp_path, local_ray, cli: Cli):
    trace = tiny_trace()
    tpath = tmp_path / "tiny.parquet"
    export(trace, tpath)
    with RecordingServer() as srv:
        one = replay(trace, tmp_path / "one", cfg(srv.url, timing=Timing(speedup=10.0)))
        sent_one = sorted(json.dumps(b, sort_keys=True) for b in srv.bodies)
        srv.bodies.clear()
        r = cli("replay", str(tpath), "--endpoint", srv.url, "--speedup", "10", "--ray",
                "--workers", "2", "-o", str(tmp_path / "ray"), "--timeout", "10")
        assert r.exit_code == 0, r.output
        sent_ray = sorted(json.dumps(b, sort_keys=True) for b in srv.bodies)
    assert key(tmp_path / "one") == key(tmp_path / "ray")
    assert sent_one == sent_ray and len(sent_ray) == trace.num_rows
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert summary["prompts"] == one["prompts"] and summary["stop_reason"] == "completed"
    w = summary["workers"]
    assert w["mode"] == "ray" and w["count"] == 2
    assert sum(x["rows"] for x in w["per_worker"]) == trace.num_rows
    for x in w["per_worker"]:
        assert x["host"] == socket.gethostname()
        assert 0 < x["rtt_ms"] < 1000 and abs(x["clock_offset_ms"]) <= x["rtt_ms"]
        assert abs(x["start_error_ms"]) < 20 and x["lateness_ms"]["count"] == x["rows"]
    assert "worker 1  " in r.output and "clock offset" in r.output
    assert {p.name for p in (tmp_path / "ray").iterdir()} == {
        "requests.parquet", "summary.json", "timeseries.parquet"}


@needs_ray
def test_a_down_server_with_ray_writes_nothing(tmp_path, local_ray):
    with pytest.raises(ReplayError, match="cannot reach the server"):
        replay_ray(tiny_trace(), tmp_path / "never", cfg("http://127.0.0.1:9"), 2)
    assert not (tmp_path / "never").exists()


def test_the_offset_comes_from_the_shortest_round_trip(monkeypatch):
    """remote - midpoint of the round trip with the smallest RTT."""
    ticks = iter([0.0, 2.0, 10.0, 11.0, 20.0, 23.0])  # RTTs 2, 1, 3
    remote = iter([105.0, 110.6, 130.0])

    class Clock:
        @staticmethod
        def time() -> float:
            return next(ticks)

    monkeypatch.setattr(ray_workers, "time", Clock)
    off, rtt = clock_offset(lambda: next(remote), rounds=3)
    assert rtt == 1.0 and off == pytest.approx(110.6 - 10.5)


def test_an_actor_starts_at_the_instant_on_its_own_wall_clock(tmp_path):
    """The actor class without Ray: it reports ready, starts at the wall-clock instant it is
    given, and leaves its parts for the driver."""
    with RecordingServer() as srv:
        actor = ReplayActor(tiny_trace(), cfg(srv.url, timing=Timing(speedup=50.0)), 1, 2)
        try:
            assert actor.wait_ready() is None
            start = time.time() + 0.3
            actor.go(start)
            result = actor.result()
            assert abs(result["t0_unix"] - start) < 0.005
            assert result["worker"] == 1 and result["rows"] == len(srv.bodies) > 0
            names = actor.parts()
            assert names and all(n.startswith("part-w001-") for n in names)
            assert actor.part(names[0])[:4] == b"PAR1"
        finally:
            actor.cleanup()
    assert not actor.dir.exists()


def test_without_ray_the_option_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ReplayError, match=r"--ray needs ray .*pip install 'llmtraces\[ray\]'"):
        replay_ray(tiny_trace(), tmp_path / "x", ReplayConfig(), 2)
