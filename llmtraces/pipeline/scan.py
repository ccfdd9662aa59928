"""A native trace file as a checked unified stream: identify it, then scan it.

:func:`identify` recognises a file (its format from its header, its registry entry from its
name); :func:`scan` streams it through its reader and the registry checks (size, checksum, row
count), filling a :class:`Report`. Validation runs it and discards the rows; conversion and the
views run it into a writer, which only commits the output when the report is clean.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from .._version import __version__
from ..errors import InvalidTraceError, LLMTracesError
from ..fetching.checksums import compute, strongest
from ..formats import NativeFormat, check_formats, get_format, sniff
from ..registry import AUTO_FORMAT, Source, Trace, find_file, get_source
from ..report import Report
from ..schema import SCHEMA_VERSION, TraceStream
from ..text import ReadContext, label_of
from ..timing import TimeSemantics


@dataclass
class Identity:
    """What a native file is: its format, and its registry entry when it is a published file.

    Checksums are computed in a background thread while the file is parsed (hashlib releases
    the GIL), and settled by :meth:`settle` before anything is committed.
    """

    path: Path
    format: NativeFormat
    source: Source | None = None
    trace_id: str | None = None
    trace: Trace | None = None
    sha256: str | None = None
    verified: bool = False
    pending: Future[dict[str, str]] | None = None
    #: The format was recognised from the file (no registry reader): its time semantics apply.
    sniffed: bool = True

    def settle(self, report: Report) -> None:
        """Wait for the checksums; a file named like a published one must match it."""
        if self.pending is None:
            return
        got, self.pending = self.pending.result(), None
        self.sha256 = got["sha256"]
        if self.trace is None or self.source is None:
            return
        pinned = self.trace.pins
        size = self.path.stat().st_size
        bad = [k for k in got if getattr(pinned, k) and got[k] != getattr(pinned, k)]
        if pinned.size is not None and size != pinned.size:
            what = f"{size:,} bytes, the published file has {pinned.size:,}"
        elif bad:
            what = f"{bad[0]} {got[bad[0]]} differs from the published {getattr(pinned, bad[0])}"
        else:
            # Checked here against the registry, or at fetch time against the host's pins.
            self.verified = self.verified or strongest(pinned) is not None
            return
        report.error("checksum", label_of(self.path),
                     f"not the published {self.source.id} {self.trace_id} file: {what}; it is "
                     "truncated, corrupted or edited (re-fetch it, or rename an edited copy to "
                     "convert it as an unknown file)")


def _hash_in_background(path: Path, kinds: tuple[str, ...]) -> Future[dict[str, str]]:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmtraces-hash")
    future = pool.submit(compute, path, kinds)
    pool.shutdown(wait=False)
    return future


def identify(path: Path, report: Report, *, source: Source | None = None,
             trace_id: str | None = None, verified: bool = False,
             registry: Path | None = None) -> Identity:
    """Recognise ``path``: its format from its header, its registry entry from its file name.

    A file named like a published file must be that file: a different size or checksum is an
    error (truncated, corrupted, or edited; rename a deliberately edited copy), reported by
    :meth:`Identity.settle`.
    """
    path = Path(path)
    if source is None:
        hit = find_file(path.name, registry)
        if hit is not None:
            source, trace_id, _ = hit
    if source is not None:
        check_formats(source)
    trace = source.trace(trace_id)[1] if source is not None else None
    reader = source.format_of(source.trace(trace_id)[0]) if source is not None else AUTO_FORMAT
    fmt = sniff(path) if reader == AUTO_FORMAT else get_format(reader)
    ident = Identity(path, fmt, source, trace_id, trace, verified=verified,
                     sniffed=reader == AUTO_FORMAT)
    if trace is not None and verified and trace.file is not None and trace.file.sha256:
        ident.sha256 = trace.file.sha256  # checked when it entered the cache
        return ident
    kinds: tuple[str, ...] = ("sha256",)
    if trace is not None:
        kinds += tuple(k for k in ("git_blob", "md5") if getattr(trace.pins, k))
    ident.pending = _hash_in_background(path, kinds)  # one pass for every checksum
    return ident


def trace_metadata(ident: Identity) -> dict[str, Any]:
    """The trace-level metadata stored with every converted trace, before the read fills in
    what only the data tells (``rows``, ``time_origin``, the native layout)."""
    src = ident.source
    return {
        "schema_version": SCHEMA_VERSION,
        "source": src.id if src else None,
        "trace": ident.trace_id or ident.path.name.split(".")[0],
        "native_file": ident.path.name,
        "native_sha256": ident.sha256,
        "native_verified": ident.verified,
        "native_format": ident.format.name,
        "converter": f"llmtraces {__version__}",
        "rows": None,
        "time": _time(ident).model_dump(),
        "time_origin": None,
        **_terms(ident),
        "tokenizer": None,
        "native_layout": {},
        **_archive_metadata(ident),
    }


def _terms(ident: Identity) -> dict[str, Any]:
    """Licence and citation: the source's, or, for a file of a format only one publisher
    uses (converted by path), that publisher's."""
    src, inferred = ident.source, {}
    if src is None and ident.format.licence_source is not None:
        try:
            src = get_source(ident.format.licence_source)
            inferred = {"licence_source": src.id}
        except LLMTracesError:
            src = None  # a private registry without that source
    return {"licence": src.licence.model_dump() if src else None,
            "citation": src.citation.model_dump() if src else None, **inferred}


