"""A server's Prometheus ``/metrics`` text: parsed into samples, and normalised to the three
numbers a benchmark watches (requests running, requests waiting, KV-cache usage in [0, 1]).

Names by engine, checked in the engines' sources (see ``docs/bench.md``, "Engines"):
vLLM ``vllm:num_requests_running``/``_waiting`` and ``vllm:kv_cache_usage_perc`` (named
``vllm:gpu_cache_usage_perc`` before 0.9, both exported for a while); SGLang
``sglang:num_running_reqs``, ``sglang:num_queue_reqs``, ``sglang:token_usage``; llama.cpp
``llamacpp:requests_processing``/``_deferred`` and ``llamacpp:kv_cache_usage_ratio`` (absent
from some builds). serve-sim exports vLLM's names. Series of one name (one per engine or
model label) are summed for the counts and the largest is taken for the KV usage.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["KV_USAGE", "RUNNING", "WAITING", "ServerLoad", "parse", "server_load"]

#: candidate names, first found wins (a server exporting an old and a new name counts once).
RUNNING = ("vllm:num_requests_running", "sglang:num_running_reqs",
           "llamacpp:requests_processing")
WAITING = ("vllm:num_requests_waiting", "sglang:num_queue_reqs", "llamacpp:requests_deferred")
KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage",
            "llamacpp:kv_cache_usage_ratio")

_LINE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{.*\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class ServerLoad:
    """Requests running and waiting, and KV-cache usage (0-1); None where not exported."""

    running: float | None
    waiting: float | None
    kv_usage: float | None


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """``name -> [(labels, value), ...]`` of every sample line; comments and malformed lines
    are skipped (a scrape is best effort, and the raw text is kept beside the numbers)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            continue
        name, labels, raw = m.groups()
        try:
            value = float(raw)
        except ValueError:
            continue
        pairs = dict(_LABEL.findall(labels)) if labels else {}
        out.setdefault(name, []).append((pairs, value))
    return out


def _first(samples: dict[str, list[tuple[dict[str, str], float]]], names: tuple[str, ...],
           largest: bool = False) -> float | None:
    for name in names:
        values = [v for _, v in samples.get(name, ()) if math.isfinite(v)]
        if values:
            return max(values) if largest else sum(values)
    return None


def server_load(samples: dict[str, list[tuple[dict[str, str], float]]]) -> ServerLoad:
    """The normalised running/waiting/KV numbers of one parsed scrape."""
    return ServerLoad(running=_first(samples, RUNNING), waiting=_first(samples, WAITING),
                      kv_usage=_first(samples, KV_USAGE, largest=True))
