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

__all__ = ["SCHEMA_VERSION", "TRACE_SCHEMA", "Request", "__version__", "convert_file",
           "convert_source", "fetch", "iter_requests", "load", "open_dataset", "source",
           "sources"]
