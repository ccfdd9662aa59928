"""The Python API other benchmarks import: list sources, fetch, load tables and datasets,
stream requests, export to other tools' formats."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ._plugins import did_you_mean
from .errors import InvalidTraceError
from .fetching.download import Fetched
from .fetching.download import fetch as _fetch
from .formats.parquet import conform, read_metadata
from .paths import home, parquet_root
from .pipeline.inputs import TraceInput, open_trace
from .pipeline.unified import unified_path
from .pipeline.write import write_trace
from .registry import Source, get_source, load_registry
from .request import Request
from .schema import COLUMN_NAMES, METADATA_KEY, TRACE_SCHEMA, TraceStream

#: A path argument (the cache home, an output file).
PathLike = str | os.PathLike[str]


def sources(registry: Path | None = None) -> list[Source]:
    """Every source in the registry, sorted by id.

    >>> [s.id for s in sources()][:1]
    ['azure-llm-2023']
    """
    return list(load_registry(registry).values())


def source(source_id: str, registry: Path | None = None) -> Source:
    """The registry entry of one source: files, licence, citation, time semantics, quirks.

    Examples
    --------
    >>> s = source("marconi")
    >>> s.licence.spdx, s.licence.redistributable, len(s.traces)
    ('CC-BY-NC-4.0', False, 30)
    """
    return get_source(source_id, registry)


def fetch(source_id: str, trace: str | None = None, *, root: PathLike | None = None,
          mirror: str | None = None, file: PathLike | None = None,
          offline: bool | None = None) -> list[Fetched]:
    """Download and verify a source's native files into the cache (see ``llmtraces fetch``).

    Parameters
    ----------
    source_id : str
        Registry id (``llmtraces list``).
    trace : str, optional
        One trace (or archive) of the source; all when None.
    root : path, optional
        Cache home; default ``$LLMTRACES_HOME`` or the user cache folder.
    mirror : str, optional
        Base URL tried first, as ``<mirror>/<source-id>/<file-name>``.
    file : path, optional
        A file downloaded by hand, verified like a download.
    offline : bool, optional
        Never touch the network (default ``$LLMTRACES_OFFLINE``).

    Returns
    -------
    list of Fetched
        Per trace: where the verified file is and where it came from (``cache`` if it was
        already there).

    Examples
    --------
    >>> (got,) = fetch("azure-llm-2023", "code")        # the verified copy in the package
    >>> got.path.name, got.path.stat().st_size
    ('AzureLLMInferenceTrace_code.csv', 320117)
    >>> fetch("azure-llm-2023", "code")[0].origin       # checked once, then trusted
    'cache'
    """
    return _fetch(source_id, trace, root=home(root), mirror=mirror,
                  file=Path(file) if file is not None else None, offline=offline)


Filter: TypeAlias = Mapping[str, Any] | pc.Expression | None


def load(source_or_path: TraceInput, trace: str | None = None, *,
         columns: list[str] | None = None, filter: Filter = None,
         root: PathLike | None = None, mirror: str | None = None,
         offline: bool | None = None, tokenizer: str | None = None) -> pa.Table:
    """A trace as a pyarrow Table in the unified schema (``.to_pandas()`` works with pandas).

    Parameters
    ----------
    source_or_path : str, path, pyarrow.Table or TraceView
        A registry id (``"azure-llm-2023"`` with ``trace=``, or ``"azure-llm-2023/code"``),
        whose trace is fetched, verified and converted into the cache on first use; a path to
        a unified Parquet file or a native trace file; or a Table or transform result, read
        with ``columns`` and ``filter``.
    trace : str, optional
        The trace of a source with several (``llmtraces info ID`` lists them).
    columns : list of str, optional
        Read only these unified columns.
    filter : dict or pyarrow.compute.Expression, optional
        Keep only matching requests. A dict maps a column to a value (``None`` matches null)
        or to a list of values, all conditions joined by AND; an Expression is used as is
        (``pyarrow.compute.field("input_tokens") > 1000``). Row groups that cannot match are
        skipped, so a filter also reads less.
    root, mirror, offline
        Cache home, mirror base URL and offline switch, as for :func:`fetch`.
    tokenizer : str, optional
        For sources that publish text but no token counts (LMSys-Chat-1M; see ``llmtraces
        convert --tokenizer``): a cached conversion made with another tokenizer is redone;
        None keeps whatever the cached conversion used (``o200k_base`` on first use).

    Returns
    -------
    pyarrow.Table
        Rows in native order, schema :data:`llmtraces.TRACE_SCHEMA` (or ``columns``); the trace
        metadata is in the schema metadata under ``llmtraces.trace`` (JSON).

    Examples
    --------
    >>> t = load("azure-llm-2023", trace="code")
    >>> t.num_rows, t.column("input_tokens")[0].as_py()
    (8819, 4808)
    >>> long = load("azure-llm-2023", trace="code", columns=["input_tokens"],
    ...             filter=pc.field("input_tokens") > 4000)
    >>> long.num_rows, long.column_names
    (1293, ['input_tokens'])
    >>> import llmtraces
    >>> load(llmtraces.head(t, 10), columns=["request_id"]).num_rows    # a transform's result
    10
    """
    _check_columns(columns)
    expression = filter_expression(filter)
    if isinstance(source_or_path, pa.Table | TraceStream):
        _no_trace(trace)
        return _view_table(source_or_path, columns, expression)
    with unified_path(source_or_path, trace, root=root, mirror=mirror, offline=offline,
                      tokenizer=tokenizer) as path:
        table = conform(path, pq.read_table(path, columns=columns, filters=expression),
                        ids=expression is None)  # types and values as validate checks them
        # The trace metadata (licence, time origin, transforms) travels with the table, so a
        # table handed to llmtraces.transforms or written again keeps it.
        meta = json.dumps(read_metadata(path), sort_keys=True)
        return table.replace_schema_metadata({**(table.schema.metadata or {}),
                                              METADATA_KEY.encode(): meta.encode()})


def iter_requests(source_or_path: TraceInput, trace: str | None = None, *,
                  columns: list[str] | None = None, filter: Filter = None,
                  batch_rows: int = 1 << 16, root: PathLike | None = None,
                  mirror: str | None = None, offline: bool | None = None,
                  tokenizer: str | None = None) -> Iterator[Request]:
    """Stream a trace as typed :class:`Request` records, in native order, in bounded memory.

    Takes the same arguments as :func:`load` (``batch_rows`` rows are decoded at a time), for
    replayers and simulators that consume requests one by one. With ``columns``, only those
    are read and decoded (faster); the other fields of each record are None.

    Examples
    --------
    >>> reqs = iter_requests("azure-llm-2023", trace="code")
    >>> r = next(reqs)
    >>> r.request_id, r.arrival_s, r.input_tokens, r.output_tokens
    (0, 0.0, 4808, 10)
    >>> sum(1 for _ in iter_requests("azure-llm-2023", trace="code",
    ...                              filter={"output_tokens": [10, 13]}))
    991
    >>> r = next(iter_requests("azure-llm-2023/code", columns=["arrival_us"]))
    >>> r.arrival_us, r.input_tokens
    (0, None)
    """
    _check_columns(columns)
    expression = filter_expression(filter)
    wanted = list(columns) if columns is not None else list(COLUMN_NAMES)
    read = _read_columns(wanted, filter)
    if isinstance(source_or_path, pa.Table | TraceStream):
        _no_trace(trace)
        yield from _records(_view_batches(source_or_path, read), expression, wanted,
                            batch_rows)
        return
    with unified_path(source_or_path, trace, root=root, mirror=mirror, offline=offline,
                      tokenizer=tokenizer) as path:
        pf = pq.ParquetFile(path)
        yield from _records(_checked(path, pf.iter_batches(batch_size=batch_rows, columns=read)),
                            expression, wanted, batch_rows)


def _checked(path: Path, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Batches of a unified file, each checked as :func:`load` checks its table."""
    start = 0
    for batch in batches:
        yield conform(path, batch, start)
        start += batch.num_rows


