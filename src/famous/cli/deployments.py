"""Deployments and engine components: ps, stop, logs, status, install-component.

Only ``install-component`` does heavy work; the others read the catalog and ask the
processes themselves (``famous.services.deployments``), without the web stack.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from famous.cli.errors import handle_errors
from famous.cli.options import ApiKeyOption, FormatOption
from famous.cli.render import OutputFormat
from famous.cli.views import deployments as view
from famous.errors import InvalidInput, NotFound
from famous.units import format_duration

if TYPE_CHECKING:
    from famous.runtimes.components import BuildResult
    from famous.runtimes.environments import EnvironmentSpec


@handle_errors
def ps(fmt: OutputFormat = FormatOption) -> None:
    """Running deployments: engine, runtime, server (and why it), pid, port, memory, uptime."""
    view.ps(fmt)


def _stop_gateway_and_engines() -> None:
    from famous.services.gateway import running_gateway, stop_gateway, stop_orphans

    info = running_gateway()
    if info is None:
        stopped = stop_orphans()
        typer.echo("no gateway is running" + (f"; stopped {', '.join(stopped)}" if stopped else ""))
        return
    stop_gateway(info)
    typer.echo(f"stopped the gateway (pid {info.pid}) and its engines")


@handle_errors
def stop(
    model: str | None = typer.Argument(None, help="The model to stop."),
    all_: bool = typer.Option(False, "--all", help="Stop every deployment."),
    gateway: bool = typer.Option(
        False, "--gateway", help="Also stop the gateway (it stops every engine first)."
    ),
    api_key: str | None = ApiKeyOption,
) -> None:
    """Stop a model's engine (or all of them); with --gateway, the gateway too."""
    from famous.services.gateway import running_gateway, stop_orphans
    from famous.services.gateway_client import GatewayClient

    if gateway:
        _stop_gateway_and_engines()
        return
    if not model and not all_:
        raise InvalidInput("name a model or pass --all (or --gateway)")
    which = None if all_ else model
    info = running_gateway()
    if info is not None:
        stopped = GatewayClient.of(info, api_key).stop(which)
    else:
        stopped = stop_orphans(which)
    if not stopped:
        if model and not all_:
            raise NotFound(f"{model} is not running")
        typer.echo("nothing was running")
        return
    for name in stopped:
        typer.echo(f"stopped {name}")


