"""``llmtraces serve-sim``: the simulated OpenAI-compatible server (``llmtraces.serve.sim``)."""

from __future__ import annotations

import click

# Defaults come from SimConfig's fields (one source of truth); reading them needs no aiohttp.
from ..serve._simconfig import FAULTS, SimConfig


@click.command("serve-sim")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (loopback by default).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port; 0 picks a free one (the URL is printed).")
@click.option("--model", default=SimConfig.model, show_default=True, help="Served model name.")
@click.option("--prefill-tps", type=float, default=SimConfig.prefill_tps, show_default=True,
              help="Prompt tokens prefilled per second.")
@click.option("--decode-tps", type=float, default=SimConfig.decode_tps, show_default=True,
              help="Output tokens per second of one sequence decoding alone.")
@click.option("--batch-slots", type=int, default=SimConfig.batch_slots, show_default=True,
              help="Sequences admitted at once (continuous batching).")
@click.option("--batch-penalty", type=float, default=SimConfig.batch_penalty, show_default=True,
              help="Decode step time = (1 + penalty * (batch - 1)) / decode-tps.")
@click.option("--prefill-chunk", type=int, default=SimConfig.prefill_chunk, show_default=True,
              help="Prompt tokens per iteration at most (chunked prefill); 0: no limit.")
@click.option("--kv-tokens", type=int, default=SimConfig.kv_tokens, show_default=True,
              help="KV capacity; a request reserves prompt + max_tokens.")
@click.option("--max-queue", type=int, default=SimConfig.max_queue, show_default=True,
              help="Requests that may wait; beyond, new ones are refused.")
@click.option("--reject-status", type=click.Choice(["503", "429"]), default="503",
              show_default=True, help="Status of a refusal when the queue is full.")
@click.option("--prefix-cache/--no-prefix-cache", default=SimConfig.prefix_cache, show_default=True,
              help="Reuse cached leading prompt blocks.")
@click.option("--block-tokens", type=int, default=SimConfig.block_tokens, show_default=True,
              help="Tokens per prefix-cache block.")
@click.option("--prefix-cache-tokens", type=int, default=None,
              help="Prefix-cache capacity in tokens (LRU)  [default: --kv-tokens].")
@click.option("--vocab-size", type=int, default=SimConfig.vocab_size, show_default=True,
              help="Token-id prompts must be in [0, vocab-size).")
@click.option("--default-max-tokens", type=int, default=SimConfig.default_max_tokens,
              show_default=True, help="max_tokens of a request that gives none.")
@click.option("--chat-overhead", type=int, default=SimConfig.chat_overhead, show_default=True,
              help="Prompt tokens added per chat message.")
@click.option("--chunk-tokens", type=int, default=SimConfig.chunk_tokens, show_default=True,
              help="Tokens per SSE event after the first.")
@click.option("--seed", type=int, default=SimConfig.seed, show_default=True,
              help="Seeds output lengths, text and fault draws.")
@click.option("--api-key", envvar="LLMTRACES_SIM_API_KEY", default=None,
              help="Require 'Authorization: Bearer KEY' on /v1/* [env LLMTRACES_SIM_API_KEY].")
@click.option("--fail-rate", type=float, default=SimConfig.fail_rate, show_default=True,
              help="Probability that a request gets a fault drawn from --fault.")
@click.option("--fault", "faults", multiple=True, type=click.Choice(FAULTS),
              help="Fault modes --fail-rate draws from (repeat)  [default: all].")
@click.option("--slow-first-byte-s", type=float, default=SimConfig.slow_first_byte_s,
              show_default=True, help="Delay of the 'slow' fault, seconds.")
@click.option("--tokenizer", default=None,
              help="Count text prompts with this tokenizer (as in convert --tokenizer) "
                   "[default: one token per whitespace-separated word].")
@click.option("--duration", type=float, default=None,
              help="Stop after this many seconds [default: run until Ctrl-C / SIGTERM].")
@click.option("--access-log", is_flag=True, help="Log every request to stderr.")
def command(host: str, port: int, model: str, prefill_tps: float, decode_tps: float,
            batch_slots: int, batch_penalty: float, prefill_chunk: int, kv_tokens: int,
            max_queue: int, reject_status: str, prefix_cache: bool, block_tokens: int,
            prefix_cache_tokens: int | None, vocab_size: int, default_max_tokens: int,
            chat_overhead: int, chunk_tokens: int, seed: int, api_key: str | None,
            fail_rate: float, faults: tuple[str, ...], slow_first_byte_s: float,
            tokenizer: str | None, duration: float | None, access_log: bool) -> None:
    """Serve a simulated OpenAI-compatible LLM (completions and chat, SSE streaming).

    Requests are scheduled by a simulated continuous-batching engine whose iterations take
    real time: queueing, prefill, batched decode, KV capacity, prefix reuse and injected
    faults, as documented in docs/servers.md. Needs aiohttp: pip install 'llmtraces[replay]'.
    """
    try:
        # `serve-sim --help` works without aiohttp; a run without it gets the install hint below
        # lazy: optional dependency, aiohttp (the [replay] extra) loads only when serve-sim runs
        from ..serve.sim import SimServer
    except ImportError as exc:
        raise click.ClickException(
            f"serve-sim needs aiohttp ({exc}): pip install 'llmtraces[replay]'") from None
    try:
        config = SimConfig(
            model=model, prefill_tps=prefill_tps, decode_tps=decode_tps,
            batch_slots=batch_slots, batch_penalty=batch_penalty, prefill_chunk=prefill_chunk,
            kv_tokens=kv_tokens, max_queue=max_queue, reject_status=int(reject_status),
            prefix_cache=prefix_cache, block_tokens=block_tokens,
            prefix_cache_tokens=prefix_cache_tokens, vocab_size=vocab_size,
            default_max_tokens=default_max_tokens, chat_overhead=chat_overhead,
            chunk_tokens=chunk_tokens, seed=seed, api_key=api_key, fail_rate=fail_rate,
            faults=faults or SimConfig.faults, slow_first_byte_s=slow_first_byte_s,
            tokenizer=tokenizer).check()
        server = SimServer(config, host=host, port=port, access_log=access_log)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    def ready(url: str) -> None:
        click.echo(f"serve-sim: listening on {url} (model {config.model}; "
                   f"{config.batch_slots} slots, KV {config.kv_tokens:,} tokens, queue "
                   f"{config.max_queue}; prefill {config.prefill_tps:,.0f} tok/s, decode "
                   f"{config.decode_tps:,.0f} tok/s per sequence"
                   + ("; API key required" if config.api_key else "") + ")")

    try:
        server.serve_forever(on_ready=ready, duration=duration)
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {host}:{port}: {exc}") from None
