"""Imported first by the modules that need the ``stats`` extra: where numpy or scipy is
missing, the import fails with one line that names the extra."""

from __future__ import annotations

try:
    import numpy  # noqa: F401
    import scipy.stats  # noqa: F401
except ImportError as exc:
    raise ImportError(f"llmtraces stats needs numpy and scipy ({exc.name} is missing): "
                      "pip install 'llmtraces[stats]'") from None
