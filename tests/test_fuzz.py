"""Property-based fuzzing of every native reader and of the unified Parquet reader (issue 17).

The property, for any input: ``llmtraces convert IN -o OUT`` either writes a unified table
that validates, or fails with one line naming IN (an LLMTracesError, printed by the CLI as its
last line, ``Error: ...``); never another exception, never a partial or temporary file beside
OUT. Each native reader is also run directly on the same bytes (as a registry entry that names
its reader runs it, without sniffing the header): it yields batches, or raises a one-line
LLMTracesError naming the file, and every problem it reports is one line naming the file.

Inputs are the fixtures (tests/fixtures, and files written from them) mutated: random bytes,
truncations, bytes that are not UTF-8 or text in another encoding, extreme numbers, deep
nesting, long lines, broken line ends, broken gzip; unified Parquet files also get columns and
metadata replaced.

Budget: the ``ci`` profile (the default) is derandomized, with 25 examples per test (about
15 s in all on 2 cores); ``LLMTRACES_FUZZ=maintainer`` runs the ``maintainer`` profile: random,
and 20 times as many examples (several minutes).
"""

from __future__ import annotations

import gzip
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FIXTURES
from llmtraces.cli import main
from llmtraces.errors import LLMTracesError
from llmtraces.formats import get_format
from llmtraces.report import Report
from llmtraces.schema import COLUMNS, METADATA_KEY
from llmtraces.text import ReadContext

_COMMON = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture,
                                      HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", derandomize=True, max_examples=25, **_COMMON)
settings.register_profile("maintainer", max_examples=500, **_COMMON)
#: The profile every test here runs under: ``$LLMTRACES_FUZZ``, else ``ci``.
PROFILE = settings.get_profile(os.environ.get("LLMTRACES_FUZZ", "ci"))
#: A line limit low enough that the "long" mutation crosses it with small files.
MAX_LINE = 16 << 10

# --- seeds: one or more real files per native reader ---------------------------------------------

MARCONI = FIXTURES / "marconi" / "lmsys_sps=0.5_nums=2.jsonl"
NATIVE = {
    "azure-csv": FIXTURES / "azure-llm-2023" / "conv_head.csv",
    "azure-csv-2024": FIXTURES / "azure-llm-2024" / "code_1week_head.csv",
    "azure-csv-gz": FIXTURES / "azure-lmm-2025" / "multimodal_head.csv.gz",
    "bailian-jsonl": FIXTURES / "qwen-bailian" / "bailian_layout.jsonl",
    "burstgpt-csv": FIXTURES / "burstgpt" / "head_3.csv",
    "kavier-csv": FIXTURES / "marconi" / "input_marconi.csv",
    "kavier-measurements-csv": FIXTURES / "kavier-traces" / "raw_prefill.csv",
    "kavier-performance-csv": FIXTURES / "kavier" / "performance_tracing_head.csv",
    "marconi-jsonl": MARCONI,
    "mooncake-jsonl": FIXTURES / "mooncake" / "synthetic_trace.jsonl",
    "splitwise-csv": FIXTURES / "derived" / "rr_code_50_head.csv",
    "vidur-csv": FIXTURES / "derived" / "splitwise_code_head.csv",
    "vidur-lengths-csv": FIXTURES / "derived" / "arxiv_summarization_stats_head.csv",
}
#: Readers whose seed is written by llmtraces from MARCONI (``--to`` the writer).
WRITTEN = {"vllm-timed-trace-jsonl": ("vllm-timed-trace", ".jsonl"),
           "guidellm-trace-jsonl": ("guidellm", ".jsonl"),
           "llmtraces-csv": ("csv", ".csv"), "llmtraces-jsonl": ("jsonl", ".jsonl"),
           "kavier-parquet": ("kavier-parquet", ".parquet")}
READERS = sorted([*NATIVE, *WRITTEN, "lmsys-chat-parquet"])


def reader_of(seed: str) -> str:
    """The native format a seed is read with (``azure-csv-2024`` is an ``azure-csv``)."""
    return "azure-csv" if seed.startswith("azure-csv") else seed


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _lmsys_shard(dest: Path) -> Path:
    message = pa.struct([("content", pa.string()), ("role", pa.string())])
    table = pa.table({
        "conversation_id": ["c0", "c1"], "model": ["vicuna-13b", "gpt-4"],
        "conversation": pa.array([[{"content": "What is 2+2?", "role": "user"},
                                   {"content": "4.", "role": "assistant"}],
                                  [{"content": "Bonjour, ça va? 北京", "role": "user"},
                                   {"content": "Oui.", "role": "assistant"}]],
                                 pa.list_(message)),
        "turn": [1, 1], "language": ["English", "French"], "redacted": [False, False]})
    pq.write_table(table, dest)
    return dest


