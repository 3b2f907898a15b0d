"""``famous ray-start``: join this machine to a Ray cluster with what famous's detector sees.

It runs Ray's own ``ray start`` with the node's accelerators as custom resources and its
memory as the detector measured it (``famous.serve.ray_serve.resources``), so that Ray
places famous's replicas where their engine and memory estimate fit, and with Ray Serve's
high-throughput mode on (HAProxy in front of the replicas) unless the environment says
otherwise. With ``--root`` the node is the captured machine for famous throughout: its Ray
resources are read from that root, and the replicas Ray starts there inherit
``FAMOUS_HARDWARE_ROOT``, so their matchmaker picks the engine for the machine the node
says it is.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import typer

from famous.cli.errors import handle_errors
from famous.errors import InvalidInput, NotFound


def register(app: typer.Typer) -> None:
    app.command(
        "ray-start", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
    )(ray_start)


def _extra_resources(text: str | None) -> dict[str, float]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"--resources must be a JSON object: {exc}") from None
    if not isinstance(value, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()
    ):
        raise InvalidInput('--resources must be a JSON object of numbers, e.g. {"rack_a": 1}')
    return {str(k): float(v) for k, v in value.items()}


@handle_errors
def ray_start(
    ctx: typer.Context,
    head: bool = typer.Option(False, "--head", help="Start a head node (a new cluster)."),
    address: str = typer.Option(None, "--address", help="Join the cluster at this head address."),
    resources: str = typer.Option(
        None, "--resources", help="More custom resources (JSON), added to the detector's."
    ),
    root: Path | None = typer.Option(
        None, "--root", help="Read the machine from a captured root instead of /."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the command only."),
) -> None:
    """Start a Ray node whose resources are this machine's accelerators and memory; other
    arguments go to `ray start` as they are (e.g. --port, --num-cpus, --block)."""
    from famous.serve.ray_serve.resources import ray_start_command, serve_environment
    from famous.services.selection import machine_report

    if head == bool(address):
        raise InvalidInput("give either --head or --address HEAD:PORT")
    argv = ray_start_command(
        machine_report(str(root) if root else None), _extra_resources(resources), head=head
    )
    if address:
        argv += ["--address", address]
    argv += list(ctx.args)
    from famous.hardware import ENV_ROOT

    # the node's replicas read the machine its resources were read from
    view = {ENV_ROOT: str(root.resolve())} if root else {}
    typer.echo(shlex.join([f"{k}={v}" for k, v in view.items()] + argv), err=True)
    if dry_run:
        return
    if shutil.which("ray") is None:
        raise NotFound("the ray command is missing", hint='pip install "famous[ray]"')
    env = {**serve_environment(dict(os.environ)), **view}
    raise typer.Exit(subprocess.run(argv, env=env).returncode)
