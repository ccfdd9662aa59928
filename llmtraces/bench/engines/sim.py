"""``sim``: llmtraces' own simulated server (``llmtraces serve-sim``) as a subprocess.

serve-sim answers ``GET /health``, ``GET /version``, ``GET /metrics`` (vLLM's gauge names) and
``POST /reset_prefix_cache`` (``{"success": true}``), so it exercises every step of a point the
way a GPU engine does, on any machine.
"""

from __future__ import annotations

import contextlib
import json
import shlex

from .base import Engine, llmtraces_cli


class SimEngine(Engine):
    """``llmtraces serve-sim --host 127.0.0.1 --port P [--model M] ARGS...``."""

    kind = "sim"
    ready_paths = ("/health",)
    package = "llmtraces"
    poll_s = 0.1
    term_timeout_s = 10.0

    def command(self, port: int) -> list[str]:
        """The serve-sim command line on ``port``."""
        prefix = shlex.split(self.executable) if self.executable else llmtraces_cli()
        model = ["--model", self.model] if self.model else []
        return [*prefix, "serve-sim", "--host", "127.0.0.1", "--port", str(port), *model,
                *self.engine_args]

    def slots(self) -> int | None:
        """``batch_slots`` of ``GET /version``."""
        data = self._get_json("/version")
        with contextlib.suppress(TypeError, ValueError, KeyError):
            return int(data["batch_slots"]) or None
        return None

    def reset_request(self) -> tuple[str, str] | None:
        """serve-sim empties its prefix-cache LRU on ``POST /reset_prefix_cache``."""
        return ("POST", "/reset_prefix_cache")

    def reset_verdict(self, status: int, body: bytes) -> str | None:
        """Done when the answer is 200 with ``"success": true``."""
        if status == 200:
            try:
                ok = json.loads(body).get("success") is True
            except (ValueError, AttributeError):
                ok = False
            return None if ok else f"sim: prefix-cache reset answered {body[:200]!r}"
        return super().reset_verdict(status, body)