class Seeds(dict[str, bytes]):
    """Seed bytes by reader; printed short in a failing example (the input is printed)."""

    def __repr__(self) -> str:
        return f"<seeds: {', '.join(self)}>"


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Seeds:
    """Every reader's seed bytes, and ``unified``: a unified Parquet file (token ids, sessions)."""
    root = tmp_path_factory.mktemp("seeds")
    out = Seeds({name: path.read_bytes() for name, path in NATIVE.items()})
    # Mooncake's fixture is 1 MB: 30 lines keep each example fast.
    out["mooncake-jsonl"] = b"\n".join(out["mooncake-jsonl"].split(b"\n")[:30]) + b"\n"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMTRACES_HOME", str(root / "home"))
        for name, (to, suffix) in WRITTEN.items():
            dest = root / f"{name}{suffix}"
            assert run("convert", MARCONI, "--to", to, "-o", dest).exit_code == 0
            out[name] = dest.read_bytes()
        assert run("convert", MARCONI, "-o", root / "u.parquet").exit_code == 0
        out["unified"] = (root / "u.parquet").read_bytes()
    out["lmsys-chat-parquet"] = _lmsys_shard(root / "shard.parquet").read_bytes()
    return out


def suffix_of(seed: str) -> str:
    if seed == "azure-csv-gz":
        return ".csv.gz"
    if seed in WRITTEN:
        return WRITTEN[seed][1]
    return ".parquet" if "parquet" in seed else ".jsonl" if "jsonl" in seed else ".csv"


# --- mutations ------------------------------------------------------------------------------------

EXTREMES = ["NaN", "nan", "inf", "-inf", "Infinity", "-1", "-4", "12.5", "12.0", "1e400", "1e3",
            "0x10", "-0", "9223372036854775807", "9223372036854775808", "-9223372036854775809",
            "18446744073709551616", "1" * 40, "", " 12 ", "+12", "1_000", "\uff11\uff12", "null",
            "true", '"12"', "[]", "{}", '[1, null, "x"]', "[1.5]", "0.0000001", "4.9e-324",
            "2147483648", "-2147483649", "1970-01-01", "9999-12-31 23:59:59.9999999",
            "2023-11-16 18:15:50.9951690+99:99"]
SPECIAL = [b"\xff", b"\x00", b"\r", b"\n", b"\r\n", b",", b'"', b"\\", b"[", b"{", b"}",
           b"\xef\xbb\xbf", b"\xc3", b"\xed\xa0\x80", b"\x1f\x8b", b"\t", b"\xe2\x80\xa8",
           b"\\ud800", b'"\\u0000"', b"\n\n", b" "]
NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


def _split(data: bytes) -> tuple[bytes, bytes]:
    """Header (first line) and body, so most mutations land in the records."""
    cut = data.find(b"\n") + 1
    return data[:cut], data[cut:]


@st.composite
def mutation(draw: st.DrawFn, data: bytes) -> bytes:
    """One change to ``data``: what a broken download, a bad export or an attacker makes."""
    op = draw(st.sampled_from(["truncate", "byte", "insert", "number", "number", "deep",
                               "long", "encoding", "line-ends", "lines", "header"]))
    head, body = _split(data)
    if op == "header":  # the rare change to the first line
        return draw(mutation(head)) + body if head else data
    at = draw(st.integers(0, len(body)))
    if op == "truncate":
        return head + body[:at]
    if op == "byte":
        return head + body[:at] + draw(st.sampled_from(SPECIAL)) + body[at + 1:]
    if op == "insert":
        extra = draw(st.one_of(st.binary(min_size=1, max_size=12), st.sampled_from(SPECIAL)))
        return head + body[:at] + extra + body[at:]
    if op in ("number", "deep"):
        numbers = list(NUMBER.finditer(body))
        if not numbers:
            return head + body
        m = numbers[draw(st.integers(0, len(numbers) - 1))]
        if op == "number":
            new = draw(st.sampled_from(EXTREMES)).encode()
        else:
            depth = draw(st.sampled_from([63, 65, 1_000, 100_000]))
            new = (b"[" * depth + b"]" * depth if draw(st.booleans())
                   else b'{"a": ' * depth + b"1" + b"}" * depth)
        return head + body[:m.start()] + new + body[m.end():]
    if op == "long":
        return head + body[:at] + b"A" * draw(st.sampled_from([MAX_LINE - 64, MAX_LINE + 1,
                                                              4 * MAX_LINE])) + body[at:]
    if op == "encoding":
        text = data.decode("utf-8", "replace")
        codec = draw(st.sampled_from(["utf-16", "utf-16-le", "latin-1", "cp1252", "utf-32"]))
        return text.encode(codec, "replace")
    if op == "line-ends":
        return data.replace(b"\n", draw(st.sampled_from([b"\r", b"\r\n", b"\n\r", b"\x85"])))
    lines = body.split(b"\n")
    i = draw(st.integers(0, max(0, len(lines) - 1)))
    kind = draw(st.sampled_from(["drop", "dup", "swap", "empty"]))
    if kind == "drop":
        del lines[i]
    elif kind == "dup":
        lines.insert(i, lines[i])
    elif kind == "swap":
        lines[i], lines[-1] = lines[-1], lines[i]
    else:
        lines[i] = b""
    return head + b"\n".join(lines)


