"""Discovery of the modules of a plug-in package (native formats, export formats)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Iterator
from types import ModuleType


def modules(package: str, path: Iterable[str]) -> Iterator[ModuleType]:
    """Import and yield each module of ``package`` whose name does not start with ``_``.

    Underscore modules are helpers shared by the plug-ins, not plug-ins themselves.
    """
    for info in pkgutil.iter_modules(path):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{package}.{info.name}")


def lookup(known: Iterable[str], name: str, what: str) -> str:
    """The error text for an unknown ``name`` of kind ``what``, listing the known ones."""
    return f"unknown {what} {name!r}; known: {', '.join(sorted(known)) or '(none)'}"
