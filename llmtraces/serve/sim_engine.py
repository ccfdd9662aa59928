"""The engine model of ``serve-sim``: continuous batching, KV reservations, the queue, prefix
reuse and fault draws, as plain logic driven by an injectable clock (testable without sockets
or real time); the HTTP layer is :mod:`llmtraces.serve.sim`, ``docs/servers.md`` the full model.

- A request holds one of ``batch_slots`` slots and reserves ``prompt + max_tokens`` KV tokens
  of ``kv_tokens`` from admission to its end. One that cannot be admitted waits in a FIFO queue
  (head-of-line: nobody overtakes); past ``max_queue`` waiting it is refused at once (503 by
  default, ``reject_status``). One that could never fit is refused as too long (400).
- The engine runs iterations. Each gives one token to every sequence past prefill and
  processes up to ``prefill_chunk`` prompt tokens (0: all pending prompts) of waiting
  prefills, FIFO. An iteration takes ``p / prefill_tps + t_dec(b)`` seconds, where ``p`` is
  the prompt tokens processed and ``t_dec(b) = (1 + batch_penalty * (b - 1)) / decode_tps``
  for ``b >= 1`` decoding sequences (0 when none). A sequence's first token comes at the end
  of the iteration that finishes its prompt.
- Prefix reuse: prompts are cut into blocks of ``block_tokens`` units, each named by a hash
  chained over the blocks before it; leading blocks found in an LRU of ``prefix_cache_tokens``
  are not prefilled (at least one prompt token always is).
- Output length is ``max_tokens`` with ``ignore_eos``, else a length drawn uniformly from
  ``[max(1, min_tokens), max_tokens]`` by a generator seeded with ``seed`` and the request's
  prompt, so the same request always gets the same answer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import math
import random
import struct
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ._simconfig import FAULTS, SimConfig

__all__ = ["Clock", "Engine", "FaultDraw", "Iteration", "LoopClock", "Seq", "block_hashes",
           "make_seq"]

#: seconds the engine may fall behind its schedule before it stops catching up.
RESYNC_S = 0.1


class Clock(Protocol):
    """What the engine needs of time: a monotonic reading and a way to wait."""

    def time(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    def sleep(self, seconds: float) -> Awaitable[None]:
        """Wait ``seconds`` (0: just yield to the event loop)."""
        ...


class LoopClock:
    """The real clock: the running event loop's time and ``asyncio.sleep``."""

    def time(self) -> float:
        """The running event loop's monotonic time."""
        return asyncio.get_running_loop().time()

    def sleep(self, seconds: float) -> Awaitable[None]:
        """``asyncio.sleep(seconds)``."""
        return asyncio.sleep(seconds)


@dataclass
class Seq:
    """One request inside the engine."""

    rid: str
    prompt_tokens: int
    #: prefix-cache block hashes of the prompt (chained), and the tokens per unit.
    blocks: list[bytes]
    units_per_token: float
    #: leading blocks a lookup may hit: at least one prompt unit is always prefilled.
    max_hit_blocks: int
    max_tokens: int
    output_len: int
    arrival: float
    cached: int = 0
    prefill_left: int = -1
    produced: int = 0
    finished: bool = False
    cancelled: bool = False
    aborted: bool = False
    tokens: asyncio.Queue[int | None] = field(default_factory=asyncio.Queue)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def reserve(self) -> int:
        """KV tokens held from admission to the end."""
        return self.prompt_tokens + self.max_tokens

    def emit(self) -> None:
        """One more output token; the last one ends the sequence."""
        self.produced += 1
        self.tokens.put_nowait(1)
        if self.produced >= self.output_len:
            self.finished = True
            self.tokens.put_nowait(None)
            self.done.set()

    def abort(self) -> None:
        """End the sequence without finishing it (server stopping)."""
        self.aborted = True
        self.tokens.put_nowait(None)
        self.done.set()


def block_hashes(units: list[int], size: int) -> list[bytes]:
    """Chained hashes of the full blocks of ``size`` units in ``units`` (prefix-cache keys)."""
    out, prev = [], b""
    for start in range(0, len(units) - size + 1, size):
        h = hashlib.blake2b(prev, digest_size=16)
        h.update(struct.pack(f"<{size}I", *(u & 0xFFFFFFFF for u in units[start:start + size])))
        prev = h.digest()
        out.append(prev)
    return out


