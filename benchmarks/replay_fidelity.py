"""Dispatch fidelity and CPU cost of ``llmtraces replay`` at constant rates against a
near-zero-latency server (run by hand; see benchmarks/README.md).

A selectors-based HTTP/1.1 responder (keep-alive; every POST answered at once with a 1-token
SSE stream and exact usage) runs in a child process; where the machine has two or more cores,
the server is pinned to the last core and the replayer to the others (``os.sched_setaffinity``).
For each rate, a constant-rate trace of ``rate x seconds`` requests (16-token prompts,
1 output token) is replayed, and printed are: the replayer's CPU per request (its process CPU
time from the start to the end of the run, outputs written, over the requests; "sending"
stops at the last answer; the server is another process), the dispatch lateness at our send
call (sent - scheduled) p50/p99/max and the share late by more than 1 ms, the lateness at the
server's socket (the kernel's receive time of the request head, ``SO_TIMESTAMPNS``, matched by
``X-Request-Id``) p50/p99/max, the p99 of when the server process read it, the drift and the
achieved rate. When ``aiperf`` is importable, the same trace, exported in the Mooncake
format, is also sent by AIPerf's fixed-schedule mode against the same server, and its achieved
request rate is printed beside ours; otherwise that column says why it is missing.

    python benchmarks/replay_fidelity.py                     # 100, 500, 1000, 2000 req/s, 3 s
    python benchmarks/replay_fidelity.py --rates 1000 --seconds 5 --no-aiperf
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import multiprocessing
import os
import resource
import selectors
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from llmtraces.formats import get_writer
from llmtraces.replay.runner import Replay, ReplayConfig
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


#: Linux's SO_TIMESTAMPNS (not in the socket module): recvmsg then carries the kernel's receive
#: time (CLOCK_REALTIME) of what it returns, so the server's own scheduling delays drop out
SO_TIMESTAMPNS = 35


class _Conn:
    """One client connection: unparsed bytes, and when the pending request's head was
    complete (socket time, read time)."""

    def __init__(self) -> None:
        self.buf = b""
        self.head_at: tuple[float, float] | None = None


class _Responder:
    """Parses pipelined HTTP/1.1 requests (Content-Length bodies) and answers each at once.
    Each POST's arrival is logged: when its head was complete at the socket (the kernel's
    receive time of the read that completed it, on CLOCK_MONOTONIC, which the replayer's
    ``perf_counter`` shares on one host), when this process read it, and its
    ``X-Request-Id`` (None without one); ``GET /times`` hands the log over and clears it."""

    def __init__(self) -> None:
        self.log: list[tuple[float, float, int | None]] = []
        self.sel = selectors.DefaultSelector()

    def serve(self, port_out: Any) -> None:
        """Listen on 127.0.0.1 (the port goes to ``port_out``) and answer, forever."""
        lsock = socket.create_server(("127.0.0.1", 0), backlog=4096)
        lsock.setblocking(False)
        self.sel.register(lsock, selectors.EVENT_READ, None)
        port_out.put(lsock.getsockname()[1])
        while True:
            for key, _ in self.sel.select():
                if key.data is None:
                    sock, _ = lsock.accept()
                    sock.setblocking(True)  # read only when readable; small writes
                    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self.sel.register(sock, selectors.EVENT_READ, _Conn())
                else:
                    self._read(key.fileobj, key.data)  # type: ignore[arg-type]

    def _read(self, sock: socket.socket, conn: _Conn) -> None:
        read_at = time.perf_counter()
        try:
            data, anc, _, _ = sock.recvmsg(1 << 16, 256)
        except OSError:
            data, anc = b"", []
        if not data:
            self.sel.unregister(sock)
            sock.close()
            return
        at = read_at
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", raw[:16])
                at = sec + nsec * 1e-9 - (time.time() - time.perf_counter())
        conn.buf += data
        while (end := conn.buf.find(b"\r\n\r\n")) >= 0:
            head = conn.buf[:end].lower()
            length = 0
            if (i := head.find(b"content-length:")) >= 0:
                length = int(head[i + 15:].split(b"\r\n", 1)[0])
            if conn.head_at is None:
                conn.head_at = (at, read_at)
            if len(conn.buf) < end + 4 + length:
                return
            if head.startswith(b"post"):
                i = head.find(b"x-request-id:")
                value = head[i + 13:].split(b"\r\n", 1)[0].strip() if i >= 0 else b""
                # ours are the trace's integer ids; AIPerf sends its own UUIDs (not matched)
                rid = int(value) if value.isdigit() else None
                self.log.append((*conn.head_at, rid))
            conn.head_at = None
            conn.buf = conn.buf[end + 4 + length:]
            if head.startswith(b"get /times"):
                body = json.dumps(self.log).encode()
                self.log.clear()
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                             + body)
            else:
                sock.sendall(_MODELS if head.startswith(b"get") else _POST)


def _serve(port_out: Any, cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    _Responder().serve(port_out)


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
    """AIPerf's fixed-schedule replay of the same trace: its achieved request rate, and its
    CPU per request (all its processes, start-up included, from ``RUSAGE_CHILDREN``)."""
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
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
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
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        if rate is not None:
            return f"{rate:,.0f} req/s, {cpu * 1000 / table.num_rows:.2f} cpu ms/req"
    return "aiperf ran; no request_throughput in its export"


def _server_times(url: str) -> list[tuple[float, float, int | None]]:
    """The responder's arrival log since the last call (and clear it)."""
    with urllib.request.urlopen(url + "/times", timeout=30) as resp:
        return [(float(t), float(r), rid) for t, r, rid in json.loads(resp.read())]


