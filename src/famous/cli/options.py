"""Typer options several commands share."""

from __future__ import annotations

import typer

from famous.cli.render import OutputFormat

FormatOption = typer.Option(
    OutputFormat.table, "--format", "-f", help="Output format: table, json or yaml."
)

ApiKeyOption = typer.Option(
    None,
    "--api-key",
    envvar="FAMOUS_API_KEY",
    help="Require this key (Authorization: Bearer); needed to bind beyond 127.0.0.1.",
)

RootOption = typer.Option(
    None,
    "--root",
    help="Read the machine from a captured root instead of / (also FAMOUS_HARDWARE_ROOT).",
)
