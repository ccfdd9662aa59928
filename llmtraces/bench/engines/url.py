"""``url``: a server the user started; nothing is launched or stopped.

Readiness is ``GET /v1/models`` answering 200. Which engine it is gets recognised from
``GET /version`` (serve-sim says so) and the metric names of ``GET /metrics``; the reset and
version calls of that engine are then used (for llama.cpp, after probing whether the server
keeps prompts past a slot erase: :meth:`LlamaCppEngine.probe_host_cache`). An unrecognised
server has no reset: the caller records ``unsupported``.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from .base import Engine, EngineError, http
from .llamacpp import LlamaCppEngine
from .sglang import SglangEngine
from .sim import SimEngine
from .vllm import VllmEngine


def base_of(endpoint: str) -> str:
    """The server's base URL from an endpoint that may end in ``/v1`` or an API path."""
    url = endpoint.rstrip("/")
    for tail in ("/v1/completions", "/v1/chat/completions", "/v1"):
        if url.endswith(tail):
            return url[: -len(tail)]
    return url


class UrlEngine(Engine):
    """A running OpenAI-compatible server at ``endpoint``."""

    kind = "url"
    ready_paths = ("/v1/models",)
    poll_s = 0.5

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        if not self.endpoint:
            raise EngineError("--engine url needs --endpoint http://HOST:PORT")
        self.url = base_of(self.endpoint)
        self.like: Engine | None = None
        self._metrics = False

    def command(self, port: int) -> list[str]:
        """Nothing is launched."""
        return []

    def argv(self) -> list[str]:
        """Empty: the user started the server."""
        return []

    @property
    def pid(self) -> int | None:
        """Unknown: the server is not this process's child."""
        return None

    @property
    def metrics_url(self) -> str | None:
        """``/metrics`` when the server answered it with 200 at start."""
        return self.url + "/metrics" if self._metrics and self.base_url else None

    def start(self, folder: Path) -> str:
        """Wait until the server answers ``GET /v1/models``, recognise it, return its URL."""
        Path(folder).mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.ready_timeout_s
        last = "no answer"
        while True:
            try:
                status, _ = http("GET", self.url + "/v1/models", timeout=5.0)
                if status == 200:
                    break
                last = f"HTTP {status}"
            except OSError as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                raise EngineError(f"url: {self.url} did not answer GET /v1/models with 200 "
                                  f"within {self.ready_timeout_s:g} s ({last}); is the server "
                                  "running and the --endpoint right?")
            time.sleep(self.poll_s)
        self.base_url = self.url
        self.like = self._recognise()
        return self.url

    def _recognise(self) -> Engine | None:
        """The adapter whose endpoints this server has, or None."""
        version = self._get_json("/version")
        text = ""
        with contextlib.suppress(OSError):  # no /metrics: recognised by /version alone
            status, body = http("GET", self.url + "/metrics", timeout=5.0)
            if status == 200:
                self._metrics = True
                text = body.decode("utf-8", "replace")
        cls: type[Engine] | None = None
        if isinstance(version, dict) and version.get("engine") == "serve-sim":
            cls = SimEngine
        elif "vllm:" in text:
            cls = VllmEngine
        elif "sglang:" in text:
            cls = SglangEngine
        elif "llamacpp:" in text:
            cls = LlamaCppEngine
        if cls is None:
            return None
        like = cls(model=self.model or "served")
        like.base_url = self.url
        if isinstance(like, LlamaCppEngine):
            like.probe_host_cache()
        return like

    def stop(self) -> None:
        """Nothing to stop: the user's server keeps running."""
        self.base_url = None

    def alive(self) -> bool:
        """Whether ``/health`` (or ``/v1/models``) answers 200."""
        for path in ("/health", "/v1/models"):
            try:
                if http("GET", self.url + path, timeout=5.0)[0] == 200:
                    return True
            except OSError:
                continue
        return False

    def log_tail(self, lines: int = 20) -> str:
        """No log: the user's server writes its own."""
        return ""

    def reset_prefix_cache(self) -> str | None:
        """The recognised engine's reset, else the reason there is none."""
        if self.like is None:
            return ("url: unsupported (the server was not recognised as vLLM, SGLang, "
                    "llama.cpp or serve-sim, so no prefix-cache reset is known)")
        return self.like.reset_prefix_cache()

    def slots(self) -> int | None:
        """The recognised engine's slot count."""
        return self.like.slots() if self.like is not None else None

    def server_version(self) -> str | None:
        """The recognised engine's version call."""
        return self.like.server_version() if self.like is not None else None

    def versions(self) -> dict[str, str | None]:
        """Engine as recognised (``url:vllm``...), version, model."""
        out = super().versions()
        out["engine"] = f"url:{self.like.kind}" if self.like is not None else "url"
        return out


__all__ = ["UrlEngine", "base_of"]
