"""Gateway lifecycle: find the running gateway, start one in the background, stop it, and
stop the engines a gateway that died left behind.

Light (standard library and famous's store): ``famous status`` and ``famous stop`` use it
without the web stack. The gateway itself is ``famous serve`` in its own process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from famous.errors import FamousError
from famous.services.gateway_client import GatewayClient
from famous.store import gateway_state
from famous.store.gateway_state import GatewayInfo


def running_gateway() -> GatewayInfo | None:
    """The recorded gateway when its process lives and ``/health`` answers; None otherwise."""
    from famous.store.deployments import process_alive

    info = gateway_state.read()
    if info is None or not process_alive(info.pid):
        return None
    return info if GatewayClient.of(info).healthy() else None


def _port_free(port: int) -> bool:
    try:
        with socket.socket() as sock:  # as uvicorn binds: a port in TIME-WAIT is free
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


def _default_port() -> int:
    from famous.store.config import resolve

    return int(resolve()["http.port"].value)


def start_gateway(port: int | None = None, wait: float = 60.0) -> GatewayInfo:
    """The running gateway, or a new one started in the background on 127.0.0.1.

    It listens on ``port`` (default: the ``http.port`` setting), or on a free port when that
    one is taken; its output goes to ``logs/gateway.log``, whose last lines the error quotes
    when it does not come up within ``wait`` seconds.
    """
    info = running_gateway()
    if info is not None:
        return info
    from famous.runtimes.base import free_port
    from famous.store.deployments import tail
    from famous.store.paths import logs_dir

    port = port or _default_port()
    if not _port_free(port):
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
        info = running_gateway()
        if info is not None and info.pid == proc.pid:
            return info
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    lines = "\n".join(tail(log_path, 15))
    raise FamousError(f"the gateway did not start (see {log_path}):\n{lines}")


def ui_address(info: GatewayInfo) -> str:
    """The web UI of ``info`` with the install's admin token in the fragment: the page reads
    it once, keeps it in the tab's session storage and removes it from the address (a
    fragment is never sent to a server, so it reaches no log)."""
    from urllib.parse import quote

    token = gateway_state.admin_token(create=True) or ""
    return f"{info.url}/#token={quote(token, safe='')}"


def stop_gateway(info: GatewayInfo, timeout: float = 60.0) -> None:
    """SIGTERM the gateway and wait: it stops its engines before it exits."""
    import signal

    from famous.store.deployments import process_alive

    os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while process_alive(info.pid):
        if time.monotonic() > deadline:
            raise FamousError(f"the gateway (pid {info.pid}) did not exit within {timeout:.0f} s")
        time.sleep(0.1)


def is_engine_process(pid: int | None, port: int | None) -> bool:
    """``pid`` still is an engine listening on ``port`` (not a recycled pid)."""
    try:
        import psutil
    except ImportError:
        return False
    try:
        cmdline = psutil.Process(pid).cmdline() if pid else []
    except psutil.Error:  # no such process, a zombie, access denied: not ours to stop
        return False
    return bool(port) and "--port" in cmdline and str(port) in cmdline


def stop_orphans(model: str | None = None, grace: float = 10.0) -> list[str]:
    """Stop the engines a gateway left behind (it was killed); mark their rows stopped.

    Call only when no gateway runs on this FAMOUS_HOME. A recorded pid is stopped only if
    it still is an engine on the recorded port (a recycled pid is left alone). ``model``
    limits it to that deployment; returns the names of the engines stopped.
    """
    from famous.runtimes.base import stop_process
    from famous.store import db
    from famous.store import deployments as rows

    conn = db.connect(create=False)
    if conn is None:
        return []
    stopped = []
    try:
        for rec in rows.list_all(conn):
            if rec.status not in ("ready", "starting") or (model and rec.name != model):
                continue
            if rows.process_alive(rec.pid) and is_engine_process(rec.pid, rec.port):
                stop_process(int(rec.pid or 0), grace=grace)
                stopped.append(rec.name)
            rows.set_status(conn, rec.name, "stopped")
    finally:
        conn.close()
    return stopped
