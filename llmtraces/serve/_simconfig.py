"""The parameters of ``serve-sim`` (:class:`SimConfig`), importable without aiohttp so that the
CLI can show its defaults; the server itself is :mod:`llmtraces.serve.sim`."""

from __future__ import annotations

from dataclasses import dataclass

#: fault modes: connection reset mid-response, malformed SSE / JSON, HTTP 500, slow first byte.
FAULTS = ("reset", "malformed", "error", "slow")


@dataclass(frozen=True)
class SimConfig:
    """Every parameter of the simulated server; ``docs/servers.md`` explains each one."""

    model: str = "llmtraces-sim"
    #: prompt tokens processed per second (prefill throughput of the whole engine).
    prefill_tps: float = 10_000.0
    #: tokens per second of one sequence decoding alone.
    decode_tps: float = 50.0
    #: sequences admitted at once (continuous batching width).
    batch_slots: int = 16
    #: relative slowdown of a decode step per extra sequence in the batch.
    batch_penalty: float = 0.05
    #: prompt tokens processed per iteration at most (chunked prefill); 0: no limit.
    prefill_chunk: int = 0
    #: KV capacity in tokens; each admitted request reserves prompt + max_tokens.
    kv_tokens: int = 65_536
    #: requests that may wait for a slot or KV; beyond, new ones are refused.
    max_queue: int = 256
    #: status of a refusal when the queue is full: 503 or 429.
    reject_status: int = 503
    #: reuse cached prompt blocks (prefix caching).
    prefix_cache: bool = True
    #: units per prefix-cache block.
    block_tokens: int = 16
    #: prefix-cache capacity in tokens (LRU); None: kv_tokens.
    prefix_cache_tokens: int | None = None
    #: token ids must be in [0, vocab_size).
    vocab_size: int = 32_000
    #: max_tokens when a request gives none.
    default_max_tokens: int = 16
    #: prompt tokens added per chat message (template overhead).
    chat_overhead: int = 0
    #: tokens per SSE chunk after the first (the first token is always sent alone).
    chunk_tokens: int = 1
    #: seeds output lengths, output text and fault draws.
    seed: int = 0
    #: when set, /v1/* requires ``Authorization: Bearer <api_key>``.
    api_key: str | None = None
    #: probability that a request gets a fault drawn from ``faults``.
    fail_rate: float = 0.0
    #: fault modes ``fail_rate`` draws from.
    faults: tuple[str, ...] = FAULTS
    #: delay before a ``slow`` request is processed, seconds.
    slow_first_byte_s: float = 2.0
    #: count text prompts with this tokenizer (llmtraces.tokenize specs); None: whitespace.
    tokenizer: str | None = None

    def check(self) -> SimConfig:
        """Raise ``ValueError`` naming the first bad parameter; return self."""
        positive = {"prefill_tps": self.prefill_tps, "decode_tps": self.decode_tps,
                    "batch_slots": self.batch_slots, "kv_tokens": self.kv_tokens,
                    "block_tokens": self.block_tokens, "vocab_size": self.vocab_size,
                    "default_max_tokens": self.default_max_tokens,
                    "chunk_tokens": self.chunk_tokens}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be > 0 (got {value!r})")
        non_negative = {"batch_penalty": self.batch_penalty, "prefill_chunk": self.prefill_chunk,
                        "max_queue": self.max_queue, "chat_overhead": self.chat_overhead,
                        "slow_first_byte_s": self.slow_first_byte_s}
        for name, value in non_negative.items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0 (got {value!r})")
        if self.reject_status not in (429, 503):
            raise ValueError(f"reject_status must be 429 or 503 (got {self.reject_status!r})")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError(f"fail_rate must be in [0, 1] (got {self.fail_rate!r})")
        bad = [f for f in self.faults if f not in FAULTS]
        if bad or not self.faults:
            raise ValueError(f"faults must be a non-empty subset of {', '.join(FAULTS)} "
                             f"(got {', '.join(self.faults) or 'none'})")
        if self.prefix_cache_tokens is not None and self.prefix_cache_tokens < 0:
            raise ValueError("prefix_cache_tokens must be >= 0")
        return self

    def decode_step_s(self, batch: int) -> float:
        """Seconds of one decode step with ``batch`` sequences: (1 + penalty (b - 1)) / rate."""
        if batch <= 0:
            return 0.0
        return (1.0 + self.batch_penalty * (batch - 1)) / self.decode_tps

    def prefill_s(self, tokens: int) -> float:
        """Seconds to prefill ``tokens`` prompt tokens."""
        return tokens / self.prefill_tps
