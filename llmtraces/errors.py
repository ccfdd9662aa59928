"""Exceptions whose message is one clear line for the user: what went wrong, where, and the fix."""

from __future__ import annotations


class LLMTracesError(Exception):
    """Base class: the CLI prints ``str(err)`` and exits non-zero, with no traceback."""


class UnknownSourceError(LLMTracesError, LookupError):
    """A source id or trace id that the registry does not have."""


class NoSuchFileError(LLMTracesError, FileNotFoundError):
    """A path given as input (``x.csv``, ``data/x``) that does not exist and is no source id."""


class RegistryError(LLMTracesError):
    """A registry file that does not match ``schemas/registry.schema.json``."""


class DownloadError(LLMTracesError):
    """No candidate URL gave a verified copy of a file."""

    #: The traces whose files a fetch tried and could not get (empty when none was tried).
    traces: tuple[str, ...] = ()


class ChecksumError(DownloadError):
    """A file whose size or checksum differs from what the registry pins."""


class NotCachedError(LLMTracesError):
    """A file or converted trace that is not in the local cache yet."""

    #: The traces whose files an offline fetch tried and could not get (empty when none was).
    traces: tuple[str, ...] = ()


class InvalidTraceError(LLMTracesError):
    """Bad native or unified data; carries the validation report with every problem found."""

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class OptionError(LLMTracesError):
    """An option value outside what it accepts (NaN, infinity, a typo's 1e-300): one line
    naming the option, the value and the accepted range."""
