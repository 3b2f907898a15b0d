"""What runs, as the processes themselves report it: ``famous ps``, ``status`` and ``logs``.

Reads the catalog's deployment rows and asks each engine process and its health route; it
never imports an engine's software or the web stack.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from famous.errors import FamousError, NotFound
from famous.store.deployments import DeploymentRecord, log_path_for, process_alive, read_all, tail


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


def _process_memory(pid: int | None) -> int | None:
    if not pid:
        return None
    try:
        import psutil
    except ImportError:
        return None
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:  # gone, or not ours to read
        return None


def _adapter_classes(base: type) -> Iterator[type]:
    for cls in base.__subclasses__():
        yield cls
        yield from _adapter_classes(cls)


def health_path(runtime: str, server: str | None) -> str:
    """The health route of the engine server ``server`` of ``runtime``, as its adapter says."""
    from famous.runtimes import RuntimeAdapter, get_runtime

    try:
        adapter = get_runtime(runtime)  # imports the runtime's adapters (no engine software)
    except (FamousError, ValueError):  # a runtime or configuration this famous cannot read
        return RuntimeAdapter.health_path
    same = (c for c in _adapter_classes(RuntimeAdapter) if getattr(c, "server", None) == server)
    return next((c.health_path for c in same), adapter.health_path)


def _answers(port: int, path: str) -> bool:
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}{path}", timeout=1.5) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def engine_health(record: DeploymentRecord) -> str:
    """Ask the engine itself: ready, starting (process up, health not yet), or failed."""
    return health_of(record.status, record.pid, record.port, record.runtime, record.server)


#: the server of a model deployed on a Ray cluster (``famous.serve.ray_serve``): no process
#: of this machine to ask; Ray watches its replicas and the gateway records their state
CLUSTER_SERVER = "ray-serve"


def health_of(
    status: str, pid: int | None, port: int | None, runtime: str, server: str | None
) -> str:
    """What the engine process of a deployment recorded as ``status`` answers now: ready,
    starting (process up, health not yet), unhealthy, failed or stopped. A deployment on
    Ray has no local process: its state is the gateway's."""
    if status == "stopped" or server == CLUSTER_SERVER:
        return status
    if not process_alive(pid):
        return "failed" if status in ("ready", "starting", "failed") else status
    if not port:
        return status
    if _answers(port, health_path(runtime, server)):
        return "ready"
    return "starting" if status == "starting" else "unhealthy"


#: ``health_of``'s words as the console API says them
CONSOLE_HEALTH = {"ready": "ok", "starting": "loading", "unhealthy": "unhealthy"}


