"""Serving commands: serve, run, chat (ps, stop, logs, status and install-component live in
``famous.cli.deployments``).

Module level imports stay light (typer and famous's control plane); the gateway, the Hub
and HTTP are imported inside the command that needs them. The work is done by services:
``run`` (what MODEL names, pulled if needed), ``gateway`` (start one) and its
``GatewayClient`` (register, load, chat).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from famous.cli.errors import handle_errors
from famous.cli.options import ApiKeyOption
from famous.errors import FamousError, InvalidInput
from famous.services.gateway import running_gateway, start_gateway
from famous.services.gateway_client import GatewayClient, StreamInterrupted

if TYPE_CHECKING:
    from famous.hub.progress import ProgressSink
    from famous.serve.ray_serve.launcher import RayOptions
    from famous.services.run import RunTarget


def _setting(key: str) -> Any:
    """famous's own configuration (package < user < environment)."""
    from famous.store.config import resolve

    return resolve()[key].value


def _model_files(items: list[str]) -> list[tuple[str, Path]]:
    """``--model NAME=PATH`` options as (name, path) pairs."""
    pairs = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InvalidInput(f"--model expects NAME=PATH, got {item!r}")
        pairs.append((name, Path(path)))
    return pairs


# -- serve ------------------------------------------------------------------------------------


@handle_errors
def serve(
    host: str = typer.Option(None, "--host", help="Address to bind (default http.host)."),
    port: int = typer.Option(None, "--port", help="Port to bind (default http.port, 8324)."),
    api_key: str | None = ApiKeyOption,
    keep_alive: float = typer.Option(
        None, "--keep-alive", help="Seconds an idle model stays loaded (negative: forever)."
    ),
    max_loaded: int = typer.Option(None, "--max-loaded", help="Models loaded at once."),
    memory_budget: str = typer.Option(
        None, "--memory-budget", help="Memory the loaded models may use (e.g. 12GiB)."
    ),
    max_request_size: str = typer.Option("8MiB", "--max-request-size", help="Largest body."),
    model: list[str] = typer.Option(
        [], "--model", "-m", help="Also serve a file: NAME=PATH (repeatable)."
    ),
    startup_timeout: float = typer.Option(
        None, "--startup-timeout", help="Seconds to wait for an engine to become healthy."
    ),
    drain_timeout: float = typer.Option(
        10.0,
        "--drain-timeout",
        help="On SIGTERM: seconds open streams may finish before they end with an error.",
    ),
    read_timeout: float = typer.Option(
        15.0, "--read-timeout", help="Seconds a client may take to send headers (408 after)."
    ),
    ray: str = typer.Option(
        None, "--ray", help="Deploy models on this Ray cluster (ADDRESS, or auto: a local head)."
    ),
    ray_replicas: int = typer.Option(
        None, "--replicas", "--ray-replicas", help="Ray Serve replicas per model (default 1)."
    ),
    min_replicas: int = typer.Option(
        None, "--min-replicas", help="Autoscale on Ray from N replicas (0: scale to zero)."
    ),
    max_replicas: int = typer.Option(
        None, "--max-replicas", help="Autoscale on Ray up to M replicas."
    ),
    target_ongoing: float = typer.Option(
        None, "--target-ongoing-requests", help="Ongoing requests per replica Ray aims at (2)."
    ),
    ray_cpus: float = typer.Option(1.0, "--ray-cpus", help="CPUs each Ray replica reserves."),
    ray_port: int = typer.Option(8000, "--ray-port", help="Port of Ray Serve's HTTP proxy."),
    ray_place: list[str] = typer.Option(
        [], "--ray-place", help="Run MODEL's replicas on nodes with a resource: MODEL=RESOURCE."
    ),
) -> None:
    """Run the OpenAI-compatible gateway in the foreground (Ctrl-C stops it and its engines)."""
    from famous.serve.models import ModelRegistry, ModelSpec
    from famous.serve.server import GatewayConfigError, GatewaySettings, run_gateway
    from famous.units import parse_size

    specs = [ModelSpec(name=name, path=path) for name, path in _model_files(model)]
    keep_alive = float(keep_alive if keep_alive is not None else _setting("keep-alive"))
    scaling = (ray_replicas, min_replicas, max_replicas, target_ongoing)
    settings = GatewaySettings(
        host=host or str(_setting("http.host")),
        port=port or int(_setting("http.port")),
        api_key=api_key or None,
        keep_alive=keep_alive,
        max_loaded=max_loaded or int(_setting("max-loaded-models")),
        memory_budget=parse_size(memory_budget) if memory_budget else None,
        startup_timeout=float(startup_timeout or _setting("startup-timeout")),
        max_request_bytes=parse_size(max_request_size),
        models=specs,
        drain_timeout=max(drain_timeout, 0.0),
        read_timeout=max(read_timeout, 0.5),
        ray=_ray_options(ray, scaling, keep_alive, ray_cpus, ray_port, ray_place),
    )
    running = running_gateway()
    if running is not None and running.port == settings.port:
        raise FamousError(f"a famous gateway already runs at {running.url} (pid {running.pid})")
    try:
        ModelRegistry(specs, use_store=False)  # check the files before binding
        typer.echo(f"famous gateway on http://{settings.host}:{settings.port}/v1", err=True)
        run_gateway(settings)
    except (GatewayConfigError, FileNotFoundError) as exc:
        raise FamousError(str(exc)) from None


