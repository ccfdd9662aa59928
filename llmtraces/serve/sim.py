"""``serve-sim``: a simulated OpenAI-compatible LLM server with a documented performance model.

Endpoints: ``POST /v1/completions``, ``POST /v1/chat/completions`` (streaming SSE or one JSON
body), ``GET /v1/models``, ``GET /health``, ``GET /sim/stats`` (the scheduler's counters), and
for benchmarks ``GET /metrics`` (Prometheus text under vLLM's names), ``GET /version`` and
``POST /reset_prefix_cache`` (empties the prefix cache, answers ``{"success": true}``).
No model runs: this HTTP layer parses each request (:mod:`llmtraces.serve.sim_request`) and
schedules it through the simulated continuous-batching engine of
:mod:`llmtraces.serve.sim_engine` (slots, KV reservations, the queue, prefix reuse; the model
is described there and in ``docs/servers.md``), whose iterations take real time (``asyncio``
sleeps on the real clock), so a client measures real TTFT, inter-token gaps and end-to-end
latency. Refusals are OpenAI-style JSON errors: a full queue gets ``reject_status`` (503 by
default), a request that could never fit in the KV capacity 400. ``usage.prompt_tokens_details
.cached_tokens`` reports prefix reuse; injected faults (``fail_rate``, or the ``X-Sim-Fault``
header per request) reset, break or delay responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import random
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from aiohttp import web

from .._version import __version__
from ._simconfig import FAULTS, SimConfig
from .sim_engine import Engine, FaultDraw, Seq, make_seq
from .sim_request import RequestParser, SimError, SimRequest

__all__ = ["FAULTS", "FAULT_HEADER", "SimConfig", "SimError", "SimServer"]

#: request header that forces a fault mode (or ``none``) for one request.
FAULT_HEADER = "X-Sim-Fault"
#: the words output text is made of; each output token is one word with a leading space.
_WORDS = (
    "the", "of", "and", "to", "in", "is", "that", "it", "for", "on", "as", "with", "was",
    "at", "by", "be", "this", "from", "or", "an", "are", "not", "but", "have", "which", "one",
    "all", "were", "they", "can", "more", "time", "model", "token", "trace", "server", "batch",
    "cache", "queue", "prompt", "latency", "request", "stream", "block", "slot", "load", "rate",
    "first", "next", "each", "many", "some", "new", "old", "fast", "slow", "long", "short",
    "data", "work", "test", "run", "step", "end",
)


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
            from ..tokenize import load_counter  # lazy: tokenizers load only when one is asked for
            self._counter = load_counter(self.config.tokenizer, workers=1)
        self._parser = RequestParser(self.config, self._counter)
        self._faults = FaultDraw(self.config)
        self._ids = 0
        self._engine: Engine | None = None
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
        self._engine = Engine(self.config)
        self._engine.start()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/sim/stats", self._stats)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/version", self._version)
        app.router.add_post("/reset_prefix_cache", self._reset_prefix_cache)
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

    async def _metrics(self, request: web.Request) -> web.Response:
        assert self._engine is not None
        return web.Response(text=self._engine.metrics_text(self.config.model),
                            content_type="text/plain", charset="utf-8",
                            headers={"X-Prometheus-Format": "0.0.4"})

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": __version__, "engine": "serve-sim",
                                  "batch_slots": self.config.batch_slots})

    async def _reset_prefix_cache(self, request: web.Request) -> web.Response:
        assert self._engine is not None
        return web.json_response({"success": True,
                                  "blocks_dropped": self._engine.reset_prefix_cache()})

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
        return self._faults.draw()


    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        engine = self._engine
        assert engine is not None
        engine.stats["requests"] += 1
        try:
            self._authorize(request)
            req = await self._parser.parse(request, chat)
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
        self._ids += 1
        seq, rng = make_seq(self.config, f"{self._ids:08x}", req.units, req.prompt_tokens,
                            req.max_tokens, req.min_tokens, req.ignore_eos, req.chat,
                            engine.clock.time())
        verdict = engine.offer(seq)
        if verdict == "too_long":
            return SimError(400, f"prompt ({req.prompt_tokens} tokens) + max_tokens "
                            f"({req.max_tokens}) exceeds the KV capacity "
                            f"({self.config.kv_tokens} tokens)", "context_length_exceeded",
                            "max_tokens").response()
        if verdict == "queue_full":
            return SimError(self.config.reject_status,
                            f"server overloaded: {self.config.max_queue} requests already "
                            "waiting", "server_overloaded").response({"Retry-After": "1"})
        try:
            if req.stream:
                return await self._stream(request, req, seq, rng, fault)
            return await self._whole(request, req, seq, rng, fault)
        finally:
            if not seq.finished:
                engine.cancel(seq)

    def _usage(self, req: SimRequest, seq: Seq) -> dict[str, Any]:
        return {"prompt_tokens": req.prompt_tokens, "completion_tokens": seq.produced,
                "total_tokens": req.prompt_tokens + seq.produced,
                "prompt_tokens_details": {"cached_tokens": seq.cached}}

    def _head(self, req: SimRequest, seq: Seq, created: int) -> dict[str, Any]:
        if req.chat:
            return {"id": f"chatcmpl-{seq.rid}", "object": "chat.completion.chunk"
                    if req.stream else "chat.completion", "created": created,
                    "model": self.config.model}
        return {"id": f"cmpl-{seq.rid}", "object": "text_completion", "created": created,
                "model": self.config.model}

    @staticmethod
    def _finish(seq: Seq) -> str:
        return "length" if seq.produced >= seq.max_tokens else "stop"

    async def _whole(self, request: web.Request, req: SimRequest, seq: Seq, rng: random.Random,
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

    async def _stream(self, request: web.Request, req: SimRequest, seq: Seq, rng: random.Random,
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
