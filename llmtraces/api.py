"""The Python API other benchmarks import: list sources, fetch, load tables and datasets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .convert import convert_file, convert_source, converted_path
from .download import Fetched, _quiet_log
from .download import fetch as _fetch
from .errors import InvalidTraceError
from .formats.parquet import is_unified, read_metadata
from .paths import home, parquet_root
from .registry import Source, get_source, load_registry
from .schema import SCHEMA_VERSION, TRACE_SCHEMA

PathLike = str | os.PathLike[str]


def sources(registry: Path | None = None) -> list[Source]:
    """Every source in the registry, sorted by id.

    >>> [s.id for s in sources()][:1]
    ['azure-llm-2023']
    """
    return list(load_registry(registry).values())


def source(source_id: str, registry: Path | None = None) -> Source:
    """The registry entry of one source: files, licence, citation, time semantics, quirks."""
    return get_source(source_id, registry)


def fetch(source_id: str, trace: str | None = None, *, root: PathLike | None = None,
          mirror: str | None = None, file: PathLike | None = None,
          offline: bool | None = None) -> list[Fetched]:
    """Download and verify a source's native files into the cache (see ``llmtraces fetch``)."""
    return _fetch(source_id, trace, root=home(root), mirror=mirror,
                  file=Path(file) if file is not None else None, offline=offline)


def _is_current(path: Path) -> bool:
    try:
        return path.is_file() and read_metadata(path).get("schema_version") == SCHEMA_VERSION
    except InvalidTraceError:
        return False


def load(source_or_path: str | PathLike, trace: str | None = None, *,
         columns: list[str] | None = None, root: PathLike | None = None,
         mirror: str | None = None, offline: bool | None = None,
         tokenizer: str | None = None) -> pa.Table:
    """A trace as a pyarrow Table in the unified schema (``.to_pandas()`` works with pandas).

    ``source_or_path`` is a registry id, whose trace is fetched, verified and converted into the
    cache on first use, or a path to a unified Parquet file or a native trace file.
    ``tokenizer`` is for sources that publish text but no token counts (LMSys-Chat-1M; see
    ``llmtraces convert --tokenizer``): a cached conversion made with another tokenizer is
    redone; None keeps whatever the cached conversion used (``o200k_base`` on first use).

    Examples
    --------
    >>> t = load("azure-llm-2023", trace="code")
    >>> t.num_rows, t.column("input_tokens")[0].as_py()
    (8819, 4808)
    """
    as_path = Path(os.fspath(source_or_path)).expanduser()
    if as_path.exists() or isinstance(source_or_path, os.PathLike):
        return _load_path(as_path, columns, tokenizer)
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
    return pq.read_table(dest, columns=columns)


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


def _load_path(path: Path, columns: list[str] | None, tokenizer: str | None = None
               ) -> pa.Table:
    if not path.exists():
        raise InvalidTraceError(f"{path}: no such file")
    if is_unified(path):
        read_metadata(path)  # refuses Parquet that is not a unified trace
        return pq.read_table(path, columns=columns)
    # A native file: convert into a temporary Parquet beside nothing, then read it whole.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="llmtraces-") as tmp:
        out = Path(tmp) / "trace.parquet"
        convert_file(path, out, options=_options(tokenizer))
        table = pq.read_table(out, columns=columns)
    return table


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
    import pyarrow.compute as pc

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
