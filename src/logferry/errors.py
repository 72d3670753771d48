"""Error classes: each says what went wrong and what to do next, in one line."""

from __future__ import annotations


class LogferryError(Exception):
    """Base class for every error logferry raises on purpose."""


class ConfigError(LogferryError):
    """Bad usage or configuration; the CLI exits with status 2."""


class ConfigErrors(ConfigError):
    """Several configuration problems found at once (``logferry validate`` prints each).

    As a one-line message it is the first problem and how many more there are.
    """

    def __init__(self, problems: list[str]) -> None:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(problems[0] + more)
        self.problems = problems


class ObjectError(LogferryError):
    """One object (or partition) cannot be shipped; the others go on."""


class SourceError(ObjectError):
    """Reading or listing a source failed (missing object, access denied, ...).

    ``transient`` marks failures worth retrying in the same run (a read cut short).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class DecodeError(ObjectError):
    """The object's bytes cannot be decoded (corrupt gzip, invalid document, ...)."""


class SinkError(LogferryError):
    """A sink refused or failed to take a batch."""


def is_transient(exc: BaseException) -> bool:
    """True for failures that may well pass on a later attempt (outages, cut connections)."""
    if isinstance(exc, SourceError):
        return exc.transient
    return isinstance(exc, RetryableSinkError)


class RetryableSinkError(SinkError):
    """A transient sink failure (429, 5xx, timeout, connection error)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLargeError(SinkError):
    """The sink rejected a request as too large (413): split and retry."""


class FatalSinkError(SinkError, ObjectError):
    """The sink rejected the data for good (400/401/403): the object fails."""
