"""serve-sim over real HTTP on 127.0.0.1: response shapes, exact usage, token-id prompts,
auth, the scheduler (queueing, rejection, KV capacity, prefix reuse, batched decode), faults.

Timings use fast rates and assert orderings and loose bounds, never tight values.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

aiohttp = pytest.importorskip("aiohttp")
requests = pytest.importorskip("requests")

from conftest import Cli  # noqa: E402
from llmtraces import __version__  # noqa: E402
from llmtraces.serve.sim import FAULT_HEADER, SimConfig, SimServer  # noqa: E402

FAST = {"prefill_tps": 1_000_000.0, "decode_tps": 10_000.0}


def run(main: Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    """Run one async test body with a hard time limit."""
    return asyncio.run(asyncio.wait_for(main(), timeout))


class Stream:
    """What a client saw of one request: status, parsed SSE events or JSON, and times."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.events: list[Any] = []       # dicts, "[DONE]", or raw bytes of a bad line
        self.times: list[float] = []      # arrival time of each content chunk, from send
        self.body: Any = None
        self.e2e = 0.0

    @property
    def ttft(self) -> float:
        return self.times[0]

    @property
    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:], strict=False)]

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return [e for e in self.events if isinstance(e, dict) and e.get("choices")]

    @property
    def usage(self) -> dict[str, Any]:
        (u,) = [e["usage"] for e in self.events if isinstance(e, dict) and "usage" in e]
        return u


def _content(chunk: dict[str, Any]) -> str:
    choice = chunk["choices"][0]
    return choice["text"] if "text" in choice else choice["delta"].get("content", "")


async def call(session: aiohttp.ClientSession, url: str, body: dict[str, Any],
               headers: dict[str, str] | None = None, chat: bool = False) -> Stream:
    """POST ``body`` to the completions (or chat) endpoint and record what came back."""
    out = Stream()
    path = "/v1/chat/completions" if chat else "/v1/completions"
    t0 = time.perf_counter()
    async with session.post(url + path, json=body, headers=headers) as resp:
        out.status, out.headers = resp.status, dict(resp.headers)
        if resp.status != 200 or not body.get("stream"):
            raw = await resp.read()
            try:
                out.body = json.loads(raw)
            except ValueError:
                out.body = raw
        else:
            async for line in resp.content:
                line = line.strip()
                if not line:
                    continue
                assert line.startswith(b"data: "), line
                data = line[6:]
                if data == b"[DONE]":
                    out.events.append("[DONE]")
                    continue
                try:
                    event = json.loads(data)
                except ValueError:
                    out.events.append(data)
                    continue
                out.events.append(event)
                if event.get("choices") and _content(event):
                    out.times.append(time.perf_counter() - t0)
    out.e2e = time.perf_counter() - t0
    return out


def with_server(body: Callable[[SimServer, aiohttp.ClientSession], Awaitable[Any]],
                timeout: float = 15.0, **config: Any) -> Any:
    """Run ``body(server, session)`` against a fresh in-loop server."""
    async def main() -> Any:
        async with SimServer(SimConfig(**{**FAST, **config})) as srv:
            async with aiohttp.ClientSession() as session:
                return await body(srv, session)
    return run(main, timeout)


# -- shapes and usage ---------------------------------------------------------------------

def test_completions_stream_shape_and_exact_usage():
    async def body(srv, s):
        words = "one two  three\nfour\tfive six seven"
        with_usage = await call(s, srv.url, {"prompt": words, "max_tokens": 5, "ignore_eos": True,
                                             "stream": True,
                                             "stream_options": {"include_usage": True}})
        plain = await call(s, srv.url, {"prompt": words, "max_tokens": 3, "stream": True,
                                        "ignore_eos": True, "model": "llmtraces-sim"})
        return with_usage, plain

    got, plain = with_server(body)
    assert got.status == 200 and got.headers["Content-Type"].startswith("text/event-stream")
    assert got.events[-1] == "[DONE]"
    chunks = got.chunks
    assert len(chunks) == 5
    for i, c in enumerate(chunks):
        assert c["object"] == "text_completion" and c["model"] == "llmtraces-sim"
        assert c["id"] == chunks[0]["id"] and c["id"].startswith("cmpl-")
        (choice,) = c["choices"]
        assert choice["index"] == 0 and len(choice["text"].split()) == 1
        assert choice["finish_reason"] == ("length" if i == 4 else None)
    usage_event = got.events[-2]
    assert usage_event["choices"] == [] and usage_event["id"] == chunks[0]["id"]
    assert got.usage == {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12,
                         "prompt_tokens_details": {"cached_tokens": 0}}
    # without include_usage there is no usage event
    assert len(plain.chunks) == 3 and plain.events[-1] == "[DONE]"
    assert not any(isinstance(e, dict) and "usage" in e for e in plain.events)


