"""Serving commands: serve, run, chat, ps, stop, logs, status, install-component.

Module level imports stay light (typer and famous's control plane): ``famous status`` and
``famous ps`` read the catalog and ask processes directly, without the web stack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from famous.cli import exits
from famous.cli.errors import handle_errors
from famous.cli.render import FormatOption, OutputFormat, emit, fail, print_table
from famous.serve import state

ApiKeyOption = typer.Option(
    None,
    "--api-key",
    envvar="FAMOUS_API_KEY",
    help="Require this key (Authorization: Bearer); needed to bind beyond 127.0.0.1.",
)


def _setting(key: str) -> Any:
    """famous's own configuration (package < user < environment)."""
    from famous.store.config import resolve

    return resolve()[key].value


def _size(n: int | None) -> str:
    from famous.units import format_size

    return format_size(n)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _since(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        started = datetime.fromisoformat(iso)
    except ValueError:
        return None
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    return (datetime.now(UTC) - started).total_seconds()


def _gateway_error(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message"))
    return str(body)


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
) -> None:
    """Run the OpenAI-compatible gateway in the foreground (Ctrl-C stops it and its engines)."""
    from famous.serve.catalog import ModelSpec
    from famous.serve.server import GatewayConfigError, GatewaySettings, run_gateway
    from famous.units import parse_size

    specs = []
    for item in model:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise fail(f"--model expects NAME=PATH, got {item!r}", exits.USAGE)
        specs.append(ModelSpec(name=name, path=Path(path)))
    settings = GatewaySettings(
        host=host or str(_setting("http.host")),
        port=port or int(_setting("http.port")),
        api_key=api_key or None,
        keep_alive=float(keep_alive if keep_alive is not None else _setting("keep-alive")),
        max_loaded=max_loaded or int(_setting("max-loaded-models")),
        memory_budget=parse_size(memory_budget) if memory_budget else None,
        startup_timeout=float(startup_timeout or _setting("startup-timeout")),
        max_request_bytes=parse_size(max_request_size),
        models=specs,
        drain_timeout=max(drain_timeout, 0.0),
        read_timeout=max(read_timeout, 0.5),
    )
    running = state.running()
    if running is not None and running.port == settings.port:
        raise fail(f"a famous gateway already runs at {running.url} (pid {running.pid})")
    try:
        from famous.serve.catalog import ModelCatalog

        ModelCatalog(specs, use_store=False)  # check the files before binding
        typer.echo(f"famous gateway on http://{settings.host}:{settings.port}/v1", err=True)
        run_gateway(settings)
    except (GatewayConfigError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None


# -- run / chat -------------------------------------------------------------------------------


def _start_gateway(port: int | None = None, wait: float = 60.0) -> state.GatewayInfo:
    """The running gateway, or a new one started in the background (its log: gateway.log)."""
    info = state.running()
    if info is not None:
        return info
    from famous.runtimes.base import free_port
    from famous.store.paths import logs_dir

    port = port or int(_setting("http.port"))
    try:
        import socket

        with socket.socket() as sock:  # as uvicorn binds: a port in TIME-WAIT is free
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
    except OSError:
        port = free_port()
    logs_dir().mkdir(parents=True, exist_ok=True)
    log_path = logs_dir() / "gateway.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "famous", "serve", "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        info = state.running()
        if info is not None and info.pid == proc.pid:
            return info
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    from famous.store.deployments import tail

    lines = "\n".join(tail(log_path, 15))
    raise fail(f"the gateway did not start (see {log_path}):\n{lines}")


def _resolve_model(
    model: str, engine: str | None, variant: str | None, offline: bool = False
) -> tuple[str, dict[str, Any] | None]:
    """MODEL → (the name requests use, what the gateway must register for a local file).

    A model that is not installed (or not for ``--engine``/``--variant``) is pulled first.
    """
    path = Path(model).expanduser()
    if path.is_file() or (path.is_dir() and not (path / "model.yaml").is_file()):
        name = path.stem if path.is_file() else path.name
        return name, {"name": name, "path": str(path.resolve())}
    from famous.serve.catalog import ModelCatalog

    if engine is None and variant is None and ModelCatalog(use_store=True).get(model) is not None:
        return model, None
    _check_runtime(model, engine, variant)
    from famous.hub.errors import HubError
    from famous.hub.progress import default_progress
    from famous.hub.pull import pull

    typer.echo(f"pulling {model}…", err=True)
    try:
        result = pull(
            model,
            engine=engine,
            variant=variant,
            offline=offline or None,
            progress=default_progress(),
        )
    except HubError as exc:
        hint = getattr(exc, "hint", None)
        code = getattr(exc, "exit_code", exits.ERROR)
        raise fail(
            f"{exc}" + (f" ({hint})" if hint and hint not in str(exc) else ""), code
        ) from None
    typer.echo(
        f"{result.model}: engine {result.engine}, variant {result.variant}"
        + (" (already installed)" if result.reused else ""),
        err=True,
    )
    return result.model, None


def _check_runtime(model: str, engine: str | None, variant: str | None) -> None:
    """Before downloading: say so when the chosen engine's runtime is not installed."""
    from famous.manifests.errors import PackageNotFound
    from famous.services.selection import check_runtime, resolve_selection

    try:
        resolved = resolve_selection(model, engine=engine, option=variant)
    except PackageNotFound:
        return  # a Hub repo: its package is synthesized by the pull
    missing = check_runtime(resolved)
    if missing is not None:
        raise fail(missing.explain(resolved.package.name), exits.INCOMPATIBLE)


def _stream_chat(
    url: str,
    model: str,
    messages: list[dict[str, str]],
    api_key: str | None,
    out: Any,
    max_tokens: int | None = None,
) -> str:
    """Stream one chat answer to ``out``; returns the full text."""
    import httpx

    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    payload: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
    if max_tokens:
        payload["max_tokens"] = max_tokens
    text: list[str] = []
    with (
        httpx.Client(timeout=httpx.Timeout(10.0, read=None), trust_env=False) as client,
        client.stream("POST", url + "/v1/chat/completions", json=payload, headers=headers) as resp,
    ):
        if resp.status_code != 200:
            resp.read()
            try:
                message = _gateway_error(resp.json())
            except ValueError:
                message = resp.text
            raise fail(message)
        for line in resp.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            event = json.loads(data)
            if "error" in event:
                out.write("\n")
                raise fail(_gateway_error(event))
            for choice in event.get("choices", []):
                piece = (choice.get("delta") or {}).get("content") or ""
                if piece:
                    text.append(piece)
                    out.write(piece)
                    out.flush()
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
    url: str, model: str, api_key: str | None, system: str | None, max_tokens: int | None = None
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
            answer = _stream_chat(url, model, messages, api_key, sys.stdout, max_tokens)
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
    name, register_payload = _resolve_model(model, engine, variant, offline)
    info = _start_gateway()
    if register_payload is not None:
        status, body = state.request(info, "POST", "/api/models", register_payload, api_key=api_key)
        if status != 200:
            raise fail(_gateway_error(body))
    typer.echo(f"loading {name}…", err=True)
    status, body = state.request(
        info, "POST", "/api/load", {"model": name}, timeout=600.0, api_key=api_key
    )
    if status != 200:
        raise fail(_gateway_error(body), exits.NOT_FOUND if status == 404 else exits.ERROR)
    typer.echo(
        f"{name} on {body.get('runtime')} ({body.get('server')}), gateway {info.url}/v1", err=True
    )
    if prompt is None and not sys.stdin.isatty():
        prompt = sys.stdin.read()
    if prompt is not None:
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        _stream_chat(info.url, name, messages, api_key, sys.stdout, max_tokens)
        return
    _chat_loop(info.url, name, api_key, system, max_tokens)


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
        info = state.running()
        if info is None:
            raise fail("no famous gateway is running; start one with famous serve (or famous run)")
        url = info.url
    _chat_loop(url.rstrip("/"), model, api_key, system, max_tokens)


# -- ps / stop / logs / status -----------------------------------------------------------------


def _engine_health(record: Any) -> str:
    """Ask the engine itself: ready, starting (process up, health not yet), or failed."""
    from famous.store.deployments import process_alive

    if record.status == "stopped":
        return "stopped"
    if not process_alive(record.pid):
        return "failed" if record.status in ("ready", "starting", "failed") else record.status
    if not record.port:
        return record.status
    import urllib.error
    import urllib.request

    path = "/health" if record.server == "llama-server" else "/v1/models"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{record.port}{path}", timeout=1.5) as resp:
            ok = resp.status == 200
    except (urllib.error.URLError, OSError):
        ok = False
    if ok:
        return "ready"
    return "starting" if record.status == "starting" else "unhealthy"


def _process_memory(pid: int | None) -> int | None:
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss if pid else None
    except Exception:
        return None


@handle_errors
def ps(fmt: OutputFormat = FormatOption) -> None:
    """Running deployments: engine, runtime, server, pid, port, memory, uptime."""
    from famous.store.deployments import process_alive, read_all

    rows = []
    for rec in read_all():
        if rec.status in ("stopped", "failed") or not process_alive(rec.pid):
            continue
        rows.append(
            {
                "name": rec.name,
                "engine": rec.engine,
                "runtime": rec.runtime,
                "server": rec.server,
                "pid": rec.pid,
                "port": rec.port,
                "status": rec.status,
                "memory_bytes": _process_memory(rec.pid),
                "uptime_seconds": _since(rec.started_at),
            }
        )

    def table() -> None:
        print_table(
            ["name", "engine", "runtime", "server", "pid", "port", "status", "memory", "uptime"],
            [
                [
                    r["name"],
                    r["engine"],
                    r["runtime"],
                    r["server"],
                    r["pid"],
                    r["port"],
                    r["status"],
                    _size(r["memory_bytes"]),
                    _duration(r["uptime_seconds"]),
                ]
                for r in rows
            ],
        )

    emit(rows, fmt, table)


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
    info = state.running()
    if gateway:
        if info is None:
            stopped = _stop_orphans(None)
            typer.echo(
                "no gateway is running" + (f"; stopped {', '.join(stopped)}" if stopped else "")
            )
            return
        _stop_gateway(info)
        typer.echo(f"stopped the gateway (pid {info.pid}) and its engines")
        return
    if not model and not all_:
        raise fail("name a model or pass --all (or --gateway)", exits.USAGE)
    if info is not None:
        payload = {"all": True} if all_ else {"model": model}
        status, body = state.request(
            info, "POST", "/api/stop", payload, timeout=60, api_key=api_key
        )
        if status != 200:
            raise fail(_gateway_error(body))
        stopped = body.get("stopped", [])
    else:
        stopped = _stop_orphans(None if all_ else model)
    if not stopped:
        if model and not all_:
            raise fail(f"{model} is not running", exits.NOT_FOUND)
        typer.echo("nothing was running")
        return
    for name in stopped:
        typer.echo(f"stopped {name}")


def _stop_gateway(info: state.GatewayInfo, timeout: float = 60.0) -> None:
    """SIGTERM the gateway and wait: it stops its engines before it exits."""
    import signal

    from famous.store.deployments import process_alive

    os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while process_alive(info.pid):
        if time.monotonic() > deadline:
            raise fail(f"the gateway (pid {info.pid}) did not exit within {timeout:.0f} s")
        time.sleep(0.1)


def _stop_orphans(model: str | None) -> list[str]:
    """No gateway: stop engines recorded in the catalog whose process is still ours."""
    from famous.runtimes.base import stop_process
    from famous.serve.scheduler import is_engine_process
    from famous.store import db
    from famous.store import deployments as rows

    conn = db.connect(create=False)
    if conn is None:
        return []
    stopped = []
    try:
        for rec in rows.list_all(conn):
            if model and rec.name != model:
                continue
            if rec.status in ("ready", "starting") and is_engine_process(rec.pid, rec.port):
                stop_process(int(rec.pid or 0))
                stopped.append(rec.name)
            if rec.status in ("ready", "starting"):
                rows.set_status(conn, rec.name, "stopped")
    finally:
        conn.close()
    return stopped


@handle_errors
def logs(
    model: str = typer.Argument(..., help="The model whose engine log to show."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    lines: int = typer.Option(50, "--lines", "-n", help="How many lines to show first."),
) -> None:
    """Show an engine's log (stdout and stderr of its process)."""
    from famous.store.deployments import log_path_for, read_all, tail

    record = next((r for r in read_all() if r.name == model), None)
    path = Path(record.log_path) if record and record.log_path else log_path_for(model)
    if not path.exists():
        raise fail(f"no log for {model} (looked at {path})", exits.NOT_FOUND)
    for line in tail(path, lines):
        typer.echo(line)
    if not follow:
        return
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        try:
            while True:
                chunk = fh.read()
                if chunk:
                    sys.stdout.write(chunk.decode("utf-8", errors="replace"))
                    sys.stdout.flush()
                else:
                    time.sleep(0.3)
        except KeyboardInterrupt:
            return


@handle_errors
def status(fmt: OutputFormat = FormatOption) -> None:
    """The gateway and every deployment, as the processes themselves report (not as recorded)."""
    from famous.store.deployments import read_all, tail

    info = state.running()
    deployments = []
    for rec in read_all():
        health = _engine_health(rec)
        entry: dict[str, Any] = {
            "name": rec.name,
            "status": health,
            "engine": rec.engine,
            "runtime": rec.runtime,
            "server": rec.server,
            "pid": rec.pid if health not in ("stopped", "failed") else None,
            "port": rec.port if health not in ("stopped", "failed") else None,
            "log_path": rec.log_path,
        }
        if health in ("failed", "unhealthy"):
            entry["last_log_lines"] = tail(rec.log_path, 10)
        deployments.append(entry)
    data = {
        "gateway": {"running": True, "url": info.url + "/v1", "pid": info.pid}
        if info
        else {"running": False},
        "deployments": deployments,
    }

    def table() -> None:
        gateway = (
            f"gateway: running at {info.url}/v1 (pid {info.pid})"
            if info
            else "gateway: not running (famous serve, or famous run MODEL)"
        )
        typer.echo(gateway)
        if not deployments:
            typer.echo("deployments: none")
            return
        print_table(
            ["name", "status", "engine", "runtime", "server", "pid", "port"],
            [
                [
                    d["name"],
                    d["status"],
                    d["engine"],
                    d["runtime"],
                    d["server"],
                    d["pid"],
                    d["port"],
                ]
                for d in deployments
            ],
        )
        for d in deployments:
            if d.get("last_log_lines"):
                typer.echo(f"\n{d['name']} is {d['status']}; last lines of {d['log_path']}:")
                for line in d["last_log_lines"]:
                    typer.echo(f"  {line}")

    emit(data, fmt, table)


# -- components ---------------------------------------------------------------------------------


@handle_errors
def install_component(
    component: str = typer.Argument(..., help="The component to install: llama-server."),
    gpu: str = typer.Option("cpu", "--gpu", help="Backend: cpu, cuda, rocm or vulkan."),
    sdist: Path | None = typer.Option(
        None, "--sdist", help="Use this llama-cpp-python sdist instead of downloading it."
    ),
    jobs: int | None = typer.Option(None, "--jobs", "-j", help="Parallel compile jobs."),
) -> None:
    """Build and install an engine component (llama-server from llama-cpp-python's sources)."""
    from famous.runtimes.components import ComponentError, build_llama_server

    if component != "llama-server":
        raise fail(f"unknown component {component!r}; available: llama-server", exits.NOT_FOUND)
    started = time.monotonic()
    try:
        result = build_llama_server(
            sdist=sdist, gpu=gpu, jobs=jobs, on_step=lambda m: typer.echo(f"… {m}", err=True)
        )
    except ComponentError as exc:
        raise fail(str(exc)) from None
    typer.echo(
        f"installed llama-server ({result.gpu}, llama-cpp-python {result.version}) at "
        f"{result.binary} in {time.monotonic() - started:.0f} s; famous uses it for llama.cpp "
        "engines from now on"
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("run")(run)
    app.command("chat")(chat)
    app.command("ps")(ps)
    app.command("stop")(stop)
    app.command("logs")(logs)
    app.command("status")(status)
    app.command("install-component")(install_component)