def gateway_deployments(snapshot: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The gateway's deployments (its scheduler's ``snapshot``) with the health each engine
    process answers, its memory and uptime (the console's deployments; it blocks on each
    engine's health route, up to 1.5 s)."""
    rows = []
    for d in snapshot:
        status = health_of(d["state"], d["pid"], d["port"], d["runtime"], d["server"])
        rows.append(
            {
                "model": d["name"],
                "engine": d["engine"],
                "runtime": d["runtime"],
                "server": d["server"],
                "server_reason": d["server_reason"],
                "pid": d["pid"],
                "port": d["port"],
                "state": d["state"],
                "health": CONSOLE_HEALTH.get(status, "down"),
                "status": status,
                "memory_bytes": _process_memory(d["pid"]),
                "uptime_s": d["uptime_seconds"],
                "requests": d["requests"],
                "active_requests": d["active_requests"],
                "idle_s": d["idle_seconds"],
                "error": d["error"],
                "log_path": d["log_path"],
            }
        )
    return rows


def running_deployments() -> list[dict[str, Any]]:
    """Deployments whose engine process lives: engine, runtime, server, pid, port, memory,
    uptime (``famous ps``)."""
    return [
        {
            "name": rec.name,
            "engine": rec.engine,
            "runtime": rec.runtime,
            "server": rec.server,
            "server_reason": rec.server_reason,
            "pid": rec.pid,
            "port": rec.port,
            "status": rec.status,
            "memory_bytes": _process_memory(rec.pid),
            "uptime_seconds": _since(rec.started_at),
        }
        for rec in read_all()
        if rec.status not in ("stopped", "failed") and process_alive(rec.pid)
    ]


def cluster_deployments() -> list[dict[str, Any]]:
    """Models the running gateway deployed on a Ray cluster, each with its live replicas
    (node, engine, variant, pids), as the gateway reports them; [] without one."""
    from famous.services.gateway import running_gateway
    from famous.services.gateway_client import GatewayClient, GatewayError

    info = running_gateway()
    if info is None:
        return []
    try:
        snapshot = GatewayClient.of(info).ps().get("deployments", [])
    except (GatewayError, OSError, ValueError):
        return []
    return [
        {
            "name": d["name"],
            "engine": ",".join(sorted({r["engine"] for r in d["replicas"]})) or d["engine"],
            "runtime": d["runtime"],
            "server": d["server"],
            "server_reason": d["server_reason"],
            "pid": None,
            "port": d["port"],
            "status": d["state"],
            "memory_bytes": None,
            "uptime_seconds": d["uptime_seconds"],
            "replicas": d["replicas"],
        }
        for d in snapshot
        if d.get("replicas") is not None and d["state"] in ("starting", "ready")
    ]


def deployment_health() -> list[dict[str, Any]]:
    """Every deployment with the health its engine reports, and the last log lines of those
    that failed or do not answer (``famous status``)."""
    deployments = []
    for rec in read_all():
        health = engine_health(rec)
        up = health not in ("stopped", "failed")
        entry: dict[str, Any] = {
            "name": rec.name,
            "status": health,
            "engine": rec.engine,
            "runtime": rec.runtime,
            "server": rec.server,
            "server_reason": rec.server_reason,
            "pid": rec.pid if up else None,
            "port": rec.port if up else None,
            "log_path": rec.log_path,
        }
        if health in ("failed", "unhealthy"):
            entry["last_log_lines"] = tail(rec.log_path, 10)
        deployments.append(entry)
    return deployments


def cluster_logs(model: str, lines: int) -> dict[str, Any] | None:
    """For a model the running gateway deployed on Ray: its deployment log's last ``lines``
    (``lines``) and each replica's engine log tail, read on its node (``replicas``); None
    for a model that runs on this machine."""
    from urllib.parse import quote

    from famous.services.gateway import running_gateway
    from famous.services.gateway_client import GatewayClient

    record = next((r for r in read_all() if r.name == model), None)
    info = running_gateway()
    if record is None or record.server != CLUSTER_SERVER or info is None:
        return None
    path = f"/famous/api/deployments/{quote(model, safe='/')}/logs?tail={max(lines, 0)}"
    answer = GatewayClient.of(info).call("GET", path, timeout=60.0)
    return answer if "replicas" in answer else None


def replica_prefix(replica: dict[str, Any]) -> str:
    """How ``famous logs --follow`` marks a Ray replica's line: the replica and its node."""
    return f"[{replica['replica']} {replica['node_ip']} {str(replica['node_id'])[:12]}]"


def follow_cluster(model: str, first: dict[str, Any], poll: float = 1.0) -> Iterator[str]:
    """The lines written since ``first`` (``cluster_logs``' answer) to the gateway's log of
    ``model`` and to each of its replicas' engine logs, each replica's prefixed with
    ``replica_prefix``, as they come (until the caller stops): the gateway reads each on its
    node from the replica's last offset, a replica Ray started since from its beginning."""
    from urllib.parse import quote

    from famous.services.gateway import running_gateway
    from famous.services.gateway_client import GatewayClient

    info = running_gateway()
    if info is None:
        raise NotFound("the famous gateway is not running")
    client = GatewayClient.of(info)
    offset = int(first["offset"])
    since = {str(r["replica"]): int(r.get("offset") or 0) for r in first["replicas"]}
    base = f"/famous/api/deployments/{quote(model, safe='/')}/logs"
    while True:
        time.sleep(poll)
        known = ",".join(f"{replica}:{at}" for replica, at in since.items())
        answer = client.call("GET", f"{base}?after={offset}&since={known}", timeout=60.0)
        yield from answer["lines"]
        offset = int(answer["offset"])
        since = {}
        for replica in answer.get("replicas") or []:
            prefix = replica_prefix(replica)
            yield from (f"{prefix} {line}" for line in replica["lines"])
            since[str(replica["replica"])] = int(replica["offset"])


def log_of(model: str) -> Path:
    """The engine log of ``model`` (its recorded one, else where it would be)."""
    record = next((r for r in read_all() if r.name == model), None)
    path = Path(record.log_path) if record and record.log_path else log_path_for(model)
    if not path.exists():
        raise NotFound(f"no log for {model} (looked at {path})")
    return path


#: the most a log read answers with at once (the console polls for more)
LOG_READ_LIMIT = 256 * 1024


def read_log(path: Path, tail_lines: int, after: int | None = None) -> tuple[list[str], int]:
    """(lines, offset): the last ``tail_lines`` lines, or with ``after`` the whole lines
    written since that byte offset (at most LOG_READ_LIMIT bytes of them); ``offset`` is
    where the next read starts. An ``after`` beyond the end (a log that was cut or
    replaced) starts again from the tail."""
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        if after is None or after > size:
            start = max(0, size - LOG_READ_LIMIT)
            fh.seek(start)
            data = fh.read()
            if start:
                data = data[data.find(b"\n") + 1 :]  # from the first whole line
            lines = data.decode("utf-8", errors="replace").splitlines()
            return lines[-tail_lines:] if tail_lines else [], size
        fh.seek(after)
        data = fh.read(LOG_READ_LIMIT)
    end = data.rfind(b"\n") + 1  # whole lines only: a half-written one comes next time
    if end == 0 and len(data) < LOG_READ_LIMIT:
        return [], after
    end = end or len(data)
    return data[:end].decode("utf-8", errors="replace").splitlines(), after + end


def follow(path: Path, poll: float = 0.3) -> Iterator[str]:
    """What is appended to ``path`` from now on, as it comes (until the caller stops)."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        while True:
            chunk = fh.read()
            if chunk:
                yield chunk.decode("utf-8", errors="replace")
            else:
                time.sleep(poll)
