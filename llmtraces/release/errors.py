"""The one exception of the release tooling: a build or check that cannot go on."""

from __future__ import annotations

from ..errors import LLMTracesError


class ReleaseError(LLMTracesError):
    """A release that cannot be built, verified or unpacked; the message names the file or
    option and what was expected."""
