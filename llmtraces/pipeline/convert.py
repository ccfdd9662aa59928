"""Native file -> unified trace: identify, read, check, write; one pipeline for every source.

:func:`scan` is the shared core: it streams a native file through its reader and the
registry checks (size, checksum, row count), filling a :class:`Report`. Validation runs it and
discards the rows; conversion runs it into a writer, which only commits the output when the
report is clean.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from .._version import __version__
from ..errors import InvalidTraceError, LLMTracesError, NoSuchFileError, UnknownSourceError
from ..fetching.checksums import compute, strongest
from ..fetching.discover import resolve
from ..fetching.natives import native_files, split_cached
from ..formats import NativeFormat, check_formats, get_format, get_writer, sniff
from ..formats.parquet import is_unified, read_stream
from ..licensing import notice, write_sidecar
from ..paths import converted_path, home
from ..registry import AUTO_FORMAT, Source, Trace, find_file, get_source
from ..report import Report
from ..schema import SCHEMA_VERSION, TraceStream
from ..text import ReadContext
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
        report.error("checksum", str(self.path),
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
    report.checked.append(str(ident.path))

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
            report.error("rows", str(ident.path),
                         f"{rows:,} data rows, the registry pins {pinned:,}")
        meta["rows"] = rows
        if rows and not meta.pop("naive_timestamps", False):
            meta["time"]["zone_assumed"] = False  # every timestamp carried its own zone
        if report.failed(strict):
            first = report.problems[0] if report.problems else None
            more = report.errors + (report.warnings if strict else 0) - 1
            raise InvalidTraceError(
                f"{first}" + (f" (and {more:,} more problem(s); run `llmtraces validate "
                              f"{ident.path}` for the list)" if more > 0 else ""), report)

    return TraceStream(batches(), meta)


def convert_file(path: Path, dest: Path, *, to: str = "parquet", source: Source | None = None,
                 trace: str | None = None, verified: bool = False, strict: bool = False,
                 registry: Path | None = None,
                 options: dict[str, Any] | None = None,
                 transform: Callable[[TraceStream, Path], TraceStream] | None = None
                 ) -> tuple[int, Report]:
    """Convert one trace file into ``dest`` in format ``to``; nothing is left at ``dest`` on error.

    The input is a native trace file (format recognised from its first line, or its schema
    for Parquet) or a unified Parquet file. ``options`` go to the native reader (e.g.
    ``{"tokenizer": "o200k_base"}``). ``transform``, given the unified stream and the input
    path, returns the stream to write instead (see :class:`llmtraces.transforms.Plan`).
    Returns the number of rows written and the report (warnings included).

    Examples
    --------
    >>> import tempfile, llmtraces
    >>> from llmtraces.paths import bundled_dir
    >>> native = bundled_dir() / "azure-llm-2023" / "AzureLLMInferenceTrace_code.csv"
    >>> out = Path(tempfile.mkdtemp()) / "code.parquet"
    >>> rows, report = convert_file(native, out)
    >>> rows, report.errors, llmtraces.load(out).column("input_tokens")[0].as_py()
    (8819, 0, 4808)
    >>> convert_file(out, out.with_suffix(".jsonl"), to="mooncake")[0]   # unified -> Mooncake
    8819
    """
    report = Report()
    path = Path(path)
    if Path(dest).resolve() == path.resolve():
        raise InvalidTraceError(f"{dest}: the output would overwrite the input; pick another -o")
    if is_unified(path):
        stream = read_stream(path)
        report.checked.append(str(path))
    else:
        ident = identify(path, report, source=source, trace_id=trace, verified=verified,
                         registry=registry)
        stream = scan(ident, report, strict=strict, options=options)
    if transform is not None:
        stream = transform(stream, path)
    rows = get_writer(to).write(stream, Path(dest))
    line = notice(stream.meta)
    if line is not None:
        report.notices.append(line)
        if to != "parquet":  # Parquet carries the licence in its trace metadata
            write_sidecar(Path(dest), stream.meta)
    return rows, report


def source_of(target: str, registry: Path | None = None) -> Source:
    """The registry source ``target`` names; a target that looks like a path (a suffix or a
    slash) and is no source id is a file that does not exist, and is reported as one."""
    try:
        return get_source(target, registry)
    except UnknownSourceError:
        if Path(target).suffix or "/" in target or os.sep in target:
            raise NoSuchFileError(f"no such file: {target}") from None
        raise


def convert_source(source_id: str, trace: str | None = None, *, root: Path | None = None,
                   dataset: Path | None = None, strict: bool = False,
                   registry: Path | None = None, options: dict[str, Any] | None = None,
                   skip_missing: Callable[[str], None] | None = None
                   ) -> list[tuple[str, Path, int, Report]]:
    """Convert the cached native files of a source into the Hive-partitioned dataset.

    Returns ``(trace_id, output path, rows, report)`` per trace; fetch the files first
    (:func:`llmtraces.fetch`). A trace whose file is not cached raises
    :class:`NotCachedError`, or, given ``skip_missing``, is passed to it and skipped.

    Examples
    --------
    >>> import llmtraces
    >>> _ = llmtraces.fetch("azure-llm-2023", "code")       # from the copy in the package
    >>> [(t, rows) for t, _, rows, _ in convert_source("azure-llm-2023", "code")]
    [('code', 8819)]
    """
    root = home(root)
    source = resolve(get_source(source_id, registry), root, trace)
    wanted = list(source.select(trace))
    if skip_missing is not None:
        wanted, missing = split_cached(source, wanted, root)
        for trace_id in missing:
            skip_missing(trace_id)
    out = []
    for trace_id, native, verified in native_files(source, wanted, root):
        dest = converted_path(source.id, trace_id, root, dataset)
        rows, report = convert_file(native, dest, source=source, trace=trace_id,
                                    verified=verified, strict=strict, registry=registry,
                                    options=options)
        out.append((trace_id, dest, rows, report))
    return out
