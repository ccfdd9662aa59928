"""The Python API other benchmarks import: list sources, fetch, load tables and datasets."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .convert import convert_file, convert_source, converted_path
from .download import Fetched, _quiet_log
from .download import fetch as _fetch
from .errors import InvalidTraceError
from .formats.parquet import is_unified, read_metadata
from .paths import home, parquet_root
from .registry import Source, get_source, load_registry
from .request import Request
from .schema import COLUMN_NAMES, METADATA_KEY, SCHEMA_VERSION, TRACE_SCHEMA

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


def _is_current(path: Path) -> bool:
    try:
        return path.is_file() and read_metadata(path).get("schema_version") == SCHEMA_VERSION
    except InvalidTraceError:
        return False


Filter: TypeAlias = Mapping[str, Any] | pc.Expression | None


def load(source_or_path: str | PathLike, trace: str | None = None, *,
         columns: list[str] | None = None, filter: Filter = None,
         root: PathLike | None = None, mirror: str | None = None,
         offline: bool | None = None, tokenizer: str | None = None) -> pa.Table:
    """A trace as a pyarrow Table in the unified schema (``.to_pandas()`` works with pandas).

    Parameters
    ----------
    source_or_path : str or path
        A registry id, whose trace is fetched, verified and converted into the cache on
        first use, or a path to a unified Parquet file or a native trace file.
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
    """
    with unified_path(source_or_path, trace, root=root, mirror=mirror, offline=offline,
                      tokenizer=tokenizer) as path:
        table = pq.read_table(path, columns=columns, filters=filter_expression(filter))
        # The trace metadata (licence, time origin, transforms) travels with the table, so a
        # table handed to llmtraces.transforms or written again keeps it.
        meta = json.dumps(read_metadata(path), sort_keys=True)
        return table.replace_schema_metadata({**(table.schema.metadata or {}),
                                              METADATA_KEY.encode(): meta.encode()})


def iter_requests(source_or_path: str | PathLike, trace: str | None = None, *,
                  filter: Filter = None, batch_rows: int = 1 << 16,
                  root: PathLike | None = None, mirror: str | None = None,
                  offline: bool | None = None, tokenizer: str | None = None
                  ) -> Iterator[Request]:
    """Stream a trace as typed :class:`Request` records, in native order, in bounded memory.

    Takes the same arguments as :func:`load` (``batch_rows`` rows are decoded at a time), for
    replayers and simulators that consume requests one by one.

    Examples
    --------
    >>> reqs = iter_requests("azure-llm-2023", trace="code")
    >>> r = next(reqs)
    >>> r.request_id, r.arrival_s, r.input_tokens, r.output_tokens
    (0, 0.0, 4808, 10)
    >>> sum(1 for _ in iter_requests("azure-llm-2023", trace="code",
    ...                              filter={"output_tokens": [10, 13]}))
    991
    """
    expression = filter_expression(filter)
    with unified_path(source_or_path, trace, root=root, mirror=mirror, offline=offline,
                      tokenizer=tokenizer) as path:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=batch_rows, columns=list(COLUMN_NAMES)):
            table = pa.Table.from_batches([batch])
            if expression is not None:
                table = table.filter(expression)
            for row in table.to_pylist():
                yield Request.from_row(row)


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


@contextmanager
def unified_path(source_or_path: str | PathLike, trace: str | None = None, *,
                 root: PathLike | None = None, mirror: str | None = None,
                 offline: bool | None = None, tokenizer: str | None = None
                 ) -> Iterator[Path]:
    """A unified Parquet file for a registry trace (converted into the cache on first use) or
    for a path (a native file converted into a temporary file, removed on exit)."""
    as_path = Path(os.fspath(source_or_path)).expanduser()
    if as_path.exists() or isinstance(source_or_path, os.PathLike):
        if not as_path.exists():
            raise InvalidTraceError(f"{as_path}: no such file")
        if is_unified(as_path):
            read_metadata(as_path)  # refuses Parquet that is not a unified trace
            yield as_path
            return
        with tempfile.TemporaryDirectory(prefix="llmtraces-") as tmp:
            out = Path(tmp) / "trace.parquet"
            convert_file(as_path, out, options=_options(tokenizer))
            yield out
        return
    root_dir = home(root)
    src = get_source(str(source_or_path))
    if src.discover is not None:
        from .discover import with_discovered

        if trace not in with_discovered(src, root_dir).traces:
            _fetch(src.id, trace, root=root_dir, mirror=mirror, offline=offline, log=_quiet_log)
        src = with_discovered(src, root_dir)
    trace_id, _ = src.trace(trace)
    dest = converted_path(src.id, trace_id, root_dir)
    if not _is_current(dest) or not _same_tokenizer(dest, tokenizer):
        _fetch(src.id, trace_id, root=root_dir, mirror=mirror, offline=offline, log=_quiet_log)
        convert_source(src.id, trace_id, root=root_dir, options=_options(tokenizer))
    yield dest


def _options(tokenizer: str | None) -> dict[str, Any]:
    """Reader options for a tokenizer spec (none: the reader's default)."""
    return {"tokenizer": tokenizer} if tokenizer else {}


def _same_tokenizer(path: Path, tokenizer: str | None) -> bool:
    """Whether the converted trace at ``path`` counted tokens with ``tokenizer`` (True when
    none is asked for)."""
    if tokenizer is None:
        return True
    used = read_metadata(path).get("tokenizer") or {}
    return tokenizer in (used.get("spec"), used.get("name"))


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