def make_seq(cfg: SimConfig, rid: str, units: list[int], prompt_tokens: int, max_tokens: int,
             min_tokens: int, ignore_eos: bool, chat: bool,
             arrival: float) -> tuple[Seq, random.Random]:
    """The engine sequence of one request and its seeded generator (length drawn, then text)."""
    digest = hashlib.blake2b(struct.pack(f"<{len(units)}I", *(
        u & 0xFFFFFFFF for u in units)), digest_size=16).hexdigest()
    rng = random.Random(f"{cfg.seed}:{digest}:{prompt_tokens}:{max_tokens}:{min_tokens}:{chat}")
    length = max_tokens if ignore_eos else rng.randint(max(1, min_tokens), max_tokens)
    seq = Seq(rid=rid, prompt_tokens=prompt_tokens, blocks=block_hashes(units, cfg.block_tokens),
              units_per_token=(len(units) / prompt_tokens) or 1.0,
              max_hit_blocks=max(0, len(units) - 1) // cfg.block_tokens,
              max_tokens=max_tokens, output_len=length, arrival=arrival)
    return seq, rng


class FaultDraw:
    """Seeded fault injection: whether a request fails (``fail_rate``) and how (``faults``)."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self._rng = random.Random(f"{cfg.seed}:faults")

    def draw(self) -> str | None:
        """The next request's fault mode, or None for a healthy one."""
        if self.cfg.fail_rate <= 0:
            return None
        draw, mode = self._rng.random(), self._rng.choice(self.cfg.faults)
        return mode if draw < self.cfg.fail_rate else None


@dataclass
class Iteration:
    """One planned engine iteration: its duration and who gets a token at its end."""

    seconds: float
    prefilled: int
    done_prefill: list[Seq]
    decoders: list[Seq]


