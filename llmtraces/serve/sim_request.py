"""The requests of ``serve-sim``: OpenAI-style JSON errors (:class:`SimError`) and the parsing
and validation of completion and chat bodies into prompt token counts and units, so that the
HTTP layer (:mod:`llmtraces.serve.sim`) only routes and streams."""

from __future__ import annotations

import asyncio
import json
import zlib
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ._simconfig import SimConfig

__all__ = ["RequestParser", "SimError", "SimRequest"]


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
class SimRequest:
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


class RequestParser:
    """Turns a request body into a :class:`SimRequest`, or raises :class:`SimError` (400/404)."""

    def __init__(self, config: SimConfig, counter: Any = None) -> None:
        self.config = config
        #: a llmtraces.tokenize counter for text prompts; None: one token per word.
        self._counter = counter

    async def parse(self, request: web.Request, chat: bool) -> SimRequest:
        """The validated request of a completions (or, with ``chat``, chat) call."""
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
        return SimRequest(chat, stream, include_usage, prompt_tokens, units, max_tokens,
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
