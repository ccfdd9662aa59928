"""``vllm``: ``vllm serve MODEL --host 127.0.0.1 --port P ARGS...``.

Checked against vLLM's sources (``docs/bench.md``, "Engines"): readiness is ``GET /health``
200 (503 once the engine is dead) and ``GET /v1/models``; ``GET /version`` gives
``{"version": ...}``; ``POST /reset_prefix_cache`` exists only with ``VLLM_SERVER_DEV_MODE=1``
(set here; 404 otherwise) and answers 200 with an empty body, or in some versions JSON whose
``success`` must be read; metrics are ``vllm:num_requests_running``/``_waiting`` and
``vllm:kv_cache_usage_perc`` (``vllm:gpu_cache_usage_perc`` before 0.9).
"""

from __future__ import annotations

import json
import shlex

from .argv import option_value
from .base import Engine, EngineError, http


class VllmEngine(Engine):
    """vLLM's OpenAI-compatible server, launched with its ``serve`` command."""

    kind = "vllm"
    uses_gpu = True
    ready_paths = ("/health", "/v1/models")
    package = "vllm"

    def command(self, port: int) -> list[str]:
        """The ``vllm serve`` command line on ``port``."""
        if not self.model:
            raise EngineError("--engine vllm needs --model (a Hugging Face id or a local path)")
        prefix = shlex.split(self.executable) if self.executable else ["vllm"]
        return [*prefix, "serve", self.model, "--host", "127.0.0.1", "--port", str(port),
                *self.engine_args]

    def _ready(self, base: str) -> bool:
        """Every ready path answers 200 and ``GET /v1/models`` lists the model served (its
        ``--served-model-name`` when given): not some other server on the port."""
        if not super()._ready(base):
            return False
        want = option_value(self.engine_args, "--served-model-name") or self.model
        try:
            status, body = http("GET", base + "/v1/models", timeout=2.0)
            ids = [m.get("id") for m in json.loads(body).get("data", [])]
        except (OSError, ValueError, AttributeError):
            return False
        if status == 200 and want in ids:
            return True
        self._not_ready = f"; /v1/models lists {ids}, not {want!r}"
        return False

    def launch_env(self) -> dict[str, str]:
        """``VLLM_SERVER_DEV_MODE=1``: the prefix-cache reset endpoint needs it."""
        return {"VLLM_SERVER_DEV_MODE": "1", **self.env}

    def install_hint(self) -> str:
        """How to get ``vllm``."""
        return "pip install vllm (on a machine with a supported GPU), or pass --executable"

    def reset_request(self) -> tuple[str, str] | None:
        """``POST /reset_prefix_cache`` (a dev-mode endpoint)."""
        return ("POST", "/reset_prefix_cache")

    def reset_verdict(self, status: int, body: bytes) -> str | None:
        """200 is done unless a JSON body says ``"success": false``; 404 means dev mode is off."""
        if status == 200:
            try:
                data = json.loads(body) if body.strip() else {}
            except ValueError:
                data = {}
            if isinstance(data, dict) and data.get("success") is False:
                return "vllm: /reset_prefix_cache answered success=false (requests running?)"
            return None
        if status == 404:
            return ("vllm: no /reset_prefix_cache (the server runs without "
                    "VLLM_SERVER_DEV_MODE=1)")
        return super().reset_verdict(status, body)
