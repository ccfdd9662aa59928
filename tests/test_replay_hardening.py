"""The replayer against hostile input: a server whose answers have fields of the wrong type
(every row kept, classed ``malformed``), credentials in ``--endpoint`` (refused, never echoed
or written), non-finite and absurd option values (one line each), and a failed start that
must not touch an earlier run's outputs."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("aiohttp")

from aiohttp import web  # noqa: E402
from replay_helpers import RecordingServer  # noqa: E402

import llmtraces  # noqa: E402
from llmtraces.formats.parquet import write  # noqa: E402
from llmtraces.replay import client  # noqa: E402
from llmtraces.replay.errors import ReplayError  # noqa: E402
from llmtraces.replay.http import Pool  # noqa: E402
from llmtraces.replay.options import check_endpoint, redact  # noqa: E402
from llmtraces.replay.producer import Item  # noqa: E402
from llmtraces.replay.recorder import Recorder, rows_table  # noqa: E402
from llmtraces.replay.rows import result_row  # noqa: E402
from llmtraces.replay.runner import ReplayConfig, replay  # noqa: E402
from llmtraces.replay.schedule import Schedule, Timing  # noqa: E402
from llmtraces.schema import TraceStream  # noqa: E402
from llmtraces.testing import tiny_metadata, tiny_trace, write_tiny_trace  # noqa: E402
from llmtraces.transforms import head, to_table  # noqa: E402

FOUR = Timing(speedup=1000, max_requests=4)
CODE = Path(llmtraces.__file__).parent / "data" / "azure-llm-2023" / \
    "AzureLLMInferenceTrace_code.csv"


class Scripted:
    """A loopback OpenAI-shaped server that answers every completion with the same script:
    SSE events (``events``, each a JSON value or raw bytes) or one JSON ``body``."""

    def __init__(self, events: list[Any] | None = None, body: Any = None) -> None:
        self.events, self.body, self.posts = events, body, 0
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "m", "vocab_size": 1000}]})

    async def _post(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.posts += 1
        if self.events is None:
            return web.Response(body=json.dumps(self.body).encode(),
                                content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for event in [*self.events, b"[DONE]"]:
            data = event if isinstance(event, bytes) else json.dumps(event).encode()
            await resp.write(b"data: " + data + b"\n\n")
        await resp.write_eof()
        return resp

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/completions", self._post)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    def __enter__(self) -> Scripted:
        self._loop.run_until_complete(self._start())
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        assert self._runner is not None
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()


def cfg(url: str, **kw: Any) -> ReplayConfig:
    kw.setdefault("timeout_s", 10.0)
    kw.setdefault("grace_s", 1.0)
    kw.setdefault("timing", FOUR)
    return ReplayConfig(endpoint=url, **kw)


def rows(out: Path) -> list[dict[str, Any]]:
    return sorted(pq.read_table(out / "requests.parquet").to_pylist(),
                  key=lambda r: r["request_id"])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one_error_line(output: str) -> str:
    """The single ``Error:`` line of a CLI failure (click's usage lines aside)."""
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    return errors[0]


# --- F20: malformed fields in answers ------------------------------------------------------

TEXT = {"choices": [{"index": 0, "text": " w", "finish_reason": None}]}
MALFORMED_EVENTS = {
    "finish_reason int": {"choices": [{"index": 0, "text": " w", "finish_reason": 7}]},
    "text int": {"choices": [{"index": 0, "text": 7}]},
    "delta not an object": {"choices": [{"index": 0, "delta": "x"}]},
    "content list": {"choices": [{"index": 0, "delta": {"content": [1]}}]},
    "choices object": {"choices": {"0": 1}},
    "choice not an object": {"choices": [5]},
    "usage string": {"choices": [], "usage": "lots"},
    "completion_tokens bool": {"choices": [], "usage": {"completion_tokens": True}},
    "completion_tokens huge": {"choices": [], "usage": {"completion_tokens": 2**70}},
    "prompt_tokens string": {"choices": [], "usage": {"prompt_tokens": "5"}},
    "cached_tokens negative": {"choices": [], "usage": {
        "prompt_tokens_details": {"cached_tokens": -1}}},
    "details not an object": {"choices": [], "usage": {"prompt_tokens_details": 3}},
}


@pytest.mark.parametrize("name", list(MALFORMED_EVENTS))
def test_a_malformed_sse_event_is_a_class_and_every_row_is_kept(tmp_path, name):
    with Scripted(events=[TEXT, MALFORMED_EVENTS[name], TEXT]) as srv:
        summary = replay(tiny_trace(), tmp_path / "o", cfg(srv.url))
    got = rows(tmp_path / "o")
    assert [r["request_id"] for r in got] == [0, 1, 2, 3]
    assert all(r["error"] == "malformed" and r["ok"] is False and r["status"] == 200
               for r in got), got
    assert got[0]["error_detail"].startswith("SSE event: ")
    assert summary["stop_reason"] == "completed"
    assert summary["metrics"]["failures"] == {"malformed": {"count": 4, "rate": 1.0}}


def test_the_probe_report_case_finish_reason_7(tmp_path, cli):
    """F20 as reported: one event with ``"finish_reason": 7`` lost every row."""
    path = write_tiny_trace(tmp_path / "tiny.parquet")
    with Scripted(events=[{"choices": [{"index": 0, "text": " w", "finish_reason": 7}]}]) \
            as srv:
        res = cli("replay", str(path), "--endpoint", srv.url, "--max-requests", "3",
                  "--speedup", "100", "-o", str(tmp_path / "out"), "-q")
    assert res.exit_code == 0, res.output
    got = rows(tmp_path / "out")
    assert len(got) == 3 and {r["error"] for r in got} == {"malformed"}
    assert got[0]["error_detail"] == \
        "SSE event: choices[0].finish_reason is 7, expected a string or null"
    assert (tmp_path / "out" / "summary.json").is_file()


@pytest.mark.parametrize("body", [
    {"choices": [{"index": 0, "text": " w", "finish_reason": 7}]},
    {"choices": [{"index": 0, "text": " w"}], "usage": {"completion_tokens": 2**64}},
    {"choices": [{"index": 0, "message": "hi"}]},
])
def test_a_malformed_json_answer_is_a_class(tmp_path, body):
    with Scripted(body=body) as srv:
        replay(tiny_trace(), tmp_path / "o", cfg(srv.url, stream=False))
    got = rows(tmp_path / "o")
    assert len(got) == 4 and all(r["error"] == "malformed" for r in got), got
    assert got[0]["error_detail"].startswith("response: ")


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
FIELD = st.sampled_from(["finish_reason", "text", "delta", "message", "index"])
USAGE = st.sampled_from(["prompt_tokens", "completion_tokens", "total_tokens",
                         "prompt_tokens_details"])


@settings(max_examples=300, deadline=None)
@given(choice=st.dictionaries(FIELD, JSON, max_size=3),
       usage=st.none() | JSON | st.dictionaries(USAGE, JSON, max_size=3),
       wrap=st.booleans())
def test_any_event_gives_a_row_that_fits_the_schema(choice, usage, wrap):
    """Property: whatever JSON a server streams or answers, the client's row fits
    requests.parquet as it is (the recorder's fallback is not needed)."""
    item = Item(0.0, 1, 1, None, None, None, 5, 5, b"{}")
    obj = {"choices": [choice] if wrap else choice, "usage": usage}
    for stream in (True, False):
        out = client.Outcome(sent=1.0, status=200, end=2.0)
        if stream:
            client._event(out, json.dumps(obj))
            client._event(out, "[DONE]")
        else:
            client._whole(out, json.dumps(obj).encode())
        table = rows_table([result_row(item, 0.0, 0.5, out, stream)])  # strict: no fallback
        assert table.num_rows == 1
        assert table["error"][0].as_py() in (None, "malformed")


def test_a_value_that_does_not_fit_still_keeps_its_row(tmp_path):
    """Defence in depth: a row the client let through with an unfit value is kept, marked."""
    good = {"request_id": 0, "ok": True, "finish_reason": "length", "output_tokens": 3}
    bad = {"request_id": 1, "ok": True, "finish_reason": 7, "output_tokens": 2**70}
    rec = Recorder(tmp_path / "o", flush_rows=10)
    rec.add(good)
    rec.add(bad)
    table = pq.read_table(rec.close())
    got = sorted(table.to_pylist(), key=lambda r: r["request_id"])
    assert got[0]["ok"] is True and got[0]["output_tokens"] == 3
    assert got[1]["ok"] is False and got[1]["error"] == "malformed"
    assert got[1]["finish_reason"] is None and got[1]["output_tokens"] is None
    assert "finish_reason" in got[1]["error_detail"] and "output_tokens" in got[1]["error_detail"]


# --- F21: credentials in --endpoint -------------------------------------------------------

@pytest.mark.parametrize("userinfo", ["alice:s3cret-pw@", ":s3cret-pw@", "s3cret-pw@"])
def test_credentials_in_the_endpoint_are_refused_and_never_echoed(tmp_path, cli, monkeypatch,
                                                                  userinfo):
    path = write_tiny_trace(tmp_path / "tiny.parquet")
    monkeypatch.setenv("OPENAI_API_KEY", "k-env")
    with RecordingServer() as srv:
        url = srv.url.replace("http://", f"http://{userinfo}") + "/v1"
        res = cli("replay", str(path), "--endpoint", url, "-o", str(tmp_path / "o"))
        assert srv.bodies == []
    line = _one_error_line(res.output)
    assert res.exit_code == 2
    assert line.startswith("Error: --endpoint: credentials in the URL (http://***@127.0.0.1:")
    assert "--api-key" in line
    assert "s3cret" not in res.output and "alice" not in res.output
    assert not (tmp_path / "o").exists()
    with pytest.raises(ReplayError, match=r"credentials") as err:
        replay(tiny_trace(), tmp_path / "api", ReplayConfig(endpoint=url))
    assert "s3cret" not in str(err.value) and not (tmp_path / "api").exists()


def test_endpoint_urls():
    assert redact("http://u:p@h:1/v1") == "http://***@h:1/v1"
    assert redact("http://h:1/v1") == "http://h:1/v1"
    for good in ("http://127.0.0.1:8000", "https://gpu/v1", "http://[::1]:9/v1/completions"):
        check_endpoint(good)
    for bad, why in (("127.0.0.1:8000", "not a server URL"), ("ftp://h", "not a server URL"),
                     ("http://h:99999", "not a server URL"), ("http://h?x=1", "query"),
                     ("http://a:b@h", "credentials")):
        with pytest.raises(ReplayError, match=why):
            check_endpoint(bad)


# --- F22: non-finite and absurd option values ---------------------------------------------

REPLAY_BAD = [
    (["--rps", "1e-300"], "Error: --rps: 1e-300 is out of range; expected a finite number of "
                          "requests/s >= 1e-06"),
    (["--rps", "nan"], "Error: --rps: nan is out of range"),
    (["--speedup", "inf"], "Error: --speedup: inf is out of range"),
    (["--speedup", "0"], "Error: --speedup: 0 is out of range"),
    (["--window", "0:inf"], "Error: --window DURATION: inf is out of range; expected seconds "
                            "in (0, 1e12]"),
    (["--window", "nan:10"], "Error: --window START: nan is out of range; expected seconds in "
                             "[0, 1e12]"),
    (["--window", "1e300:10"], "Error: --window START: 1e300 is out of range"),
    (["--window", "-5:10"], "Error: --window START: -5 is out of range"),
    (["--window", "5"], "Error: --window: '5' is not START:DURATION; expected two numbers of "
                        "seconds"),
    (["--timeout", "0"], "Error: --timeout: 0 is out of range; expected seconds in "
                         "(0, 1,000,000]"),
    (["--timeout", "-1"], "Error: --timeout: -1 is out of range"),
    (["--timeout", "nan"], "Error: --timeout: nan is out of range"),
    (["--timeout", "inf"], "Error: --timeout: inf is out of range"),
    (["--grace", "nan"], "Error: --grace: nan is out of range; expected seconds in "
                         "[0, 1,000,000]"),
    (["--grace", "-1"], "Error: --grace: -1 is out of range"),
    (["--duration", "inf"], "Error: --duration: inf is out of range"),
    (["--duration", "0"], "Error: --duration: 0 is out of range"),
    (["--arrivals", "gamma", "--rps", "5", "--cv", "1e-300"],
     "Error: --cv: 1e-300 is out of range; expected in [0.01, 100]"),
    (["--arrivals", "gamma", "--rps", "5", "--cv", "nan"], "Error: --cv: nan is out of range"),
    (["--window-s", "nan"], "Error: --window-s: nan is out of range"),
    (["--window-s", "1e-300"], "Error: --window-s: 1e-300 is out of range"),
    (["--window-s", "inf"], "Error: --window-s: inf is out of range"),
    (["--max-requests", str(2**64)], "Error: --max-requests: 18,446,744,073,709,551,616 is "
                                     "out of range"),
    (["--max-concurrency", str(10**9)], "Error: --max-concurrency: 1,000,000,000 is out of "
                                        "range; expected in [1, 1,000,000]"),
    (["--default-output-tokens", str(10**20)], "Error: --default-output-tokens: "
                                               "100,000,000,000,000,000,000 is out of range"),
    (["--vocab-size", str(10**20)], "Error: --vocab-size: 100,000,000,000,000,000,000 is out "
                                    "of range"),
    (["--slo", "ttft=inf"], "Error: --slo: ttft must be a finite number of ms > 0"),
    (["--slo", "e2e=nan"], "Error: --slo: e2e must be a finite number of ms > 0"),
    (["--percentiles", "50,nan"], "Error: --percentiles: nan is outside [0, 100]"),
]


@pytest.mark.parametrize(("args", "want"), REPLAY_BAD, ids=[" ".join(a) for a, _ in REPLAY_BAD])
def test_every_numeric_replay_option_is_one_line(tmp_path, cli, args, want):
    path = write_tiny_trace(tmp_path / "tiny.parquet")
    res = cli("replay", str(path), "--endpoint", f"http://127.0.0.1:{_closed_port()}",
              *args, "-o", str(tmp_path / "o"))
    assert res.exit_code == 2, res.output
    assert _one_error_line(res.output).startswith(want), res.output
    assert not (tmp_path / "o").exists()


def test_a_scale_that_stretches_the_schedule_past_years_is_one_line(tmp_path, cli):
    """--speedup / --rps above the floor can still stretch a long trace into centuries (and
    past int64 microseconds): refused up front, naming the least value that fits."""
    long = tiny_trace().slice(0, 2)
    long = long.set_column(long.schema.get_field_index("arrival_us"), "arrival_us",
                           pa.array([0, 10**12], pa.int64()))  # 1e6 s apart
    path = tmp_path / "long.parquet"
    write(TraceStream(iter(long.to_batches()), tiny_metadata()), path)
    res = cli("replay", str(path), "--endpoint", f"http://127.0.0.1:{_closed_port()}",
              "--speedup", "0.001", "-o", str(tmp_path / "o"))
    assert res.exit_code == 1
    assert _one_error_line(res.output) == (
        "Error: --speedup: 0.001 stretches the trace's 1,000,000 s to 1e+09 s; expected "
        "--speedup >= 0.01, which keeps the schedule under 1e+08 s (about 3 years)")
    code = to_table(head(CODE, 200))  # about 2.5 requests/s: 1e-6 stretches it 2.5 million-fold
    with pytest.raises(ReplayError, match=r"^--rps: 1e-06 stretches the trace's \d+ s to "
                                          r"\d.*e\+08 s; expected --rps >= \d"):
        Schedule(code, Timing(rps=1e-6))
    assert not (tmp_path / "o").exists()
    assert [s.due_s for s in Schedule(long, Timing(speedup=0.1))] == [0, 1e7]


@pytest.mark.parametrize(("field", "value", "option"), [
    ("timeout_s", 0.0, "--timeout"), ("timeout_s", math.nan, "--timeout"),
    ("grace_s", -1.0, "--grace"), ("window_s", math.inf, "--window-s"),
    ("percentiles", [50.0, math.nan], "--percentiles"), ("vocab_size", True, "--vocab-size"),
    ("timing", Timing(window=(0.0, math.inf)), "--window"),
    ("timing", Timing(speedup=math.nan), "--speedup"),
    ("timing", Timing(max_requests=0), "--max-requests")])
def test_the_api_checks_the_same_ranges(tmp_path, field, value, option):
    with pytest.raises(ReplayError, match=f"^{option}: .* is out of range; expected "):
        replay(tiny_trace(), tmp_path / "o", cfg("http://127.0.0.1:9", **{field: value}))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("args", "want"), [
    (["--window", "0:inf"], "Error: --window DURATION: inf is out of range"),
    (["--window", "nan:10"], "Error: --window START: nan is out of range"),
    (["--window", "1e300:1"], "Error: --window START: 1e300 is out of range"),
    (["--speedup", "nan"], "Error: --speedup: nan is out of range; expected a finite number "
                           ">= 1e-06"),
    (["--rps", "inf"], "Error: --rps: inf is out of range"),
    (["--rps", "-2"], "Error: --rps: -2 is out of range")])
