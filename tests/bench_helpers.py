"""Shared by the bench tests: a trace with evenly spaced arrivals and fixed lengths (so
serve-sim's capacity follows from its documented model), and short point settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from llmtraces.formats.parquet import write
from llmtraces.schema import TraceStream, make_batch, row_index
from llmtraces.testing import tiny_metadata

#: serve-sim for the capacity tests: 4 slots, 10 ms per decode iteration whatever the batch
#: (no batch penalty), prefill negligible, a queue that never refuses
SIM = {"batch_slots": 4, "decode_tps": 100.0, "batch_penalty": 0.0, "prefill_tps": 1e6,
       "max_queue": 1024, "prefix_cache": False}
#: the same settings as ``serve-sim`` flags (for a ``sim`` engine)
SIM_ARGS = ["--batch-slots", "4", "--decode-tps", "100", "--batch-penalty", "0",
            "--prefill-tps", "1000000", "--max-queue", "1024", "--no-prefix-cache"]
#: short points; a client late by up to 50 ms still counts as keeping up (the default, 10 ms,
#: is for a machine the benchmark has to itself, not a shared 2-core CI runner)
MEASURE = {"warmup_s": 0.3, "measure_s": 1.0, "min_requests": 25, "drain_s": 0.5,
           "cooldown_s": 0.0, "late_ms": 50.0, "late_share": 0.05}
#: output tokens per request
OUT = 11


def sim_capacity_rps() -> float:
    """serve-sim's capacity with :data:`SIM` (docs/servers.md, "The performance model"): once
    requests queue, each is admitted when an iteration starts, gets its first token at that
    iteration's end (prefill: no time) and its last OUT - 1 iterations later, and its slot is
    free at the start of the next: OUT iterations of 1 / decode_tps s per request and slot,
    so 4 slots serve 4 * 100 / 11 = 36.4 requests/s. Above it the queue, and so TTFT, grow
    without bound; below it nothing waits longer than one iteration."""
    return SIM["batch_slots"] * SIM["decode_tps"] / OUT


def uniform_trace(path: Path, n: int = 4000, gap_us: int = 10_000, out: int = OUT) -> Path:
    """A unified trace of ``n`` requests ``gap_us`` apart, 8 input and ``out`` output tokens."""
    table = pa.Table.from_batches([make_batch(n, {
        "request_id": row_index(0, n), "source_row": row_index(0, n),
        "arrival_us": [i * gap_us for i in range(n)], "input_tokens": [8] * n,
        "output_tokens": [out] * n})])
    meta = tiny_metadata()
    meta.update(rows=n, trace="uniform")
    write(TraceStream(iter(table.to_batches()), meta), path)
    return path


def spec_data(trace: Path, endpoint: str, **changes: Any) -> dict[str, Any]:
    """A small sweep spec (fixed points against a url engine) as decoded TOML."""
    data: dict[str, Any] = {
        "name": "t", "measure": MEASURE,
        "slo": {"ttft_ms": 50.0, "tpot_ms": None, "attainment": 0.9},
        "telemetry": {"gpu": "off"}, "workload": {"trace": str(trace)},
        "engine": [{"id": "sim", "kind": "url", "endpoint": endpoint}],
        "load": {"rps": [15.0, 25.0, 60.0]}}
    data.update(changes)
    return data


def toml_of(data: dict[str, Any]) -> str:
    """The few TOML shapes :func:`spec_data` uses (no TOML writer is a dependency)."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()
                                    if x is not None) + " }"
        return repr(v)

    lines, tables = [], []
    for key, v in data.items():
        if isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                tables.append(f"[[{key}]]\n" + "\n".join(f"{k} = {value(x)}"
                                                        for k, x in item.items()
                                                        if x is not None))
        elif v is not None:
            lines.append(f"{key} = {value(v)}")
    return "\n".join(lines) + "\n\n" + "\n\n".join(tables) + "\n"
