"""Achieved rate of ``llmtraces replay --workers N`` against a near-zero-latency server (run
by hand; see benchmarks/README.md).

The server is ``replay_fidelity.py``'s raw-asyncio responder (every POST answered at once with
a 1-token SSE stream) in a child process. For each offered rate and worker count, a
constant-rate trace of ``rate x seconds`` requests is replayed with that many worker
processes; the achieved rate (``(sent - 1) / (last send - first send)``), the dispatch
lateness, and each worker's CPU per request (process CPU time from the agreed start to its
end, divided by its requests) are printed. ``1000 / cpu ms per request`` is the rate one core
sustains. With ``--pin-server`` the server gets the last core to itself and the workers share
the others; by default nothing is pinned (a 2-core machine has no core to spare).

    python benchmarks/replay_workers.py                            # 1, 2 workers; 1k-8k req/s
    python benchmarks/replay_workers.py --workers 1,2,4 --rates 2000,4000 --seconds 3
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from replay_fidelity import _serve, constant_rate

from llmtraces.replay.runner import ReplayConfig
from llmtraces.replay.workers import replay_workers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--rates", default="1000,2000,4000,8000")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--pin-server", action="store_true")
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu = cpus[-1] if args.pin_server and len(cpus) >= 2 else None
    if server_cpu is not None:
        os.sched_setaffinity(0, set(cpus[:-1]))  # the workers inherit it
    ctx = multiprocessing.get_context("spawn")
    ports: Any = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(ports, server_cpu), daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{ports.get(timeout=30)}"
    print(f"server {url} on cpu {server_cpu if server_cpu is not None else 'any'}; workers "
          f"on cpus {sorted(os.sched_getaffinity(0))}; {os.cpu_count()} cores; load "
          f"{os.getloadavg()[0]:.1f}; python {sys.version.split()[0]}")
    print(f"{'offered':>8} {'workers':>7} {'achieved':>10} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8} {'>1ms':>7} {'cpu ms/req':>10} {'per-core req/s':>14}")
    try:
        for rate in [float(r) for r in args.rates.split(",")]:
            table = constant_rate(rate, args.seconds)
            for n in [int(w) for w in args.workers.split(",")]:
                with tempfile.TemporaryDirectory() as tmp:
                    started = time.perf_counter()
                    s = replay_workers(table, Path(tmp) / "out", ReplayConfig(
                        endpoint=url, timeout_s=30, grace_s=5), n)
                    wall = time.perf_counter() - started
                f, m = s["fidelity"], s["metrics"]
                late = f["lateness_ms"]
                per = [w["cpu_ms_per_request"] for w in s["workers"]["per_worker"]
                       if w.get("cpu_ms_per_request")]
                cpu = sum(per) / len(per) if per else float("nan")
                ok = m["requests"]["ok"]
                print(f"{rate:>8.0f} {n:>7} {m['achieved_rate_rps']:>10,.0f} "
                      f"{late['p50']:>8.3f} {late['p99']:>8.3f} {late['max']:>8.2f} "
                      f"{f['late_over_1ms']:>7.2%} {cpu:>10.3f} {1000 / cpu:>14,.0f}"
                      + ("" if ok == table.num_rows else f"  ({table.num_rows - ok} failed)")
                      + f"  [{wall:.1f} s]", flush=True)
    finally:
        proc.kill()
        proc.join(5)


if __name__ == "__main__":
    main()