def _pct(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``, nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def server_lateness(out: Path, t0: float, log: list[tuple[float, float, int | None]],
                    read: bool = False) -> list[float]:
    """Per request, the head's arrival at the server's socket (``read``: when the server read
    it) - scheduled time, in ms. Requests are matched by ``X-Request-Id`` when the replayer
    sends one; otherwise the k-th arrival is matched with the k-th scheduled request."""
    rows = pq.read_table(out / "requests.parquet", columns=["request_id", "scheduled_s"])
    due = dict(zip(rows["request_id"].to_pylist(), rows["scheduled_s"].to_pylist(), strict=True))
    got = [(r if read else at, rid) for at, r, rid in log]
    if got and all(rid is not None for _, rid in got):
        return [(at - t0 - due[rid]) * 1000.0 for at, rid in got if rid in due]
    return [(at - t0 - d) * 1000.0 for at, d in
            zip(sorted(at for at, _ in got), sorted(due.values()), strict=False)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="100,500,1000,2000")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--no-aiperf", action="store_true", help="skip the AIPerf column")
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
          f"python {sys.version.split()[0]}; load {os.getloadavg()[0]:.2f}")
    print("lateness: client = sent - scheduled (our send call); srv = request head at the "
          "server's socket (kernel receive time) - scheduled; read = when the server read it")
    print(f"{'rate':>6} {'reqs':>6} {'cpu ms/req':>10} {'sending':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8} {'>1ms':>7} {'srv p50':>8} {'srv p99':>8} {'srv max':>8} "
          f"{'read p99':>8} {'drift ms':>9} {'achieved':>10}  aiperf fixed-schedule")
    try:
        for rate in [float(r) for r in args.rates.split(",")]:
            table = constant_rate(rate, args.seconds)
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "out"
                _server_times(url)  # clear the log
                started = time.perf_counter()
                run = Replay(table, ReplayConfig(endpoint=url, timeout_s=30, grace_s=5), out)
                s = run.run()
                cpu_ms = (time.process_time() - run.cpu0) * 1000.0 / table.num_rows
                send_ms = getattr(run, "cpu_sending", math.nan) * 1000.0 / table.num_rows
                wall = time.perf_counter() - started
                log = _server_times(url)
                srv = server_lateness(out, run.t0, log)
                srv_read = server_lateness(out, run.t0, log, read=True)
                f, m = s["fidelity"], s["metrics"]
                late = f["lateness_ms"]
                ok = m["requests"]["ok"]
                theirs = "skipped" if args.no_aiperf else _aiperf(table, url, Path(tmp))
            print(f"{rate:>6.0f} {table.num_rows:>6} {cpu_ms:>10.3f} {send_ms:>8.3f} "
                  f"{late['p50']:>8.3f} "
                  f"{late['p99']:>8.3f} {late['max']:>8.2f} "
                  f"{f['late_over_1ms']:>7.2%} {_pct(srv, 50):>8.3f} {_pct(srv, 99):>8.3f} "
                  f"{max(srv, default=float('nan')):>8.2f} {_pct(srv_read, 99):>8.3f} "
                  f"{f['drift_ms']:>9.2f} "
                  f"{m['achieved_rate_rps']:>10,.1f}  {theirs}"
                  + ("" if ok == table.num_rows else f"  ({table.num_rows - ok} failed)")
                  + ("" if len(srv) == table.num_rows else f"  ({len(srv)} seen by server)")
                  + f"  [{wall:.1f} s, load {os.getloadavg()[0]:.2f}]", flush=True)
    finally:
        proc.kill()
        proc.join(5)


if __name__ == "__main__":
    main()
