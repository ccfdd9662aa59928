"""Checks on native files and on unified tables, reported problem by problem.

Native files go through the same reader and registry checks as conversion
(:func:`llmtraces.pipeline.scan.scan`), so whatever validates also converts. Unified Parquet
is checked against the schema and its invariants: request ids 0..n-1, non-negative counts,
arrivals in order, the row count its metadata and the registry give.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import InvalidTraceError, LLMTracesError
from ..formats.parquet import is_unified, read_metadata
from ..paths import converted_path, home
from ..registry import get_source
from ..report import Report
from ..schema import COLUMNS, SCHEMA_VERSION, TRACE_SCHEMA, constant, row_index
from ..text import label_of
from ..text.limits import require_regular_file
from .scan import identify, scan


def validate_native(path: Path, report: Report, *, strict: bool = False,
                    registry: Path | None = None, **identity: object) -> None:
    """Read a native file through its reader and registry checks, keeping only the report."""
    try:
        ident = identify(path, report, registry=registry, **identity)  # type: ignore[arg-type]
    except InvalidTraceError as exc:  # unrecognised or unreadable: nothing more to check
        label = label_of(path)  # an archive member: archive:member
        report.checked.append(label)
        report.unreadable.append(label)
        report.error("format", label, str(exc).split(": ", 1)[-1])
        return
    try:
        deque(scan(ident, report, strict=strict).batches, maxlen=0)  # read, keep nothing
    except InvalidTraceError as exc:
        if not report.problems:  # raised before any problem was reported
            report.error("format", label_of(path), str(exc).split(": ", 1)[-1])


def _check_rows(report: Report, label: str, batch: pa.RecordBatch, start: int,
                last_arrival: int | None) -> int | None:
    n = batch.num_rows
    rid = batch.column("request_id")
    expected = row_index(start, n)
    off = pc.invert(pc.fill_null(pc.equal(rid, expected), False))
    for i in pc.indices_nonzero(off).to_pylist()[:5]:
        report.error("request-id", label, f"request_id must be {start + i}", line=start + i + 1,
                     column="request_id", value=str(rid[i].as_py()))
    for col in COLUMNS:
        if not col.nullable:
            nulls = batch.column(col.name).is_null()
            for i in pc.indices_nonzero(nulls).to_pylist()[:5]:
                report.error("null", label, "must not be null", line=start + i + 1,
                             column=col.name)
        if col.minimum is None or pa.types.is_list(col.type):
            continue
        arr = batch.column(col.name)
        low = pc.fill_null(pc.less(arr, col.minimum), False)
        for i in pc.indices_nonzero(low).to_pylist():
            report.error("range", label, f"must be >= {col.minimum}", line=start + i + 1,
                         column=col.name, value=str(arr[i].as_py()))
    arrival = batch.column("arrival_us")
    prev = pa.concat_arrays([constant(last_arrival, 1, pa.int64()), arrival.slice(0, n - 1)]) \
        if n else arrival
    earlier = pc.fill_null(pc.less(arrival, prev), False)
    for i in pc.indices_nonzero(earlier).to_pylist():
        report.warning("order", label, "arrival_us decreases (row order is the native order)",
                       line=start + i + 1, column="arrival_us", value=str(arrival[i].as_py()))
    valid = arrival.drop_null()
    return valid[-1].as_py() if len(valid) else last_arrival


def validate_unified(path: Path, report: Report, *, registry: Path | None = None) -> None:
    """Check a unified Parquet file: schema, metadata, invariants, row counts."""
    label = str(path)
    report.checked.append(label)
    try:
        meta = read_metadata(path)
    except InvalidTraceError as exc:
        report.error("metadata", label, str(exc).split(": ", 1)[-1])
        return
    if meta.get("schema_version") != SCHEMA_VERSION:
        report.error("schema-version", label, f"schema version must be {SCHEMA_VERSION}",
                     value=str(meta.get("schema_version")))
    try:
        pf = pq.ParquetFile(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        report.error("format", label, f"not a readable Parquet file: {exc}")
        return
    schema = pf.schema_arrow
    for field in TRACE_SCHEMA:
        if field.name not in schema.names:
            report.error("schema", label, "missing column", column=field.name)
        elif schema.names.count(field.name) > 1:
            report.error("schema", label, "duplicate column", column=field.name)
        elif not schema.field(field.name).type.equals(field.type):
            report.error("schema", label, f"type must be {field.type}", column=field.name,
                         value=str(schema.field(field.name).type))
    extra = [n for n in schema.names if n not in TRACE_SCHEMA.names]
    if extra:
        report.error("schema", label, f"columns outside schema v{SCHEMA_VERSION}: {extra}")
    if report.errors:
        return
    rows, last = 0, None
    try:
        for batch in pf.iter_batches(batch_size=1 << 18):
            last = _check_rows(report, label, batch, rows, last)
            rows += batch.num_rows
    except (OSError, ValueError, pa.ArrowException) as exc:  # corrupt pages
        why = " ".join(str(exc).split())
        report.error("format", label, f"unreadable after row {rows:,}: {why}")
        return
    if meta.get("rows") is not None and rows != meta["rows"]:
        report.error("rows", label, f"{rows:,} rows, the file's metadata says {meta['rows']}")
    src_id, trace_id = meta.get("source"), meta.get("trace")
    if src_id and not meta.get("transforms"):  # a transformed trace has its own rows
        try:
            pinned = get_source(src_id, registry).trace(trace_id)[1].pins.rows
        except LLMTracesError as exc:
            report.warning("registry", label, f"metadata names {src_id}/{trace_id}: {exc}")
            pinned = None
        if pinned is not None and rows != pinned:
            report.error("rows", label, f"{rows:,} rows, the registry pins {pinned:,} for "
                                        f"{src_id} {trace_id}")


def require_valid_unified(path: Path, report: Report, *, strict: bool = False,
                          registry: Path | None = None) -> None:
    """Run :func:`validate_unified` on ``path`` and raise its first problem as one line, so
    that whatever converts from unified Parquet also validates (``strict``: warnings too)."""
    validate_unified(path, report, registry=registry)
    if report.failed(strict):
        errors = [p for p in report.problems if strict or p.level == "error"]
        more = report.errors + (report.warnings if strict else 0) - 1
        raise InvalidTraceError(
            f"{errors[0]}" + (f" (and {more:,} more problem(s); run `llmtraces validate "
                              f"{path}` for the list)" if more > 0 else ""), report)


def validate_path(path: Path, *, strict: bool = False, registry: Path | None = None) -> Report:
    """Validate a native trace file, a unified Parquet file, or a folder of unified Parquet."""
    path = Path(path)
    report = Report()
    if path.is_dir():
        parts = sorted(p for p in path.rglob("*.parquet") if not p.name.startswith("."))
        if not parts:
            report.error("missing", str(path), "no .parquet files in this folder")
        for part in parts:
            validate_unified(part, report, registry=registry)
    elif not path.is_file():
        try:
            require_regular_file(path)
        except LLMTracesError as exc:  # missing, or a FIFO, device or socket: say which
            report.error("missing" if not path.exists() else "format", str(path),
                         str(exc).split(": ", 1)[-1])
    elif is_unified(path):
        validate_unified(path, report, registry=registry)
    else:
        validate_native(path, report, strict=strict, registry=registry)
    return report


def validate_source(source_id: str, trace: str | None = None, *, root: Path | None = None,
                    strict: bool = False, registry: Path | None = None) -> Report:
    """Validate a source's cached native files (checksum, rows, values) and converted traces;
    a trace never fetched is a notice, not a problem."""
    # Validating a file imports this module too: the download stack loads only for sources.
    from ..fetching.discover import resolve  # lazy: requests, urllib3, filelock, tqdm
    from ..fetching.natives import native_files, split_cached  # lazy: as above

    root = home(root)
    source = resolve(get_source(source_id, registry), root, trace)
    report = Report()
    wanted = list(source.select(trace))
    present, missing = split_cached(source, wanted, root)
    for trace_id, native in missing.items():
        # Not fetched is not invalid: say so, and check what is there.
        report.notices.append(f"{native}: not fetched, not checked; run "
                              f"`llmtraces fetch {source.id} --trace {trace_id}`")
    for trace_id, native, _ in native_files(source, present, root):
        validate_native(native, report, strict=strict, registry=registry, source=source,
                        trace_id=trace_id)
    for trace_id in wanted:
        converted = converted_path(source.id, trace_id, root)
        if converted.is_file():
            validate_unified(converted, report, registry=registry)
    return report
