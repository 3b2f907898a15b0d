"""Turn famous's typed errors into a message on stderr and a documented exit code."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from famous.cli import exits

P = ParamSpec("P")
R = TypeVar("R")


def _code_for(exc: BaseException) -> int | None:
    # Imported here so that commands which never hit an error pay nothing for it.
    from famous.manifests.errors import ManifestError, PackageNotFound
    from famous.matchmaker import NoCompatibleEngine, UnknownEngine
    from famous.store.config import ConfigError, UnknownKey
    from famous.store.db import CatalogError

    table: list[tuple[type[BaseException], int]] = [
        (PackageNotFound, exits.NOT_FOUND),
        (UnknownEngine, exits.NOT_FOUND),
        (UnknownKey, exits.NOT_FOUND),
        (ManifestError, exits.INVALID_MANIFEST),
        (NoCompatibleEngine, exits.INCOMPATIBLE),
        (ConfigError, exits.ERROR),
        (CatalogError, exits.ERROR),
    ]
    return next((code for kind, code in table if isinstance(exc, kind)), None)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Known errors print ``error: …`` and exit with their code; others propagate."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            code = _code_for(exc)
            if code is None:
                raise
            sys.stderr.write(f"error: {exc}\n")
            raise typer.Exit(code) from None

    return wrapper