def test_chat_stream_shape_and_usage():
    async def body(srv, s):
        return await call(s, srv.url, {
            "messages": [{"role": "system", "content": "be brief"},
                         {"role": "user", "content": [{"type": "text", "text": "hello there"},
                                                      {"type": "image_url", "image_url": {}}]}],
            "max_completion_tokens": 4, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}, chat=True)

    got = with_server(body, chat_overhead=3)
    assert got.status == 200 and got.events[-1] == "[DONE]"
    content = [e for e in got.chunks if e["choices"][0]["delta"]]
    assert [e["object"] for e in got.chunks] == ["chat.completion.chunk"] * 5
    assert content[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in e["choices"][0]["delta"] for e in content[1:])
    assert len(content) == 4 and all(len(_content(e).split()) == 1 for e in content)
    final = got.chunks[-1]["choices"][0]
    assert final == {"index": 0, "delta": {}, "finish_reason": "length"}
    # 2 + 2 words, plus 3 template tokens per message
    assert got.usage["prompt_tokens"] == 4 + 2 * 3 and got.usage["completion_tokens"] == 4


def test_non_streaming_bodies_for_both_endpoints():
    async def body(srv, s):
        comp = await call(s, srv.url, {"prompt": "a b c", "max_tokens": 6, "ignore_eos": True})
        chat = await call(s, srv.url, {"messages": [{"role": "user", "content": "x y"}],
                                       "max_tokens": 2, "ignore_eos": True}, chat=True)
        default = await call(s, srv.url, {"prompt": "a b c", "ignore_eos": True})
        return comp, chat, default

    comp, chat, default = with_server(body, default_max_tokens=9)
    assert comp.status == 200 and comp.body["object"] == "text_completion"
    (choice,) = comp.body["choices"]
    assert len(choice["text"].split()) == 6 and choice["finish_reason"] == "length"
    assert comp.body["usage"] == {"prompt_tokens": 3, "completion_tokens": 6,
                                  "total_tokens": 9, "prompt_tokens_details":
                                  {"cached_tokens": 0}}
    assert chat.body["object"] == "chat.completion"
    msg = chat.body["choices"][0]["message"]
    assert msg["role"] == "assistant" and len(msg["content"].split()) == 2
    assert chat.body["usage"]["prompt_tokens"] == 2
    assert default.body["usage"]["completion_tokens"] == 9


def test_token_id_prompts_and_the_vocabulary_check():
    async def body(srv, s):
        out = {}
        for name, prompt in {"ok": [0, 5, 99], "nested": [[1, 2, 3, 4]], "high": [1, 100],
                             "negative": [-1], "bool": [True], "batch": [[1], [2]],
                             "mixed": [1, "a"], "empty": []}.items():
            out[name] = await call(s, srv.url, {"prompt": prompt, "max_tokens": 1})
        return out

    got = with_server(body, vocab_size=100)
    assert got["ok"].status == 200 and got["ok"].body["usage"]["prompt_tokens"] == 3
    assert got["nested"].body["usage"]["prompt_tokens"] == 4
    for name in ("high", "negative", "bool", "batch", "mixed", "empty"):
        assert got[name].status == 400, name
        err = got[name].body["error"]
        assert err["code"] == 400 and err["type"] == "invalid_request_error", name
    assert "token id 100 is out of range [0, 100)" in got["high"].body["error"]["message"]


