"""One replica of a model on a Ray node: the node's own engine, chosen and fetched there.

Ray starts this class on the node it picked. The replica runs famous's hardware detector and
matchmaker *there* (through ``famous.hub.pull``, which also fetches only the chosen engine's
files, verified, into that node's ``FAMOUS_HOME``), launches the engine on the node's
127.0.0.1 like the local scheduler does, and relays the gateway's requests to it, streams
byte for byte. A model registered as a file (no package to pull) is served from its path,
which every node must then see. Each replica writes what it runs where into Ray's key-value
store for ``famous ps``; Ray asks ``check_health`` and replaces a replica whose engine died.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from famous.runtimes import EngineProcess, get_runtime
from famous.serve import relay
from famous.serve.models import ModelSpec, estimate_memory
from famous.serve.scheduler import launch_engine

log = logging.getLogger("famous.serve.ray")

#: prefix of the key-value entries replicas write (``famous ps`` reads them)
KV_PREFIX = "famous-replica:"
KV_NAMESPACE = "famous"

_KINDS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/rerank": "rerank",
}


@dataclass(frozen=True)
class ReplicaModel:
    """What the gateway tells every replica of one model."""

    name: str
    package: str | None  # a catalog name or repo id each node pulls for itself
    path: str  # the gateway's file: served as it is when there is no package
    runtime: str = "llamacpp"
    engine: str = "llamacpp"
    configuration: dict[str, Any] = field(default_factory=dict)
    embedding: bool = False
    startup_timeout: float = 300.0
    #: vLLM's Ray backend for a model no single node holds (``large.split_over_nodes``):
    #: merged into the node's own configuration
    distributed: dict[str, Any] = field(default_factory=dict)


def node_spec(model: ReplicaModel) -> tuple[ModelSpec, str]:
    """The spec this node launches and the variant it chose: a package is pulled here (the
    node's machine, matchmaker and catalog), a bare file is served from its path."""
    if model.package is None:
        spec = ModelSpec(
            name=model.name,
            path=Path(model.path),
            runtime=model.runtime,
            engine=model.engine,
            configuration={**model.configuration, **model.distributed},
            embedding=model.embedding,
        )
        return spec, "file"
    from famous.hub.pull import pull
    from famous.services.selection import artifact_configuration

    result = pull(model.package)
    artifact = result.artifact
    runtime, configuration = artifact_configuration(result.model, result.engine, artifact.format)
    configuration = {**configuration, **model.distributed}
    path = Path(artifact.path)
    spec = ModelSpec(
        name=model.name,
        path=path,
        runtime=runtime,
        engine=result.engine,
        configuration=configuration,
        memory_bytes=estimate_memory(path, configuration),
        embedding=model.embedding,
        artifact_id=artifact.id,
        source="catalog",
        package=result.model,
    )
    return spec, result.variant


class EngineReplica:
    """A Ray Serve replica: launches its node's engine and relays requests to it."""

    def __init__(self, model: ReplicaModel) -> None:
        import ray
        from ray import serve

        self.model = model
        context = serve.get_replica_context()
        self.key = KV_PREFIX + f"{context.app_name}:{context.replica_id.unique_id}"
        spec, variant = node_spec(model)
        if model.distributed.get("distributed_executor_backend") == "ray":
            # vLLM's workers join this cluster: the engine gets its address
            os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
        self.process: EngineProcess = launch_engine(spec)
        try:
            self.process.wait_healthy(model.startup_timeout)
        except BaseException:
            self.process.stop(5)
            raise
        self.adapter = get_runtime(spec.runtime, spec.configuration)
        runtime_context = ray.get_runtime_context()
        self.info = {
            "model": model.name,
            "app": context.app_name,
            "replica": context.replica_id.unique_id,
            "actor": runtime_context.get_actor_name(),
            "node_id": runtime_context.get_node_id(),
            "node_ip": ray.util.get_node_ip_address(),
            "pid": os.getpid(),
            "engine": spec.engine,
            "variant": variant,
            "runtime": spec.runtime,
            "server": self.process.server,
            "engine_pid": self.process.pid,
            "log_path": str(self.process.log_path),  # on its node (``famous logs``)
            "memory_estimate_bytes": spec.memory_bytes,
            "started_at": time.time(),
            "limits": self.process.unsupported,
            "features": sorted(self.process.features),
        }
        _kv_put(self.key, self.info)
        log.info("replica of %s on %s: %s", model.name, self.info["node_ip"], spec.engine)

    def check_health(self) -> None:
        """Ray calls this; raising makes Ray replace the replica."""
        if not self.process.alive():
            raise RuntimeError(
                f"the engine of {self.model.name!r} exited with status {self.process.returncode()}"
            )

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import JSONResponse, Response, StreamingResponse

        root = request.scope.get("root_path", "")
        path = request.url.path[len(root) :] if path_under(request.url.path, root) else "/"
        if request.method == "GET":
            healthy = self.process.alive()
            return JSONResponse(
                {"healthy": healthy, **self.info}, status_code=200 if healthy else 503
            )
        body = await request.body()
        kind = _KINDS.get(path)
        if kind is not None:
            body = json.dumps(self.adapter.adapt_request(kind, json.loads(body))).encode()
        headers = {
            "Content-Type": request.headers.get("content-type", "application/json"),
            "Accept": request.headers.get("accept", "*/*"),
        }
        proc = self.process
        try:
            upstream = await relay.post(proc.host, proc.port, path, body, headers)
        except relay.RelayError as exc:
            return JSONResponse({"error": {"message": str(exc)}}, status_code=502)
        if upstream.content_type.startswith("text/event-stream"):
            return StreamingResponse(
                upstream.chunks(), status_code=upstream.status, media_type=upstream.content_type
            )
        content = await upstream.read()
        return Response(content, status_code=upstream.status, media_type=upstream.content_type)

    def __del__(self) -> None:
        process = getattr(self, "process", None)
        if process is not None:
            process.stop(5)
        key = getattr(self, "key", None)
        if key is not None:
            _kv_delete(key)


def path_under(path: str, root: str) -> bool:
    return bool(root) and (path == root or path.startswith(root.rstrip("/") + "/"))


def _kv_put(key: str, value: dict[str, Any]) -> None:
    from ray.experimental import internal_kv

    internal_kv._internal_kv_put(key, json.dumps(value), namespace=KV_NAMESPACE)


def _kv_delete(key: str) -> None:
    try:
        from ray.experimental import internal_kv

        internal_kv._internal_kv_del(key, namespace=KV_NAMESPACE)
    except Exception:  # Ray may be going away with the replica
        pass


def replica_records(app: str | None = None) -> list[dict[str, Any]]:
    """What every replica wrote (of ``app``, or all), read through the driver's Ray."""
    from ray.experimental import internal_kv

    prefix = KV_PREFIX + (f"{app}:" if app else "")
    keys = internal_kv._internal_kv_list(prefix, namespace=KV_NAMESPACE)
    records = []
    for key in keys:
        raw = internal_kv._internal_kv_get(key, namespace=KV_NAMESPACE)
        if raw:
            records.append(json.loads(raw))
    return records
