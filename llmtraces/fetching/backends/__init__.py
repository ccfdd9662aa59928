"""Hosting services whose download URL (and, for some, pins) is found at fetch time.

Each module exports ``resolve(entry, session, timeout) -> (entry, url, headers)`` (headers
to send to that URL only, e.g. the user's Hub token) and ``GIVES_PINS``
(whether the service publishes size and checksum, so it is worth asking even for a file the
user imports by hand).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ...registry import FileEntry

#: FileEntry field -> backend module in this package.
BACKENDS = {"zenodo": "zenodo", "gdrive": "gdrive", "hf": "hf"}


def backend_for(entry: FileEntry) -> ModuleType | None:
    """The backend module that resolves ``entry``, if its registry entry names one."""
    for field, module in BACKENDS.items():
        if getattr(entry, field) is not None:
            return importlib.import_module(f"{__name__}.{module}")
    return None