def export(trace: TraceInput, path: PathLike, to: str = "parquet") -> int:
    """Write a trace to ``path`` in any export format (``llmtraces convert --to``), atomically.

    Parameters
    ----------
    trace : str, path, pyarrow.Table or TraceView
        A registry id (``"azure-llm-2023/code"``), a unified or native trace file, a Table in
        the unified schema, or a transform's result (streamed: memory holds a batch at a time).
    path : path
        The file to write; nothing is left there on error.
    to : str
        The format: ``parquet``, ``mooncake``, ``vidur``, ... (``llmtraces convert --help``).

    Returns
    -------
    int
        The number of requests written. A restricted licence is written beside formats that
        have no room for metadata (``<file>.LICENCE.txt``), as ``convert`` does.

    Examples
    --------
    >>> import tempfile, llmtraces
    >>> from pathlib import Path
    >>> out = Path(tempfile.mkdtemp()) / "first.jsonl"
    >>> export(llmtraces.head("azure-llm-2023/code", 3), out, to="mooncake")
    3
    >>> import json
    >>> json.loads(out.read_text().splitlines()[0])["input_length"]
    4808
    """
    return write_trace(open_trace(trace), Path(os.fspath(path)).expanduser(), to)


def _check_columns(columns: list[str] | None) -> None:
    """Unknown column names are an error naming the schema's columns."""
    if isinstance(columns, str):
        raise TypeError(f"columns: expected a list of column names, got {columns!r}")
    unknown = [c for c in columns or [] if c not in COLUMN_NAMES]
    if unknown:
        raise InvalidTraceError(f"columns: no column {unknown[0]!r} in the unified schema"
                                f"{_did_you_mean(unknown[0], COLUMN_NAMES)}; columns: "
                                f"{', '.join(COLUMN_NAMES)}")


def _did_you_mean(name: str, known: Any) -> str:
    return did_you_mean(name, known)


def _no_trace(trace: str | None) -> None:
    if trace is not None:
        raise TypeError(f"trace={trace!r} picks a trace of a registry source; this input is "
                        "already one trace")


