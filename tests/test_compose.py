"""The Python API composes: transforms return a re-readable TraceView that every reader and
writer takes, one vocabulary, export, did-you-mean, warnings for empty results, and
synthesize at the asked rate."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import llmtraces
from llmtraces.api import export, iter_requests, load
from llmtraces.errors import InvalidTraceError, LLMTracesError, UnknownSourceError
from llmtraces.formats import all_writers, get_writer
from llmtraces.formats.parquet import read_metadata
from llmtraces.licensing import sidecar_path
from llmtraces.pipeline.convert import convert_file
from llmtraces.schema import TraceStream
from llmtraces.testing import tiny_trace
from llmtraces.transforms import (
    EmptyResultWarning,
    TraceView,
    TransformError,
    filter,
    fit,
    head,
    mean_rate,
    merge,
    rate_scale,
    rebase,
    sample,
    synthesize,
    time_scale,
    to_table,
    window,
)

#: Every transform, as a function of one trace; each keeps some but not all of the code trace.
OPS: dict[str, Callable[[Any], TraceView]] = {
    "window": lambda t: window(t, 600, 600),
    "head": lambda t: head(t, 100),
    "sample_fraction": lambda t: sample(t, fraction=0.1, seed=3),
    "sample_n": lambda t: sample(t, n=50, seed=3),
    "filter": lambda t: filter(t, service="code"),
    "rebase": lambda t: rebase(window(t, 30, 30)),
    "time_scale": lambda t: time_scale(t, 2.0),
    "rate_scale": lambda t: rate_scale(head(t, 500), rps=20),
    "merge": lambda t: merge([head(t, 10), window(t, 1, 1)]),
}


@pytest.fixture(scope="module")
def code_parquet(tmp_path_factory: pytest.TempPathFactory, code_csv: Path) -> Path:
    out = tmp_path_factory.mktemp("code") / "code.parquet"
    convert_file(code_csv, out)
    return out


def rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()


@pytest.mark.parametrize("op", sorted(OPS))
def test_every_transform_reads_the_same_rows_every_time(op: str, code_parquet: Path):
    view = OPS[op](code_parquet)
    first = view.to_table()
    assert 0 < first.num_rows < 8819 or op in ("filter", "time_scale")
    second = to_table(view)  # the bug this fixes: a second read gave 0 rows
    assert second.equals(first) and rows(second) == rows(first)
    assert view.num_rows == first.num_rows == view.meta["rows"]
    # what a writer gets is the same rows again
    assert sum(b.num_rows for b in view.batches) == first.num_rows


@pytest.mark.parametrize("kind", ["path", "registry id", "table", "view", "native file"])
def test_every_input_kind_is_accepted(kind: str, code_parquet: Path, code_csv: Path):
    inputs: dict[str, Callable[[], Any]] = {
        "path": lambda: code_parquet,
        "registry id": lambda: "azure-llm-2023/code",
        "table": lambda: pq.read_table(code_parquet),
        "view": lambda: head(code_parquet, 8819),
        "native file": lambda: code_csv,
    }
    arrivals = pq.read_table(code_parquet).column("arrival_us").to_pylist()
    want = [i for i, a in enumerate(arrivals) if 30_000_000 <= a < 60_000_000]
    got = window(inputs[kind](), 30, 30).to_table()
    assert got.column("source_row").to_pylist() == want and len(want) == 46
    # load and iter_requests take the same inputs
    t = inputs[kind]()
    assert load(t).num_rows == 8819
    assert sum(1 for _ in iter_requests(inputs[kind](), filter={"output_tokens": 10})) == \
        pc.sum(pc.equal(pq.read_table(code_parquet)["output_tokens"], 10)).as_py()


def test_a_native_file_view_is_read_and_checked_again(code_csv: Path, tmp_path: Path):
    view = head(code_csv, 3)
    assert view.num_rows == 3  # a native file is parsed to know
    a, b = view.to_table(), view.to_table()
    assert a.equals(b) and a.column("input_tokens").to_pylist() == [4808, 3180, 110]
    assert view.meta["native_sha256"] and view.meta["source"] == "azure-llm-2023"
    # every read parses it again, with its checks: an edited copy fails on read
    copy = tmp_path / code_csv.name
    copy.write_bytes(code_csv.read_bytes())
    edited = head(copy, 3)
    assert edited.num_rows == 3
    copy.write_bytes(code_csv.read_bytes()[:-200])
    with pytest.raises(InvalidTraceError, match="not the published"):
        edited.to_table()


def test_a_one_shot_stream_says_so_when_read_twice(code_parquet: Path):
    from llmtraces.formats.parquet import read_stream

    view = head(read_stream(code_parquet), 5)
    assert view.to_table().num_rows == 5
    with pytest.raises(TransformError, match="one-shot stream .* read already"):
        view.to_table()


def test_num_rows_reads_only_what_it_needs(code_parquet: Path, monkeypatch: pytest.MonkeyPatch):
    import llmtraces.formats.parquet as parquet

    view = window(code_parquet, 600, 600)
    whole = llmtraces.transforms.open_trace(code_parquet)
    monkeypatch.setattr(parquet, "read_stream", None)  # a full read would fail now
    assert view.num_rows == 2146  # one pass over request_id and arrival_us
    assert whole.num_rows == 8819  # from the footer


def test_repr_metadata_and_pandas(code_parquet: Path, monkeypatch: pytest.MonkeyPatch):
    view = rebase(window(code_parquet, 600, 600))
    assert repr(view) == ("<TraceView azure-llm-2023/code: 2,146 requests, 9.9 min, "
                          "window(600s..1200s) | rebase()>")
    assert repr(llmtraces.transforms.open_trace(code_parquet)) == \
        "<TraceView azure-llm-2023/code: 8,819 requests, 57.3 min>"
    assert [e["op"] for e in view.metadata["transforms"]] == ["window", "rebase"]
    assert view.metadata["licence"]["spdx"] == "CC-BY-4.0"
    frame = view.to_pandas()
    assert frame.shape == (2146, len(llmtraces.TRACE_SCHEMA)) and frame["arrival_us"][0] == 0
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"llmtraces\[pandas\]"):
        view.to_pandas()


def test_load_and_iter_requests_read_a_view_with_columns_and_filters(code_parquet: Path):
    view = window(code_parquet, 600, 600)
    t = load(view, columns=["request_id", "input_tokens"], filter=pc.field("input_tokens") > 4000)
    full = view.to_table()
    want = [r for r in rows(full) if r["input_tokens"] > 4000]
    assert t.column_names == ["request_id", "input_tokens"]
    assert t.column("request_id").to_pylist() == [r["request_id"] for r in want]
    assert json.loads(t.schema.metadata[b"llmtraces.trace"])["transforms"][0]["op"] == "window"
    got = list(iter_requests(view, columns=["arrival_us"], filter={"service": "code"}))
    assert [r.arrival_us for r in got] == full.column("arrival_us").to_pylist()
    assert {r.input_tokens for r in got} == {None}  # not read
    by_path = next(iter_requests(code_parquet, columns=["input_tokens"]))
    assert (by_path.input_tokens, by_path.request_id) == (4808, None)
    with pytest.raises(InvalidTraceError, match="no column 'input_token' .*did you mean"):
        load(view, columns=["input_token"])
    with pytest.raises(TypeError, match="already one trace"):
        load(view, trace="code")


def test_export_writes_every_format_from_a_view_or_a_table(code_parquet: Path, tmp_path: Path):
    view = head(code_parquet, 20)
    for name, writer in all_writers().items():
        if name in ("kavier-measurements", "marconi"):  # need latencies / token ids
            continue
        out = tmp_path / f"view-{name}{writer.suffix}"
        assert export(view, out, to=name) == 20
        assert out.stat().st_size > 0
    table = view.to_table()
    assert export(table, tmp_path / "t.parquet") == 20
    assert pq.read_table(tmp_path / "t.parquet").equals(pq.read_table(
        tmp_path / "view-parquet.parquet"))
    assert read_metadata(tmp_path / "t.parquet")["transforms"] == [{"op": "head", "n": 20}]
    lines = (tmp_path / "view-mooncake.jsonl").read_text().splitlines()
    assert len(lines) == 20 and json.loads(lines[0])["input_length"] == 4808
    # the registry's writer objects take a Table too (they failed on one)
    assert get_writer("mooncake").write(table, tmp_path / "w.jsonl") == 20
    assert export("azure-llm-2023/code", tmp_path / "all.jsonl", to="vidur") == 8819


def test_export_keeps_a_restricted_licence_beside_the_file(tmp_path: Path):
    t = tiny_trace()
    meta = json.loads(t.schema.metadata[b"llmtraces.trace"]) if t.schema.metadata and \
        b"llmtraces.trace" in t.schema.metadata else {}
    meta["licence"] = {"spdx": "CC-BY-NC-4.0", "redistributable": False,
                       "commercial_use": False, "url": "u", "attribution": "a"}
    t = t.replace_schema_metadata({b"llmtraces.trace": json.dumps(meta).encode()})
    out = tmp_path / "nc.jsonl"
    assert export(t, out, to="mooncake") == 12
    assert "CC-BY-NC-4.0" in sidecar_path(out).read_text()


@pytest.mark.parametrize("call, match", [
    (lambda tmp: export(tiny_trace(), tmp / "x.jsonl", to="moncake"),
     "unknown output format 'moncake' .did you mean 'mooncake'"),
    (lambda tmp: load("azure-llm-2032", trace="code"),
     "unknown source 'azure-llm-2032' .did you mean .*'azure-llm-2023'"),
    (lambda tmp: load("azure-llm-2023", trace="cod"),
     "no trace 'cod' .did you mean 'code'"),
    (lambda tmp: head("burstgtp", 1), "did you mean 'burstgpt'"),
    (lambda tmp: window("azure-llm-2023/conde", 0, 1), "did you mean 'code' or 'conv'"),
])
def test_mistyped_names_get_suggestions(call: Callable[[Path], Any], match: str,
                                        tmp_path: Path):
    with pytest.raises(LLMTracesError, match=match) as err:
        call(tmp_path)
    assert str(err.value).count("did you mean") == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_path_that_does_not_exist_is_no_such_file(tmp_path: Path):
    with pytest.raises(LLMTracesError, match="no such file"):
        head(str(tmp_path / "missing.parquet"), 1)
    with pytest.raises(UnknownSourceError, match="has traces code, conv"):
        head("azure-llm-2023", 1)  # ambiguous: the message says how to pick


def test_an_empty_result_warns_naming_the_window_and_the_span(code_parquet: Path):
    view = window(code_parquet, 5000, 60)
    with pytest.warns(EmptyResultWarning, match=r"window\(5000s\.\.5060s\) kept none of the "
                      r"8,819 requests of azure-llm-2023/code: its arrivals span 0\.0 s\.\."
                      r"3,435\.9 s \(57\.3 min\)") as caught:
        assert view.to_table().num_rows == 0
    assert caught[0].filename == __file__  # points at the line that read it
    with pytest.warns(EmptyResultWarning, match=r"filter\(model=\['nope'\]\) kept none"):
        export(filter(code_parquet, model="nope"), code_parquet.with_name("none.parquet"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # asked for nothing: no warning
        assert head(code_parquet, 0).to_table().num_rows == 0
        assert sample(code_parquet, fraction=0.0).to_table().num_rows == 0
        assert window(code_parquet, 0, 60).num_rows > 0


def test_one_vocabulary(code_parquet: Path):
    s = rate_scale(code_parquet, rps=5.0)
    assert mean_rate(s) == pytest.approx(5.0, rel=1e-6)
    assert s.meta["transforms"][0]["rps"] == 5.0 and "target_rps" not in s.meta["transforms"][0]
    with pytest.raises(TransformError, match=r"for 100 requests use n=100"):
        sample(code_parquet, 100)
    assert sample(code_parquet, n=100).num_rows == 100
    out = code_parquet.with_name("via-convert.parquet")
    rows_, _ = convert_file(code_parquet, out, trace="code")
    assert rows_ == 8819
    assert llmtraces.export is export and llmtraces.filter is filter


@pytest.mark.parametrize("duration_s", [600.0, 7200.0])
def test_synthesize_gives_the_asked_rate_over_the_asked_duration(code_parquet: Path,
                                                                 duration_s: float):
    """The rate is set over the windows the duration covers (the first one for 600 s of a
    model with 1200 s windows), not over every fitted window."""
    model = fit(code_parquet)
    assert model.rate_over(600.0) == pytest.approx(model.windows[0].rate(model.window_s))
    rates = [synthesize(model, rps=20, duration_s=duration_s, seed=s).num_rows / duration_s
             for s in range(4)]
    assert all(r == pytest.approx(20, rel=0.08) for r in rates), rates  # CV 2: sd ~2% at 600 s
    assert sum(rates) / len(rates) == pytest.approx(20, rel=0.03)
    view = synthesize(model, rps=20, duration_s=60, seed=1)
    assert view.to_table().equals(view.to_table())


def test_py_typed_ships_with_the_package():
    assert (Path(llmtraces.__file__).parent / "py.typed").is_file()


def test_views_of_streams_still_work_in_plans_and_hooks(code_csv: Path, tmp_path: Path):
    """convert_file's hook gets a one-shot stream; a transform of it writes once, fine."""
    out = tmp_path / "hook.parquet"
    rows_, _ = convert_file(code_csv, out, transform=lambda s, p: window(s, 30, 30))
    assert rows_ == 46
    assert isinstance(head(TraceStream(iter([]), {}), 1), TraceView)