def test_request_validation_errors():
    async def body(srv, s):
        cases = {"min>max": {"prompt": "a", "max_tokens": 2, "min_tokens": 3},
                 "zero": {"prompt": "a", "max_tokens": 0},
                 "float": {"prompt": "a", "max_tokens": 1.5},
                 "n": {"prompt": "a", "n": 2},
                 "model": {"prompt": "a", "model": "gpt-4"},
                 "stream": {"prompt": "a", "stream": "yes"}}
        out = {k: await call(s, srv.url, v) for k, v in cases.items()}
        out["no messages"] = await call(s, srv.url, {"messages": []}, chat=True)
        async with s.post(srv.url + "/v1/completions", data=b"{not json") as r:
            out["json"] = r.status
        return out

    got = with_server(body)
    assert got.pop("json") == 400
    assert got.pop("model").status == 404
    for name, r in got.items():
        assert r.status == 400 and r.body["error"]["code"] == 400, name


def test_output_lengths_are_seeded_and_honour_min_and_max_tokens():
    prompts = [f"prompt number {i} with some words" for i in range(8)]

    async def lengths(srv, s):
        out = []
        for p in prompts:
            r = await call(s, srv.url, {"prompt": p, "max_tokens": 40, "min_tokens": 10})
            out.append((r.body["usage"]["completion_tokens"],
                        r.body["choices"][0]["finish_reason"], r.body["choices"][0]["text"]))
        return out

    a = with_server(lengths, seed=1)
    b = with_server(lengths, seed=1)
    c = with_server(lengths, seed=2)
    assert a == b
    assert a != c
    assert all(10 <= n <= 40 for n, _, _ in a)
    assert all((reason == "length") == (n == 40) for n, reason, _ in a)
    assert all(len(text.split()) == n for n, _, text in a)
    assert len({n for n, _, _ in a}) > 1


def test_text_prompts_counted_by_a_tokenizer():
    from llmtraces.tokenize import load_counter

    texts = ["hello world", "antidisestablishmentarianism is long", " ".join(["word"] * 64)]
    with load_counter("o200k_base", workers=1) as counter:
        expected = counter.count(texts)

    async def body(srv, s):
        return [(await call(s, srv.url, {"prompt": t, "max_tokens": 1})).body["usage"]
                for t in [*texts, texts[2]]]

    got = with_server(body, tokenizer="o200k_base")
    assert [u["prompt_tokens"] for u in got] == [*expected, expected[2]]
    assert expected[1] > 4     # not the word count
    # 64 words: 4 blocks of 16, at most 3 reused; the share of words applies to the tokens
    assert got[3]["prompt_tokens_details"]["cached_tokens"] == expected[2] * 48 // 64


# -- auth, models, health ------------------------------------------------------------------

def test_api_key_is_required_on_v1_only():
    async def body(srv, s):
        req = {"prompt": "a", "max_tokens": 1}
        none = await call(s, srv.url, req)
        wrong = await call(s, srv.url, req, headers={"Authorization": "Bearer nope"})
        basic = await call(s, srv.url, req, headers={"Authorization": "sekrit"})
        good = await call(s, srv.url, req, headers={"Authorization": "Bearer sekrit"})
        async with s.get(srv.url + "/v1/models") as r:
            models = r.status
        async with s.get(srv.url + "/health") as r:
            health = r.status
        return none, wrong, basic, good, models, health

    none, wrong, basic, good, models, health = with_server(body, api_key="sekrit")
    for r in (none, wrong, basic):
        assert r.status == 401 and r.body["error"]["type"] == "authentication_error"
        assert "sekrit" not in json.dumps(r.body)
    assert good.status == 200 and models == 401 and health == 200


def test_models_health_and_stats():
    async def body(srv, s):
        async with s.get(srv.url + "/v1/models") as r:
            models = await r.json()
        async with s.get(srv.url + "/health") as r:
            health = await r.json()
        async with s.get(srv.url + "/sim/stats") as r:
            stats = await r.json()
        return models, health, stats

    models, health, stats = with_server(body, model="m1", vocab_size=49152, kv_tokens=4096)
    (entry,) = models["data"]
    assert models["object"] == "list"
    assert entry["id"] == "m1" and entry["object"] == "model"
    assert entry["vocab_size"] == 49152 and entry["max_model_len"] == 4096
    assert health == {"status": "ok"}
    assert stats["running"] == 0 and stats["config"]["batch_slots"] == 16
    assert stats["config"]["api_key"] is None


