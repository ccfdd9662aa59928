"""Our mooncake and bailian exports, loaded by aiperf's own dataset loader classes.

Optional: runs only where aiperf is installed (``pip install '.[interop]'``; aiperf pulls in
transformers, datasets, scipy and more, so it is not part of the test extra).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_exports import BUNDLED_CODE, MARCONI

import llmtraces
from llmtraces.pipeline.convert import convert_file

mooncake_trace = pytest.importorskip(
    "aiperf.dataset.loader.mooncake_trace",
    reason="aiperf is not installed (pip install '.[interop]' to run the peer-loader tests)")
bailian_trace = pytest.importorskip("aiperf.dataset.loader.bailian_trace")
plugins = pytest.importorskip("aiperf.plugin.plugins")


def prompt_generator() -> SimpleNamespace:
    """What load_dataset touches of aiperf's PromptGenerator (prompts are made later)."""
    return SimpleNamespace(tokenizer=None, _cache={},
                           _hash_id_corpus_rng=SimpleNamespace(set_trace_id=lambda _: None))


def exported(tmp_path: Path, native: Path, fmt: str) -> tuple[Path, list[dict]]:
    unified = tmp_path / "u.parquet"
    convert_file(native, unified)
    out = tmp_path / f"{fmt}.jsonl"
    convert_file(unified, out, to=fmt)
    return unified, [json.loads(line) for line in out.read_text().splitlines()]


@pytest.fixture
def code_head(tmp_path: Path) -> Path:
    head = tmp_path / "code_head.csv"
    head.write_bytes(b"".join(BUNDLED_CODE.read_bytes().splitlines(keepends=True)[:11]))
    return head


@pytest.mark.parametrize("native", ["azure", "sessions"])
def test_aiperf_mooncake_loader_sees_our_requests(tmp_path: Path, code_head: Path, native: str):
    source = code_head if native == "azure" else MARCONI
    unified, rows = exported(tmp_path, source, "mooncake")
    cls = mooncake_trace.MooncakeTraceDatasetLoader
    assert cls.can_load(rows[0]) and not bailian_trace.BailianTraceDatasetLoader.can_load(rows[0])
    loader = cls(filename=str(tmp_path / "mooncake.jsonl"), prompt_generator=prompt_generator())
    assert loader._block_size == 512 == plugins.get_metadata(
        "custom_dataset_loader", "mooncake_trace")["default_block_size"]
    seen = [t for traces in loader.load_dataset().values() for t in traces]
    t = llmtraces.load(unified)
    assert len(seen) == t.num_rows
    seen.sort(key=lambda x: (x.timestamp, x.input_length))
    want = sorted(zip((us // 1000 for us in t.column("arrival_us").to_pylist()),
                      t.column("input_tokens").to_pylist(), strict=True))
    assert [(x.timestamp, x.input_length) for x in seen] == want  # ms
    assert all(len(x.hash_ids) == math.ceil(x.input_length / 512) for x in seen)
    sessions = loader.load_dataset()
    if native == "sessions":  # aiperf groups turns by our session_id
        assert sorted(len(v) for v in sessions.values()) == [3, 3]
    else:
        assert len(sessions) == t.num_rows


def test_aiperf_bailian_loader_sees_our_sessions(tmp_path: Path):
    unified, rows = exported(tmp_path, MARCONI, "bailian")
    cls = bailian_trace.BailianTraceDatasetLoader
    assert cls.can_load(rows[0])
    assert plugins.get_metadata("custom_dataset_loader",
                                "bailian_trace")["default_block_size"] == 16
    loader = cls(filename=str(tmp_path / "bailian.jsonl"), prompt_generator=prompt_generator())
    sessions = loader.load_dataset()
    t = llmtraces.load(unified)
    by_session: dict[str, list[int]] = {}
    for i, s in enumerate(t.column("session_id").to_pylist()):
        by_session.setdefault(s, []).append(i)
    inputs = t.column("input_tokens").to_pylist()
    arrival = t.column("arrival_us").to_pylist()
    got = sorted([(x.input_length, round(x.timestamp * 1000)) for x in v]
                 for v in sessions.values())  # aiperf turns seconds into ms
    want = sorted([(inputs[i], arrival[i]) for i in rows_] for rows_ in by_session.values())
    assert got == want
    for traces in sessions.values():
        assert all(len(x.hash_ids) == math.ceil(x.input_length / 16) for x in traces)
        assert [x.turn for x in traces] == list(range(1, len(traces) + 1))
