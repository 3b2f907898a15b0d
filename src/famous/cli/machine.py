"""``famous show-machine``: what the hardware detector sees, for people and for scripts."""

from __future__ import annotations

from pathlib import Path

import typer

from famous.cli.errors import handle_errors
from famous.cli.options import FormatOption
from famous.cli.render import OutputFormat
from famous.cli.views import machine as view


def register(app: typer.Typer) -> None:
    app.command("show-machine")(show_machine)


@handle_errors
def show_machine(
    root: Path | None = typer.Option(
        None,
        "--root",
        envvar="FAMOUS_HARDWARE_ROOT",
        help="Read a captured machine laid out like / (proc/, sys/, run/) instead of this one.",
    ),
    all_devices: bool = typer.Option(False, "--all", help="List every PCI device in the table."),
    fmt: OutputFormat = FormatOption,
) -> None:
    """Show what famous detects on this machine: CPUs, memory, disk, GPUs and NPUs."""
    view.show_machine(root, all_devices, fmt)