def _ray_options(
    address: str | None,
    scaling: tuple[int | None, int | None, int | None, float | None],
    keep_alive: float,
    cpus: float,
    port: int,
    place: list[str],
) -> RayOptions | None:
    """``--ray`` and its replica options (checked), or None without ``--ray``."""
    from famous.serve.ray_serve.launcher import RayOptions
    from famous.serve.ray_serve.resources import placement_options
    from famous.serve.ray_serve.scaling import scaling_options

    if address is None:
        given = [n for n, v in zip(SCALING_FLAGS, scaling, strict=True) if v is not None]
        given += ["--ray-place"] if place else []
        if given:
            raise InvalidInput(f"{', '.join(given)} apply only with --ray ADDRESS (or --ray auto)")
        return None
    options = RayOptions(address, scaling_options(*scaling, keep_alive), cpus, port)
    options.placed = placement_options(place)
    return options


SCALING_FLAGS = ("--replicas", "--min-replicas", "--max-replicas", "--target-ongoing-requests")


# -- run / chat -------------------------------------------------------------------------------


def _prepare(model: str, engine: str | None, variant: str | None, offline: bool) -> RunTarget:
    """MODEL → what to load, pulling it first when it is not installed (with progress)."""
    from famous.services.run import prepare

    def progress() -> ProgressSink:
        from famous.hub.progress import default_progress

        typer.echo(f"pulling {model}…", err=True)
        return default_progress()

    target = prepare(model, engine, variant, offline, pull_progress=progress)
    if target.pulled is not None:
        result = target.pulled
        typer.echo(
            f"{result.model}: engine {result.engine}, variant {result.variant}"
            + (" (already installed)" if result.reused else ""),
            err=True,
        )
    return target


def _print_answer(
    client: GatewayClient,
    model: str,
    messages: list[dict[str, str]],
    max_tokens: int | None = None,
) -> str:
    """Stream one chat answer to stdout as it comes; returns the full text."""
    out = sys.stdout
    text: list[str] = []
    try:
        for piece in client.stream_chat(model, messages, max_tokens):
            text.append(piece)
            out.write(piece)
            out.flush()
    except StreamInterrupted:
        out.write("\n")
        raise
    out.write("\n")
    return "".join(text)


CHAT_HELP = """commands:
  /bye      leave
  /clear    forget the conversation
  /help     this help
  \"\"\"       begin and end a multi-line message"""


def _read_message() -> str | None:
    """One user message from the terminal; triple quotes span lines. None on end of input."""
    try:
        line = input(">>> ")
    except EOFError:
        return None
    if not line.lstrip().startswith('"""'):
        return line
    parts = [line.lstrip()[3:]]
    while not parts[-1].rstrip().endswith('"""'):
        try:
            parts.append(input("... "))
        except EOFError:
            break
    text = "\n".join(parts)
    return text.rstrip()[:-3] if text.rstrip().endswith('"""') else text


def _chat_loop(
    client: GatewayClient, model: str, system: str | None, max_tokens: int | None = None
) -> None:
    base: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    messages = list(base)
    typer.echo(f"chatting with {model} (/bye to leave, /help for commands)", err=True)
    while True:
        text = _read_message()
        if text is None or text.strip() == "/bye":
            return
        command = text.strip()
        if command == "/clear":
            messages = list(base)
            typer.echo("(conversation cleared)", err=True)
            continue
        if command in ("/help", "/?"):
            typer.echo(CHAT_HELP, err=True)
            continue
        if not command:
            continue
        messages.append({"role": "user", "content": text})
        try:
            answer = _print_answer(client, model, messages, max_tokens)
        except KeyboardInterrupt:
            sys.stdout.write("\n(interrupted)\n")
            messages.pop()
            continue
        messages.append({"role": "assistant", "content": answer})


@handle_errors
def run(
    model: str = typer.Argument(..., help="Package name, Hub repo id, or a local GGUF file."),
    prompt: str | None = typer.Argument(None, help="Answer this once and exit."),
    engine: str | None = typer.Option(None, "--engine", help="Engine to pull for."),
    variant: str | None = typer.Option(None, "--variant", help="Model option to pull."),
    system: str | None = typer.Option(None, "--system", help="System message."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", help="Longest answer."),
    offline: bool = typer.Option(False, "--offline", help="Never contact the Hub."),
    api_key: str | None = ApiKeyOption,
) -> None:
    """Pull if needed, start the gateway if none runs, load the model, then chat."""
    from famous.cli.deployments import obtain_llama_server

    target = _prepare(model, engine, variant, offline)
    name = target.name
    obtain_llama_server(name, target.local_path)
    info = start_gateway()
    client = GatewayClient.of(info, api_key)
    if target.local_path is not None:
        client.register_model(name, target.local_path)
    typer.echo(f"loading {name}…", err=True)
    loaded = client.load(name)
    typer.echo(
        f"{name} on {loaded.get('runtime')} ({loaded.get('server')}), gateway {info.url}/v1",
        err=True,
    )
    if prompt is None and not sys.stdin.isatty():
        prompt = sys.stdin.read()
    if prompt is not None:
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        _print_answer(client, name, messages, max_tokens)
        return
    _chat_loop(client, name, system, max_tokens)


@handle_errors
def chat(
    model: str = typer.Argument(..., help="A model the running gateway serves."),
    url: str | None = typer.Option(None, "--url", help="Gateway URL (default: the running one)."),
    system: str | None = typer.Option(None, "--system", help="System message."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", help="Longest answer."),
    api_key: str | None = ApiKeyOption,
) -> None:
    """Chat with a model through a running gateway (streaming; /bye, /clear, multi-line)."""
    if url is None:
        info = running_gateway()
        if info is None:
            raise FamousError(
                "no famous gateway is running; start one with famous serve (or famous run)"
            )
        url = info.url
    _chat_loop(GatewayClient(url.rstrip("/"), api_key), model, system, max_tokens)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("run")(run)
    app.command("chat")(chat)