class Engine:
    """The continuous-batching scheduler: slots, KV reservations, the queue, iterations."""

    def __init__(self, cfg: SimConfig, clock: Clock | None = None) -> None:
        self.cfg = cfg
        self.clock: Clock = clock or LoopClock()
        self.running: list[Seq] = []
        self.waiting: collections.deque[Seq] = collections.deque()
        self.kv_used = 0
        cache_tokens = cfg.kv_tokens if cfg.prefix_cache_tokens is None \
            else cfg.prefix_cache_tokens
        self.cache_blocks = cache_tokens // cfg.block_tokens if cfg.prefix_cache else 0
        self.cache: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self.stats: dict[str, Any] = {
            "requests": 0, "completed": 0, "cancelled": 0, "rejected_queue_full": 0,
            "rejected_too_long": 0, "bad_requests": 0, "unauthorized": 0,
            "faults": dict.fromkeys(FAULTS, 0), "prompt_tokens": 0, "cached_tokens": 0,
            "completion_tokens": 0, "iterations": 0, "peak_running": 0, "peak_waiting": 0,
            "peak_kv_used": 0, "prefix_cache_resets": 0}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the iteration loop on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def close(self) -> None:
        """Stop iterating and end every sequence still in the engine."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for seq in [*self.running, *self.waiting]:
            if not seq.finished:
                seq.abort()
        self.running.clear()
        self.waiting.clear()

    def offer(self, seq: Seq) -> Literal["ok", "too_long", "queue_full"]:
        """Take a new request: ``ok`` (admitted or queued), or why it is refused at once."""
        if seq.reserve > self.cfg.kv_tokens:
            self.stats["rejected_too_long"] += 1
            return "too_long"
        if not self.submit(seq):
            self.stats["rejected_queue_full"] += 1
            return "queue_full"
        self.stats["prompt_tokens"] += seq.prompt_tokens
        return "ok"

    def submit(self, seq: Seq) -> bool:
        """Admit ``seq`` now, or queue it; False when the queue is full (refuse it)."""
        if not self.waiting and self._fits(seq):
            self._admit(seq)
            return True
        if len(self.waiting) >= self.cfg.max_queue:
            return False
        self.waiting.append(seq)
        self.stats["peak_waiting"] = max(self.stats["peak_waiting"], len(self.waiting))
        return True

    def cancel(self, seq: Seq) -> None:
        """The client went away: drop ``seq`` (from the queue now, from a slot at the next
        iteration boundary)."""
        if seq.finished or seq.cancelled:
            return
        seq.cancelled = True
        self.stats["cancelled"] += 1
        with contextlib.suppress(ValueError):
            self.waiting.remove(seq)
        self._wake.set()

    def _fits(self, seq: Seq) -> bool:
        return (len(self.running) < self.cfg.batch_slots
                and self.kv_used + seq.reserve <= self.cfg.kv_tokens)

    def _admit(self, seq: Seq) -> None:
        self.running.append(seq)
        self.kv_used += seq.reserve
        self.stats["peak_running"] = max(self.stats["peak_running"], len(self.running))
        self.stats["peak_kv_used"] = max(self.stats["peak_kv_used"], self.kv_used)
        self._wake.set()

    def _reap(self) -> None:
        """Free the slots and KV of ended sequences, then admit from the queue head."""
        keep = []
        for seq in self.running:
            if seq.finished or seq.cancelled:
                self.kv_used -= seq.reserve
                if seq.finished:
                    self.stats["completed"] += 1
            else:
                keep.append(seq)
        self.running = keep
        while self.waiting and self._fits(self.waiting[0]):
            self._admit(self.waiting.popleft())

    def _lookup(self, seq: Seq) -> None:
        """Set the cached prefix of ``seq`` from the leading blocks found in the cache."""
        hits = 0
        if self.cache_blocks:
            for h in seq.blocks[:seq.max_hit_blocks]:
                if h not in self.cache:
                    break
                self.cache.move_to_end(h)
                hits += 1
        units = hits * self.cfg.block_tokens
        cached = units if seq.units_per_token == 1.0 else int(units / seq.units_per_token)
        seq.cached = max(0, min(cached, seq.prompt_tokens - 1))
        seq.prefill_left = seq.prompt_tokens - seq.cached
        self.stats["cached_tokens"] += seq.cached

    def _insert(self, seq: Seq) -> None:
        """Put the prompt's blocks in the cache (most recent last), evicting the oldest."""
        if not self.cache_blocks:
            return
        for h in seq.blocks:
            self.cache[h] = None
            self.cache.move_to_end(h)
        while len(self.cache) > self.cache_blocks:
            self.cache.popitem(last=False)

    def reset_prefix_cache(self) -> int:
        """Empty the prefix-cache LRU (sequences already admitted keep their hits); return the
        blocks dropped."""
        dropped = len(self.cache)
        self.cache.clear()
        self.stats["prefix_cache_resets"] += 1
        return dropped

    def metrics_text(self, model: str) -> str:
        """The scheduler's state in Prometheus text format, under vLLM's metric names (so a
        tool reading vLLM reads serve-sim): requests running and waiting, KV-cache usage in
        [0, 1], and token and request counters."""
        label = '{model_name="' + model.replace("\\", "\\\\").replace('"', '\\"') + '"}'
        rows = [
            ("vllm:num_requests_running", "gauge", "Requests in a batch slot.",
             len(self.running)),
            ("vllm:num_requests_waiting", "gauge", "Requests waiting for admission.",
             len(self.waiting)),
            ("vllm:kv_cache_usage_perc", "gauge", "KV reserved / KV capacity (1 = full).",
             self.kv_used / self.cfg.kv_tokens),
            ("vllm:prompt_tokens_total", "counter", "Prompt tokens of admitted requests.",
             self.stats["prompt_tokens"]),
            ("vllm:generation_tokens_total", "counter", "Output tokens produced.",
             self.stats["completion_tokens"]),
            ("vllm:prefix_cache_hits_total", "counter", "Prompt tokens found in the cache.",
             self.stats["cached_tokens"]),
            ("vllm:request_success_total", "counter", "Requests that ended normally.",
             self.stats["completed"]),
        ]
        out = []
        for name, kind, doc, value in rows:
            family = name.removesuffix("_total") if kind == "counter" else name
            out += [f"# HELP {family} {doc}", f"# TYPE {family} {kind}",
                    f"{name}{label} {float(value)!r}"]
        return "\n".join(out) + "\n"

    def plan(self) -> Iteration | None:
        """Free ended sequences, admit from the queue and plan the next iteration (prefill
        chunks taken FIFO); None when nothing is running."""
        self._reap()
        if not self.running:
            return None
        decoders = [s for s in self.running if s.prefill_left == 0]
        budget = self.cfg.prefill_chunk or math.inf
        prefilled, done_prefill = 0, []
        for seq in self.running:
            if seq.prefill_left == 0:
                continue
            if budget <= 0:
                break
            if seq.prefill_left < 0:
                self._lookup(seq)
            take = int(min(seq.prefill_left, budget))
            seq.prefill_left -= take
            budget -= take
            prefilled += take
            if seq.prefill_left == 0:
                done_prefill.append(seq)
        seconds = self.cfg.prefill_s(prefilled) + self.cfg.decode_step_s(len(decoders))
        return Iteration(seconds, prefilled, done_prefill, decoders)

    def finish(self, it: Iteration) -> None:
        """End iteration ``it``: cache the finished prompts, one token to each live sequence."""
        self.stats["iterations"] += 1
        for seq in it.done_prefill:
            self._insert(seq)
        for seq in (*it.done_prefill, *it.decoders):
            if not seq.cancelled:
                seq.emit()
                self.stats["completion_tokens"] += 1

    async def run(self) -> None:
        """Iterate while there is work, each iteration lasting its time on the clock; sleep
        until an arrival otherwise."""
        clock = self.clock
        deadline = clock.time()
        while True:
            it = self.plan()
            if it is None:
                self._wake.clear()
                await self._wake.wait()
                deadline = clock.time()
                continue
            now = clock.time()
            if now - deadline > RESYNC_S:
                deadline = now
            deadline += it.seconds
            await clock.sleep(max(0.0, deadline - clock.time()))
            self.finish(it)