# -- the performance model -----------------------------------------------------------------

def test_prefill_and_decode_rates_shape_ttft_and_gaps():
    async def body(srv, s):
        return await call(s, srv.url, {"prompt": list(range(500)), "max_tokens": 6,
                                       "ignore_eos": True, "stream": True})

    got = with_server(body, prefill_tps=5_000.0, decode_tps=100.0)
    # TTFT = 500 / 5000 = 0.1 s; then 5 decode steps of 1 / 100 s
    assert 0.09 <= got.ttft < 0.6
    assert len(got.gaps) == 5
    assert 0.008 <= sum(got.gaps) / 5 < 0.1
    assert got.e2e - got.ttft >= 0.045


def test_decode_steps_slow_down_with_the_batch():
    async def body(srv, s):
        req = {"prompt": "a", "max_tokens": 8, "ignore_eos": True, "stream": True}
        alone = await call(s, srv.url, req)
        together = await asyncio.gather(*(call(s, srv.url, req) for _ in range(4)))
        return alone, together

    alone, together = with_server(body, decode_tps=200.0, batch_penalty=1.0, batch_slots=4)
    single = sum(alone.gaps) / len(alone.gaps)            # ~5 ms
    batched = [sum(r.gaps[2:]) / len(r.gaps[2:]) for r in together]   # ~20 ms at b = 4
    assert single < 0.0125
    assert min(batched) > 2 * single


def test_burst_queues_past_the_slots_and_rejects_past_the_queue():
    async def body(srv, s):
        req = {"prompt": list(range(64)), "max_tokens": 20, "ignore_eos": True,
               "stream": True}
        results = await asyncio.gather(*(call(s, srv.url, req) for _ in range(10)))
        return results, srv.stats()

    results, stats = with_server(body, decode_tps=200.0, batch_slots=3, max_queue=4)
    ok = sorted((r for r in results if r.status == 200), key=lambda r: r.ttft)
    refused = [r for r in results if r.status != 200]
    assert len(ok) == 7 and len(refused) == 3
    for r in refused:
        assert r.status == 503 and r.headers.get("Retry-After") == "1"
        assert r.body["error"]["type"] == "server_overloaded"
    assert all(len(r.chunks) == 20 for r in ok)
    ttfts = [r.ttft for r in ok]
    # one wave of 3 serves ~20 steps of (1 + 0.05 * 2) / 200 s = 0.11 s
    assert max(ttfts[:3]) < min(ttfts[3:])
    assert min(ttfts[3:]) >= 0.07
    assert ttfts[6] >= 0.14
    assert stats["peak_running"] == 3 and stats["peak_waiting"] == 4
    assert stats["rejected_queue_full"] == 3 and stats["completed"] == 7


def test_reject_status_429_and_no_queue():
    async def body(srv, s):
        req = {"prompt": "a", "max_tokens": 50, "ignore_eos": True, "stream": True}
        return await asyncio.gather(*(call(s, srv.url, req) for _ in range(3)))

    got = with_server(body, decode_tps=500.0, batch_slots=1, max_queue=0, reject_status=429)
    assert sorted(r.status for r in got) == [200, 429, 429]


def test_kv_capacity_makes_requests_wait_and_too_long_ones_fail():
    async def body(srv, s):
        req = {"prompt": list(range(40)), "max_tokens": 20, "ignore_eos": True,
               "stream": True}
        pair = await asyncio.gather(call(s, srv.url, req), call(s, srv.url, req))
        too_long = await call(s, srv.url, {"prompt": list(range(90)), "max_tokens": 20})
        return pair, too_long, srv.stats()

    pair, too_long, stats = with_server(body, decode_tps=400.0, batch_slots=4,
                                        kv_tokens=100)
    first, second = sorted(pair, key=lambda r: r.ttft)
    assert first.status == second.status == 200
    # 40 + 20 tokens each: only one fits in 100, so the second starts after the first ends
    assert second.ttft >= first.e2e - 0.02
    assert stats["peak_running"] == 1 and stats["peak_kv_used"] == 60
    assert too_long.status == 400
    assert too_long.body["error"]["type"] == "context_length_exceeded"


