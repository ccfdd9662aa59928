"""``serve-sim``: a simulated OpenAI-compatible LLM server with a documented performance model.

Endpoints: ``POST /v1/completions``, ``POST /v1/chat/completions`` (streaming SSE or one JSON
body), ``GET /v1/models``, ``GET /health`` and ``GET /sim/stats`` (the scheduler's counters).
No model runs: the server schedules each request through a simulated continuous-batching
engine whose iterations take real time (``asyncio`` sleeps on the real clock), so a client
measures real TTFT, inter-token gaps and end-to-end latency.

The model, in short (``docs/servers.md`` has the full account):

- A request holds one of ``batch_slots`` slots and reserves ``prompt + max_tokens`` KV tokens
  of ``kv_tokens`` from admission to its end. One that cannot be admitted waits in a FIFO queue
  (head-of-line: nobody overtakes); past ``max_queue`` waiting it is refused at once (503 by
  default, ``reject_status``) with a JSON error. One that could never fit gets 400.
- The engine runs iterations. Each gives one token to every sequence past prefill and
  processes up to ``prefill_chunk`` prompt tokens (0: all pending prompts) of waiting
  prefills, FIFO. An iteration takes ``p / prefill_tps + t_dec(b)`` seconds, where ``p`` is
  the prompt tokens processed and ``t_dec(b) = (1 + batch_penalty * (b - 1)) / decode_tps``
  for ``b >= 1`` decoding sequences (0 when none). A sequence's first token comes at the end
  of the iteration that finishes its prompt.
- Prefix reuse: prompts are cut into blocks of ``block_tokens`` units, each named by a hash
  chained over the blocks before it; leading blocks found in an LRU of ``prefix_cache_tokens``
  are not prefilled (at least one prompt token always is). ``usage.prompt_tokens_details
  .cached_tokens`` reports the reuse.
- Output length is ``max_tokens`` with ``ignore_eos``, else a length drawn uniformly from
  ``[max(1, min_tokens), max_tokens]`` by a generator seeded with ``seed`` and the request's
  prompt, so the same request always gets the same answer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import json
import math
import random
import signal
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from aiohttp import web

from ._simconfig import FAULTS, SimConfig

__all__ = ["FAULTS", "FAULT_HEADER", "SimConfig", "SimError", "SimServer"]

#: request header that forces a fault mode (or ``none``) for one request.
FAULT_HEADER = "X-Sim-Fault"
#: seconds the engine may fall behind its schedule before it stops catching up.
_RESYNC_S = 0.1
#: the words output text is made of; each output token is one word with a leading space.
_WORDS = (
    "the", "of", "and", "to", "in", "is", "that", "it", "for", "on", "as", "with", "was",
    "at", "by", "be", "this", "from", "or", "an", "are", "not", "but", "have", "which", "one",
    "all", "were", "they", "can", "more", "time", "model", "token", "trace", "server", "batch",
    "cache", "queue", "prompt", "latency", "request", "stream", "block", "slot", "load", "rate",
    "first", "next", "each", "many", "some", "new", "old", "fast", "slow", "long", "short",
    "data", "work", "test", "run", "step", "end",
)


class SimError(Exception):
    """An error answered to the client as an OpenAI-style JSON error body."""

    def __init__(self, status: int, message: str, kind: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param

    def response(self, headers: dict[str, str] | None = None) -> web.Response:
        """The JSON error response: ``{"error": {"message", "type", "param", "code"}}``."""
        body = {"error": {"message": self.message, "type": self.kind, "param": self.param,
                          "code": self.status}}
        return web.json_response(body, status=self.status, headers=headers)


@dataclass
class _Seq:
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


class _Engine:
    """The continuous-batching scheduler: slots, KV reservations, the queue, iterations."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.running: list[_Seq] = []
        self.waiting: collections.deque[_Seq] = collections.deque()
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
            "peak_kv_used": 0}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the iteration loop on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run())

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

    def submit(self, seq: _Seq) -> bool:
        """Admit ``seq`` now, or queue it; False when the queue is full (refuse it)."""
        if not self.waiting and self._fits(seq):
            self._admit(seq)
            return True
        if len(self.waiting) >= self.cfg.max_queue:
            return False
        self.waiting.append(seq)
        self.stats["peak_waiting"] = max(self.stats["peak_waiting"], len(self.waiting))
        return True

    def cancel(self, seq: _Seq) -> None:
        """The client went away: drop ``seq`` (from the queue now, from a slot at the next
        iteration boundary)."""
        if seq.finished or seq.cancelled:
            return
        seq.cancelled = True
        self.stats["cancelled"] += 1
        with contextlib.suppress(ValueError):
            self.waiting.remove(seq)
        self._wake.set()

    def _fits(self, seq: _Seq) -> bool:
        return (len(self.running) < self.cfg.batch_slots
                and self.kv_used + seq.reserve <= self.cfg.kv_tokens)

    def _admit(self, seq: _Seq) -> None:
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

    def _lookup(self, seq: _Seq) -> None:
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

    def _insert(self, seq: _Seq) -> None:
        """Put the prompt's blocks in the cache (most recent last), evicting the oldest."""
        if not self.cache_blocks:
            return
        for h in seq.blocks:
            self.cache[h] = None
            self.cache.move_to_end(h)
        while len(self.cache) > self.cache_blocks:
            self.cache.popitem(last=False)

    async def _run(self) -> None:
        """Iterate while there is work; sleep until an arrival otherwise."""
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        deadline = loop.time()
        while True:
            self._reap()
            if not self.running:
                self._wake.clear()
                await self._wake.wait()
                deadline = loop.time()
                continue
            decoders = [s for s in self.running if s.prefill_left == 0]
            budget = cfg.prefill_chunk or math.inf
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
            step = cfg.prefill_s(prefilled) + cfg.decode_step_s(len(decoders))
            now = loop.time()
            if now - deadline > _RESYNC_S:
                deadline = now
            deadline += step
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            self.stats["iterations"] += 1
            for seq in done_prefill:
                self._insert(seq)
            for seq in (*done_prefill, *decoders):
                if not seq.cancelled:
                    seq.emit()
                    self.stats["completion_tokens"] += 1


