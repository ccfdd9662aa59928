"""One request of a unified trace as a typed Python record, for code that consumes requests one
at a time (replayers, simulators); :func:`llmtraces.iter_requests` yields them."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class Request:
    """A unified-schema row (see ``docs/schema.md`` for each field's meaning and unit).

    ``extra`` is the row's JSON object of native fields, decoded. Field names and order are the
    schema's columns; a test keeps the two equal.

    Examples
    --------
    >>> r = Request.from_row({"request_id": 3, "arrival_us": 1_500_000, "input_tokens": 10,
    ...                       "source_row": 3, "extra": '{"Log Type": "API log"}'})
    >>> r.arrival_s, r.output_tokens, r.extra
    (1.5, None, {'Log Type': 'API log'})
    """

    request_id: int
    arrival_us: int | None
    input_tokens: int
    output_tokens: int | None
    failed: bool | None
    model: str | None
    service: str | None
    session_id: str | None
    turn: int | None
    parent_request_id: int | None
    num_images: int | None
    e2e_latency_us: int | None
    input_token_ids: list[int] | None
    output_token_ids: list[int] | None
    hash_ids: list[int] | None
    hash_block_size: int | None
    source_row: int
    extra: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Request:
        """A record from a unified row as ``pyarrow.Table.to_pylist`` gives it; a column the
        row does not have (not read: ``iter_requests(columns=...)``) reads as None."""
        values: dict[str, Any] = {f.name: row.get(f.name) for f in fields(cls)}
        raw = values["extra"]
        values["extra"] = json.loads(raw) if isinstance(raw, str) else raw
        return cls(**values)

    @property
    def arrival_s(self) -> float | None:
        """Arrival in seconds since the trace's time origin (None without timing)."""
        return None if self.arrival_us is None else self.arrival_us / 1e6