def _time(ident: Identity) -> TimeSemantics:
    """What the trace's timestamps mean: the registry's (trace, then source) for a known
    trace, else those of the format its header was recognised as."""
    if ident.source is None or ident.sniffed or ident.trace_id is None:
        return ident.format.time
    return ident.source.time_of(ident.source.trace(ident.trace_id)[0])


def _archive_metadata(ident: Identity) -> dict[str, Any]:
    """For an archive member: which archive and member path the bytes came from."""
    member = ident.trace.member if ident.trace is not None else None
    if member is None or ident.source is None:
        return {}
    archive = ident.source.archives[member.archive]
    return {"native_archive": {"name": archive.name, "member": member.path,
                               "sha256": archive.sha256, "url": archive.url}}


def scan(ident: Identity, report: Report, *, strict: bool = False,
         options: dict[str, Any] | None = None) -> TraceStream:
    """The unified stream of ``ident``: batches while the report stays clean, and its metadata.

    The reader fills ``meta`` as it goes (``time_origin`` and ``native_layout`` are set by the
    time the first batch is out). Once the reader is done, the row count is checked against
    the registry and :class:`InvalidTraceError` is raised if the report failed, so a writer
    consuming the stream never commits a bad file.
    """
    meta = trace_metadata(ident)
    ctx = ReadContext(ident.path, report, label=str(ident.path),
                      time=_time(ident) if ident.source and not ident.sniffed else None,
                      service=ident.trace.service if ident.trace else None, meta=meta,
                      options=dict(options or {}))
    report.checked.append(label_of(ident.path))

    def batches() -> Iterator[pa.RecordBatch]:
        rows = 0
        for batch in ident.format.read(ctx):
            rows += batch.num_rows
            if not report.failed(strict):
                yield batch
        ident.settle(report)
        meta.update(native_sha256=ident.sha256, native_verified=ident.verified)
        pinned = ident.trace.pins.rows if ident.trace else None
        if pinned is not None and rows != pinned and report.errors == 0:
            report.error("rows", label_of(ident.path),
                         f"{rows:,} data rows, the registry pins {pinned:,}")
        meta["rows"] = rows
        if rows and not meta.pop("naive_timestamps", False):
            meta["time"]["zone_assumed"] = False  # every timestamp carried its own zone
        if report.failed(strict):
            first = report.problems[0] if report.problems else None
            target: object = ident.path  # an archive member's scratch copy is gone by then
            if ident.source is not None and ident.trace is not None and ident.trace.member:
                target = f"{ident.source.id} --trace {ident.trace_id}"
            more = report.errors + (report.warnings if strict else 0) - 1
            raise InvalidTraceError(
                f"{first}" + (f" (and {more:,} more problem(s); run `llmtraces validate "
                              f"{target}` for the list)" if more > 0 else ""), report)

    return TraceStream(batches(), meta)