@dataclass
class _Request:
    """A parsed and validated request."""

    chat: bool
    stream: bool
    include_usage: bool
    prompt_tokens: int
    units: list[int]
    max_tokens: int
    min_tokens: int
    ignore_eos: bool


def _int_field(body: dict[str, Any], name: str, default: int | None, low: int) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SimError(400, f"{name} must be an integer >= {low} (got {value!r})",
                       "invalid_request_error", name)
    return value


def _word_ids(text: str, vocab: int) -> list[int]:
    """Stand-in token ids of a text prompt: one per whitespace-separated word (crc32 % vocab)."""
    return [zlib.crc32(w.encode("utf-8")) % vocab for w in text.split()]


def _chat_text(messages: Any) -> list[tuple[str, str]]:
    """(role, text) of each chat message; content as a string or a list of text parts."""
    if not isinstance(messages, list) or not messages:
        raise SimError(400, "messages must be a non-empty list", "invalid_request_error",
                       "messages")
    out = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise SimError(400, f"messages[{i}] must be an object with a role",
                           "invalid_request_error", "messages")
        content = msg.get("content")
        if content is None:
            text = ""
        elif isinstance(content, str):
            text = content
        elif isinstance(content, list):
            parts = [p.get("text", "") for p in content
                     if isinstance(p, dict) and p.get("type") == "text"]
            text = " ".join(str(p) for p in parts)
        else:
            raise SimError(400, f"messages[{i}].content must be a string or a list of parts",
                           "invalid_request_error", "messages")
        out.append((msg["role"], text))
    return out