def test_prefix_cache_reuses_leading_blocks():
    base = list(range(1, 513))
    shared_half = base[:256] + list(range(1000, 1256))

    async def body(srv, s):
        out = []
        for prompt in (base, base, shared_half):
            out.append(await call(s, srv.url, {"prompt": prompt, "max_tokens": 2,
                                               "ignore_eos": True, "stream": True,
                                               "stream_options": {"include_usage": True}}))
        return out

    cold, warm, half = with_server(body, prefill_tps=10_000.0)
    assert cold.usage["prompt_tokens_details"]["cached_tokens"] == 0
    # 512 tokens = 32 blocks, but one token is always prefilled: 31 blocks reused
    assert warm.usage["prompt_tokens_details"]["cached_tokens"] == 496
    assert half.usage["prompt_tokens_details"]["cached_tokens"] == 256
    assert cold.ttft >= 0.045 and warm.ttft < cold.ttft / 2
    off = with_server(body, prefix_cache=False)
    assert [r.usage["prompt_tokens_details"]["cached_tokens"] for r in off] == [0, 0, 0]


def test_chunked_prefill_bounds_the_stall_of_running_streams():
    async def body(srv, s):
        runner = asyncio.create_task(call(s, srv.url, {
            "prompt": "a", "max_tokens": 30, "ignore_eos": True, "stream": True}))
        await asyncio.sleep(0.03)
        await call(s, srv.url, {"prompt": list(range(2000)), "max_tokens": 1})
        return await runner

    whole = with_server(body, prefill_tps=20_000.0, decode_tps=400.0)
    chunked = with_server(body, prefill_tps=20_000.0, decode_tps=400.0, prefill_chunk=100)
    # a 2000-token prefill stalls the other stream 0.1 s at once, or 5 ms per iteration
    assert max(whole.gaps) >= 0.08
    assert max(chunked.gaps) < 0.05
    assert len(whole.chunks) == len(chunked.chunks) == 30


def test_chunk_tokens_groups_tokens_after_the_first():
    async def body(srv, s):
        return await call(s, srv.url, {"prompt": "a", "max_tokens": 10, "ignore_eos": True,
                                       "stream": True, "stream_options": {"include_usage": True}})

    got = with_server(body, chunk_tokens=4)
    assert [len(_content(c).split()) for c in got.chunks] == [1, 4, 4, 1]
    assert got.usage["completion_tokens"] == 10


def test_a_client_that_goes_away_frees_its_slot():
    async def body(srv, s):
        async with s.post(srv.url + "/v1/completions", json={
                "prompt": "a", "max_tokens": 50_000, "ignore_eos": True,
                "stream": True}) as resp:
            assert resp.status == 200
            got = 0
            async for line in resp.content:
                got += line.startswith(b"data: {")
                if got == 3:
                    break
        nxt = await call(s, srv.url, {"prompt": "b", "max_tokens": 3, "ignore_eos": True})
        for _ in range(100):
            stats = srv.stats()
            if stats["running"] == 0:
                break
            await asyncio.sleep(0.01)
        return nxt, stats

    nxt, stats = with_server(body, decode_tps=1_000.0, batch_slots=1, max_queue=1)
    # the only slot held 50,000 tokens (50 s): the next request got it back at once
    assert nxt.status == 200 and nxt.body["usage"]["completion_tokens"] == 3
    assert nxt.e2e < 5.0
    assert stats["cancelled"] == 1 and stats["running"] == 0 and stats["kv_used"] == 0


# -- faults --------------------------------------------------------------------------------

