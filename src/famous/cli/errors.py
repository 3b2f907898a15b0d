"""Turn famous's typed errors into a message on stderr and a documented exit code.

This is the one place the CLI maps errors to exit codes: every command is wrapped in
``handle_errors``, and the code comes from ``famous.errors.exit_code`` (the error's kind).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from famous.errors import FamousError, exit_code

P = ParamSpec("P")
R = TypeVar("R")


def report(exc: FamousError) -> None:
    """``error: message`` on stderr, then the hint (indented) when there is one."""
    sys.stderr.write(f"error: {exc.message}\n")
    if exc.hint:
        sys.stderr.write(f"  {exc.hint}\n")


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """famous's errors print ``error: …`` and exit with their kind's code; others propagate."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except FamousError as exc:
            report(exc)
            raise SystemExit(exit_code(exc)) from None

    return wrapper