class SimServer:
    """The simulated server on ``host:port`` (port 0 picks a free one).

    Use it in a running event loop (``async with SimServer(...) as srv``) or from synchronous
    code on a background thread (``with SimServer(...) as srv`` or ``start()``/``stop()``);
    ``srv.url`` is the base URL, ``srv.stats()`` the scheduler's counters.
    """

    def __init__(self, config: SimConfig | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, access_log: bool = False, **overrides: Any) -> None:
        self.config = replace(config or SimConfig(), **overrides).check()
        self.host, self.port = host, port
        self._access_log = access_log
        self._counter: Any = None
        if self.config.tokenizer:
            from ..tokenize import load_counter
            self._counter = load_counter(self.config.tokenizer, workers=1)
        self._fault_rng = random.Random(f"{self.config.seed}:faults")
        self._ids = 0
        self._engine: _Engine | None = None
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8000`` (the ``/v1`` paths go under it)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start_async(self) -> SimServer:
        """Bind and start serving on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._engine = _Engine(self.config)
        self._engine.start()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/sim/stats", self._stats)
        self._runner = web.AppRunner(
            app, shutdown_timeout=1.0, handle_signals=False,
            access_log=web.access_logger if self._access_log else None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=4096)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop_async(self) -> None:
        """End every request in flight and close the listening socket."""
        if self._engine is not None:
            await self._engine.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SimServer:
        return await self.start_async()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_async()

    def start(self, timeout: float = 10.0) -> SimServer:
        """Serve from a background thread with its own event loop; return once listening."""
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as exc:  # reported to the caller below
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop_async())
            loop.close()

        self._thread = threading.Thread(target=run, name="llmtraces-serve-sim", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"serve-sim did not start within {timeout} s")
        if failure:
            raise failure[0]
        self._loop = loop
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop a server started with :meth:`start` and wait for its thread."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self, on_ready: Callable[[str], None] | None = None,
                      duration: float | None = None) -> None:
        """Serve on this thread until SIGINT/SIGTERM (or ``duration`` seconds)."""
        async def main() -> None:
            self._stopped = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                # Not possible off the main thread (or on Windows): Ctrl-C then ends it anyway.
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self._stopped.set)
            await self.start_async()
            if on_ready is not None:
                on_ready(self.url)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), duration)
            finally:
                await self.stop_async()

        asyncio.run(main())

    def stats(self) -> dict[str, Any]:
        """A copy of the scheduler's counters (see ``GET /sim/stats``)."""
        if self._engine is None:
            return {}
        if self._thread is not None and self._loop is not None \
                and threading.current_thread() is not self._thread:
            fut = asyncio.run_coroutine_threadsafe(self._snapshot(), self._loop)
            return fut.result(timeout=5)
        return self._snapshot_now()

    async def _snapshot(self) -> dict[str, Any]:
        return self._snapshot_now()

    def _snapshot_now(self) -> dict[str, Any]:
        eng = self._engine
        assert eng is not None
        snap = json.loads(json.dumps(eng.stats))
        snap.update(running=len(eng.running), waiting=len(eng.waiting), kv_used=eng.kv_used,
                    prefix_cache_blocks=len(eng.cache), config=asdict(self.config))
        snap["config"]["api_key"] = "***" if self.config.api_key else None
        return snap

    # -- handlers ----------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self._snapshot_now())

    async def _models(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
        except SimError as exc:
            return exc.response()
        return web.json_response({"object": "list", "data": [{
            "id": self.config.model, "object": "model", "created": 0,
            "owned_by": "llmtraces-sim", "max_model_len": self.config.kv_tokens,
            "vocab_size": self.config.vocab_size}]})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    def _authorize(self, request: web.Request) -> None:
        key = self.config.api_key
        if key is None:
            return
        got = request.headers.get("Authorization", "")
        if not (got.startswith("Bearer ") and hmac.compare_digest(got[7:].encode(),
                                                                  key.encode())):
            assert self._engine is not None
            self._engine.stats["unauthorized"] += 1
            raise SimError(401, "missing or wrong API key (Authorization: Bearer ...)",
                           "authentication_error")

    def _fault(self, request: web.Request) -> str | None:
        """The fault for this request: the header's choice, else a seeded draw."""
        forced = request.headers.get(FAULT_HEADER)
        if forced is not None:
            forced = forced.strip().lower()
            if forced == "none":
                return None
            if forced not in FAULTS:
                raise SimError(400, f"{FAULT_HEADER} must be one of none, {', '.join(FAULTS)} "
                               f"(got {forced!r})", "invalid_request_error")
            return forced
        if self.config.fail_rate <= 0:
            return None
        draw, mode = self._fault_rng.random(), self._fault_rng.choice(self.config.faults)
        return mode if draw < self.config.fail_rate else None

    async def _parse(self, request: web.Request, chat: bool) -> _Request:
        cfg = self.config
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SimError(400, f"request body is not JSON: {exc}",
                           "invalid_request_error") from None
        if not isinstance(body, dict):
            raise SimError(400, "request body must be a JSON object", "invalid_request_error")
        model = body.get("model")
        if model is not None and model != cfg.model:
            raise SimError(404, f"model {model!r} does not exist; this server serves "
                           f"{cfg.model!r}", "model_not_found", "model")
        if _int_field(body, "n", 1, 1) != 1:
            raise SimError(400, "only n = 1 is supported", "invalid_request_error", "n")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise SimError(400, "stream must be a boolean", "invalid_request_error", "stream")
        opts = body.get("stream_options") or {}
        include_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))
        ignore_eos = body.get("ignore_eos", False)
        if not isinstance(ignore_eos, bool):
            raise SimError(400, "ignore_eos must be a boolean", "invalid_request_error",
                           "ignore_eos")
        name = "max_completion_tokens" if chat and "max_completion_tokens" in body \
            else "max_tokens"
        max_tokens = _int_field(body, name, cfg.default_max_tokens, 1)
        min_tokens = _int_field(body, "min_tokens", 0, 0)
        assert max_tokens is not None and min_tokens is not None
        if min_tokens > max_tokens:
            raise SimError(400, f"min_tokens ({min_tokens}) exceeds max_tokens ({max_tokens})",
                           "invalid_request_error", "min_tokens")
        if chat:
            prompt_tokens, units = await self._chat_prompt(body.get("messages"))
        else:
            prompt_tokens, units = await self._completion_prompt(body.get("prompt"))
        if prompt_tokens < 1:
            raise SimError(400, "the prompt is empty", "invalid_request_error",
                           "messages" if chat else "prompt")
        return _Request(chat, stream, include_usage, prompt_tokens, units, max_tokens,
                        min_tokens, ignore_eos)

    async def _count(self, text: str) -> tuple[int, list[int]]:
        units = _word_ids(text, self.config.vocab_size)
        if self._counter is None:
            return len(units), units
        (n,) = await asyncio.to_thread(self._counter.count, [text])
        return int(n), units

    async def _completion_prompt(self, prompt: Any) -> tuple[int, list[int]]:
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
            prompt = prompt[0]
        if isinstance(prompt, str):
            return await self._count(prompt)
        if isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool)
                                            for t in prompt):
            vocab = self.config.vocab_size
            bad = next((t for t in prompt if not 0 <= t < vocab), None)
            if bad is not None:
                raise SimError(400, f"token id {bad} is out of range [0, {vocab})",
                               "invalid_request_error", "prompt")
            return len(prompt), list(prompt)
        raise SimError(400, "prompt must be a string, a list of token ids, or a one-element "
                       "list of either (batched prompts are not supported)",
                       "invalid_request_error", "prompt")

    async def _chat_prompt(self, messages: Any) -> tuple[int, list[int]]:
        total, units = 0, []
        overhead = self.config.chat_overhead
        for role, text in _chat_text(messages):
            n, ids = await self._count(text)
            marker = zlib.crc32(role.encode("utf-8")) % self.config.vocab_size
            total += n + overhead
            units += [marker] * overhead + ids
        return total, units

    def _blocks(self, units: list[int]) -> list[bytes]:
        """Chained hashes of the full blocks of ``units``."""
        size = self.config.block_tokens
        out, prev = [], b""
        for start in range(0, len(units) - size + 1, size):
            h = hashlib.blake2b(prev, digest_size=16)
            h.update(struct.pack(f"<{size}I", *(u & 0xFFFFFFFF for u in
                                                units[start:start + size])))
            prev = h.digest()
            out.append(prev)
        return out

    def _new_seq(self, req: _Request) -> tuple[_Seq, random.Random]:
        """The engine sequence for ``req`` and its seeded generator (length, then text)."""
        self._ids += 1
        digest = hashlib.blake2b(struct.pack(f"<{len(req.units)}I", *(
            u & 0xFFFFFFFF for u in req.units)), digest_size=16).hexdigest()
        rng = random.Random(f"{self.config.seed}:{digest}:{req.prompt_tokens}:"
                            f"{req.max_tokens}:{req.min_tokens}:{req.chat}")
        length = req.max_tokens if req.ignore_eos else \
            rng.randint(max(1, req.min_tokens), req.max_tokens)
        assert self._loop is not None
        seq = _Seq(rid=f"{self._ids:08x}", prompt_tokens=req.prompt_tokens,
                   blocks=self._blocks(req.units),
                   units_per_token=(len(req.units) / req.prompt_tokens) or 1.0,
                   max_hit_blocks=max(0, len(req.units) - 1) // self.config.block_tokens,
                   max_tokens=req.max_tokens, output_len=length, arrival=self._loop.time())
        return seq, rng

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        engine = self._engine
        assert engine is not None
        engine.stats["requests"] += 1
        try:
            self._authorize(request)
            req = await self._parse(request, chat)
            fault = self._fault(request)
        except SimError as exc:
            if exc.status != 401:
                engine.stats["bad_requests"] += 1
            return exc.response()
        if fault is not None:
            engine.stats["faults"][fault] += 1
        if fault == "error":
            return SimError(500, "simulated internal server error (fault injection)",
                            "internal_server_error").response()
        if fault == "slow":
            await asyncio.sleep(self.config.slow_first_byte_s)
        seq, rng = self._new_seq(req)
        if seq.reserve > self.config.kv_tokens:
            engine.stats["rejected_too_long"] += 1
            return SimError(400, f"prompt ({req.prompt_tokens} tokens) + max_tokens "
                            f"({req.max_tokens}) exceeds the KV capacity "
                            f"({self.config.kv_tokens} tokens)", "context_length_exceeded",
                            "max_tokens").response()
        if not engine.submit(seq):
            engine.stats["rejected_queue_full"] += 1
            return SimError(self.config.reject_status,
                            f"server overloaded: {self.config.max_queue} requests already "
                            "waiting", "server_overloaded").response({"Retry-After": "1"})
        engine.stats["prompt_tokens"] += req.prompt_tokens
        try:
            if req.stream:
                return await self._stream(request, req, seq, rng, fault)
            return await self._whole(request, req, seq, rng, fault)
        finally:
            if not seq.finished:
                engine.cancel(seq)

    def _usage(self, req: _Request, seq: _Seq) -> dict[str, Any]:
        return {"prompt_tokens": req.prompt_tokens, "completion_tokens": seq.produced,
                "total_tokens": req.prompt_tokens + seq.produced,
                "prompt_tokens_details": {"cached_tokens": seq.cached}}

    def _head(self, req: _Request, seq: _Seq, created: int) -> dict[str, Any]:
        if req.chat:
            return {"id": f"chatcmpl-{seq.rid}", "object": "chat.completion.chunk"
                    if req.stream else "chat.completion", "created": created,
                    "model": self.config.model}
        return {"id": f"cmpl-{seq.rid}", "object": "text_completion", "created": created,
                "model": self.config.model}

    @staticmethod
    def _finish(seq: _Seq) -> str:
        return "length" if seq.produced >= seq.max_tokens else "stop"

    async def _whole(self, request: web.Request, req: _Request, seq: _Seq, rng: random.Random,
                     fault: str | None) -> web.StreamResponse:
        """Non-streaming: one JSON body once the sequence ends."""
        if fault == "reset":
            while seq.produced < max(1, seq.output_len // 2) and not seq.done.is_set():
                await seq.tokens.get()
            _reset(request)
            return web.Response(status=500)
        await seq.done.wait()
        if seq.aborted:
            return SimError(503, "server shutting down", "server_shutdown").response()
        text = "".join(" " + rng.choice(_WORDS) for _ in range(seq.produced))
        body = self._head(req, seq, int(time.time()))
        if req.chat:
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant",
                                                             "content": text}}
        else:
            choice = {"index": 0, "text": text, "logprobs": None}
        choice["finish_reason"] = self._finish(seq)
        body["choices"] = [choice]
        body["usage"] = self._usage(req, seq)
        data = json.dumps(body).encode()
        if fault == "malformed":
            data = data[: len(data) // 2]
        return web.Response(body=data, content_type="application/json")

    async def _stream(self, request: web.Request, req: _Request, seq: _Seq, rng: random.Random,
                      fault: str | None) -> web.StreamResponse:
        """Streaming: one SSE event per token (or per ``chunk_tokens``), then ``[DONE]``."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Sim-Request-Id": seq.rid})
        await resp.prepare(request)
        created = int(time.time())
        head = self._head(req, seq, created)
        half = max(1, seq.output_len // 2)
        sent = pending = 0
        broke = False
        try:
            while True:
                item = await seq.tokens.get()
                if item is None:
                    break
                pending += item
                last = seq.finished and sent + pending >= seq.produced
                if not (sent == 0 or pending >= self.config.chunk_tokens or last):
                    continue
                text = "".join(" " + rng.choice(_WORDS) for _ in range(pending))
                if req.chat:
                    delta: dict[str, Any] = {"content": text}
                    if sent == 0:
                        delta = {"role": "assistant", "content": text}
                    choice: dict[str, Any] = {"index": 0, "delta": delta,
                                              "finish_reason": None}
                else:
                    choice = {"index": 0, "text": text, "logprobs": None,
                              "finish_reason": self._finish(seq) if last else None}
                await resp.write(_sse({**head, "choices": [choice]}))
                sent += pending
                pending = 0
                if fault == "reset" and sent >= half:
                    _reset(request)
                    return resp
                if fault == "malformed" and sent >= half and not broke:
                    broke = True
                    await resp.write(b'data: {"id": "' + seq.rid.encode() +
                                     b'", "choices": [{"index": 0, "text": \n\n')
            if seq.aborted:
                _reset(request)
                return resp
            if req.chat:
                await resp.write(_sse({**head, "choices": [{
                    "index": 0, "delta": {}, "finish_reason": self._finish(seq)}]}))
            if req.include_usage:
                await resp.write(_sse({**head, "choices": [], "usage": self._usage(req, seq)}))
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            return resp  # the client went away mid-stream: nothing more to send
        return resp


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _reset(request: web.Request) -> None:
    """Cut the connection with a TCP reset (SO_LINGER 0, then abort)."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