@st.composite
def mutated(draw: st.DrawFn, data: bytes, gz: bool = False) -> bytes:
    """``data`` with one to three mutations; a gzip seed is mutated inside and recompressed,
    and any text may be gzipped, whole, cut short or followed by garbage."""
    if gz:
        data = gzip.decompress(data)
    for _ in range(draw(st.integers(1, 3))):
        data = draw(mutation(data))
    if gz or draw(st.integers(0, 9)) == 0:
        data = gzip.compress(data, mtime=0)
        damage = draw(st.sampled_from(["none", "none", "cut", "garbage"]))
        if damage == "cut":
            data = data[:draw(st.integers(0, len(data)))]
        elif damage == "garbage":
            data += draw(st.binary(min_size=1, max_size=16))
    return data


# --- the property ---------------------------------------------------------------------------------

@pytest.fixture()
def scratch(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], Path]]:
    """A fresh folder per example (hypothesis runs many in one test), removed afterwards."""
    monkeypatch.setenv("LLMTRACES_MAX_LINE_BYTES", str(MAX_LINE))
    with tempfile.TemporaryDirectory(prefix="llmtraces-fuzz-") as root:
        n = iter(range(1 << 30))

        def fresh() -> Path:
            path = Path(root) / str(next(n))
            path.mkdir()
            return path

        yield fresh


def assert_one_line(message: str, path: Path) -> None:
    assert "\n" not in message and "\r" not in message, message
    assert str(path) in message, message


def check_convert(path: Path, folder: Path) -> None:
    """``convert``: a valid table, or one last ``Error:`` line naming ``path``; nothing else
    left in the output folder either way."""
    out = folder / "out"
    out.mkdir()
    dest = out / "t.parquet"
    r = run("convert", path, "-o", dest)
    left = sorted(p.name for p in out.iterdir())
    if r.exit_code == 0:
        assert left == ["t.parquet"], left
        v = run("validate", dest)
        assert v.exit_code == 0, v.output
        return
    assert isinstance(r.exception, SystemExit) and r.exit_code == 1, (
        f"{type(r.exception).__name__}: {r.exception}\n{r.output}")
    last = r.output.rstrip("\n").rsplit("\n", 1)[-1]
    assert last.startswith("Error: ") and r.output.count("Error: ") == 1, r.output
    assert_one_line(last, path)
    assert left == [], left


def check_reader(reader: str, path: Path) -> None:
    """The reader run directly: batches, or a one-line LLMTracesError naming ``path``; every
    problem reported is one line naming ``path``."""
    ctx = ReadContext(path, Report(), batch_bytes=4096)
    try:
        for batch in get_format(reader).read(ctx):
            assert isinstance(batch, pa.RecordBatch)
    except LLMTracesError as exc:
        assert_one_line(str(exc), path)
    for problem in ctx.report.problems:
        assert_one_line(str(problem), path)
        assert problem.file == str(path), problem


@pytest.mark.parametrize("seed", [*sorted(NATIVE), *sorted(WRITTEN), "lmsys-chat-parquet"])
@PROFILE
@given(data=st.data())
def test_native_reader_fuzz(seeds: Seeds, scratch: Callable[[], Path], seed: str,
                            data: st.DataObject):
    raw = data.draw(mutated(seeds[seed], gz=seed.endswith("-gz")), label="input")
    folder = scratch()
    path = folder / f"in{suffix_of(seed)}"
    path.write_bytes(raw)
    check_convert(path, folder)
    check_reader(reader_of(seed), path)


