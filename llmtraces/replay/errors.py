"""The replayer's exception and its error classes."""

from __future__ import annotations

from ..errors import LLMTracesError


class ReplayError(LLMTracesError):
    """A replay that cannot start or go on (server down, bad options); one clear line."""


#: Error classes a request row can carry (``error`` column; null when the request succeeded).
#: ``http_<status>`` is added for every non-200 answer (``http_429``, ``http_503``, ...).
ERROR_CLASSES = {
    "timeout": "no complete answer within --timeout seconds",
    "connection_refused": "nothing listened at the endpoint (ECONNREFUSED)",
    "connection_reset": "the connection was reset or closed before any response, twice (the "
                        "first time is retried at once: a kept-alive connection the server "
                        "had closed)",
    "connect_error": "another failure to connect (DNS, unreachable network)",
    "stream_cut": "the response started but ended early: no [DONE], an incomplete body or a "
                  "reset mid-stream",
    "malformed": "a response or SSE event that is not the JSON the API defines",
    "stream_error": "an SSE event carrying an 'error' object",
    "bad_prompt": "not sent: the trace's own token ids are outside --vocab-size",
    "cancelled": "still in flight when the run stopped (Ctrl-C, --duration, crash)",
    "client_error": "any other exception in the client (its type is in error_detail)",
}