def test_convert_file_takes_a_view_a_table_or_a_registry_id(code_parquet: Path, tmp_path: Path):
    """Each input converts to the same bytes as export writes from it; the hook gets the
    cached file of a registry id and None for a Table or a view."""
    view = head(code_parquet, 20)
    assert export(view, tmp_path / "e.jsonl", to="mooncake") == 20
    rows_, report = convert_file(view, tmp_path / "v.jsonl", to="mooncake")
    assert rows_ == 20 and report.errors == 0 and report.checked == []
    assert (tmp_path / "v.jsonl").read_bytes() == (tmp_path / "e.jsonl").read_bytes()
    seen: list[Path | None] = []

    def hook(stream: TraceStream, path: Path | None) -> TraceStream:
        seen.append(path)
        return head(stream, 5)

    rows_, _ = convert_file(view.to_table(), tmp_path / "t.parquet", transform=hook)
    assert rows_ == 5 and seen == [None]
    meta = read_metadata(tmp_path / "t.parquet")
    assert meta["transforms"] == [{"op": "head", "n": 20}, {"op": "head", "n": 5}]
    rows_, report = convert_file("azure-llm-2023/code", tmp_path / "r.parquet", transform=hook)
    cached = seen[-1]
    assert rows_ == 5 and cached is not None and cached.name == "part-0.parquet"
    assert report.checked == [str(cached)]
    export("azure-llm-2023/code", tmp_path / "r.csv", to="vidur")
    rows_, _ = convert_file("azure-llm-2023", tmp_path / "r2.csv", to="vidur", trace="code")
    assert rows_ == 8819
    assert (tmp_path / "r2.csv").read_bytes() == (tmp_path / "r.csv").read_bytes()
    with pytest.raises(InvalidTraceError, match="overwrite the input"):
        convert_file("azure-llm-2023/code", cached)


