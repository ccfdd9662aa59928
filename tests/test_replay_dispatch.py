"""The dispatcher's wait (:mod:`llmtraces.replay.alarm`) and the lean HTTP client
(:mod:`llmtraces.replay.http`): requests leave in order and never before their time (as the
server's socket sees it), and answers the lean client must read byte by byte."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("httptools")

from llmtraces.replay import client  # noqa: E402
from llmtraces.replay.alarm import ThreadAlarm, TimerfdAlarm, open_alarm  # noqa: E402
from llmtraces.replay.http import LINE_LIMIT, Pool  # noqa: E402
from llmtraces.replay.runner import Replay, ReplayConfig  # noqa: E402
from llmtraces.schema import make_batch  # noqa: E402

MODELS = b'{"object":"list","data":[{"id":"m","vocab_size":32000}]}'
EVENTS = (b'data: {"choices":[{"text":" a","finish_reason":null}]}\n\n'
          b'data: {"choices":[{"text":" b","finish_reason":"length"}],'
          b'"usage":{"prompt_tokens":4,"completion_tokens":2}}\n\ndata: [DONE]\n\n')


def answer(body: bytes, ctype: bytes = b"text/event-stream", status: bytes = b"200 OK",
           close: bool = False) -> bytes:
    """A whole response: with a Content-Length, or (``close``) running to the close."""
    length = b"" if close else b"Content-Length: %d\r\n" % len(body)
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype + b"\r\n" + length
            + (b"Connection: close\r\n" if close else b"") + b"\r\n" + body)


class RawServer:
    """An HTTP/1.1 server on 127.0.0.1 in a thread: ``reply(head, body)`` gives the bytes to
    write (and whether to close after them); every POST's arrival (``perf_counter`` when its
    head was read), ``X-Request-Id`` and connection number are kept."""

    def __init__(self, reply: Callable[[bytes, bytes], tuple[bytes, bool]],
                 tls: ssl.SSLContext | None = None) -> None:
        self.reply, self.tls = reply, tls
        self.arrivals: list[tuple[float, int | None, int]] = []
        self.connections = 0
        self.url = ""

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                at = time.perf_counter()
                fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:-2])
                fields = {k.lower(): v for k, v in fields.items()}
                body = await reader.readexactly(int(fields.get(b"content-length", b"0")))
                if head.startswith(b"GET"):
                    writer.write(answer(MODELS, b"application/json"))
                    continue
                rid = fields.get(b"x-request-id")
                self.arrivals.append((at, int(rid) if rid is not None else None, conn))
                data, close = self.reply(head, body)
                writer.write(data)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    def __enter__(self) -> RawServer:
        ready = threading.Event()
        self.loop = asyncio.new_event_loop()

        async def start() -> None:
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
            scheme = "https" if self.tls is not None else "http"
            self.url = f"{scheme}://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            ready.set()

        self.thread = threading.Thread(
            target=lambda: (self.loop.run_until_complete(start()), self.loop.run_forever()),
            daemon=True)
        self.thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def shut() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(shut(), self.loop)
        self.thread.join(5)


@pytest.fixture
def sse_server() -> Iterator[RawServer]:
    with RawServer(lambda head, body: (answer(EVENTS), False)) as server:
        yield server


def spaced(n: int, gap_us: int) -> pa.Table:
    """A trace of ``n`` requests ``gap_us`` apart (the first at 0)."""
    return pa.Table.from_batches([make_batch(n, {
        "request_id": pa.array(range(100, 100 + n), pa.int64()),
        "source_row": pa.array(range(n), pa.int64()),
        "arrival_us": pa.array([i * gap_us for i in range(n)], pa.int64()),
        "input_tokens": pa.array([4] * n, pa.int64()),
        "output_tokens": pa.array([2] * n, pa.int64()),
    })])


# -- the alarm -------------------------------------------------------------------------------

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd is Linux's")
def test_the_timerfd_alarm_never_wakes_before_the_due_instant() -> None:
    async def run() -> list[tuple[float, float]]:
        alarm = open_alarm(asyncio.get_running_loop())
        assert isinstance(alarm, TimerfdAlarm)
        woke = []
        try:
            base = time.perf_counter()
            # fractions of a ms, several ms, and one already past
            for due in [base + 0.0003, base + 0.0011, base + 0.0047, base - 0.01,
                        base + 0.0051, base + 0.00512]:
                await alarm.at(due)
                woke.append((due, time.perf_counter()))
            first = alarm.at(time.perf_counter() + 10)
            second = alarm.at(time.perf_counter() + 0.001)  # re-arming replaces a wait
            await second
            assert first.cancelled()
        finally:
            alarm.close()
        return woke

    for due, at in asyncio.run(run()):
        assert at >= due


def test_the_thread_alarm_sleeps_again_after_an_early_wake_and_keeps_order() -> None:
    now = [100.0]
    slept: list[float] = []

    def clock() -> float:
        return now[0]

    def early_sleep(seconds: float) -> None:  # wakes halfway (as a signal would make it)
        slept.append(seconds)
        now[0] += seconds / 2 if seconds > 1e-4 else seconds

    async def run() -> list[float]:
        alarm = ThreadAlarm(asyncio.get_running_loop(), clock=clock, sleep=early_sleep)
        seen = []
        try:
            waits = [alarm.at(due) for due in (100.002, 100.001, 100.005)]
            for fut in waits:
                await fut
                seen.append(clock())
        finally:
            alarm.close()
        return seen

    seen = asyncio.run(run())
    assert seen[0] >= 100.002 and seen[1] >= seen[0] and seen[2] >= 100.005
    assert len(slept) > 3 and slept[0] == pytest.approx(0.002)  # several sleeps per wait
    assert all(s > 0 for s in slept)


# -- dispatch --------------------------------------------------------------------------------

def test_requests_leave_in_order_and_reach_the_server_no_earlier_than_scheduled(
        sse_server: RawServer, tmp_path: Path) -> None:
    trace = spaced(40, 1500)
    run = Replay(trace, ReplayConfig(endpoint=sse_server.url, timeout_s=10, grace_s=2),
                 tmp_path / "o")
    summary = run.run()
    assert summary["metrics"]["requests"]["ok"] == 40
    rows = pq.read_table(tmp_path / "o" / "requests.parquet").to_pylist()
    due = {r["request_id"]: r["scheduled_s"] for r in rows}
    by_due = sorted(rows, key=lambda r: r["scheduled_s"])
    sent = [r["sent_s"] for r in by_due]
    assert sent == sorted(sent)  # handed to the client in schedule order
    assert all(r["sent_s"] >= r["scheduled_s"] for r in rows)
    assert sorted(rid for _, rid, _ in sse_server.arrivals) == sorted(due)  # X-Request-Id
    for at, rid, _ in sse_server.arrivals:
        assert at >= run.t0 + due[rid]  # the server never sees a request before its time
    assert sse_server.connections < 40  # connections are kept alive and reused


def test_a_stop_during_a_long_gap_ends_the_run_soon(sse_server: RawServer,
                                                    tmp_path: Path) -> None:
    trace = spaced(3, 60_000_000)  # a minute apart
    run = Replay(trace, ReplayConfig(endpoint=sse_server.url, timeout_s=10, grace_s=2),
                 tmp_path / "o")
    threading.Timer(0.5, run.stop_soon, args=("interrupted",)).start()
    started = time.perf_counter()
    summary = run.run()
    assert time.perf_counter() - started < 30
    assert summary["stop_reason"] == "interrupted"
    assert summary["metrics"]["requests"]["ok"] == 1


# -- the lean client -------------------------------------------------------------------------

def send_all(reply: Callable[[bytes, bytes], tuple[bytes, bool]], n: int = 1,
             stream: bool = True) -> tuple[list[client.Outcome], RawServer]:
    with RawServer(reply) as server:
        async def run() -> list[client.Outcome]:
            pool = Pool(server.url + "/v1/completions", {"Content-Type": "application/json"})
            outs = [await client.send(pool, b'{"prompt": [1]}', stream=stream, timeout=5,
                                      request_id=i) for i in range(n)]
            pool.close()
            return outs
        return asyncio.run(run()), server


def test_an_event_stream_that_runs_to_the_close() -> None:
    outs, server = send_all(lambda h, b: (answer(EVENTS, close=True), True), n=2)
    assert [o.error for o in outs] == [None, None] and server.connections == 2
    assert outs[0].usage == {"prompt_tokens": 4, "completion_tokens": 2}
    assert len(outs[0].chunks) == 2 and outs[0].finish_reason == "length"
    cut, _ = send_all(lambda h, b: (answer(EVENTS.split(b"data: [DONE]")[0], close=True), True))
    assert cut[0].error == "stream_cut" and "[DONE]" in (cut[0].detail or "")


def test_crlf_lines_and_events_split_across_writes() -> None:
    crlf = EVENTS.replace(b"\n", b"\r\n")
    outs, server = send_all(lambda h, b: (answer(crlf), False), n=3)
    assert [o.error for o in outs] == [None] * 3 and server.connections == 1
    assert all(len(o.chunks) == 2 and o.usage is not None for o in outs)


def test_a_line_over_the_limit_is_malformed_and_the_next_request_goes_on() -> None:
    huge = b"data: " + b"x" * (LINE_LIMIT + 10) + b"\n\n"
    replies = iter([answer(huge), answer(EVENTS)])
    outs, server = send_all(lambda h, b: (next(replies), False), n=2)
    assert outs[0].error == "malformed" and "too long" in (outs[0].detail or "")
    assert outs[1].error is None and server.connections == 2  # the cut one was closed


def test_an_error_answer_keeps_its_message_and_only_its_head_is_read() -> None:
    big = json.dumps({"error": {"message": "overloaded", "pad": "p" * 200_000}}).encode()
    replies = iter([answer(big, b"application/json", b"503 Service Unavailable"),
                    answer(EVENTS)])
    outs, _ = send_all(lambda h, b: (next(replies), False), n=2)
    assert outs[0].error == "http_503" and outs[0].status == 503
    assert outs[0].detail is not None and outs[0].detail.startswith("HTTP 503")
    assert outs[1].error is None


def test_bytes_that_are_not_http_are_a_cut_stream() -> None:
    outs, _ = send_all(lambda h, b: (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", True))
    assert outs[0].error == "stream_cut" and outs[0].status is None


def test_a_whole_json_answer_and_the_request_head() -> None:
    body = json.dumps({"choices": [{"text": "ab", "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 2}}).encode()
    heads: list[bytes] = []

    def reply(head: bytes, _: bytes) -> tuple[bytes, bool]:
        heads.append(head)
        return answer(body, b"application/json"), False

    outs, _ = send_all(reply, stream=False)
    assert outs[0].error is None and outs[0].finish_reason == "stop" and outs[0].done
    head = heads[0].decode()
    assert head.startswith("POST /v1/completions HTTP/1.1\r\n")
    assert "\r\nHost: 127.0.0.1:" in head and "\r\nX-Request-Id: 0\r\n" in head
    assert "\r\nContent-Type: application/json\r\n" in head
    assert "\r\nContent-Length: 15\r\n" in head


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_an_https_endpoint_is_verified_against_the_trusted_certificates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """https goes through Python's default SSL context: a server whose certificate is
    trusted (here through ``SSL_CERT_FILE``, as a user's CA bundle would be) is replayed like
    plain http; an untrusted one fails every request with a clear reason, nothing sent."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    with RawServer(lambda head, body: (answer(EVENTS), False), tls=tls) as server:
        assert server.url.startswith("https://")
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        summary = Replay(spaced(6, 2000), ReplayConfig(endpoint=server.url, timeout_s=10,
                                                       grace_s=2), tmp_path / "ok").run()
        assert summary["metrics"]["requests"]["ok"] == 6 and len(server.arrivals) == 6
        monkeypatch.delenv("SSL_CERT_FILE")
        with pytest.raises(Exception) as failed:
            Replay(spaced(3, 2000), ReplayConfig(endpoint=server.url, timeout_s=10,
                                                 grace_s=2), tmp_path / "untrusted").run()
        assert "certificate" in str(failed.value).lower(), failed.value
        assert len(server.arrivals) == 6
