"""Engine adapters: launch a server on a free loopback port (or use the user's), wait until it
is ready, reset its prefix cache between points, tell when it is idle, stop its whole process
group. One module per engine; :mod:`.base` holds what they share."""

from __future__ import annotations

from collections.abc import Sequence

from .base import Engine, EngineError
from .llamacpp import LlamaCppEngine
from .sglang import SglangEngine
from .sim import SimEngine
from .url import UrlEngine
from .vllm import VllmEngine

__all__ = ["ENGINES", "Engine", "EngineError", "make_engine"]

ENGINES = ("vllm", "sglang", "llamacpp", "sim", "url")
_CLASSES: dict[str, type[Engine]] = {
    "vllm": VllmEngine, "sglang": SglangEngine, "llamacpp": LlamaCppEngine, "sim": SimEngine,
    "url": UrlEngine}


def make_engine(kind: str, *, model: str | None = None, endpoint: str | None = None,
                engine_args: Sequence[str] = (), ready_timeout_s: float = 600.0,
                executable: str | None = None, port: int | None = None,
                env: dict[str, str] | None = None, gpus: Sequence[int] = ()) -> Engine:
    """The adapter for ``kind`` (one of :data:`ENGINES`); nothing starts until ``start``."""
    cls = _CLASSES.get(kind)
    if cls is None:
        raise EngineError(f"--engine: {kind!r} is not one of {', '.join(ENGINES)}")
    if endpoint is not None and kind != "url":
        raise EngineError(f"--endpoint is for --engine url; --engine {kind} launches its own "
                          "server")
    return cls(model=model, endpoint=endpoint, engine_args=engine_args,
               ready_timeout_s=ready_timeout_s, executable=executable, port=port, env=env,
               gpus=gpus)
