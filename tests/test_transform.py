"""Transforms: each one's exact effect on a small trace, metadata, determinism, errors, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from llmtraces.api import export
from llmtraces.cli import main
from llmtraces.formats.parquet import read_metadata, write
from llmtraces.pipeline.convert import convert_file
from llmtraces.schema import TraceStream, make_batch
from llmtraces.transforms import (
    EmptyResultWarning,
    Plan,
    TransformError,
    filter,
    head,
    mean_rate,
    merge,
    rate_scale,
    rebase,
    sample,
    time_scale,
    to_table,
    window,
)
from llmtraces.transforms.sampling import sample_keys, session_hash, splitmix64

S = 1_000_000
ORIGIN = "2023-11-16T18:00:00.000000Z"
TIME = {"kind": "absolute", "native_format": "x", "zone": "UTC", "zone_assumed": False,
        "resolution": "1us", "origin": "first row"}

#: 10 requests one second apart: sessions a (rows 0, 2, 4: a chain) and b (1, 5), the rest
#: alone; models and failures alternate so each filter has something to drop.
ROWS: dict[str, list[Any]] = {
    "request_id": list(range(10)),
    "arrival_us": [i * S for i in range(10)],
    "input_tokens": [10 * (i + 1) for i in range(10)],
    "output_tokens": [i for i in range(10)],
    "failed": [False, True, False, None, False, True, False, False, None, False],
    "model": ["m1", "m2"] * 5,
    "service": ["api"] * 5 + ["chat"] * 5,
    "session_id": ["a", "b", "a", None, "a", "b", None, None, None, None],
    "turn": [0, 0, 1, None, 2, 1, None, None, None, None],
    "parent_request_id": [None, None, 0, None, 2, 1, None, None, None, None],
    "source_row": list(range(10)),
}


def small_meta(**extra: Any) -> dict[str, Any]:
    return {"schema_version": "1.0", "source": None, "trace": "small", "rows": 10,
            "time": dict(TIME), "time_origin": ORIGIN, "licence": None, **extra}


def small_batch(**changes: list[Any]) -> pa.RecordBatch:
    cols = {**ROWS, **changes}
    return make_batch(len(cols["request_id"]), cols)


@pytest.fixture()
def small(tmp_path: Path) -> Path:
    path = tmp_path / "small.parquet"
    write(TraceStream(iter([small_batch()]), small_meta()), path)
    return path


def col(table: pa.Table, name: str) -> list[Any]:
    return table.column(name).to_pylist()


def check_ids(table: pa.Table) -> None:
    """request_id is 0..n-1 and every parent link points to an earlier kept row."""
    assert col(table, "request_id") == list(range(table.num_rows))
    for rid, parent in zip(col(table, "request_id"), col(table, "parent_request_id"),
                           strict=True):
        assert parent is None or 0 <= parent < rid


def test_window_keeps_the_half_open_span_and_renumbers(small: Path):
    s = window(small, 2, 3)  # [2 s, 5 s)
    t = to_table(s)
    assert col(t, "source_row") == [2, 3, 4]
    assert col(t, "arrival_us") == [2 * S, 3 * S, 4 * S]  # not moved
    check_ids(t)
    # row 2's parent (row 0) was dropped: null; row 4's parent (row 2) is now id 0
    assert col(t, "parent_request_id") == [None, None, 0]
    assert s.meta["transforms"] == [{"op": "window", "start_s": 2, "duration_s": 3}]
    assert s.meta["rows"] == 3 and s.meta["time_origin"] == ORIGIN


def test_head_is_a_prefix_and_stops_reading_parquet(small: Path, tmp_path: Path):
    t = to_table(head(small, 3))
    assert col(t, "source_row") == [0, 1, 2]
    assert col(t, "parent_request_id") == [None, None, 0]
    big = tmp_path / "big.parquet"
    batches = [small_batch(request_id=[i + 10 * k for i in range(10)]) for k in range(3)]
    pulled = []

    def counted():
        for b in batches:
            pulled.append(1)
            yield b
    s = head(TraceStream(counted(), small_meta(rows=30)), 12)
    assert to_table(s).num_rows == 12 and len(pulled) == 2  # third batch never read
    write(TraceStream(iter(batches), small_meta(rows=30)), big)
    assert to_table(head(big, 0)).num_rows == 0


def test_head_reads_a_native_stream_to_its_end(small: Path):
    """A stream whose row count is not yet known (a native reader) is drained, so the reader
    gets to check the whole file."""
    pulled = []

    def native():
        for b in (small_batch(), small_batch(request_id=list(range(10, 20)))):
            pulled.append(1)
            yield b
    meta = small_meta(rows=None)
    assert to_table(head(TraceStream(native(), meta), 2)).num_rows == 2
    assert len(pulled) == 2


def test_filter_by_model_service_and_failed(small: Path):
    assert col(to_table(filter(small, model="m2")), "source_row") == [1, 3, 5, 7, 9]
    assert col(to_table(filter(small, model=["m1", "m2"], service="chat")),
               "source_row") == [5, 6, 7, 8, 9]
    assert col(to_table(filter(small, failed=True)), "source_row") == [1, 5]
    t = to_table(filter(small, failed=False))  # null failed counts as not failed
    assert col(t, "source_row") == [0, 2, 3, 4, 6, 7, 8, 9]
    check_ids(t)
    assert col(t, "parent_request_id")[:5] == [None, 0, None, 1, None]
    s = filter(small, model="m1", failed=False)
    assert s.meta["transforms"] == [{"op": "filter", "model": ["m1"], "failed": False}]
    with pytest.warns(EmptyResultWarning, match=r"filter\(model=\['nope'\]\) kept none of the "
                      "10 requests of small"):
        assert to_table(filter(small, model="nope")).num_rows == 0


def test_sample_keys_are_the_documented_hashes():
    b = small_batch()
    keys = sample_keys(b, 7).to_pylist()
    sess = ROWS["session_id"]
    for i, key in enumerate(keys):
        h = (session_hash(sess[i], 7) if sess[i] is not None
             else splitmix64(i ^ splitmix64(7)))
        assert key == (h >> 11) * 2.0 ** -53
    expected = int.from_bytes(hashlib.blake2b(b"a", digest_size=8, key=b"7").digest(),
                              "little")
    assert session_hash("a", 7) == expected
    assert keys[0] == keys[2] == keys[4]  # one key per session


def _sessions_trace(tmp_path: Path, n: int = 5000) -> Path:
    """n requests in sessions of 1..4 requests, with parent chains, plus sessionless ones."""
    sid, parent, turn = [], [], []
    last: dict[str, int] = {}
    for i in range(n):
        key = None if i % 3 == 0 else f"s{(i * 7) % (n // 3)}"
        sid.append(key)
        parent.append(last.get(key) if key else None)
        turn.append(None if key is None else (turn[last[key]] + 1 if key in last else 0))
        if key:
            last[key] = i
    cols = {"request_id": list(range(n)), "arrival_us": [i * 1000 for i in range(n)],
            "input_tokens": [1] * n, "session_id": sid, "parent_request_id": parent,
            "turn": turn, "source_row": list(range(n))}
    path = tmp_path / "sessions.parquet"
    write(TraceStream(iter([make_batch(n, cols)]), small_meta(rows=n)), path)
    return path


def test_sample_keeps_sessions_whole_and_is_deterministic(tmp_path: Path):
    path = _sessions_trace(tmp_path)
    full = pq.read_table(path)
    sizes: dict[str, int] = {}
    for key in col(full, "session_id"):
        if key is not None:
            sizes[key] = sizes.get(key, 0) + 1
    t = to_table(sample(path, fraction=0.3, seed=5))
    kept: dict[str, int] = {}
    for key in col(t, "session_id"):
        if key is not None:
            kept[key] = kept.get(key, 0) + 1
    assert kept and all(kept[k] == sizes[k] for k in kept)  # whole sessions only
    check_ids(t)
    # links inside kept sessions survive: every non-first turn still has its parent
    assert all((p is None) == (turn in (None, 0)) for p, turn in
               zip(col(t, "parent_request_id"), col(t, "turn"), strict=True))
    units = len(sizes) + col(full, "session_id").count(None)
    kept_units = len(kept) + col(t, "session_id").count(None)
    assert abs(kept_units / units - 0.3) < 0.03  # ~3 sigma for ~3300 units
    again = to_table(sample(path, fraction=0.3, seed=5))
    assert again.equals(t)
    other = to_table(sample(path, fraction=0.3, seed=6))
    assert col(other, "source_row") != col(t, "source_row")


def test_sample_n_keeps_at_most_n(tmp_path: Path, small: Path):
    path = _sessions_trace(tmp_path)
    s = sample(path, n=1000, seed=2)
    t = to_table(s)
    assert 990 <= t.num_rows <= 1000  # only a session straddling the cut is left out
    assert s.meta["transforms"][0]["n"] == 1000 and "threshold" in s.meta["transforms"][0]
    # with no sessions, exactly n
    alone = to_table(sample(filter(small, model="m1"), n=3, seed=0))
    assert alone.num_rows == 3
    assert to_table(sample(small, n=50)).num_rows == 10
    with pytest.raises(TransformError, match="exactly one"):
        sample(small)


def test_time_scale_rate_scale_and_rebase(small: Path):
    t = to_table(time_scale(small, 4))
    assert col(t, "arrival_us") == [i * S // 4 for i in range(10)]
    assert mean_rate(small) == pytest.approx(1.0)
    s = rate_scale(small, 3.0)
    t = to_table(s)
    assert mean_rate(t) == pytest.approx(3.0, rel=1e-6)
    assert s.meta["transforms"][0]["from_rps"] == pytest.approx(1.0)
    assert s.meta["transforms"][0]["rps"] == 3.0
    r = rebase(window(small, 3, 4))
    t = to_table(r)
    assert col(t, "arrival_us") == [0, S, 2 * S, 3 * S]
    assert r.meta["time_origin"] == "2023-11-16T18:00:03.000000Z"
    assert [e["op"] for e in r.meta["transforms"]] == ["window", "rebase"]
    assert r.meta["transforms"][1]["shift_us"] == 3 * S


def test_first_passes_spool_a_plain_stream(small: Path):
    """A stream that cannot be re-read is spooled once; the result is the same, and can be
    read again (from the spool)."""
    plain = TraceStream(iter([small_batch()]), small_meta())
    s = rate_scale(window(plain, 2, 6), 2.0)
    t = to_table(s)
    assert t.num_rows == 6 and mean_rate(t) == pytest.approx(2.0)
    assert col(t, "arrival_us")[0] == 1 * S  # 2 s at 2x
    assert to_table(s).equals(t)


def test_time_transforms_refuse_traces_without_timing(small: Path):
    untimed = small_meta(time={**TIME, "kind": "none"})
    for op in (lambda s: window(s, 0, 1), lambda s: rebase(s), lambda s: time_scale(s, 2),
               lambda s: rate_scale(s, 1), lambda s: merge([s])):
        with pytest.raises(TransformError, match="needs arrival times"):
            op(TraceStream(iter([small_batch()]), dict(untimed)))
    nulls = small_batch(arrival_us=[None] * 10)
    with pytest.raises(TransformError, match="null arrival_us"):
        to_table(window(TraceStream(iter([nulls]), small_meta()), 0, 1))
    with pytest.raises(TransformError, match="null"):
        rebase(TraceStream(iter([nulls]), small_meta()))
    assert to_table(head(TraceStream(iter([nulls]), small_meta()), 2)).num_rows == 2
    for bad in (lambda: time_scale(small, 0), lambda: rate_scale(small, -1),
                lambda: window(small, 0, 0), lambda: head(small, -1),
                lambda: sample(small, fraction=2)):
        with pytest.raises(TransformError):
            bad()


def _second(tmp_path: Path, origin: str | None) -> Path:
    rows = {"request_id": [0, 1, 2], "arrival_us": [500_000, 2 * S, 2 * S],
            "input_tokens": [1, 2, 3], "session_id": ["a", "a", None],
            "parent_request_id": [None, 0, None], "extra": [None, '{"x": 1}', "{}"],
            "source_row": [0, 1, 2]}
    path = tmp_path / "second.parquet"
    meta = small_meta(rows=3, trace="second", time_origin=origin,
                      licence={"spdx": "CC-BY-NC-4.0", "redistributable": False,
                               "commercial_use": False, "url": "u", "attribution": "a"})
    write(TraceStream(iter([make_batch(3, rows)]), meta), path)
    return path


def test_merge_interleaves_on_one_axis(small: Path, tmp_path: Path):
    second = _second(tmp_path, None)  # no origin: overlaid at 0
    m = merge([head(small, 4), second])
    t = to_table(m)
    assert col(t, "arrival_us") == [0, 500_000, S, 2 * S, 2 * S, 2 * S, 3 * S]
    # ties: the earlier input first; inputs keep their own order
    assert col(t, "source_row") == [0, 0, 1, 2, 1, 2, 3]
    check_ids(t)
    assert col(t, "session_id") == ["0:a", "1:a", "0:b", "0:a", "1:a", None, None]
    # input 0: row 2's parent row 0 -> id 0; input 1: row 1's parent row 0 -> id 1
    assert col(t, "parent_request_id") == [None, None, None, 0, 1, None, None]
    assert [json.loads(x) for x in col(t, "extra")] == [
        {"merge_input": 0}, {"merge_input": 1}, {"merge_input": 0}, {"merge_input": 0},
        {"merge_input": 1, "x": 1}, {"merge_input": 1}, {"merge_input": 0}]
    meta = m.meta
    assert meta["transforms"] == [{"op": "merge", "inputs": 2, "align": "zero",
                                   "offsets_us": [0, 0]}]
    assert [x["trace"] for x in meta["merged"]] == ["small", "second"]
    assert meta["merged"][0]["transforms"] == [{"op": "head", "n": 4}]
    assert meta["licence"]["redistributable"] is False  # the stricter input wins
    assert meta["rows"] == 7 and meta["time_origin"] is None


def test_merge_aligns_absolute_origins_and_nests(small: Path, tmp_path: Path):
    second = _second(tmp_path, "2023-11-16T18:00:01.000000Z")  # starts 1 s later
    m = merge([head(small, 3), second])
    t = to_table(m)
    assert col(t, "arrival_us") == [0, S, 3 * S // 2, 2 * S, 3 * S, 3 * S]
    assert m.meta["time_origin"] == ORIGIN
    assert m.meta["transforms"][0]["offsets_us"] == [0, S]
    twice = to_table(merge([t, second]))
    tags = [json.loads(x)["merge_input"] for x in col(twice, "extra")]
    assert [0, 1] in tags and 1 in tags  # a merged trace merged again: paths


def test_merge_needs_sorted_inputs(small: Path):
    rows = small_batch(arrival_us=[i * S for i in (0, 1, 3, 2, 4, 5, 6, 7, 8, 9)])
    with pytest.raises(TransformError, match="input 1 goes back in time at row 3"):
        to_table(merge([small, TraceStream(iter([rows]), small_meta())]))
    with pytest.raises(TransformError, match="absolute"):
        merge([small, TraceStream(iter([small_batch()]), small_meta(time_origin=None))],
              align="absolute")


def test_transforms_stream_in_bounded_batches(tmp_path: Path):
    n = 300_000
    cols = {"request_id": list(range(n)), "arrival_us": list(range(n)),
            "input_tokens": [1] * n, "source_row": list(range(n)),
            "parent_request_id": [None] + list(range(n - 1))}
    path = tmp_path / "long.parquet"
    write(TraceStream(iter([make_batch(n, cols)]), small_meta(rows=n)), path)
    s = window(path, 0.1, 0.1)  # µs 100000..199999
    sizes = [b.num_rows for b in s.batches]
    assert max(sizes) <= 1 << 17 and sum(sizes) == 100_000
    t = to_table(window(path, 0.1, 0.1))
    assert col(t, "parent_request_id")[:3] == [None, 0, 1]  # the chain, renumbered


def test_plan_applies_in_the_documented_order(small: Path):
    plan = Plan(head=4, window=(1.0, 8.0), rebase=True, speedup=2.0, model=["m1"])
    s = plan.apply(small)
    assert [e["op"] for e in s.meta["transforms"]] == ["filter", "window", "head", "rebase",
                                                      "time_scale"]
    # m1 rows: 0 2 4 6 8; in [1, 9) s: 2 4 6 8; rebased to 0 2 4 6 s; at 2x: 0 1 2 3 s
    assert col(to_table(s), "arrival_us") == [0, S, 2 * S, 3 * S]
    with pytest.raises(TransformError):
        Plan(speedup=2, rps=1)


# --- CLI -------------------------------------------------------------------------------------

def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_cli_convert_with_transforms(code_csv: Path, tmp_path: Path):
    out = tmp_path / "w.parquet"
    code, text = run("convert", str(code_csv), "-o", str(out), "--rps", "10", "--rebase",
                     "--window", "600:1200", "--sample", "0.5", "--seed", "3")
    assert code == 0, text
    meta = read_metadata(out)
    assert [e["op"] for e in meta["transforms"]] == ["window", "sample", "rebase",
                                                    "rate_scale"]
    assert meta["native_file"] == code_csv.name and meta["native_sha256"]
    t = pq.read_table(out)
    assert meta["rows"] == t.num_rows and f"({t.num_rows:,} rows)" in text
    assert col(t, "arrival_us")[0] == 0 and mean_rate(t) == pytest.approx(10.0, rel=1e-5)
    # a unified input: the same options, first passes read its columns
    again = tmp_path / "again.parquet"
    code, text = run("convert", str(out), "-o", str(again), "--head", "10", "--speedup", "2")
    assert code == 0, text
    assert pq.read_table(again).num_rows == 10
    assert [e["op"] for e in read_metadata(again)["transforms"]][-2:] == ["head",
                                                                          "time_scale"]


def test_cli_convert_merge_and_filters(code_csv: Path, conv_csv: Path, tmp_path: Path):
    out = tmp_path / "m.parquet"
    code, text = run("convert", str(code_csv), "--merge", str(conv_csv), "-o", str(out),
                     "--service", "code", "--no-failed")
    assert code == 0, text
    t = pq.read_table(out)  # the conv fixture, read by path, has no service: filtered out
    assert t.num_rows == 8819 and set(col(t, "service")) == {"code"}
    check_ids(t)
    meta = read_metadata(out)
    assert [x["native_file"] for x in meta["merged"]] == [code_csv.name, conv_csv.name]
    assert meta["transforms"][0]["align"] == "absolute"  # both Azure files have an origin
    assert [e["op"] for e in meta["transforms"]] == ["merge", "filter"]
    both = tmp_path / "both.parquet"
    assert run("convert", str(code_csv), "--merge", str(conv_csv), "-o", str(both))[0] == 0
    t = pq.read_table(both)
    assert t.num_rows == 8828 and col(t, "arrival_us") == sorted(col(t, "arrival_us"))


def test_cli_convert_export_with_transforms(code_csv: Path, tmp_path: Path):
    out = tmp_path / "h.csv"
    code, text = run("convert", str(code_csv), "--to", "azure", "-o", str(out), "--head", "3")
    assert code == 0, text
    assert out.read_bytes().splitlines() == code_csv.read_bytes().splitlines()[:4]


@pytest.mark.parametrize("args, message", [
    (["--speedup", "2", "--rps", "1"], "give one"),
    (["--window", "10"], "START:DURATION"),
    (["--window", "10:-1"], "--window DURATION: -1 is out of range; expected seconds in (0, 1e12]"),
    (["--sample", "0"], "fraction in (0, 1)"),
    (["--sample", "x"], "not a number"),
    (["--rps", "0"], "--rps: 0 is out of range; expected a finite number of requests/s >= 1e-06"),
])
def test_cli_convert_bad_transform_options(code_csv: Path, tmp_path: Path, args: list[str],
                                           message: str):
    out = tmp_path / "x.parquet"
    code, text = run("convert", str(code_csv), "-o", str(out), *args)
    assert code == 2 and message in text
    assert not out.exists()


def test_cli_convert_transforms_need_a_path(tmp_path: Path):
    code, text = run("convert", "azure-llm-2023", "--head", "3", "--offline")
    assert code == 2 and "transforms apply to a file PATH" in text


def test_cli_convert_no_timing_fails_cleanly(tmp_path: Path, small: Path):
    path = tmp_path / "untimed.parquet"
    write(TraceStream(iter([small_batch(arrival_us=[None] * 10)]),
                      small_meta(time={**TIME, "kind": "none"})), path)
    out = tmp_path / "o.parquet"
    code, text = run("convert", str(path), "-o", str(out), "--window", "0:10")
    assert code == 1 and "needs arrival times" in text and not out.exists()


def test_convert_file_hook(code_csv: Path, tmp_path: Path):
    out = tmp_path / "hook.parquet"
    seen = []

    def hook(stream: TraceStream, path: Path) -> TraceStream:
        seen.append(path)
        return head(stream, 7)
    rows, report = convert_file(code_csv, out, transform=hook)
    assert rows == 7 and seen == [code_csv] and not report.errors
    assert read_metadata(out)["transforms"] == [{"op": "head", "n": 7}]


def test_a_scale_past_int64_microseconds_is_one_line(tmp_path: Path, code_csv: Path):
    """Probe F22: ``--speedup 1e-300`` is a TransformError naming the scale, not ArrowInvalid."""
    out = tmp_path / "x.parquet"
    with pytest.raises(TransformError, match=r"scaling by 1e-300 .* past what int64"):
        export(time_scale(code_csv, 1e-300), out)
    assert not out.exists() and not list(tmp_path.iterdir())
