"""Wall time of ``llmtraces bench capacity --quick`` against a local llama.cpp server, and the
issue's check of its answer: independent ``llmtraces replay`` runs at half and twice the
capacity found (run by hand; see benchmarks/README.md).

The workload is the bundled Azure 2023 code trace (its arrivals and bursts as they are), with
lengths cut to what SmolLM2-135M serves on one CPU thread: input tokens / 64 (1 to 32), output
tokens at most 16. The server is ``llmtraces serve-llamacpp`` (2 slots, 1 thread, no host
prompt cache), started by the user (``--engine url``, the default) or by the bench itself
(``--engine llamacpp``, which includes its start-up in the wall time).

    python benchmarks/bench_quick.py                      # url engine, ttft=1500,tpot=150
    python benchmarks/bench_quick.py --engine llamacpp
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from llmtraces.bench.engines.base import llmtraces_cli
from llmtraces.formats.parquet import read_metadata, write
from llmtraces.paths import bundled_dir
from llmtraces.schema import TraceStream, empty_table

SERVER = ["--parallel", "2", "--ctx", "1024", "--threads", "1", "--cache-ram", "0"]


def small_trace(folder: Path) -> Path:
    """The bundled code trace converted, then its lengths cut to SmolLM2-on-CPU size."""
    csv = bundled_dir() / "azure-llm-2023" / "AzureLLMInferenceTrace_code.csv"
    full = folder / "code.parquet"
    subprocess.run([*llmtraces_cli(), "convert", str(csv), "--to", "parquet", "-o", str(full),
                    "-q"], check=True)
    table = pq.read_table(full)
    inp = pc.max_element_wise(pc.min_element_wise(
        pc.divide(table["input_tokens"], 64), 32), 1)
    out = pc.min_element_wise(table["output_tokens"], 16)
    table = table.set_column(table.schema.get_field_index("input_tokens"), "input_tokens",
                             inp.cast(table.schema.field("input_tokens").type))
    table = table.set_column(table.schema.get_field_index("output_tokens"), "output_tokens",
                             out.cast(table.schema.field("output_tokens").type))
    meta = read_metadata(full)
    meta.update(trace="code-small")
    dest = folder / "code-small.parquet"
    table = table.cast(empty_table().schema)   # Parquet names list items 'element'
    write(TraceStream(iter(table.to_batches()), meta), dest)
    return dest


def start_server(slots: Path) -> tuple[subprocess.Popen[str], str]:
    """``serve-llamacpp`` in its own process group; its URL once it is listening."""
    proc = subprocess.Popen(
        [*llmtraces_cli(), "serve-llamacpp", "--port", "0", "--metrics", "--slot-save-path",
         str(slots), *SERVER], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            return proc, found.group(1)
    raise SystemExit("serve-llamacpp exited before it was ready")


def replay_share(trace: Path, url: str, rps: float, slo: str, out: Path) -> float:
    """Goodput share of a plain 30 s replay at ``rps``."""
    subprocess.run([*llmtraces_cli(), "replay", str(trace), "--endpoint", url, "--rps",
                    f"{rps:.4f}", "--duration", "30", "--slo", slo, "-o", str(out), "-q"],
                   check=True, stdout=subprocess.DEVNULL)
    return float(json.loads((out / "summary.json").read_text())["metrics"]["goodput"]["share"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", choices=("url", "llamacpp"), default="url")
    ap.add_argument("--slo", default="ttft=1500,tpot=150")
    ap.add_argument("--keep", type=Path, help="Work in this folder and keep it (an empty "
                    "one) instead of a temporary folder.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-quick-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        trace = small_trace(work)
        proc, url = (None, "")
        if args.engine == "url":
            (work / "slots").mkdir()
            proc, url = start_server(work / "slots")
            target = ["--engine", "url", "--endpoint", url]
        else:
            target = ["--engine", "llamacpp", *[f"--engine-arg={a}" for a in SERVER]]
        try:
            out = work / "cap"
            t0 = time.monotonic()
            subprocess.run([*llmtraces_cli(), "bench", "capacity", str(trace), *target,
                            "--slo", args.slo, "--quick", "--telemetry", "off", "-o", str(out)],
                           check=True)
            wall = time.monotonic() - t0
            cap = json.loads((out / "capacity.json").read_text())
            lo = (cap.get("capacity") or {}).get("rate_rps")
            hi = (cap.get("first_failing") or {}).get("rate_rps")
            print(f"\nbench capacity --quick ({args.engine}): {wall:.0f} s wall, "
                  f"{len(cap['history'])} points, status {cap['status']}, capacity {lo} req/s, "
                  f"first failing {hi} req/s, load {os.getloadavg()[0]:.2f}")
            if lo and args.engine == "url":
                for factor in (0.5, 2.0):
                    share = replay_share(trace, url, factor * lo, args.slo,
                                         work / f"replay-{factor}")
                    print(f"replay at {factor:g} x capacity ({factor * lo:.2f} req/s): "
                          f"goodput share {share:.3f}")
        finally:
            if proc is not None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()
