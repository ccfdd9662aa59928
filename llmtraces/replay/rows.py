"""One request's ``requests.parquet`` row: what the dispatcher knew of it (due and ready
times) and what the client saw (status, chunk times, usage), turned into the derived timings
(TTFT, TPOT, end-to-end, lateness)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .producer import Item
from .recorder import empty_row

if TYPE_CHECKING:  # the client needs aiohttp; a row is built from its Outcome only
    from .client import Outcome

__all__ = ["result_row"]


def result_row(item: Item, t0: float, ready: float | None, out: Outcome | None,
               stream: bool) -> dict[str, Any]:
    """The ``requests.parquet`` row of one request."""
    row = empty_row()
    row.update(request_id=item.request_id, source_row=item.source_row,
               session_id=item.session_id, turn=item.turn,
               parent_request_id=item.parent_request_id, scheduled_s=item.due,
               input_tokens=item.input_tokens, output_tokens_asked=item.max_tokens)
    if ready is not None:
        row["ready_s"] = ready - t0
        row["queue_s"] = max(0.0, row["ready_s"] - item.due)
    if out is None:
        row.update(ok=False, error="bad_prompt", error_detail=item.detail)
        return row
    if out.sent:
        row["sent_s"] = out.sent - t0
        if ready is not None:
            row["lateness_s"] = out.sent - ready
    row["end_s"] = (out.end - t0) if out.end else None
    row["chunk_times_s"] = [c - t0 for c in out.chunks]
    row["chunks"] = len(out.chunks)
    row["first_token_s"] = (out.first - t0) if out.first is not None else None
    row.update(status=out.status, error=out.error, error_detail=out.detail,
               finish_reason=out.finish_reason)
    ok = out.error is None and out.status == 200
    row["ok"] = ok
    usage = out.usage or {}
    got = usage.get("completion_tokens")
    if isinstance(got, int):
        row["output_tokens"], row["usage_source"] = got, "usage"
    elif stream and out.chunks:
        row["output_tokens"], row["usage_source"] = len(out.chunks), "chunks"
    prompt = usage.get("prompt_tokens")
    row["prompt_tokens"] = prompt if isinstance(prompt, int) else None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    row["cached_tokens"] = cached if isinstance(cached, int) else None
    if out.sent and out.end:
        row["e2e_s"] = out.end - out.sent
    if out.first is not None and out.sent:
        row["ttft_s"] = out.first - out.sent
    n = row["output_tokens"]
    if ok and n is not None:
        row["short_output"] = n < item.max_tokens
        if n >= 2 and row["ttft_s"] is not None and row["e2e_s"] is not None:
            row["tpot_s"] = (row["e2e_s"] - row["ttft_s"]) / (n - 1)
    return row
