"""llmtraces: public LLM inference workload traces in one schema, one ``pip install`` away.

>>> import llmtraces
>>> t = llmtraces.load("azure-llm-2023", trace="code")   # fetch, verify, convert, read
>>> t.num_rows
8819
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import sources  # noqa: E402  (a callable module: llmtraces.sources() lists the registry)
from .api import fetch, iter_requests, load, open_dataset, source  # noqa: E402
from .convert import convert_file, convert_source  # noqa: E402
from .request import Request  # noqa: E402
from .schema import SCHEMA_VERSION, TRACE_SCHEMA  # noqa: E402
from .transforms import (  # noqa: E402  (filter stays llmtraces.transforms.filter: a builtin)
    TraceModel,
    TransformError,
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

__all__ = ["SCHEMA_VERSION", "TRACE_SCHEMA", "Request", "TraceModel", "TransformError",
           "__version__", "convert_file", "convert_source", "fetch", "fit", "head",
           "iter_requests", "load", "mean_rate", "merge", "open_dataset", "rate_scale", "rebase",
           "sample", "source", "sources", "synthesize", "time_scale", "window"]