def test_faults_chosen_by_header():
    async def body(srv, s):
        req = {"prompt": "a b", "max_tokens": 8, "ignore_eos": True, "stream": True}
        out: dict[str, Any] = {}
        for mode in ("reset", "malformed", "error", "slow", "bogus", "none"):
            try:
                out[mode] = await call(s, srv.url, req, headers={FAULT_HEADER: mode})
            except aiohttp.ClientError as exc:
                out[mode] = exc
        whole = dict(req, stream=False)
        try:
            out["reset-whole"] = await call(s, srv.url, whole, headers={FAULT_HEADER: "reset"})
        except aiohttp.ClientError as exc:
            out["reset-whole"] = exc
        out["malformed-whole"] = await call(s, srv.url, whole,
                                            headers={FAULT_HEADER: "malformed"})
        out["after"] = await call(s, srv.url, req)
        await asyncio.sleep(0.05)
        out["stats"] = srv.stats()
        return out

    got = with_server(body, decode_tps=2_000.0, slow_first_byte_s=0.15)
    assert isinstance(got["reset"], aiohttp.ClientPayloadError)
    assert isinstance(got["reset-whole"], aiohttp.ClientError)
    bad = [e for e in got["malformed"].events if isinstance(e, bytes)]
    assert len(bad) == 1 and got["malformed"].events[-1] == "[DONE]"
    assert len(got["malformed"].chunks) == 8
    assert isinstance(got["malformed-whole"].body, bytes)   # not JSON
    assert got["error"].status == 500 and got["error"].body["error"]["code"] == 500
    assert got["slow"].status == 200 and got["slow"].ttft >= 0.15
    assert len(got["slow"].chunks) == 8
    assert got["bogus"].status == 400 and got["none"].status == 200
    assert got["after"].status == 200 and len(got["after"].chunks) == 8
    stats = got["stats"]
    assert stats["faults"] == {"reset": 2, "malformed": 2, "error": 1, "slow": 1}
    assert stats["running"] == 0 and stats["kv_used"] == 0


def test_fail_rate_draws_are_seeded():
    async def statuses(srv, s):
        return [(await call(s, srv.url, {"prompt": "a", "max_tokens": 1})).status
                for _ in range(24)]

    a = with_server(statuses, seed=7, fail_rate=0.5, faults=("error",))
    b = with_server(statuses, seed=7, fail_rate=0.5, faults=("error",))
    c = with_server(statuses, seed=8, fail_rate=0.5, faults=("error",))
    assert a == b and a != c
    assert set(a) == {200, 500}
    assert set(with_server(statuses, fail_rate=1.0, faults=("error",))) == {500}


# -- lifecycle, config, CLI ----------------------------------------------------------------

def test_background_thread_server_with_a_sync_client():
    with SimServer(**FAST) as srv:
        r = requests.post(srv.url + "/v1/completions",
                          json={"prompt": [1, 2, 3], "max_tokens": 4, "ignore_eos": True},
                          timeout=10)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4
        assert srv.stats()["completed"] == 1
        url = srv.url
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/health", timeout=2)


def test_stopping_ends_streams_in_flight():
    async def main() -> tuple[Any, float]:
        srv = await SimServer(decode_tps=100.0).start_async()
        async with aiohttp.ClientSession() as s:
            task = asyncio.create_task(call(s, srv.url, {
                "prompt": "a", "max_tokens": 10_000, "ignore_eos": True, "stream": True}))
            await asyncio.sleep(0.1)
            t0 = time.perf_counter()
            await srv.stop_async()
            took = time.perf_counter() - t0
            try:
                result: Any = await task
            except aiohttp.ClientError as exc:
                result = exc
        return result, took

    result, took = run(main)
    assert took < 3.0
    assert isinstance(result, aiohttp.ClientError) or (
        "[DONE]" not in result.events and len(result.chunks) < 10_000)


def test_config_is_checked():
    for bad in ({"batch_slots": 0}, {"decode_tps": 0}, {"fail_rate": 1.5},
                {"faults": ("explode",)}, {"reject_status": 500}, {"max_queue": -1}):
        with pytest.raises(ValueError):
            SimConfig(**bad).check()
    assert SimConfig().decode_step_s(1) == pytest.approx(1 / 50)
    assert SimConfig(batch_penalty=0.5).decode_step_s(3) == pytest.approx(2 / 50)
    assert SimConfig().decode_step_s(0) == 0.0


