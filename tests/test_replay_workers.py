"""``llmtraces replay --workers N`` against serve-sim and the recording server on 127.0.0.1:
the same request ids, scheduled times and prompts as one process, a session's turns on one
worker, the concurrency shared, a worker killed mid-run, Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("aiohttp")

from replay_helpers import RecordingServer  # noqa: E402

import llmtraces  # noqa: E402
from conftest import Cli  # noqa: E402
from llmtraces.api import export  # noqa: E402
from llmtraces.replay.errors import ReplayError  # noqa: E402
from llmtraces.replay.runner import ReplayConfig, replay  # noqa: E402
from llmtraces.replay.schedule import Schedule, Timing, share, worker_of  # noqa: E402
from llmtraces.replay.workers import replay_workers, split_concurrency  # noqa: E402
from llmtraces.request import Request  # noqa: E402
from llmtraces.schema import make_batch  # noqa: E402
from llmtraces.serve.sim import SimServer  # noqa: E402
from llmtraces.testing import tiny_trace  # noqa: E402
from llmtraces.transforms import head, to_table  # noqa: E402

CODE = Path(llmtraces.__file__).parent / "data" / "azure-llm-2023" / \
    "AzureLLMInferenceTrace_code.csv"
FAST = {"prefill_tps": 2_000_000.0, "decode_tps": 20_000.0, "batch_slots": 256,
        "kv_tokens": 1 << 22, "max_queue": 4096}


def cfg(url: str, **kw: Any) -> ReplayConfig:
    kw.setdefault("timeout_s", 10.0)
    kw.setdefault("grace_s", 2.0)
    return ReplayConfig(endpoint=url, **kw)


def key(out: Path) -> list[tuple[int, float, int, int | None]]:
    """(request id, scheduled time, input tokens, output tokens) of every row, by id."""
    t = pq.read_table(out / "requests.parquet").to_pylist()
    return sorted((r["request_id"], r["scheduled_s"], r["input_tokens"], r["output_tokens"])
                  for r in t)


def constant(n: int, step_us: int) -> pa.Table:
    """A unified trace of ``n`` short requests, ``step_us`` apart."""
    return pa.Table.from_batches([make_batch(n, {
        "request_id": pa.array(range(n), pa.int64()),
        "source_row": pa.array(range(n), pa.int64()),
        "arrival_us": pa.array([i * step_us for i in range(n)], pa.int64()),
        "input_tokens": pa.array([8] * n, pa.int64()),
        "output_tokens": pa.array([2] * n, pa.int64())})])


def bodies(srv: RecordingServer) -> list[str]:
    return sorted(json.dumps(b, sort_keys=True) for b in srv.bodies)


def test_two_workers_send_what_one_process_sends(tmp_path):
    """Sessions with history, hash blocks and plain requests: the same rows, scheduled times
    and request bodies (prompts included) from one process and from two workers."""
    trace = tiny_trace()
    timing = Timing(speedup=10.0)
    with RecordingServer() as srv:
        one = replay(trace, tmp_path / "one", cfg(srv.url, timing=timing))
        sent_one = bodies(srv)
        srv.bodies.clear()
        two = replay_workers(trace, tmp_path / "two", cfg(srv.url, timing=timing), 2)
        sent_two = bodies(srv)
    assert key(tmp_path / "one") == key(tmp_path / "two")
    assert len(key(tmp_path / "two")) == trace.num_rows
    assert sent_one == sent_two and len(sent_two) == trace.num_rows
    assert one["prompts"] == two["prompts"] and two["prompts"]["history_missing"] == 0
    assert two["stop_reason"] == "completed" and two["metrics"]["requests"]["ok"] == 12
    w = two["workers"]
    assert w["count"] == 2 and w["mode"] == "processes"
    assert sorted(r["rows"] for r in w["per_worker"]) == sorted(
        sum(1 for r in trace.to_pylist() if worker_of(Request.from_row(r), 2) == i)
        for i in range(2))
    for r in w["per_worker"]:
        assert r["clock_offset_ms"] == 0.0 and abs(r["start_error_ms"]) < 5.0
        assert r["lateness_ms"]["count"] == r["rows"]
    assert not (tmp_path / "two" / "requests.parts").exists()
    assert {p.name for p in (tmp_path / "two").iterdir()} == {
        "requests.parquet", "summary.json", "timeseries.parquet"}
    ts_one = pq.read_table(tmp_path / "one" / "timeseries.parquet")
    ts_two = pq.read_table(tmp_path / "two" / "timeseries.parquet")
    assert ts_one["requests"].to_pylist() == ts_two["requests"].to_pylist()


def test_the_cli_with_workers_1_and_2_on_a_real_trace(tmp_path, cli: Cli):
    """200 requests of the Azure code trace through the verb: `--workers 2` gives the same
    request ids and scheduled times as `--workers 1`; the table has a line per worker."""
    trace = tmp_path / "code.parquet"
    pq.write_table(to_table(head(CODE, 200)), trace)
    with SimServer(**FAST) as sim:
        got = {}
        for n in (1, 2):
            r = cli("replay", str(trace), "--endpoint", sim.url, "--speedup", "200",
                    "--workers", str(n), "-o", str(tmp_path / f"w{n}"), "--timeout", "10")
            assert r.exit_code == 0, r.output
            got[n] = key(tmp_path / f"w{n}")
            assert ("worker 1 " in r.output) == (n == 2)
    ids_sched = {n: [(i, s) for i, s, _, _ in got[n]] for n in got}
    assert ids_sched[1] == ids_sched[2] and len(ids_sched[2]) == 200
    assert [x[2:] for x in got[1]] == [x[2:] for x in got[2]]


def test_a_session_stays_on_one_worker_and_the_share_covers_everything():
    trace = tiny_trace()
    for n in (1, 2, 3, 5):
        parts = [list(share(Schedule(trace, Timing()), i, n)) for i in range(n)]
        ids = sorted(s.request.request_id for p in parts for s in p)
        assert ids == list(range(trace.num_rows))
        for p in parts:
            assert [s.due_s for s in p] == sorted(s.due_s for s in p)
        where = {}
        for i, p in enumerate(parts):
            for s in p:
                if s.request.session_id is not None:
                    assert where.setdefault(s.request.session_id, i) == i
    # round robin for requests without a session
    plain = [Request.from_row({"request_id": k, "arrival_us": 0, "input_tokens": 1})
             for k in range(6)]
    assert [worker_of(r, 3) for r in plain] == [0, 1, 2, 0, 1, 2]


def test_the_concurrency_cap_is_shared(tmp_path):
    assert split_concurrency(None, 3) == [None] * 3
    assert split_concurrency(7, 3) == [3, 2, 2]
    with pytest.raises(ReplayError, match="--max-concurrency 1 is below --workers 2"):
        split_concurrency(1, 2)
    with pytest.raises(ReplayError, match="--workers: 0 is out of range"):
        replay_workers(tiny_trace(), tmp_path / "x", ReplayConfig(), 0)


def test_a_down_server_writes_nothing(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ReplayError, match="cannot reach the server"):
        replay_workers(tiny_trace(), out, cfg("http://127.0.0.1:9"), 2)
    assert not out.exists()


def _spawned() -> list[psutil.Process]:
    return [p for p in psutil.Process().children()
            if "spawn_main" in " ".join(p.cmdline())]


def test_a_killed_worker_loses_only_its_unwritten_rows(tmp_path):
    """SIGKILL one of two workers mid-run: the other worker's rows are all kept, the run
    says which worker died, and the summary is written."""
    trace = constant(300, 10_000)
    out = tmp_path / "run"
    caught: list[BaseException] = []

    def run() -> None:
        try:
            replay_workers(trace, out, cfg(srv.url, flush_rows=16, flush_s=0.2), 2)
        except BaseException as exc:
            caught.append(exc)

    with SimServer(**FAST) as srv:
        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 60
        while not (out / "requests.parts").is_dir() and time.monotonic() < deadline \
                and thread.is_alive():
            time.sleep(0.05)
        time.sleep(1.0)  # a third of the 3 s schedule
        victims = _spawned()
        assert len(victims) == 2
        victims[0].kill()
        thread.join(60)
    assert len(caught) == 1 and isinstance(caught[0], ReplayError)
    msg = str(caught[0])
    assert "died (killed by SIGKILL)" in msg and "\n" not in msg
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "crashed"
    dead = [w for w in summary["workers"]["per_worker"] if "died" in w]
    alive = [w for w in summary["workers"]["per_worker"] if "died" not in w]
    assert len(dead) == 1 and len(alive) == 1
    rows = pq.read_table(out / "requests.parquet").to_pylist()
    mine = [r for r in rows if r["request_id"] % 2 == alive[0]["worker"]]
    assert len(mine) == alive[0]["rows"] > 0  # every row the survivor recorded
    assert alive[0]["stop_reason"] == "terminated"  # stopped when its peer died
    theirs = [r for r in rows if r["request_id"] % 2 == dead[0]["worker"]]
    assert theirs and all(r["ok"] for r in theirs)  # the dead one's flushed parts are kept


def test_ctrl_c_reaches_every_worker_and_keeps_their_rows(tmp_path):
    """SIGINT to the verb's process: both workers stop gracefully, the outputs are written,
    exit code 130."""
    n = 2000
    trace = tmp_path / "t.parquet"
    export(constant(n, 5_000), trace)
    out = tmp_path / "run"
    with SimServer(**FAST) as srv:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from llmtraces.cli import main; main()", "replay",
             str(trace), "--endpoint", srv.url, "--workers", "2", "-o", str(out), "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not (out / "requests.parts").is_dir() and time.monotonic() < deadline \
                and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "interrupted"
    assert [w["stop_reason"] for w in summary["workers"]["per_worker"]] == ["interrupted"] * 2
    total = pq.read_table(out / "requests.parquet").num_rows
    assert 0 < total < n and total == sum(w["rows"] for w in summary["workers"]["per_worker"])