def test_convert_shares_the_time_option_parsing(tmp_path, cli, args, want):
    path = write_tiny_trace(tmp_path / "tiny.parquet")
    res = cli("convert", str(path), *args, "-o", str(tmp_path / "out.parquet"))
    assert res.exit_code == 2
    assert _one_error_line(res.output).startswith(want), res.output
    assert not (tmp_path / "out.parquet").exists()


# --- F23: a failed start leaves an earlier run alone --------------------------------------

@pytest.fixture
def earlier_run(tmp_path: Path) -> Iterator[tuple[Path, dict[str, bytes]]]:
    """A folder holding a finished 4-request run, and its files' bytes."""
    out = tmp_path / "run"
    with RecordingServer() as srv:
        replay(tiny_trace(), out, cfg(srv.url))
    yield out, {p.name: p.read_bytes() for p in out.iterdir()}


def test_a_second_run_into_a_used_folder_is_refused(earlier_run, cli, tmp_path):
    out, before = earlier_run
    with RecordingServer() as srv:
        with pytest.raises(ReplayError, match=r"the folder is not empty .*--overwrite"):
            replay(tiny_trace(), out, cfg(srv.url))
        path = write_tiny_trace(tmp_path / "tiny.parquet")
        res = cli("replay", str(path), "--endpoint", srv.url, "-o", str(out))
        assert srv.bodies == []
    assert res.exit_code == 1
    assert _one_error_line(res.output) == (
        f"Error: -o {out}: the folder is not empty (requests.parquet, summary.json, "
        "timeseries.parquet); expected a new or empty folder, or --overwrite to replace an "
        "earlier run's outputs")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_overwrite_with_the_server_down_writes_nothing(earlier_run, cli, tmp_path):
    """The probe report's case: --overwrite, then a failed start, must not empty the run."""
    out, before = earlier_run
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(ReplayError, match="cannot reach the server"):
        replay(tiny_trace(), out, cfg(url, overwrite=True))
    path = write_tiny_trace(tmp_path / "tiny.parquet")
    res = cli("replay", str(path), "--endpoint", url, "-o", str(out), "--overwrite")
    assert res.exit_code == 1
    assert _one_error_line(res.output).startswith("Error: cannot reach the server")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert pq.read_table(out / "requests.parquet").num_rows == 4