def test_cli_serves_until_terminated(tmp_path, cli: Cli):
    bad = cli("serve-sim", "--batch-slots", "0")
    assert bad.exit_code == 2 and "batch_slots must be > 0" in bad.output
    proc = subprocess.Popen(
        [sys.executable, "-c", "from llmtraces.cli import main; main()", "serve-sim",
         "--port", "0", "--batch-slots", "2", "--duration", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+) .*2 slots", line)
        assert m, line + (proc.stderr.read() if proc.stderr else "")
        assert requests.get(m.group(1) + "/health", timeout=5).json() == {"status": "ok"}
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


# --- the benchmark endpoints: /metrics, /version, /reset_prefix_cache ---------------------------

def _gauges(text: str) -> dict[str, float]:
    """``name -> value`` of the sample lines of a Prometheus text body (labels dropped)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("{")[0], line.rsplit(" ", 1)[1]
            out[name] = float(value)
    return out


def test_metrics_follow_the_scheduler_under_vllm_names():
    with SimServer(prefill_tps=1e6, decode_tps=50.0, batch_slots=2, kv_tokens=1000,
                   api_key="k") as srv:
        idle = requests.get(srv.url + "/metrics", timeout=5)  # no key needed, as in vLLM
        assert idle.status_code == 200 and idle.headers["Content-Type"].startswith("text/plain")
        assert '# TYPE vllm:num_requests_running gauge' in idle.text
        assert 'vllm:num_requests_running{model_name="llmtraces-sim"} 0.0' in idle.text
        body = {"prompt": [1, 2, 3, 4], "max_tokens": 46, "ignore_eos": True}
        auth = {"Authorization": "Bearer k"}
        with ConcurrentPosts(srv.url, body, auth, 3):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                busy = _gauges(requests.get(srv.url + "/metrics", timeout=5).text)
                if busy["vllm:num_requests_waiting"] == 1:
                    break
                time.sleep(0.02)
            assert busy["vllm:num_requests_running"] == 2
            assert busy["vllm:num_requests_waiting"] == 1
            assert busy["vllm:kv_cache_usage_perc"] == pytest.approx(0.1)  # 2 x 50 of 1000
        done = _gauges(requests.get(srv.url + "/metrics", timeout=5).text)
    assert done["vllm:num_requests_running"] == done["vllm:num_requests_waiting"] == 0
    assert done["vllm:generation_tokens_total"] == 3 * 46
    assert done["vllm:request_success_total"] == 3 and done["vllm:prompt_tokens_total"] == 12


class ConcurrentPosts:
    """``n`` completions posted on threads for the length of a ``with`` block (then joined)."""

    def __init__(self, url: str, body: dict[str, Any], headers: dict[str, str], n: int):
        self.threads = [threading.Thread(target=requests.post, args=(url + "/v1/completions",),
                                         kwargs={"json": body, "headers": headers,
                                                 "timeout": 30}) for _ in range(n)]

    def __enter__(self) -> None:
        for t in self.threads:
            t.start()

    def __exit__(self, *exc: object) -> None:
        for t in self.threads:
            t.join(30)


def test_version_and_prefix_cache_reset():
    prompt = {"prompt": list(range(1, 129)), "max_tokens": 1, "ignore_eos": True}
    with SimServer(**FAST) as srv:
        version = requests.get(srv.url + "/version", timeout=5).json()
        assert version == {"version": __version__, "engine": "serve-sim",
                           "batch_slots": srv.config.batch_slots}

        def cached() -> int:
            r = requests.post(srv.url + "/v1/completions", json=prompt, timeout=10)
            return int(r.json()["usage"]["prompt_tokens_details"]["cached_tokens"])

        assert cached() == 0 and cached() == 112  # 8 blocks of 16, the last one prefilled
        reset = requests.post(srv.url + "/reset_prefix_cache", timeout=5)
        assert reset.status_code == 200 and reset.json() == {"success": True,
                                                             "blocks_dropped": 8}
        assert cached() == 0 and srv.stats()["prefix_cache_resets"] == 1
        assert requests.get(srv.url + "/reset_prefix_cache", timeout=5).status_code == 405
