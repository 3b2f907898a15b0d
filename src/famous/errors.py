"""The root of famous's errors, their kinds, and the two tables that map kinds to the edges.

Every error famous explains to a user is a ``FamousError``: a message saying what happened
and, where one exists, a hint saying what to do next. A domain error subclasses one of the
kinds below; the CLI turns a kind into an exit code (``exit_code``) and the gateway into an
HTTP status (``http_status``), each through one table here, so no module below the edges
knows about either.
"""

from __future__ import annotations


class FamousError(Exception):
    """``str(err)`` is the message, then the hint on its own line."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message}\n{hint}")


class InvalidInput(FamousError):
    """What the user gave is malformed: a name, an argument, a file that is no model."""


class NotFound(FamousError):
    """An unknown model, engine, repo, file or configuration key."""


class Incompatible(FamousError):
    """This machine cannot run what was asked (no engine fits its silicon or memory)."""


class InvalidManifest(FamousError):
    """A model package's manifests are invalid."""


class Unavailable(FamousError):
    """Not now: a model still loading, no room to load one, an engine that failed."""

    def __init__(
        self, message: str, hint: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, hint)
        self.retry_after = retry_after


# kind -> exit code (the README lists them); the first kind in an error's MRO decides
EXIT_CODES: dict[type[FamousError], int] = {
    InvalidInput: 2,
    Incompatible: 3,
    NotFound: 4,
    InvalidManifest: 5,
    Unavailable: 1,
    FamousError: 1,
}

# kind -> HTTP status the gateway answers with
HTTP_STATUSES: dict[type[FamousError], int] = {
    InvalidInput: 400,
    NotFound: 404,
    Incompatible: 507,
    InvalidManifest: 500,
    Unavailable: 503,
    FamousError: 500,
}


def _lookup(exc: FamousError, table: dict[type[FamousError], int]) -> int:
    return next(table[kind] for kind in type(exc).__mro__ if kind in table)


def exit_code(exc: FamousError) -> int:
    """The CLI's exit code for ``exc``."""
    return _lookup(exc, EXIT_CODES)


def http_status(exc: FamousError) -> int:
    """The gateway's HTTP status for ``exc`` (a subclass may set ``status`` to refine it)."""
    return getattr(exc, "status", None) or _lookup(exc, HTTP_STATUSES)
