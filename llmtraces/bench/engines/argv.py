"""Engine command lines: an option's value, and credentials hidden before an argv is shown
(``plan.json``, ``env.json``, ``server.log``, errors)."""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["option_value", "redact_argv", "secret_values"]

#: options whose value is a credential: shown as ``***`` in argv(), logs and errors.
_SECRET_OPTION = re.compile(r"^--?[\w-]*(api[-_]?key|token|secret|passw(or)?d)[\w-]*$", re.I)


def option_value(args: Sequence[str], name: str) -> str | None:
    """The value given to ``name`` in ``args`` (``--name V`` or ``--name=V``), or None."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def redact_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with the value of every credential option (``--api-key K``,
    ``--hf-token=T``) replaced by ``***``: what may be written to a log or a file."""
    out: list[str] = []
    hide = False
    for arg in argv:
        if hide:
            out.append("***")
            hide = False
            continue
        name, eq, _ = arg.partition("=")
        if _SECRET_OPTION.match(name):
            if eq:
                out.append(f"{name}=***")
            else:
                out.append(arg)
                hide = True
            continue
        out.append(arg)
    return out


def secret_values(argv: Sequence[str]) -> list[str]:
    """The credentials in ``argv`` (what :func:`redact_argv` hides)."""
    shown = redact_argv(argv)
    out = []
    for real, masked in zip(argv, shown, strict=True):
        if real != masked:
            out.append(real.partition("=")[2] if masked.endswith("=***") else real)
    return [v for v in out if v]
