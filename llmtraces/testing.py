"""Test helpers for benchmarks built on llmtraces: a tiny synthetic trace, and pytest fixtures.

Downstream test suites get a valid unified trace without any download::

    # conftest.py of your project
    pytest_plugins = ["llmtraces.testing"]

    def test_my_replayer(llmtraces_trace):          # a path to a unified Parquet file
        import llmtraces
        for r in llmtraces.iter_requests(llmtraces_trace):
            ...

The trace is made here, deterministically, in the unified schema; it is not real data. It has
what replayers and simulators branch on: 12 requests over 5.5 s, two models, a failure, three
multi-turn sessions linked by ``parent_request_id`` (one with token ids whose inputs hold the
history), requests without a session, and Mooncake-style 512-token hash blocks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from ._version import __version__
from .formats.parquet import write
from .schema import SCHEMA_VERSION, TraceStream, make_batch, row_index

#: (arrival s, input, output, model, session, turn, parent, failed) of each request.
_ROWS: tuple[tuple[float, int, int, str, str | None, int | None, int | None, bool], ...] = (
    (0.0, 600, 40, "model-a", "s1", 0, None, False),
    (0.25, 1030, 12, "model-b", None, None, None, False),
    (0.5, 300, 0, "model-a", None, None, None, True),
    (1.0, 700, 25, "model-a", "s2", 0, None, False),
    (1.5, 660, 30, "model-a", "s1", 1, 0, False),
    (2.0, 2048, 128, "model-b", None, None, None, False),
    (2.5, 760, 20, "model-a", "s2", 1, 3, False),
    (3.0, 9, 9, "model-b", "s3", 0, None, False),
    (3.5, 120, 64, "model-a", None, None, None, False),
    (4.0, 29, 11, "model-b", "s3", 1, 7, False),
    (5.0, 800, 16, "model-a", "s1", 2, 4, False),
    (5.5, 512, 1, "model-b", None, None, None, False),
)


def _token_ids() -> dict[int, tuple[list[int], list[int]]]:
    """Session s3's ids: turn 1's input is turn 0's input and output, then new user ids."""
    first_in = [1, 8853, 29878, 1064, 29908, 29901, 376, 1792, 613]
    first_out = [1, 8853, 29878, 1064, 29908, 29901, 376, 465, 22137]
    second_in = first_in + first_out + [1, 8853, 29878, 1064, 29908, 29901, 376, 1792, 613, 3,
                                        4]
    second_out = [1, 8853, 29878, 1064, 29908, 29901, 376, 465, 22137, 5, 6]
    return {7: (first_in, first_out), 9: (second_in, second_out)}


def _hash_ids() -> list[list[int]]:
    """512-token block ids: a session's later turns reuse its earlier blocks (a shared prefix)."""
    out: list[list[int]] = []
    next_id = 0
    by_session: dict[str, list[int]] = {}
    for _, inp, _, _, session, _, _, _ in _ROWS:
        blocks = -(-inp // 512)
        known = by_session.get(session, []) if session else []
        ids = known[:blocks]
        while len(ids) < blocks:
            ids.append(next_id)
            next_id += 1
        if session:
            by_session[session] = ids
        out.append(ids)
    return out


def tiny_trace() -> pa.Table:
    """The tiny synthetic trace as a unified table (12 requests, deterministic).

    Examples
    --------
    >>> t = tiny_trace()
    >>> t.num_rows, t.column("session_id").unique().to_pylist()
    (12, ['s1', None, 's2', 's3'])
    >>> import llmtraces
    >>> t.schema.equals(llmtraces.TRACE_SCHEMA)
    True
    """
    n = len(_ROWS)
    ids = _token_ids()
    hashes = _hash_ids()
    cols: dict[str, Any] = {
        "request_id": row_index(0, n),
        "source_row": row_index(0, n),
        "arrival_us": [round(r[0] * 1e6) for r in _ROWS],
        "input_tokens": [r[1] for r in _ROWS],
        "output_tokens": [r[2] for r in _ROWS],
        "model": [r[3] for r in _ROWS],
        "service": ["conversation" if r[4] else "api" for r in _ROWS],
        "session_id": [r[4] for r in _ROWS],
        "turn": [r[5] for r in _ROWS],
        "parent_request_id": [r[6] for r in _ROWS],
        "failed": [r[7] for r in _ROWS],
        "input_token_ids": [ids[i][0] if i in ids else None for i in range(n)],
        "output_token_ids": [ids[i][1] if i in ids else None for i in range(n)],
        "hash_ids": hashes,
        "hash_block_size": [512] * n,
        "extra": [json.dumps({"note": "synthetic"}) if i == 0 else None for i in range(n)],
    }
    return pa.Table.from_batches([make_batch(n, cols)])


def tiny_metadata() -> dict[str, Any]:
    """The trace metadata written with :func:`write_tiny_trace`."""
    return {
        "schema_version": SCHEMA_VERSION, "source": None, "trace": "tiny",
        "native_file": None, "native_sha256": None, "native_verified": False,
        "native_format": None, "converter": f"llmtraces {__version__} (llmtraces.testing)",
        "rows": len(_ROWS),
        "time": {"kind": "relative", "native_format": "synthetic", "zone": None,
                 "zone_assumed": False, "resolution": "1us", "origin": "first request"},
        "time_origin": None, "licence": None, "citation": None, "tokenizer": None,
        "native_layout": {},
    }


def write_tiny_trace(path: str | Path) -> Path:
    """Write the tiny trace as a unified Parquet file (atomically) and return its path.

    Examples
    --------
    >>> import tempfile, llmtraces
    >>> p = write_tiny_trace(Path(tempfile.mkdtemp()) / "tiny.parquet")
    >>> llmtraces.load(p).num_rows
    12
    """
    path = Path(path)
    write(TraceStream(iter(tiny_trace().to_batches()), tiny_metadata()), path)
    return path


try:
    import pytest
except ImportError:  # pragma: no cover - the fixtures need pytest, the helpers do not
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture()
    def llmtraces_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        """An empty llmtraces cache for one test, offline (nothing is downloaded)."""
        root = tmp_path / "llmtraces-home"
        monkeypatch.setenv("LLMTRACES_HOME", str(root))
        monkeypatch.setenv("LLMTRACES_OFFLINE", "1")
        monkeypatch.delenv("LLMTRACES_MIRROR", raising=False)
        return root

    @pytest.fixture()
    def llmtraces_trace(tmp_path: Path) -> Iterator[Path]:
        """A path to the tiny synthetic trace as unified Parquet."""
        yield write_tiny_trace(tmp_path / "tiny.parquet")