def _read_columns(wanted: list[str], filter: Filter) -> list[str]:
    """The columns to read: those wanted and those a dict filter tests (all for an
    Expression, whose fields are not listed)."""
    if isinstance(filter, pc.Expression):
        return list(COLUMN_NAMES)
    tested = set(filter or {})
    return [c for c in COLUMN_NAMES if c in set(wanted) or c in tested]


def _view_batches(trace: pa.Table | TraceStream, columns: list[str]
                  ) -> Iterator[pa.RecordBatch]:
    """The batches of a Table or view, only ``columns`` where the view can project."""
    view = open_trace(trace)
    if view.reopen is not None and len(columns) < len(COLUMN_NAMES):
        return view.reopen(columns)
    return view.batches


def _records(batches: Iterable[pa.RecordBatch], expression: pc.Expression | None,
             wanted: list[str], batch_rows: int) -> Iterator[Request]:
    """Filtered, projected batches decoded into records ``batch_rows`` rows at a time."""
    for batch in batches:
        for start in range(0, batch.num_rows, batch_rows):
            table = pa.Table.from_batches([batch.slice(start, batch_rows)])
            if expression is not None:
                table = table.filter(expression)
            for row in table.select(wanted).to_pylist():
                yield Request.from_row(row)


def _view_table(trace: pa.Table | TraceStream, columns: list[str] | None,
                expression: pc.Expression | None) -> pa.Table:
    """A Table or view read into a Table, filtered and projected, metadata kept."""
    view = open_trace(trace)
    wanted = list(columns) if columns is not None else list(COLUMN_NAMES)
    schema = pa.schema([TRACE_SCHEMA.field(c) for c in wanted])
    parts = []
    for batch in _view_batches(view, _read_columns(wanted, expression)):
        table = pa.Table.from_batches([batch])
        if expression is not None:
            table = table.filter(expression)
        parts.append(table.select(wanted).cast(schema))
    table = pa.concat_tables(parts) if parts else schema.empty_table()
    meta = json.dumps(view.meta, sort_keys=True)
    return table.replace_schema_metadata({**(TRACE_SCHEMA.metadata or {}),
                                          METADATA_KEY.encode(): meta.encode()})


def filter_expression(filter: Filter) -> pc.Expression | None:
    """The Arrow expression of a :func:`load` filter; unknown columns are a clear error.

    >>> str(filter_expression({"model": "GPT-4", "failed": False}))
    '((model == "GPT-4") and (failed == false))'
    """
    if filter is None or isinstance(filter, pc.Expression):
        return filter
    if not isinstance(filter, Mapping):
        raise TypeError(f"filter: expected a dict of column -> value(s) or a "
                        f"pyarrow.compute.Expression, got {type(filter).__name__}")
    terms = []
    for column, want in filter.items():
        if column not in COLUMN_NAMES:
            raise InvalidTraceError(f"filter: no column {column!r} in the unified schema; "
                                    f"columns: {', '.join(COLUMN_NAMES)}")
        field = pc.field(column)
        if want is None:
            terms.append(field.is_null())
        elif isinstance(want, list | tuple | set | frozenset):
            values = pa.array(list(want), TRACE_SCHEMA.field(column).type)
            terms.append(field.isin(values))
        else:
            terms.append(field == pa.scalar(want, TRACE_SCHEMA.field(column).type))
    if not terms:
        return None
    out = terms[0]
    for term in terms[1:]:
        out = out & term
    return out


def open_dataset(root: PathLike | None = None) -> Any:
    """A pyarrow dataset over every converted trace, with ``source`` and ``trace`` columns.

    >>> d = open_dataset()
    >>> "source" in d.schema.names and "trace" in d.schema.names
    True
    """
    import pyarrow.dataset as ds  # imports pandas when present: keep it off the import path

    base = parquet_root(home(root))
    base.mkdir(parents=True, exist_ok=True)
    part = pa.schema([("source", pa.string()), ("trace", pa.string())])
    schema = pa.schema(list(TRACE_SCHEMA) + list(part), metadata=TRACE_SCHEMA.metadata)
    return ds.dataset(base, format="parquet", schema=schema,
                      partitioning=ds.partitioning(part, flavor="hive"))


def describe(table: pa.Table) -> dict[str, Any]:
    """A short summary of a unified table: rows, time span, token medians and totals."""
    def median(col: str) -> float | None:
        if not table.num_rows:
            return None
        return pc.quantile(table.column(col), q=0.5, interpolation="midpoint")[0].as_py()

    arr = table.column("arrival_us")
    span = (pc.max(arr).as_py() - pc.min(arr).as_py()) if arr.null_count < len(arr) else None
    return {
        "rows": table.num_rows,
        "span_s": span / 1e6 if span is not None else None,
        "input_tokens_median": median("input_tokens"),
        "output_tokens_median": median("output_tokens"),
        "input_tokens_total": pc.sum(table.column("input_tokens")).as_py(),
        "output_tokens_total": pc.sum(table.column("output_tokens")).as_py(),
    }