@PROFILE
@given(raw=st.binary(max_size=256), suffix=st.sampled_from([".csv", ".jsonl", ".parquet",
                                                            ".csv.gz", ""]))
def test_random_bytes(scratch: Callable[[], Path], raw: bytes, suffix: str):
    folder = scratch()
    path = folder / f"in{suffix}"
    path.write_bytes(raw)
    check_convert(path, folder)
    for reader in ("burstgpt-csv", "mooncake-jsonl", "kavier-parquet", "lmsys-chat-parquet"):
        check_reader(reader, path)


# --- the unified Parquet reader -------------------------------------------------------------------

def _rewrite(src: bytes, dest: Path, change: Callable[[pa.Table, dict[bytes, bytes]],
                                                      tuple[pa.Table, dict[bytes, bytes]]]
             ) -> None:
    """``src`` (unified Parquet bytes) written to ``dest`` with its table and file metadata
    changed by ``change``."""
    dest.write_bytes(src)
    kv = {k: v for k, v in (pq.read_metadata(dest).metadata or {}).items()
          if k != b"ARROW:schema"}
    table, kv = change(pq.read_table(dest).replace_schema_metadata(None), kv)
    with pq.ParquetWriter(dest, table.schema) as writer:
        writer.write_table(table)
        writer.add_key_value_metadata(kv)


