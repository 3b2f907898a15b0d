"""The ``famous`` command's entry point.

The read-only commands with their plain options are answered by ``famous.cli.quick``
without loading typer; everything else (and every ``--help``) goes to the Typer app in
``famous.cli.app``, which ``app`` here names for tests and tools.
"""

from __future__ import annotations

import sys
from typing import Any


def run() -> None:
    from famous.cli.quick import answer

    code = answer(sys.argv[1:])
    if code is not None:
        raise SystemExit(code)
    from famous.cli.app import app

    app()


def __getattr__(name: str) -> Any:
    if name in {"app", "command_modules"}:
        from famous.cli import app as typer_app

        return getattr(typer_app, name)
    raise AttributeError(f"module 'famous.cli.main' has no attribute {name!r}")


if __name__ == "__main__":
    run()
