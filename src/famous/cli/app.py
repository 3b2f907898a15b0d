"""The Typer app of the ``famous`` command. Each command group lives in its own module and
registers itself.

Modules here import only typer and famous's light control-plane code at module level;
anything heavy (torch, engines, the gateway) is imported inside the command that needs it.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="famous",
    help="Silicon-optimized local inference: pick, fetch and serve the best engine for a model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_COMMAND_MODULES = (
    "famous.cli.machine",
    "famous.cli.selection",
    "famous.cli.config",
    "famous.cli.genai",
    "famous.cli.serving",
    "famous.cli.web",
    "famous.cli.deployments",
    "famous.cli.cluster",
    "famous.cli.lifecycle",
    "famous.cli.build",
    "famous.cli.profile",
    "famous.cli.bench",
)


def _register() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(app)


def command_modules() -> tuple[str, ...]:
    """The modules that register commands (the tests import each one)."""
    return _COMMAND_MODULES


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        from famous import __version__

        typer.echo(__version__)
        raise typer.Exit(0)


_register()
