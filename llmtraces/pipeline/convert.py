"""Any trace into a file of any format, nothing left behind on error: :func:`convert_file`.

A trace file (native or unified Parquet) is read through its reader and the registry checks
(:mod:`llmtraces.pipeline.write`); a registry id, a pyarrow Table or a TraceView is written as
:func:`llmtraces.export` writes it. A source's traces go into the cache with
:func:`convert_source` (defined in :mod:`llmtraces.pipeline.unified`, importable from here as
are ``source_of`` and ``converted_path``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..paths import converted_path
from ..registry import Source
from ..report import Report
from ..schema import TraceStream
from .inputs import TraceInput, open_trace, parquet_stream
from .unified import convert_source, registry_path, source_of
from .write import Transform, refuse_overwrite, write_file, write_trace

__all__ = ["convert_file", "convert_source", "converted_path", "skip_pandas_probe", "source_of",
           "use_jemalloc"]


def convert_file(path: TraceInput, dest: Path, *, to: str = "parquet",
                 source: Source | None = None, trace: str | None = None,
                 verified: bool = False, strict: bool = False, registry: Path | None = None,
                 options: dict[str, Any] | None = None, transform: Transform | None = None
                 ) -> tuple[int, Report]:
    """Convert one trace into ``dest`` in format ``to``; nothing is left at ``dest`` on error.

    The input is a trace file: a native one (format recognised from its first line, or its
    schema for Parquet; ``source``, ``trace`` and ``registry`` name its registry entry when
    its file name does not) or a unified Parquet file. It may also be a registry id
    (``"azure-llm-2023/code"``, or a source id with ``trace=``; its cached conversion is
    written), a pyarrow Table in the unified schema or a TraceView: these are written as
    :func:`llmtraces.export` writes them (atomically, with the licence sidecar).
    ``options`` go to the native reader (e.g. ``{"tokenizer": "o200k_base"}``). ``transform``,
    given the unified stream and the input file (None for a Table or a view), returns the
    stream to write instead (see :class:`llmtraces.transforms.Plan`). Returns the number of
    rows written and the report (warnings and licence notices included).

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
    >>> convert_file(llmtraces.head(out, 5), out.with_suffix(".csv"), to="vidur")[0]
    5
    """
    dest = Path(dest)
    if isinstance(path, str | os.PathLike):
        as_path = Path(os.fspath(path)).expanduser()
        if as_path.exists() or not isinstance(path, str):
            return write_file(as_path, dest, to=to, source=source, trace=trace,
                              verified=verified, strict=strict, registry=registry,
                              options=options, transform=transform)
        _reader_arguments_unused(path, source=source, verified=verified, registry=registry)
        cached = registry_path(path, trace, tokenizer=(options or {}).get("tokenizer"))
        refuse_overwrite(cached, dest)
        stream: TraceStream = parquet_stream(cached)
        origin: Path | None = cached
    else:
        _reader_arguments_unused(path, source=source, trace=trace, verified=verified,
                                 registry=registry)
        stream, origin = open_trace(path), None
    report = Report()
    if origin is not None:
        report.checked.append(str(origin))
    if transform is not None:
        stream = transform(stream, origin)
    return write_trace(stream, dest, to, report), report


def _reader_arguments_unused(given_input: object, **arguments: object) -> None:
    """Arguments that name a native file's registry entry do not apply to this input."""
    named = [k for k, v in arguments.items() if v not in (None, False)]
    if named:
        what = "a registry id" if isinstance(given_input, str) else type(given_input).__name__
        raise TypeError(f"convert_file: {', '.join(named)} name(s) the registry entry of a "
                        f"native file; the input here is {what}")


class _HidePandas:
    """A meta-path finder under which ``import pandas`` fails, for :func:`skip_pandas_probe`."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if name == "pandas":
            raise ImportError("pandas hidden from pyarrow's probe")
        return None


def skip_pandas_probe() -> None:
    """Keep pyarrow from importing pandas in this process: ~0.25 s of a CLI conversion.

    pyarrow probes for pandas (importing it, when installed) on its first conversion of a
    Python value, such as the ``1`` of ``pc.add(a, 1)``. The probe is made here with pandas
    hidden, so pyarrow records it as absent. Only for a process that never hands pyarrow a
    pandas object (the ``convert`` command): ``to_pandas()`` still imports pandas on demand.
    """
    if "pandas" in sys.modules:
        return
    sys.meta_path.insert(0, _HidePandas)
    try:
        pa.scalar(0)
    finally:
        sys.meta_path.remove(_HidePandas)


def use_jemalloc() -> None:
    """Allocate Arrow memory from jemalloc in this process, where pyarrow has it and the user
    set no ``ARROW_DEFAULT_MEMORY_POOL``: a conversion then peaks ~20 MiB lower and spends less
    CPU in the kernel than with mimalloc (pyarrow's default on Linux), which keeps and faults
    back the pages the Parquet writer hands back after each row group. Only for a process
    that converts and exits (the ``convert`` command); buffers made before keep their pool.
    """
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    with contextlib.suppress(NotImplementedError):  # a pyarrow built without jemalloc
        pa.set_memory_pool(pa.jemalloc_memory_pool())