VALUES: dict[str, list[pa.Array]] = {
    "int": [pa.array([-4, 0, 1], pa.int64()), pa.array([None, 1, 2], pa.int64()),
            pa.array([-(1 << 63), (1 << 63) - 1, 0], pa.int64()),
            pa.array([1 << 63, 0, 1], pa.uint64()), pa.array([2.5, float("nan"), 1.0]),
            pa.array(["1", "x", None])],
    "list": [pa.array([[1, None], None, []], pa.list_(pa.int64())),
             pa.array([[-1], [1 << 40], [0]], pa.list_(pa.int64())),
             pa.array(["[1]", "x", None])],
    "text": [pa.array(["\x00", "\u2028\ufffd", None]), pa.array([1, 2, 3]),
             pa.array(['{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "not json", "[]"])],
}
META = [b"{not json", b"[]", b"123", b'{"rows": "x", "time_origin": []}', b"\xff\xfe",
        b"[" * 100_000 + b"]" * 100_000, b'{"schema_version": "999"}', b""]


@st.composite
def unified_change(draw: st.DrawFn) -> Callable[[pa.Table, dict[bytes, bytes]],
                                                  tuple[pa.Table, dict[bytes, bytes]]]:
    """A change to a unified table: a column replaced, dropped or doubled, or the trace
    metadata replaced."""
    what = draw(st.sampled_from(["column", "column", "drop", "double", "meta", "version"]))
    name = draw(st.sampled_from(["request_id", "arrival_us", "input_tokens", "output_tokens",
                                 "failed", "session_id", "turn", "input_token_ids",
                                 "hash_ids", "extra", "model"]))
    kind = ("list" if name.endswith("ids") else "text" if name in ("extra", "model", "session_id")
            else "int")
    values = draw(st.sampled_from(VALUES[kind]))
    meta = draw(st.sampled_from(META))

    def change(table: pa.Table, kv: dict[bytes, bytes]) -> tuple[pa.Table, dict[bytes, bytes]]:
        i = table.schema.get_field_index(name)
        if what == "column":
            column = pa.concat_arrays([values] * (table.num_rows // 3 + 1))[:table.num_rows]
            table = table.set_column(i, name, column)
        elif what == "drop":
            table = table.remove_column(i)
        elif what == "double":
            table = table.append_column(name, table.column(i))
        elif what == "meta":
            kv[METADATA_KEY.encode()] = meta
        else:
            kv = {k: (meta if k.endswith(b"schema_version") else v) for k, v in kv.items()}
        return table, kv

    return change


def check_load(path: Path) -> None:
    """``llmtraces.load``: a table holding no value ``validate`` refuses (ids 0..n-1, no count
    or time below its minimum), or a one-line error naming ``path`` (issue 17 F7)."""
    import llmtraces
    try:
        table = llmtraces.load(path)
    except LLMTracesError as exc:
        assert_one_line(str(exc), path)
        return
    assert table.column("request_id").to_pylist() == list(range(table.num_rows))
    for col in COLUMNS:
        if col.minimum is not None and not pa.types.is_list(col.type):
            low = pc.min(table.column(col.name)).as_py()
            assert low is None or low >= col.minimum, (col.name, low)


@PROFILE
@given(data=st.data())
def test_unified_parquet_fuzz(seeds: Seeds, scratch: Callable[[], Path],
                              data: st.DataObject):
    folder = scratch()
    path = folder / "in.parquet"
    _rewrite(seeds["unified"], path, data.draw(unified_change(), label="change"))
    check_convert(path, folder)
    check_load(path)


@PROFILE
@given(data=st.data())
def test_unified_parquet_bytes_fuzz(seeds: Seeds, scratch: Callable[[], Path],
                                    data: st.DataObject):
    raw = seeds["unified"]
    at = data.draw(st.integers(0, len(raw)), label="at")
    op = data.draw(st.sampled_from(["cut", "flip", "insert"]), label="op")
    junk = data.draw(st.binary(min_size=1, max_size=8), label="junk")
    raw = {"cut": raw[:at], "flip": raw[:at] + junk + raw[at + len(junk):],
           "insert": raw[:at] + junk + raw[at:]}[op]
    folder = scratch()
    path = folder / "in.parquet"
    path.write_bytes(raw)
    check_convert(path, folder)


def test_every_reader_has_a_seed():
    from llmtraces.formats import all_formats

    assert {reader_of(s) for s in READERS} == set(all_formats())


# --- what the suite found, pinned ---------------------------------------------------------------

def test_lone_surrogate_escape_is_one_line(tmp_path: Path):
    p = tmp_path / "b.jsonl"
    lines = NATIVE["bailian-jsonl"].read_text().splitlines()
    p.write_text(lines[0] + "\n" + lines[1].replace('"chat_id"', '"\\ud800hat_id"', 1) + "\n")
    r = run("convert", p, "-o", tmp_path / "o.parquet")
    assert r.exit_code == 1 and r.output.startswith(
        f"Error: {p}:2: error: a \\u escape gives a lone surrogate"), r.output


def test_unified_text_request_ids_must_be_row_indices(tmp_path: Path):
    assert run("convert", MARCONI, "--to", "csv", "-o", tmp_path / "u.csv").exit_code == 0
    lines = (tmp_path / "u.csv").read_text().splitlines()
    lines[2] = "7" + lines[2][1:]  # the second request claims id 7
    (tmp_path / "u.csv").write_text("\n".join(lines) + "\n")
    r = run("convert", tmp_path / "u.csv", "-o", tmp_path / "o.parquet")
    assert r.exit_code == 1 and r.output.startswith(
        f"Error: {tmp_path / 'u.csv'}:3: error: request_id: request_id must be the row's index"
    ), r.output


@pytest.mark.parametrize("reader", ["lmsys-chat-parquet", "kavier-parquet"])
def test_parquet_text_that_is_not_utf8_is_one_line(tmp_path: Path, reader: str):
    src = tmp_path / "seed.parquet"
    if reader == "kavier-parquet":
        assert run("convert", MARCONI, "--to", "kavier-parquet", "-o", src).exit_code == 0
    else:
        _lmsys_shard(src)
    table = pq.read_table(src)
    name = "model" if reader == "lmsys-chat-parquet" else "session_id"
    i = table.schema.get_field_index(name)
    if not pa.types.is_string(table.schema.field(i).type):
        table = table.set_column(i, name, pa.array(["s"] * table.num_rows))
    bad = pa.array([b"\xffx"] * table.num_rows, pa.binary()).view(pa.string())
    pq.write_table(table.set_column(i, name, bad), tmp_path / "bad.parquet")
    r = run("convert", tmp_path / "bad.parquet", "-o", tmp_path / "o.parquet")
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert r.output.startswith(f"Error: {tmp_path / 'bad.parquet'}:1: error: unreadable Parquet "
                               "data after "), r.output
    assert not (tmp_path / "o.parquet").exists()


def test_an_int32_count_past_its_range_is_one_line(tmp_path: Path):
    p = tmp_path / "mm.csv"
    p.write_text("TIMESTAMP,NumImages,ContextTokens,GeneratedTokens\n"
                 "2025-01-01 00:00:00.000000+00:00,2147483648,10,2\n")
    r = run("convert", p, "-o", tmp_path / "o.parquet")
    assert r.output == (f"Error: {p}:2: error: NumImages: larger than 2,147,483,647 "
                        "(got '2147483648')\n")
