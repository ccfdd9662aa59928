"""llmtraces: public LLM inference workload traces in one schema, one ``pip install`` away.

>>> import llmtraces
>>> t = llmtraces.load("azure-llm-2023", trace="code")   # fetch, verify, convert, read
>>> t.num_rows
8819
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

#: Public name -> the submodule defining it, imported on first use (PEP 562) so that
#: ``import llmtraces`` (and the command's ``--version`` and ``--help``) costs next to nothing.
_EXPORTS = {
    "export": "api", "fetch": "api", "iter_requests": "api", "load": "api",
    "open_dataset": "api", "source": "api", "sources": "api",
    "convert_file": "pipeline.convert", "convert_source": "pipeline.unified",
    "TraceView": "pipeline.view", "TransformError": "pipeline.view",
    "Request": "request",
    "SCHEMA_VERSION": "schema", "TRACE_SCHEMA": "schema",
    "EmptyResultWarning": "transforms", "TraceModel": "transforms", "filter": "transforms",
    "fit": "transforms", "head": "transforms", "mean_rate": "transforms", "merge": "transforms",
    "rate_scale": "transforms", "rebase": "transforms", "sample": "transforms",
    "synthesize": "transforms", "time_scale": "transforms", "window": "transforms",
    "stats": "characterize.compute",
}

__all__ = ["SCHEMA_VERSION", "TRACE_SCHEMA", "EmptyResultWarning", "Request", "TraceModel",
           "TraceView", "TransformError",
           "__version__", "convert_file", "convert_source", "export", "fetch", "filter", "fit",
           "head", "iter_requests", "load", "mean_rate", "merge", "open_dataset", "rate_scale",
           "rebase", "sample", "source", "sources", "stats", "synthesize", "time_scale",
           "window"]

if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
    from .api import export, fetch, iter_requests, load, open_dataset, source, sources
    from .characterize.compute import stats
    from .pipeline.convert import convert_file
    from .pipeline.unified import convert_source
    from .pipeline.view import TraceView, TransformError
    from .request import Request
    from .schema import SCHEMA_VERSION, TRACE_SCHEMA
    from .transforms import (
        EmptyResultWarning,
        TraceModel,
        filter,
        fit,
        head,
        mean_rate,
        merge,
        rate_scale,
        rebase,
        sample,
        synthesize,
        time_scale,
        window,
    )
else:
    def __getattr__(name: str) -> Any:
        """A public name, importing its submodule on first use and keeping it here after."""
        if name not in _EXPORTS:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    """The module's names, with the public ones not yet imported."""
    return sorted(set(globals()) | set(__all__))
