"""What every engine adapter shares: a free loopback port, the server's process group and its
``server.log``, the readiness wait, the stop (SIGTERM to the group, then SIGKILL), and the
HTTP calls a benchmark makes between points (prefix-cache reset, idle check, versions).

An adapter (one module per engine) says only how its server is launched (:meth:`Engine.command`)
and how its endpoints answer; :mod:`llmtraces.bench.engines` builds one with ``make_engine``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from ...errors import LLMTracesError
from ..telemetry.nvml import memory_used
from ..telemetry.prometheus import parse, server_load
from .argv import option_value, redact_argv, secret_values
from .gpu_release import wait_released

__all__ = ["Engine", "EngineError", "free_port", "http", "llmtraces_cli", "option_value",
           "redact_argv"]

#: log lines quoted in an error.
TAIL_LINES = 20
#: launches tried when the chosen port was taken between choosing and binding.
PORT_TRIES = 3
#: how a server reports that its port is taken (Python/uvicorn, llama.cpp, C's perror).
_IN_USE = re.compile(r"address already in use|errno 98|EADDRINUSE|couldn't bind|"
                     r"failed to bind|only one usage of each socket address", re.I)


class EngineError(LLMTracesError):
    """An engine that could not be started, crashed, or did not become ready in time; the
    message ends with the last lines of its ``server.log``."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (bind port 0, read it, close); the server binds it next."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def llmtraces_cli() -> list[str]:
    """How to run ``llmtraces`` as a subprocess with this interpreter: the console script
    beside it when installed, else ``python -c`` calling the CLI's entry point."""
    script = Path(sys.executable).with_name("llmtraces")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "import sys; from llmtraces.cli import main; sys.exit(main())"]


