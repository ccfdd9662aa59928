"""The unified schema as text (CSV, JSONL): shared pieces of its writers and readers.

CSV and JSONL have no room for the trace metadata, so it travels in a sidecar
``<file>.meta.json`` beside the file: ``{"format", "file", "rows", "trace"}``, where ``trace``
is the metadata a unified Parquet file would carry. The sidecar is written atomically, after
the data and before the data file is renamed into place, so a complete data file always has
the sidecar of its own rows. A reader that finds it restores the metadata (source, trace,
time semantics and origin, licence, citation, tokenizer); the provenance of the bytes read
(``native_file``, ``native_format``, checksums) stays that of the CSV/JSONL file, and the
original provenance moves to ``derived_from``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..atomic import atomic_path
from ..errors import InvalidTraceError
from ..schema import COLUMN_NAMES

SIDECAR_SUFFIX = ".meta.json"
CSV_FORMAT = "llmtraces-csv"
JSONL_FORMAT = "llmtraces-jsonl"
CSV_HEADER = ",".join(COLUMN_NAMES)
#: Keys that describe the bytes a trace was read from, not the trace itself.
PROVENANCE = ("native_file", "native_sha256", "native_verified", "native_format",
              "native_layout", "native_archive")


def sidecar_path(data: Path) -> Path:
    """Where the metadata of an exported CSV/JSONL file goes: ``<file>.meta.json``."""
    return data.with_name(data.name + SIDECAR_SUFFIX)


def write_sidecar(data: Path, fmt: str, rows: int, meta: dict[str, Any]) -> Path:
    """Write the sidecar of ``data`` (the final path) atomically; returns its path."""
    path = sidecar_path(data)
    doc = {"format": fmt, "file": data.name, "rows": rows, "trace": meta}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                       encoding="utf-8")
    return path


def read_sidecar(data: Path) -> dict[str, Any] | None:
    """The sidecar of ``data``, or None where there is none."""
    path = sidecar_path(data)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidTraceError(f"{path}: unreadable metadata sidecar: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("trace"), dict) \
            or not isinstance(doc.get("rows"), int):
        raise InvalidTraceError(f"{path}: not an llmtraces metadata sidecar (expected an object "
                                "with 'rows' and 'trace')")
    return doc


def restore(meta: dict[str, Any], doc: dict[str, Any]) -> None:
    """Fill a reader's live ``meta`` from a sidecar: the trace's metadata comes back, the
    provenance of the file being read stays, and the original provenance goes to
    ``derived_from`` (kept from the first export when a file is exported again)."""
    stored: dict[str, Any] = dict(doc["trace"])
    derived = stored.pop("derived_from", None) or {
        k: stored.get(k) for k in PROVENANCE if k in stored}
    for key in PROVENANCE:
        stored.pop(key, None)
    stored.pop("rows", None)
    meta.update(stored)
    meta["derived_from"] = derived
    # The stored time semantics already say whether the zone was assumed; keep them.
    meta["naive_timestamps"] = True