@handle_errors
def logs(
    model: str = typer.Argument(..., help="The model whose engine log to show."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    lines: int = typer.Option(50, "--lines", "-n", help="How many lines to show first."),
) -> None:
    """Show an engine's log (stdout and stderr of its process); for a model on Ray, each
    replica's engine log, read on its node (--follow: new lines prefixed by replica and node)."""
    from famous.services.deployments import cluster_logs, follow_cluster, log_of
    from famous.services.deployments import follow as follow_log
    from famous.store.deployments import tail

    on_ray = cluster_logs(model, lines)
    if on_ray is not None:
        _print_replica_logs(on_ray)
        if follow:
            with contextlib.suppress(KeyboardInterrupt):
                for line in follow_cluster(model, on_ray):
                    typer.echo(line)
        return
    path = log_of(model)
    for line in tail(path, lines):
        typer.echo(line)
    if not follow:
        return
    try:
        for chunk in follow_log(path):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    except KeyboardInterrupt:
        return


def _print_replica_logs(answer: dict) -> None:
    """The gateway's deployment lines, then each replica's engine log under a header."""
    for line in answer["lines"]:
        typer.echo(line)
    for rep in answer["replicas"]:
        typer.echo(
            f"==> replica {rep['replica']} on node {rep['node_ip']} ({rep['node_id'][:12]}), "
            f"engine {rep['engine']} on {rep['server']} (pid {rep['engine_pid']}): "
            f"{rep['log_path']}"
        )
        for line in rep["lines"]:
            typer.echo(line)


@handle_errors
def status(fmt: OutputFormat = FormatOption) -> None:
    """The gateway and every deployment, as the processes themselves report (not as recorded)."""
    view.status(fmt)


class BuildDisplay:
    """A llama.cpp build as it goes: a bar on a terminal, a line per step and per tenth of
    the compile elsewhere (a log, CI, a pipe), so minutes of compiling are never silent."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.shown = -1
        self.bar = None
        if sys.stderr.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                transient=True,
            )
            self.task = self.bar.add_task("starting", total=100)

    def __enter__(self) -> BuildDisplay:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def step(self, message: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=message)
        else:
            typer.echo(f"… {message}", err=True)

    def percent(self, value: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=value)
        elif value // 10 > self.shown:
            self.shown = value // 10
            typer.echo(
                f"… {value}% compiled, {format_duration(time.monotonic() - self.started)}", err=True
            )


def build_llama_server_shown(
    gpu: str = "cpu", jobs: int | None = None, sdist: Path | None = None
) -> BuildResult:
    """Build llama.cpp's programs for this machine, its time said first and its progress
    shown."""
    from famous.runtimes.components import (
        PROGRAMS,
        build_llama_server,
        cpu_target,
        estimate_seconds,
    )

    minutes = max(1, round(estimate_seconds(jobs) / 60))
    typer.echo(
        f"building llama.cpp ({', '.join(PROGRAMS)}) for this machine ({gpu}, {cpu_target()}), "
        f"about {minutes} min; once per machine",
        err=True,
    )
    with BuildDisplay() as display:
        result = build_llama_server(
            sdist=sdist, gpu=gpu, jobs=jobs, on_step=display.step, on_progress=display.percent
        )
    typer.echo(
        f"built llama-server ({result.gpu}, llama.cpp of llama-cpp-python {result.version}) in "
        f"{format_duration(result.seconds)} at {result.binary}",
        err=True,
    )
    return result


def obtain_llama_server(model: str, local_path: str | None = None) -> None:
    """Before serving ``model``: build llama-server when the model would otherwise run on
    llama_cpp.server (``llama-server.build``: auto). A machine that cannot build, or a build
    that fails, keeps llama_cpp.server and says why; serving goes on."""
    from famous.runtimes.components import build_lock
    from famous.services.llama_server import backend_to_build, build_policy

    gpu = backend_to_build(model, local_path)
    if gpu is None or build_policy() == "never":
        return
    with build_lock(on_wait=_waiting_for_build):
        if backend_to_build(model, local_path) is None:  # built by the famous we waited for
            return
        _build_or_fall_back(model, gpu)


def _waiting_for_build() -> None:
    typer.echo("waiting for another famous that is building llama-server…", err=True)


def _build_or_fall_back(model: str, gpu: str) -> None:
    from famous.runtimes.components import ComponentError, missing_toolchain

    missing = missing_toolchain(gpu)
    if missing:
        typer.echo(
            f"{model} runs on llama_cpp.server: llama-server cannot be built ({missing})", err=True
        )
        return
    try:
        build_llama_server_shown(gpu)
    except ComponentError as exc:
        typer.echo(f"{exc}\n{model} runs on llama_cpp.server instead", err=True)


COMPONENTS = ("llama-server", "vllm", "litert")


@handle_errors
def install_component(
    component: str = typer.Argument(
        ..., help="The component to install: llama-server, vllm or litert."
    ),
    gpu: str | None = typer.Option(
        None,
        "--gpu",
        help="Backend: cpu, cuda, rocm or vulkan (default: cpu for llama-server, "
        "this machine's GPU or cpu for vllm).",
    ),
    sdist: Path | None = typer.Option(
        None, "--sdist", help="Use this llama-cpp-python sdist instead of downloading it."
    ),
    jobs: int | None = typer.Option(None, "--jobs", "-j", help="Parallel compile jobs."),
) -> None:
    """Build llama.cpp's llama-server (with llama-quantize and llama-bench) for this machine,
    or install vLLM or the LiteRT converter (litert-torch) into an environment of its own
    (each pins its own torch, transformers or pydantic)."""
    if component in ("vllm", "litert"):
        from famous.runtimes import environments as envs

        if component == "vllm":
            from famous.runtimes.vllm import vllm_backend

            spec = envs.vllm_spec(gpu or vllm_backend())
            uses = "famous launches vLLM engines from it"
        else:
            spec = envs.litert_spec()
            uses = "famous build --target litert converts with it"
        _install_environment(spec, uses)
        return
    if component != "llama-server":
        raise NotFound(f"unknown component {component!r}; available: {', '.join(COMPONENTS)}")
    from famous.runtimes.components import build_lock

    with build_lock(on_wait=_waiting_for_build):
        result = build_llama_server_shown(gpu or "cpu", jobs, sdist)
    typer.echo(f"installed {result.folder}; famous uses it for llama.cpp engines from now on")


def _install_environment(spec: EnvironmentSpec, uses: str) -> None:
    """A managed environment for this machine, its time said first, each step and package
    shown; an environment already complete is kept."""
    from famous.runtimes import environments as envs
    from famous.units import format_size

    what = spec.component
    waiting = f"waiting for another famous that is installing {what}…"
    with envs.install_lock(what, on_wait=lambda: typer.echo(waiting, err=True)):
        done = envs.read_environment(spec.folder)
        if done is None:
            minutes = max(1, round(envs.estimate_seconds(what) / 60))
            typer.echo(
                f"installing {what} {spec.version} ({spec.backend}) into {spec.folder}, about "
                f"{minutes} min; once per machine",
                err=True,
            )
            with BuildDisplay() as display:
                done = envs.install_environment(
                    spec,
                    on_step=display.step,
                    on_package=lambda name: display.step(f"collecting {name}"),
                )
            typer.echo(f"installed in {format_duration(done.seconds)}", err=True)
    typer.echo(
        f"{what} {done.version} ({done.backend}) in {done.folder} (Python "
        f"{done.python_version}, {format_size(done.size_bytes)}); {uses}"
    )


def register(app: typer.Typer) -> None:
    app.command("ps")(ps)
    app.command("stop")(stop)
    app.command("logs")(logs)
    app.command("status")(status)
    app.command("install-component")(install_component)
