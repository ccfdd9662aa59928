"""``sglang``: ``python -m sglang.launch_server --model-path MODEL --host 127.0.0.1 --port P
--enable-metrics ARGS...``.

Checked against SGLang's sources (``docs/bench.md``, "Engines"): readiness is ``GET /health``
and ``GET /v1/models``; the version is in ``GET /get_server_info`` (newer: ``/server_info``);
``POST /flush_cache`` answers 200 when flushed and 400 while requests run or wait, so a 400 is
retried for up to :attr:`SglangEngine.flush_retry_s`; metrics (with ``--enable-metrics``) are
``sglang:num_running_reqs``, ``sglang:num_queue_reqs`` and ``sglang:token_usage``.
"""

from __future__ import annotations

import shlex
import sys
import time

from .base import Engine, EngineError


class SglangEngine(Engine):
    """SGLang's HTTP server, launched as ``python -m sglang.launch_server``."""

    kind = "sglang"
    uses_gpu = True
    ready_paths = ("/health", "/v1/models")
    package = "sglang"
    #: how long a busy (400) flush is retried.
    flush_retry_s = 30.0

    def command(self, port: int) -> list[str]:
        """The ``sglang.launch_server`` command line on ``port``."""
        if not self.model:
            raise EngineError("--engine sglang needs --model (a Hugging Face id or a local "
                              "path)")
        prefix = shlex.split(self.executable) if self.executable else \
            [sys.executable, "-m", "sglang.launch_server"]
        return [*prefix, "--model-path", self.model, "--host", "127.0.0.1", "--port", str(port),
                "--enable-metrics", *self.engine_args]

    def install_hint(self) -> str:
        """How to get SGLang."""
        return "pip install 'sglang[all]' (on a machine with a supported GPU)"

    def reset_request(self) -> tuple[str, str] | None:
        """``POST /flush_cache``."""
        return ("POST", "/flush_cache")

    def reset_prefix_cache(self) -> str | None:
        """Flush, retrying while SGLang answers 400 (busy) for up to ``flush_retry_s``."""
        deadline = time.monotonic() + self.flush_retry_s
        while True:
            reason = super().reset_prefix_cache()
            if reason is None or "HTTP 400" not in reason or time.monotonic() >= deadline:
                return reason
            time.sleep(0.5)

    def server_version(self) -> str | None:
        """``version`` from ``/server_info`` or, in older releases, ``/get_server_info``."""
        for path in ("/server_info", "/get_server_info"):
            data = self._get_json(path)
            if isinstance(data, dict) and data.get("version") is not None:
                return str(data["version"])
        return None