def test_convert_file_of_a_table_keeps_the_licence_and_leaves_nothing_on_error(
        tmp_path: Path):
    meta: dict[str, Any] = {"licence": {"spdx": "CC-BY-NC-4.0", "redistributable": False,
                                        "commercial_use": False, "url": "u",
                                        "attribution": "a"}}
    t = tiny_trace().replace_schema_metadata({b"llmtraces.trace": json.dumps(meta).encode()})
    out = tmp_path / "nc.jsonl"
    rows_, report = convert_file(t, out, to="mooncake")
    assert rows_ == 12 and "CC-BY-NC-4.0" in sidecar_path(out).read_text()
    assert len(report.notices) == 1 and "non-commercial" in report.notices[0]

    def failing() -> Any:
        yield from t.to_batches(max_chunksize=4)[:1]
        raise InvalidTraceError("broken after the first batch")

    bad = tmp_path / "bad.jsonl"
    with pytest.raises(InvalidTraceError, match="broken after"):
        convert_file(TraceStream(failing(), meta), bad, to="mooncake")
    with pytest.raises(InvalidTraceError, match="no columns"):
        convert_file(t.select(["request_id"]), bad, to="mooncake")
    with pytest.raises(TypeError, match="trace name.* registry entry of a native file; the "
                                        "input here is Table"):
        convert_file(t, bad, trace="code")
    with pytest.raises(TypeError, match="source name"):
        convert_file("azure-llm-2023/code", bad, source=llmtraces.source("azure-llm-2023"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nc.jsonl", sidecar_path(out).name]


def test_a_writer_takes_streams_and_tables_and_points_elsewhere_for_the_rest(
        code_parquet: Path, tmp_path: Path):
    writer = get_writer("mooncake")
    with pytest.raises(TypeError, match=r"llmtraces\.export\(trace, path, to='mooncake'\)"):
        writer.write(str(code_parquet), tmp_path / "x.jsonl")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a PosixPath|not a WindowsPath"):
        writer.write(code_parquet, tmp_path / "x.jsonl")  # type: ignore[arg-type]
    with pytest.raises(InvalidTraceError, match=r"no columns \['source_row'"):
        writer.write(load(code_parquet).drop_columns(["source_row"]), tmp_path / "x.jsonl")
    assert not (tmp_path / "x.jsonl").exists()
    table = load(code_parquet)
    assert writer.write(table, tmp_path / "t.jsonl") == 8819
    export(code_parquet, tmp_path / "e.jsonl", to="mooncake")
    assert (tmp_path / "t.jsonl").read_bytes() == (tmp_path / "e.jsonl").read_bytes()
