"""``famous ui``: the gateway's web UI, opened in the browser already logged in.

Light at import (typer and the services' gateway lifecycle): the gateway runs in its own
process, started in the background when none runs, exactly as ``famous run`` does.
"""

from __future__ import annotations

import typer

from famous.cli.errors import handle_errors
from famous.services.gateway import start_gateway, ui_address


@handle_errors
def ui(
    port: int = typer.Option(
        None, "--port", help="Port for a gateway started now (default http.port)."
    ),
    no_open: bool = typer.Option(False, "--no-open", help="Print the address; open no browser."),
) -> None:
    """Open the web UI (chat, models, deployments, Hub search, this machine), starting the
    gateway if none runs; prints its address with the admin token in the fragment."""
    info = start_gateway(port)
    address = ui_address(info)
    typer.echo(address)
    if not no_open:
        import webbrowser

        if not webbrowser.open(address):
            typer.echo("no browser found: open the address above", err=True)


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)
