"""A ``famous serve`` for benchmarks: its own FAMOUS_HOME, one model registered and loaded."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from famous.runtimes.base import free_port  # noqa: E402


def get_json(url: str, headers: dict[str, str] | None = None) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=5) as resp:
        return json.loads(resp.read())


@dataclass
class RunningGateway:
    url: str
    pid: int
    admin: dict[str, str]  # the admin token header (admin routes need it)
    deployment: dict  # the model's entry in /famous/api/ps (engine pid, url, server)


@contextlib.contextmanager
def serving(
    folder: Path,
    model: Path,
    configuration: dict[str, object],
    *,
    runtime: str | None = None,
    load_timeout: float = 300,
    serve_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> Iterator[RunningGateway]:
    """Start the gateway with its home under ``folder`` (more ``famous serve`` arguments
    and environment when given), register ``model`` as "bench" with this runtime and engine
    configuration, load it; SIGTERM the gateway (and so its engine) on exit."""
    name = "bench"
    folder.mkdir(parents=True, exist_ok=True)
    home = folder / "home"
    port = free_port()
    env = dict(env or os.environ, FAMOUS_HOME=str(home), NO_PROXY="127.0.0.1")
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-m", "famous", "serve", "--port", str(port), "--keep-alive", "-1"]
    command += list(serve_args)
    log_path = folder / "gateway.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                get_json(url + "/health")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(log_path.read_text()) from None
                time.sleep(0.1)
        admin = {"authorization": f"Bearer {(home / 'admin-token').read_text().strip()}"}
        register = {"name": name, "path": str(model), "configuration": configuration}
        if runtime:
            register["runtime"] = runtime
        httpx.post(
            url + "/famous/api/models", json=register, headers=admin, timeout=30
        ).raise_for_status()
        httpx.post(
            url + "/famous/api/load", json={"model": name}, headers=admin, timeout=load_timeout
        ).raise_for_status()
        deployments = get_json(url + "/famous/api/ps", admin)["deployments"]
        deployment = next(d for d in deployments if d["name"] == name)
        yield RunningGateway(url=url, pid=proc.pid, admin=admin, deployment=deployment)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
