"""``llmtraces replay``: send a trace's requests to an OpenAI-compatible server on time and
measure what it did (see ``docs/replay.md``).

One module per job: :mod:`.schedule` (when each request is due), :mod:`.prompts` (exact-length
token-id or text prompts, sessions, hash blocks), :mod:`.client` (HTTP and SSE, error classes;
needs aiohttp), :mod:`.http` (the lean HTTP/1.1 client; needs httptools), :mod:`.alarm` (the
precise wait for a due time), :mod:`.recorder` (``requests.parquet``, written incrementally),
:mod:`.metrics` (summary and time series), :mod:`.producer` (request bodies built ahead of
time), :mod:`.rows` (one request's row), :mod:`.runner` (the dispatcher and the run). This
package imports without aiohttp and httptools; only :mod:`.client`, :mod:`.http` and
:mod:`.runner` need them.
"""

from __future__ import annotations

from .errors import ReplayError

__all__ = ["ReplayError"]
