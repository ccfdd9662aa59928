"""A tiny OpenAI-shaped server on 127.0.0.1 that records every body it receives, with a few
faults serve-sim does not have (a stream that ends without [DONE], an error event)."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from aiohttp import web


class RecordingServer:
    """Answers completions and chat with ``max_tokens`` one-word chunks and exact usage
    (prompt tokens: ids counted, text words counted); keeps every request body."""

    def __init__(self, mode: str = "ok", vocab_size: int | None = 32000) -> None:
        self.mode, self.vocab_size = mode, vocab_size
        self.bodies: list[dict[str, Any]] = []
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @staticmethod
    def count(body: dict[str, Any]) -> int:
        if "messages" in body:
            return sum(len(m["content"].split()) for m in body["messages"])
        prompt = body["prompt"]
        return len(prompt) if isinstance(prompt, list) else len(prompt.split())

    async def _models(self, request: web.Request) -> web.Response:
        entry: dict[str, Any] = {"id": "rec", "object": "model"}
        if self.vocab_size is not None:
            entry["vocab_size"] = self.vocab_size
        return web.json_response({"object": "list", "data": [entry]})

    async def _gen(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        n = int(body.get("max_tokens", 4))
        chat = "messages" in body
        usage = {"prompt_tokens": self.count(body), "completion_tokens": n,
                 "total_tokens": self.count(body) + n}
        if not body.get("stream"):
            choice = ({"message": {"role": "assistant", "content": " w" * n}} if chat
                      else {"text": " w" * n})
            return web.json_response({"choices": [{"index": 0, **choice,
                                                   "finish_reason": "length"}],
                                      "usage": usage})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(n):
            choice = {"delta": {"content": " w"}} if chat else {"text": " w"}
            await resp.write(b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n")
            if self.mode == "error_event" and i == 0:
                await resp.write(b'data: {"error": {"message": "engine died"}}\n\n')
                break
        if self.mode == "nodone":
            await resp.write_eof()
            return resp
        await resp.write(b"data: " + json.dumps({"choices": [], "usage": usage}).encode()
                         + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    def __enter__(self) -> RecordingServer:
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        async def start() -> None:
            app = web.Application(client_max_size=64 << 20)
            app.router.add_get("/v1/models", self._models)
            app.router.add_post("/v1/completions", self._gen)
            app.router.add_post("/v1/chat/completions", self._gen)
            self._runner = web.AppRunner(app, handle_signals=False)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(start())
            ready.set()
            loop.run_forever()
            assert self._runner is not None
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
