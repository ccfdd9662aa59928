"""Discovery of the modules of a plug-in package (native formats, export formats)."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from types import ModuleType


def modules(package: str, path: Iterable[str]) -> Iterator[ModuleType]:
    """Import and yield each module of ``package`` whose name does not start with ``_``.

    Underscore modules are helpers shared by the plug-ins, not plug-ins themselves.
    """
    import pkgutil  # late, like difflib below: the registry (and so the CLI) imports this module

    for info in pkgutil.iter_modules(path):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{package}.{info.name}")


def lookup(known: Iterable[str], name: str, what: str) -> str:
    """The error text for an unknown ``name`` of kind ``what``, listing the known ones."""
    known = sorted(known)
    return (f"unknown {what} {name!r}{did_you_mean(name, known)}; known: "
            f"{', '.join(known) or '(none)'}")


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the known names closest to a mistyped one, else ''.

    >>> did_you_mean("moncake", ["mooncake", "marconi", "vidur"])
    " (did you mean 'mooncake'?)"
    """
    import difflib

    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    if not close:
        return ""
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)"
