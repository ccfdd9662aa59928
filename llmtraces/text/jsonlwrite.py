"""Writing JSON Lines in the layout a file was read with (:func:`~llmtraces.text.jsonl.
describe_layout`: key order, separators, escaping, line ends), so a file read and written
again is unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..atomic import atomic_path

if TYPE_CHECKING:
    from ..schema import TraceStream


DEFAULT_LAYOUT: dict[str, Any] = {"keys": [], "separators": [", ", ": "], "ensure_ascii": True,
                                  "newline": "\n", "final_newline": True, "bom": False}


def output_layout(meta: dict[str, Any], own_format: str) -> dict[str, Any]:
    """The layout a JSONL writer should use: the native one if the trace was read from a file of
    ``own_format`` (so the file comes back as it was), else ``json.dumps`` defaults and LF."""
    native = meta.get("native_layout") or {}
    if meta.get("native_format") == own_format and native.get("keys"):
        return {**DEFAULT_LAYOUT, **native}
    return dict(DEFAULT_LAYOUT)


Records = Callable[[pa.RecordBatch, dict[str, Any]], list[dict[str, Any]]]


def write_jsonl(stream: TraceStream, dest: Path, own_format: str, records: Records) -> int:
    """Write one JSON object per row, atomically, in :func:`output_layout`'s layout.

    ``records(batch, layout)`` gives the row objects with keys in the order to write. The final
    newline is looked up after the last batch, since a reader feeding the stream learns it at
    the end of its file.
    """
    rows = 0
    layout = output_layout(stream.meta, own_format)
    with atomic_path(dest) as tmp, tmp.open("w", encoding="utf-8", newline="") as fh:
        started = False
        for batch in stream.batches:
            if not started:
                layout = output_layout(stream.meta, own_format)  # live: set by the first read
                if layout.get("bom"):
                    fh.write("\ufeff")
                started = True
            seps = (layout["separators"][0], layout["separators"][1])
            ascii_ = bool(layout["ensure_ascii"])
            lines = [json.dumps(r, separators=seps, ensure_ascii=ascii_)
                     for r in records(batch, layout)]
            if lines:
                fh.write((layout["newline"] if rows else "") + layout["newline"].join(lines))
            rows += len(lines)
        final = output_layout(stream.meta, own_format).get("final_newline", True)
        if rows and final is not False:
            fh.write(layout["newline"])
    return rows
