"""Dispatch fidelity of ``llmtraces replay`` at constant rates against a near-zero-latency
server (run by hand; see benchmarks/README.md).

A raw-asyncio HTTP/1.1 responder (keep-alive; every POST answered at once with a 1-token SSE
stream and exact usage) runs in a child process; where the machine has two or more cores, the
server is pinned to the last core and the replayer to the others (``os.sched_setaffinity``).
For each rate, a constant-rate trace of ``rate x seconds`` requests (16-token prompts,
1 output token) is replayed, and the dispatch lateness (sent - scheduled) p50/p99/max, the
share late by more than 1 ms, the drift and the achieved rate are printed. When ``aiperf`` is
importable, the same trace, exported in the Mooncake format, is also sent by AIPerf's
fixed-schedule mode against the same server, and its achieved request rate is printed
beside ours; otherwise that column says why it is missing.

    python benchmarks/replay_fidelity.py                     # 100, 500, 1000, 2000 req/s, 3 s
    python benchmarks/replay_fidelity.py --rates 1000 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from llmtraces.formats import get_writer
from llmtraces.replay.runner import ReplayConfig, replay
from llmtraces.schema import TraceStream, make_batch

# Complete OpenAI completion chunks (AIPerf's parser wants id/object/created/model too).
_HEAD = b'"id":"cmpl-0","object":"text_completion","created":0,"model":"bench"'
_SSE = (b'data: {' + _HEAD + b',"choices":[{"index":0,"text":" a","logprobs":null,'
        b'"finish_reason":"length"}]}\n\n'
        b'data: {' + _HEAD + b',"choices":[],"usage":{"prompt_tokens":16,'
        b'"completion_tokens":1,"total_tokens":17}}\n\ndata: [DONE]\n\n')
_POST = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: "
         + str(len(_SSE)).encode() + b"\r\n\r\n" + _SSE)
_MODELS_BODY = b'{"object":"list","data":[{"id":"bench","vocab_size":32000}]}'
_MODELS = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
           + str(len(_MODELS_BODY)).encode() + b"\r\n\r\n" + _MODELS_BODY)


class _Responder(asyncio.Protocol):
    """Parses pipelined HTTP/1.1 requests (Content-Length bodies) and answers each at once."""

    def connection_made(self, transport: Any) -> None:
        self.t = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                length = int(head[at + 15:].split(b"\r\n", 1)[0])
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            self.t.write(_MODELS if head.startswith(b"get") else _POST)


def _serve(port_out: Any, cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Responder, "127.0.0.1", 0, backlog=4096)
        port_out.put(server.sockets[0].getsockname()[1])
        await asyncio.sleep(3600)

    asyncio.run(main())


def constant_rate(rate: float, seconds: float) -> pa.Table:
    """A unified trace of ``rate * seconds`` requests, evenly spaced."""
    n = int(rate * seconds)
    step = 1e6 / rate
    batch = make_batch(n, {
        "request_id": pa.array(range(n), pa.int64()),
        "source_row": pa.array(range(n), pa.int64()),
        "arrival_us": pa.array([round(i * step) for i in range(n)], pa.int64()),
        "input_tokens": pa.array([16] * n, pa.int64()),
        "output_tokens": pa.array([1] * n, pa.int64()),
    })
    return pa.Table.from_batches([batch])


def _tiktoken_cache(work: Path) -> Path:
    """A tiktoken cache holding o200k_base (from the rank file llmtraces ships offline, checked
    against OpenAI's sha256), so AIPerf's ``builtin`` tokenizer loads without the network:
    tiktoken caches a file under the sha1 of its download URL."""
    import hashlib

    from llmtraces.tokenize import rank_file

    cache = work / "tiktoken-cache"
    cache.mkdir(exist_ok=True)
    url = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
    (cache / hashlib.sha1(url.encode()).hexdigest()).write_bytes(rank_file("o200k_base"))
    return cache


def _aiperf(table: pa.Table, url: str, work: Path) -> str:
    """AIPerf's fixed-schedule replay of the same trace: its achieved request rate."""
    if importlib.util.find_spec("aiperf") is None or shutil.which("aiperf") is None:
        return "aiperf not installed (pip install 'llmtraces[interop]')"
    trace = work / "trace.jsonl"
    get_writer("mooncake").write(TraceStream(iter(table.to_batches()), {}), trace)
    art = work / "aiperf"
    cmd = ["aiperf", "profile", "--model", "bench", "--url", url, "--endpoint-type",
           "completions", "--streaming", "--input-file", str(trace), "--custom-dataset-type",
           "mooncake_trace", "--fixed-schedule", "--artifact-dir", str(art),
           "--tokenizer", "builtin"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TIKTOKEN_CACHE_DIR": str(_tiktoken_cache(work))}
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=300, env=env)
    except subprocess.CalledProcessError as exc:
        errors = [line for log in art.rglob("aiperf.log")
                  for line in log.read_text(errors="replace").splitlines() if " ERROR " in line]
        tail = errors or (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        return f"aiperf failed: {tail[0][-200:] if tail else exc.returncode}"
    except (subprocess.SubprocessError, OSError) as exc:
        return f"aiperf failed: {type(exc).__name__}"
    for path in art.rglob("profile_export_aiperf.json"):
        data = json.loads(path.read_text())
        rate = (data.get("request_throughput") or {}).get("avg")
        if rate is not None:
            return f"{rate:,.0f} req/s"
    return "aiperf ran; no request_throughput in its export"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="100,500,1000,2000")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu = cpus[-1] if len(cpus) >= 2 else None
    if server_cpu is not None:
        os.sched_setaffinity(0, set(cpus[:-1]))
    ctx = multiprocessing.get_context("spawn")
    ports: Any = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(ports, server_cpu), daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{ports.get(timeout=30)}"
    uvloop = importlib.util.find_spec("uvloop") is not None
    print(f"server {url} on cpu {server_cpu}; replayer on cpus "
          f"{sorted(os.sched_getaffinity(0))}; uvloop {'yes' if uvloop else 'no'}; "
          f"python {sys.version.split()[0]}")
    print(f"{'rate':>6} {'reqs':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'>1ms':>7} "
          f"{'drift ms':>9} {'achieved':>10}  aiperf fixed-schedule")
    try:
        for rate in [float(r) for r in args.rates.split(",")]:
            table = constant_rate(rate, args.seconds)
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                s = replay(table, Path(tmp) / "out", ReplayConfig(
                    endpoint=url, timeout_s=30, grace_s=5))
                wall = time.perf_counter() - started
                f, m = s["fidelity"], s["metrics"]
                late = f["lateness_ms"]
                ok = m["requests"]["ok"]
                theirs = _aiperf(table, url, Path(tmp))
            print(f"{rate:>6.0f} {table.num_rows:>6} {late['p50']:>8.3f} "
                  f"{late['p99']:>8.3f} {late['max']:>8.2f} "
                  f"{f['late_over_1ms']:>7.2%} {f['drift_ms']:>9.2f} "
                  f"{m['achieved_rate_rps']:>10,.1f}  {theirs}"
                  + ("" if ok == table.num_rows else f"  ({table.num_rows - ok} failed)")
                  + f"  [{wall:.1f} s]")
    finally:
        proc.kill()
        proc.join(5)


if __name__ == "__main__":
    main()
