"""A fake engine executable that behaves like vLLM/SGLang's servers where the bench adapters
care: ``/health``, ``/v1/models``, ``/version``, ``/metrics`` (vLLM's gauge names, counting the
streams in flight), ``POST /reset_prefix_cache``, ``POST /flush_cache`` (400 while busy) and a
minimal streaming ``/v1/completions``; and the failure modes a launcher must survive.

    python tests/fake_engine.py [serve MODEL] --port P [--mode MODE] [--delay S]
        [--pid-file F] [--marker F] [--reset ok|fail|missing]

Modes: ``ok``; ``wrong-model`` (``/v1/models`` lists another model than MODEL);
``slow-start`` (binds after ``--delay`` s); ``never-ready`` (``/health`` 503);
``crash`` (logs a traceback, exits 3); ``ignore-sigterm``; ``fork-children`` (starts a child
that ignores SIGTERM and writes its pid to ``--pid-file``); ``held-port`` (the first launch,
while ``--marker`` does not exist, fails as uvicorn does when the port is taken). Unknown
arguments are ignored, so it takes the place of ``vllm`` or ``python -m sglang...``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time

from aiohttp import web


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", default="ok")
    ap.add_argument("--delay", type=float, default=1.0)
    ap.add_argument("--pid-file", default=None)
    ap.add_argument("--marker", default=None)
    ap.add_argument("--reset", default="ok")
    ap.add_argument("--served-model-name", default=None)
    args, rest = ap.parse_known_args()
    # ``serve MODEL`` (vllm) or ``--model-path MODEL`` (sglang): the model it serves
    served = rest[rest.index("serve") + 1] if "serve" in rest[:-1] else "fake-model"
    print(f"fake engine: mode {args.mode}, port {args.port}, other args {rest}", flush=True)
    if args.mode == "crash":
        print("INFO loading weights", flush=True)
        print("Traceback (most recent call last):\n  File \"engine.py\", line 1\n"
              "RuntimeError: CUDA out of memory (fake)", flush=True)
        return 3
    if args.mode == "held-port" and args.marker and not os.path.exists(args.marker):
        open(args.marker, "w").close()
        print(f"ERROR: [Errno 98] error while attempting to bind on address "
              f"('{args.host}', {args.port}): address already in use", flush=True)
        return 1
    if args.mode == "slow-start":
        time.sleep(args.delay)
    if args.mode == "ignore-sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.mode == "fork-children":
        child = subprocess.Popen([sys.executable, "-c",
                                  "import signal, time\n"
                                  "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                  "time.sleep(600)\n"])
        if args.pid_file:
            with open(args.pid_file, "w") as f:
                f.write(str(child.pid))
    state = {"running": 0, "resets": 0}

    async def health(request: web.Request) -> web.Response:
        return web.Response(status=503 if args.mode == "never-ready" else 200)

    async def models(request: web.Request) -> web.Response:
        listed = "another-model" if args.mode == "wrong-model" else \
            args.served_model_name or served
        return web.json_response({"object": "list", "data": [{"id": listed}]})

    async def version(request: web.Request) -> web.Response:
        return web.json_response({"version": "0.0.fake"})

    async def metrics(request: web.Request) -> web.Response:
        label = '{model_name="fake-model",engine="0"}'
        text = (f"# TYPE vllm:num_requests_running gauge\n"
                f"vllm:num_requests_running{label} {state['running']}.0\n"
                f"vllm:num_requests_waiting{label} 0.0\n"
                f"vllm:kv_cache_usage_perc{label} {state['running'] / 8}\n")
        return web.Response(text=text, content_type="text/plain")

    async def reset(request: web.Request) -> web.Response:
        if args.reset == "missing":
            return web.Response(status=404)
        state["resets"] += 1
        if args.reset == "fail":
            return web.json_response({"success": False})
        return web.Response(status=200)

    async def flush(request: web.Request) -> web.Response:
        if state["running"]:
            return web.Response(status=400, text="not idle")
        state["resets"] += 1
        return web.Response(text="Cache flushed.")

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        state["running"] += 1
        try:
            for _ in range(int(body.get("max_tokens", 4))):
                await asyncio.sleep(0.02)
                chunk = {"choices": [{"index": 0, "text": " w"}]}
                await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
        finally:
            state["running"] -= 1
        return resp

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/version", version)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/reset_prefix_cache", reset)
    app.router.add_route("*", "/flush_cache", flush)
    app.router.add_post("/v1/completions", completions)
    # handle_signals=False: SIGTERM keeps the default action (or SIG_IGN set above)
    web.run_app(app, host=args.host, port=args.port, handle_signals=False, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