def http(method: str, url: str, timeout: float = 5.0,
         body: dict[str, Any] | None = None) -> tuple[int, bytes]:
    """``(status, body)`` of one request; an HTTP error status is returned, not raised.
    Raises :class:`OSError` (``URLError`` included) when nothing answers."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        with contextlib.suppress(OSError):
            return int(exc.code), exc.read()
        return int(exc.code), b""


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` still runs (zombies, already dead, do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # fields after the command name in parentheses: state ppid pgrp ...
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


class Engine:
    """A server process (or, for ``url``, a server the user runs) that a benchmark drives."""

    kind = "engine"
    #: whether the server allocates GPU memory (waited for after a stop)
    uses_gpu = False
    #: paths that must all answer 200 before the server counts as ready.
    ready_paths: tuple[str, ...] = ("/health",)
    #: the Prometheus endpoint, or None when the engine has none.
    metrics_path: str | None = "/metrics"
    #: the Python package whose version is the engine's (None: ask the server only).
    package: str | None = None
    #: seconds between readiness polls, and between SIGTERM and SIGKILL.
    poll_s = 0.5
    term_timeout_s = 30.0

    def __init__(self, *, model: str | None = None, endpoint: str | None = None,
                 engine_args: Sequence[str] = (), ready_timeout_s: float = 600.0,
                 executable: str | None = None, port: int | None = None,
                 env: dict[str, str] | None = None, gpus: Sequence[int] = ()) -> None:
        self.model, self.endpoint = model, endpoint
        #: NVML indices of the GPUs the engine uses: the ones telemetry meters (all if empty)
        self.gpus = [int(g) for g in gpus]
        self.engine_args = [str(a) for a in engine_args]
        self.ready_timeout_s = float(ready_timeout_s)
        self.executable = executable
        #: a port the user fixed (never re-chosen), else the one chosen at argv()/start().
        self._fixed_port = port
        self._port = port
        self.env = dict(env or {})
        self.base_url: str | None = None
        self.log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._secrets: list[str] = []
        self._gpu_baseline: dict[int, int] | None = None
        #: what the last readiness poll found wrong beyond a status (shown on timeout)
        self._not_ready = ""
        #: what the GPUs still held after the last stop (None: released, or no GPU)
        self.release_note: str | None = None

    # -- what an adapter defines ---------------------------------------------------------------

    def command(self, port: int) -> list[str]:
        """The command line that serves on ``127.0.0.1:port``."""
        raise EngineError(f"{self.kind}: this engine is not launched by llmtraces")

    def launch_env(self) -> dict[str, str]:
        """Environment variables the launch adds to this process's environment."""
        return dict(self.env)

    def reset_request(self) -> tuple[str, str] | None:
        """``(method, path)`` that empties the prefix cache, or None when there is none."""
        return None

    def reset_verdict(self, status: int, body: bytes) -> str | None:
        """None when the reset answered as done, else why not (an adapter knows its quirks)."""
        if status == 200:
            return None
        if status in (404, 405):
            return f"{self.kind}: the server has no prefix-cache reset (HTTP {status})"
        return f"{self.kind}: prefix-cache reset failed (HTTP {status}: {_short(body)})"

    def server_version(self) -> str | None:
        """The version the running server reports (``GET /version``), or None."""
        data = self._get_json("/version")
        if isinstance(data, dict) and data.get("version") is not None:
            return str(data["version"])
        return None

    # -- the interface the benchmark uses --------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the server listens on (chosen now if not chosen yet)."""
        if self._port is None:
            self._port = free_port()
        return self._port

    def argv(self) -> list[str]:
        """The command line :meth:`start` runs, with its port, credentials shown as ``***``
        (this is what plans, logs and ``env.json`` hold)."""
        return redact_argv(self.command(self.port))

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (the leader of its process group)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def metrics_url(self) -> str | None:
        """Where the server's Prometheus metrics are, once started."""
        if self.base_url is None or self.metrics_path is None:
            return None
        return self.base_url + self.metrics_path

    def start(self, folder: Path) -> str:
        """Launch in a new process group on 127.0.0.1, log to ``folder/server.log``, wait
        until ready and return the base URL; :class:`EngineError` with the log's tail when
        the server exits first or is not ready within ``ready_timeout_s``."""
        if self.alive() and self.base_url is not None:
            return self.base_url
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / "server.log"
        self._gpu_baseline = memory_used(self.gpus or None) if self.uses_gpu else None
        for attempt in range(1, PORT_TRIES + 1):
            port = self.port
            if _listening(port):  # another server there would answer our readiness polls
                if self._fixed_port is not None:
                    raise EngineError(f"{self.kind}: 127.0.0.1:{port} is already in use by "
                                      "another server; choose another port or let llmtraces "
                                      "pick a free one")
                self._port = None
                continue
            argv = self.command(port)
            self._secrets = secret_values(argv)
            start_at = self._open_log(argv, attempt)
            env = {**os.environ, **self.launch_env()}
            try:
                self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                              stderr=subprocess.STDOUT, env=env,
                                              start_new_session=True, close_fds=True)
            except OSError as exc:
                self._close_log()
                raise EngineError(f"{self.kind}: cannot run {argv[0]!r} ({exc.strerror or exc}); "
                                  f"is it installed? {self.install_hint()}") from None
            base = f"http://127.0.0.1:{port}"
            code = self._wait_ready(base)
            if code is None:
                self.base_url = base
                return base
            in_use = bool(_IN_USE.search(self._log_since(start_at)))
            self.stop()
            if in_use and self._fixed_port is None and attempt < PORT_TRIES:
                self._port = None  # taken between choosing and binding: choose again
                continue
            what = (f"could not bind 127.0.0.1:{port} (address already in use)" if in_use
                    else f"exited with code {code} before it was ready")
            raise EngineError(f"{self.kind}: the server {what}; command: "
                              f"{_shell(redact_argv(argv))}; last lines of {self.log_path}:\n"
                              f"{self.log_tail(TAIL_LINES)}")
        raise EngineError(f"{self.kind}: no free port found in {PORT_TRIES} tries")

    def install_hint(self) -> str:
        """One line on installing the engine."""
        return ""

    def _open_log(self, argv: list[str], attempt: int) -> int:
        """Open ``server.log`` for appending, mark the launch, return the offset it starts at."""
        assert self.log_path is not None
        self._close_log()
        self._log = open(self.log_path, "ab")  # the child writes to it until stop()
        head = f"# llmtraces bench: launch {attempt}: {_shell(redact_argv(argv))}\n"
        self._log.write(head.encode())
        self._log.flush()
        return self._log.tell()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _log_since(self, offset: int) -> str:
        assert self.log_path is not None
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read(1 << 20).decode("utf-8", "replace")

    def _wait_ready(self, base: str) -> int | None:
        """None once every ready path answers 200; the exit code if the server exits first.
        On timeout the server is stopped and :class:`EngineError` raised."""
        assert self._proc is not None
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                return code
            if self._ready(base):
                return None
            if time.monotonic() >= deadline:
                self.stop()
                raise EngineError(f"{self.kind}: the server was not ready after "
                                  f"{self.ready_timeout_s:g} s (no 200 from "
                                  f"{', '.join(self.ready_paths)}{self._not_ready}); raise "
                                  "--ready-timeout-s for "
                                  f"a big model; last lines of {self.log_path}:\n"
                                  f"{self.log_tail(TAIL_LINES)}")
            time.sleep(min(self.poll_s, max(0.0, deadline - time.monotonic())))

    def _ready(self, base: str) -> bool:
        for path in self.ready_paths:
            try:
                status, _ = http("GET", base + path, timeout=2.0)
            except OSError:
                return False
            if status != 200:
                return False
        return True

    def stop(self) -> None:
        """SIGTERM the whole process group, wait up to ``term_timeout_s`` for all of it to end,
        then SIGKILL what is left and reap the leader. Idempotent."""
        proc, self._proc = self._proc, None
        self.base_url = None
        if proc is None:
            self._close_log()
            return
        pgid = proc.pid  # start_new_session made the server the leader of its own group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + self.term_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None and not group_alive(pgid):
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            with open(self.log_path or os.devnull, "ab") as log:
                log.write(f"# llmtraces bench: no exit {self.term_timeout_s:g} s after "
                          "SIGTERM; sent SIGKILL to the process group\n".encode())
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        end = time.monotonic() + 5
        while (group_alive(pgid) or _listening(self._port)) and time.monotonic() < end:
            time.sleep(0.05)
        if self._gpu_baseline:
            self.release_note = wait_released(self._gpu_baseline, self.gpus or None)
            if self.release_note:
                with open(self.log_path or os.devnull, "ab") as log:
                    log.write(f"# llmtraces bench: {self.release_note}\n".encode())
        self._close_log()

    def alive(self) -> bool:
        """Whether the server process still runs."""
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = TAIL_LINES) -> str:
        """The last ``lines`` lines of ``server.log`` ('' before any launch)."""
        if self.log_path is None or not self.log_path.is_file():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
        tail = "\n".join(text.splitlines()[-lines:])
        for secret in self._secrets:
            tail = tail.replace(secret, "***")  # an engine may echo its own arguments
        return tail

    def reset_prefix_cache(self) -> str | None:
        """Empty the server's prefix cache: None when done, else the reason it could not."""
        how = self.reset_request()
        if how is None:
            return f"{self.kind}: no prefix-cache reset is known for this engine"
        if self.base_url is None:
            return f"{self.kind}: the server is not running"
        method, path = how
        try:
            status, body = http(method, self.base_url + path, timeout=30.0)
        except OSError as exc:
            return f"{self.kind}: prefix-cache reset failed ({method} {path}: {exc})"
        return self.reset_verdict(status, body)

    def load(self) -> tuple[float | None, float | None] | None:
        """``(running, waiting)`` requests now, from the server's metrics; None when unknown."""
        url = self.metrics_url
        if url is None:
            return None
        try:
            status, body = http("GET", url, timeout=5.0)
        except OSError:
            return None
        if status != 200:
            return None
        load = server_load(parse(body.decode("utf-8", "replace")))
        if load.running is None and load.waiting is None:
            return None
        return load.running, load.waiting

    def wait_idle(self, timeout_s: float) -> bool:
        """True once nothing runs or waits on the server (or it has no metrics to say); False
        when still busy after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            load = self.load()
            if load is None:
                return True
            running, waiting = load
            if not running and not waiting:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)

    def versions(self) -> dict[str, str | None]:
        """The engine, its version as the server reports it, the installed package's version
        and the served model."""
        package = None
        if self.package is not None:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                package = importlib.metadata.version(self.package)
        reported = self.server_version() if self.base_url is not None else None
        return {"engine": self.kind, "engine_version": reported or package,
                "package_version": package, "model": self.served_model() or self.model}

    def slots(self) -> int | None:
        """Requests the server runs at once, where it says (llama.cpp, serve-sim); None
        otherwise."""
        return None

    def served_model(self) -> str | None:
        """The first model id ``GET /v1/models`` lists, or None."""
        data = self._get_json("/v1/models")
        with contextlib.suppress(KeyError, IndexError, TypeError):
            return str(data["data"][0]["id"])
        return None

    def _get_json(self, path: str) -> Any:
        if self.base_url is None:
            return None
        try:
            status, body = http("GET", self.base_url + path, timeout=5.0)
            return json.loads(body) if status == 200 else None
        except (OSError, ValueError):
            return None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _listening(port: int | None) -> bool:
    """Whether something still accepts connections on ``127.0.0.1:port``."""
    if port is None:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _short(body: bytes, limit: int = 200) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())
    return text[:limit] + ("..." if len(text) > limit else "") if text else "empty body"


def _shell(argv: Sequence[str]) -> str:
    return shlex.join(argv)