def test_overwrite_replaces_the_outputs_and_keeps_other_files(earlier_run):
    out, before = earlier_run
    (out / "notes.txt").write_text("mine")
    with RecordingServer() as srv:
        summary = replay(tiny_trace(), out, cfg(srv.url, overwrite=True,
                                                timing=Timing(speedup=1000, max_requests=2)))
    assert summary["metrics"]["requests"]["total"] == 2
    assert pq.read_table(out / "requests.parquet").num_rows == 2
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == sorted([*before, "notes.txt"])


def test_a_failed_start_creates_no_folder(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(ReplayError, match="cannot reach the server"):
        replay(tiny_trace(), tmp_path / "new" / "run", cfg(url))
    assert not (tmp_path / "new").exists()
    # the server answers, but no request can be built (no vocabulary size): nothing written
    with RecordingServer(vocab_size=None) as srv, \
            pytest.raises(ReplayError, match="need the vocabulary size"):
        replay(tiny_trace(), tmp_path / "novocab", cfg(srv.url, prompt_format="ids"))
    assert not (tmp_path / "novocab").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReplayError, match="a file is there"):
        replay(tiny_trace(), tmp_path / "file", cfg(url))


# --- kept-alive connections the server closed ----------------------------------------------

ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s")
BODY = json.dumps({"choices": [{"text": "ab", "finish_reason": "length"}],
                   "usage": {"prompt_tokens": 1, "completion_tokens": 2}}).encode()


async def _one_answer_per_connection(reader: asyncio.StreamReader,
                                     writer: asyncio.StreamWriter, served: list[int]) -> None:
    """Answer the first request of a connection and keep it open without saying otherwise;
    close it, unanswered, when a second request comes on it (a server that dropped a
    kept-alive connection, as llama.cpp's does after some streamed answers)."""
    for n in range(2):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        if n == 1:
            break
        served.append(1)
        writer.write(ANSWER % (len(BODY), BODY))
        await writer.drain()
    writer.close()


def test_a_dropped_kept_alive_connection_is_retried_once():
    async def run() -> tuple[list[str | None], int]:
        served: list[int] = []
        server = await asyncio.start_server(
            lambda r, w: _one_answer_per_connection(r, w, served), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = Pool(f"http://127.0.0.1:{port}/v1/completions",
                    {"Content-Type": "application/json"})
        async with server:
            outs = [await client.send(pool, b'{"prompt": "x"}', stream=False, timeout=5)
                    for _ in range(5)]
        return [o.error for o in outs], len(served)

    errors, served = asyncio.run(run())
    assert errors == [None] * 5 and served == 5
