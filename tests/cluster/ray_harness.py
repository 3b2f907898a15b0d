"""A real two-node Ray cluster on 127.0.0.1 for the Ray Serve tests, and its teardown.

Each node is ``famous ray-start ... --block`` (Ray's ``ray start`` with the detector's
resources), in its own session with its own ``FAMOUS_HOME``, so a replica's pull lands in
its node's home, as on two machines. The nodes are small: one CPU each, a 100 MB object
store, no dashboard. Stopping kills every process the node started (found through the
process tree before anything is signalled), also when a test failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from famous.runtimes.base import free_port

SERVING = Path(__file__).resolve().parents[1] / "serving"
if str(SERVING) not in sys.path:
    sys.path.insert(0, str(SERVING))

import serving_harness as harness  # noqa: E402

OBJECT_STORE_BYTES = 100 * 1000 * 1000


@dataclass
class RayNode:
    name: str
    home: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    seen: set[int] = field(default_factory=set)  # every pid of its tree we ever saw

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tree(self) -> list[psutil.Process]:
        try:
            found = [psutil.Process(self.proc.pid)]
            found += found[0].children(recursive=True)
        except psutil.NoSuchProcess:
            found = []
        self.seen.update(p.pid for p in found)
        return found

    def memory_bytes(self) -> int:
        """RSS of the node's own processes (GCS, raylet, agents), workers included."""
        total = 0
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def stop(self) -> None:
        """SIGTERM the node's tree, SIGKILL what is left after 3 s (the raylet and the GCS
        take their time with SIGTERM)."""
        procs = self.tree()
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=3)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)


def launch_node(
    name: str,
    root: Path,
    env: dict[str, str],
    resources: dict[str, float],
    head_address: str | None = None,
    num_cpus: int = 1,
    famous_args: tuple[str, ...] = (),
) -> tuple[RayNode, str]:
    """Start a node (the head when ``head_address`` is None) without waiting for it; the
    head's address. A worker may be launched once the head's port answers (``wait_port``).
    ``famous_args`` go to ``famous ray-start`` (e.g. ``--root`` a captured machine)."""
    home = root / name
    home.mkdir(parents=True, exist_ok=True)
    log_path = root / f"{name}.log"
    argv = [sys.executable, "-m", "famous", "ray-start", *famous_args]
    argv += ["--resources", json.dumps(resources)]
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", str(num_cpus), "--block"]
    common += ["--object-store-memory", str(OBJECT_STORE_BYTES), "--disable-usage-stats"]
    if head_address is None:
        port = free_port()
        head_address = f"127.0.0.1:{port}"
        argv += ["--head", "--port", str(port), "--include-dashboard", "false"]
        argv += ["--dashboard-agent-listen-port", str(free_port())]
    else:
        argv += ["--address", head_address]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv + common,
            env={**env, "FAMOUS_HOME": str(home)},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return RayNode(name, home, proc, log_path), head_address


def wait_port(address: str, node: RayNode, timeout: float = 90) -> None:
    """Until something listens on ``address`` (the head's GCS)."""
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), 0.5):
            return
        if node.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"Ray node {node.name} did not listen:\n{node.log()[-3000:]}")
        time.sleep(0.2)


def wait_started(node: RayNode, timeout: float = 120) -> None:
    """Until ``ray start`` says the node runs."""
    deadline = time.monotonic() + timeout
    while "Ray runtime started" not in node.log():
        if node.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"Ray node {node.name} did not start:\n{node.log()[-3000:]}")
        time.sleep(0.2)
    node.tree()


def leftover(nodes: list[RayNode]) -> list[int]:
    """Pids of the nodes' processes still running (after ``stop``)."""
    left = []
    for node in nodes:
        for pid in node.seen:
            with contextlib.suppress(psutil.NoSuchProcess):
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    left.append(pid)
    return left


def kill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def start_ray_gateway(env: dict[str, str], address: str, args: list[str]) -> harness.Gateway:
    """``famous serve --ray ADDRESS ARGS`` in ``env``'s FAMOUS_HOME, once its /health answers
    (Serve's HTTP proxy on a free port)."""
    home = Path(env["FAMOUS_HOME"])
    port = free_port()
    log_path = home / "gateway-test.log"
    argv = [sys.executable, "-m", "famous", "serve", "--port", str(port), "--ray", address]
    argv += ["--ray-port", str(free_port()), *args]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    gw = harness.Gateway(f"http://127.0.0.1:{port}", port, home, proc, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited early:\n{gw.log()}")
        try:
            if harness.get_json(gw.url + "/health", timeout=1)["status"] == "ok":
                return gw
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"gateway did not come up:\n{gw.log()}")


def with_ray_token(env: dict[str, str], root: Path) -> dict[str, str]:
    """``env`` with the cluster's own token (Ray's token authentication, which famous turns
    on where a token is at hand): the nodes and the gateway read it, nothing of ~/.ray."""
    token = root / "ray-auth-token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env["RAY_AUTH_TOKEN_PATH"] = str(token)
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_ADDRESS"):
        env.pop(key, None)
    return env
