"""The scheduler's launcher for Ray Serve: a model becomes a Ray Serve application.

``famous serve --ray ADDRESS`` hands the scheduler ``RayLauncher`` instead of the local
``launch_engine``. Launching deploys one application per model (its replicas are
``EngineReplica``: each picks and starts its own node's engine) under the route prefix
``/famous/<model>`` of Serve's HTTP proxy on this node's 127.0.0.1, and returns a
``RayEngine``: an ``EngineProcess`` whose host, port and path prefix are that proxy's, so
the gateway's routes, checks and byte-for-byte streaming stay as they are. Ray balances the
requests over the live replicas and replaces dead ones; a replica lost mid-stream closes the
proxy's answer unfinished, which the gateway turns into an error event like any engine's.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from famous.errors import Unavailable
from famous.runtimes import EngineProcess
from famous.serve.models import ModelSpec
from famous.serve.ray_serve.large import node_gpus, split_over_nodes
from famous.serve.ray_serve.replica import EngineReplica, ReplicaModel, replica_records
from famous.serve.ray_serve.resources import (
    auth_environment,
    node_resources,
    replica_options,
    serve_environment,
)
from famous.serve.ray_serve.scaling import (
    Scaling,
    check_keep_alive,
    deployment_scaling,
    max_ongoing,
)
from famous.services.deployments import CLUSTER_SERVER
from famous.store.deployments import log_path_for

log = logging.getLogger("famous.serve.ray")

SERVER = CLUSTER_SERVER
STATUS_CACHE_SECONDS = 5.0
#: application states in which Ray still serves or will serve the model
LIVE_STATES = ("NOT_STARTED", "DEPLOYING", "RUNNING", "UNHEALTHY")


class RayUnavailable(Unavailable):
    """Ray is not installed or its cluster cannot be reached."""


@dataclass
class RayOptions:
    """How the gateway uses Ray: the cluster (``auto``: start a head in this process),
    replicas per model (a count, or autoscaling bounds), CPUs each replica reserves, the
    port of Serve's HTTP proxy, and the nodes a model is placed on (``--ray-place``)."""

    address: str = "auto"
    scaling: Scaling = field(default_factory=Scaling)
    replica_cpus: float = 1.0
    http_port: int = 8000
    namespace: str = "famous"
    object_store_bytes: int | None = None
    #: model -> the custom resources its replicas ask for (``--ray-place``)
    placed: dict[str, list[str]] = field(default_factory=dict)


def route_prefix(name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return f"/famous/{safe}"


class RayCluster:
    """This gateway's connection to one Ray cluster, and Serve's HTTP proxy on it."""

    def __init__(self, options: RayOptions) -> None:
        self.options = options
        self.started_head = False
        self._lock = threading.Lock()
        self._status: tuple[float, Any] | None = None

    def connect(self) -> None:
        import os

        # Ray reads its settings from the environment once, when it is imported: the token
        # mode for a cluster (``auth_environment``), and for a head started here, Serve's too
        env = dict(os.environ)
        os.environ.update(
            auth_environment(env) if self.options.address != "auto" else serve_environment(env)
        )
        try:
            import ray
            from ray import serve
        except ImportError:
            raise RayUnavailable(
                "famous serve --ray needs Ray Serve, which is not installed",
                hint='pip install "famous[ray]"',
            ) from None
        opts = self.options
        if ray.is_initialized():
            return
        try:
            self._init(ray)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = "a local Ray head" if opts.address == "auto" else opts.address
            raise RayUnavailable(
                f"cannot start or reach {where}: {exc}",
                hint="start a head with `famous ray-start --head`, or pass --ray auto",
            ) from None
        serve.start(http_options={"host": "127.0.0.1", "port": opts.http_port})

    def _init(self, ray: Any) -> None:
        opts = self.options
        if opts.address != "auto":
            ray.init(address=opts.address, namespace=opts.namespace, log_to_driver=False)
            return
        from famous.matchmaker.resolve import machine_report

        ray.init(
            address="local",  # a new head, even where another cluster runs on this machine
            namespace=opts.namespace,
            resources=node_resources(machine_report()),
            include_dashboard=False,
            object_store_memory=opts.object_store_bytes,
            log_to_driver=False,
        )
        self.started_head = True

    def status(self, app: str) -> tuple[str, str]:
        """(state, message) of ``app``, asked of Serve at most every 5 s (Ray itself replaces
        lost replicas; this only tells the scheduler that the application is gone)."""
        from ray import serve

        with self._lock:
            now = time.monotonic()
            if self._status is None or now - self._status[0] > STATUS_CACHE_SECONDS:
                self._status = (now, serve.status())
            apps = self._status[1].applications
        found = apps.get(app)
        if found is None:
            return "MISSING", f"Ray Serve has no application {app!r}"
        messages = [found.message] + [d.message for d in found.deployments.values()]
        return str(found.status.value), "; ".join(m for m in messages if m)

    def forget_status(self) -> None:
        with self._lock:
            self._status = None

    def close(self) -> None:
        """Leave the cluster; a head this gateway started goes with it."""
        import ray

        if ray.is_initialized():
            ray.shutdown()


@dataclass
class RayEngine(EngineProcess):
    """A model's Ray Serve application, seen by the scheduler as one engine."""

    cluster: RayCluster | None = None
    app: str = ""
    #: Ray autoscales the replicas and removes idle ones itself (the scheduler's keep-alive
    #: then leaves the application deployed, even at zero replicas)
    scales_itself: bool = False

    async def wait_healthy_async(self, timeout: float = 120.0, interval: float = 0.1) -> None:
        """Serve's proxy answers for the application; then the gateway refuses what any
        replica's engine cannot do, and builds only on what all of them can."""
        import asyncio

        await super().wait_healthy_async(timeout, interval)
        records = await asyncio.to_thread(self.placement)
        limits: dict[str, str] = {}
        features: set[str] | None = None
        for record in records:
            limits.update(record.get("limits") or {})
            have = set(record.get("features") or [])
            features = have if features is None else features & have
        self.unsupported = limits
        self.features = frozenset(features or ())

    def returncode(self) -> int | None:
        assert self.cluster is not None
        state, _ = self.cluster.status(self.app)
        return None if state in LIVE_STATES else 1

    def log_tail(self, lines: int = 20) -> list[str]:
        """What Serve says of the application (why a replica cannot be placed or started)."""
        assert self.cluster is not None
        self.cluster.forget_status()
        state, message = self.cluster.status(self.app)
        return [f"Ray Serve application {self.app!r}: {state}", *message.splitlines()[-lines:]]

    def placement(self) -> list[dict[str, Any]]:
        """The replicas that wrote their record and whose actor is alive, by node."""
        import ray

        alive = []
        for record in replica_records(self.app):
            try:
                ray.get_actor(record["actor"], namespace="serve")
            except ValueError:
                continue
            alive.append(record)
        return sorted(alive, key=lambda r: (r["node_ip"], r["node_id"], r["replica"]))

    def replica_logs(
        self, lines: int = 50, since: dict[str, int] | None = None
    ) -> list[dict[str, Any]]:
        """Each live replica with the last ``lines`` lines of its engine's log, or what came
        after the offsets in ``since``, read on its node (``famous logs [--follow]``)."""
        from famous.serve.ray_serve.logs import replica_logs

        return replica_logs(self.placement(), lines, since)

    def stop(self, grace: float = 10.0) -> int | None:
        """Ask Serve to delete the application and wait up to ``grace`` seconds for it to go
        (0); after that Serve finishes on its own (None), as it must for a replica still
        starting its engine, which it cannot stop before its constructor returns."""
        from ray import serve

        assert self.cluster is not None
        serve.delete(self.app, _blocking=False)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            self.cluster.forget_status()
            if self.cluster.status(self.app)[0] == "MISSING":
                return 0
            time.sleep(0.2)
        log.warning("Ray Serve is still deleting %s; it finishes on its own", self.app)
        return None


def _split_words(split: dict[str, Any]) -> str:
    return (
        f"pipeline parallel {split['pipeline_parallel_size']} x tensor parallel "
        f"{split['tensor_parallel_size']}, Ray backend"
    )


class RayLauncher:
    """``Scheduler(launcher=RayLauncher(cluster))``: deploy each model on the cluster."""

    def __init__(self, cluster: RayCluster, startup_timeout: float = 300.0) -> None:
        self.cluster = cluster
        self.startup_timeout = startup_timeout
        self._lock = threading.Lock()

    def __call__(self, spec: ModelSpec) -> EngineProcess:
        """Deploy ``spec``, one model at a time: the scheduler launches models from several
        threads, and Ray Serve's deployment options are not thread-safe (building two at
        once fails in cloudpickle's by-value registry, seen with two models loading)."""
        with self._lock:
            return self._deploy(spec)

    def _deploy(self, spec: ModelSpec) -> EngineProcess:
        from ray import serve

        self.cluster.connect()
        opts = self.cluster.options
        split = self._split(spec)
        scaling = Scaling(keep_alive=opts.scaling.keep_alive) if split else opts.scaling
        # split over nodes, the GPUs and their memory are vLLM's workers', not the replica's
        memory = None if split else spec.memory_bytes
        model = ReplicaModel(
            name=spec.name,
            package=spec.package,
            path=str(spec.path),
            runtime=spec.runtime,
            engine=spec.engine,
            configuration=dict(spec.configuration),
            embedding=bool(spec.embedding),
            startup_timeout=self.startup_timeout,
            distributed=split or {},
        )
        deployment = serve.deployment(
            EngineReplica,
            name="engine",
            **deployment_scaling(scaling),
            max_ongoing_requests=max_ongoing(dict(spec.configuration), scaling),
            ray_actor_options=replica_options(
                memory, opts.replica_cpus, opts.placed.get(spec.name)
            ),
            health_check_period_s=5.0,
            graceful_shutdown_timeout_s=5.0,
            graceful_shutdown_wait_loop_s=0.5,
        )
        app, prefix = spec.name, route_prefix(spec.name)
        target = serve.RunTarget(deployment.bind(model), name=app, route_prefix=prefix)
        serve.run_many(
            [target],
            wait_for_ingress_deployment_creation=False,
            wait_for_applications_running=False,
        )
        self.cluster.forget_status()
        log_path = Path(log_path_for(spec.name))
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as fh:
            fh.write(f"==> deployed on Ray ({opts.address}) as {app!r} at {prefix}\n")
        return RayEngine(
            name=spec.name,
            runtime=spec.runtime,
            server=SERVER,
            command=[],
            host="127.0.0.1",
            port=opts.http_port,
            log_path=log_path,
            health_path=prefix + "/health",
            path_prefix=prefix,
            reason=f"Ray Serve application {app!r}, {scaling.describe()}"
            + (f", one vLLM over nodes ({_split_words(split)})" if split else ""),
            cluster=self.cluster,
            app=app,
            scales_itself=scaling.autoscaling,
        )

    def check_keep_alive(self, name: str, keep: float) -> None:
        """Refuse a request's ``keep_alive`` Ray's autoscaling cannot honour
        (``scaling.check_keep_alive``)."""
        check_keep_alive(name, keep, self.cluster.options.scaling)

    def _split(self, spec: ModelSpec) -> dict[str, Any] | None:
        """vLLM's Ray-backend configuration for a model no single node holds, else None."""
        if spec.runtime != "vllm" or not spec.memory_bytes:
            return None
        import ray

        split = split_over_nodes(spec.memory_bytes, node_gpus(ray.nodes()))
        if split is not None:
            log.info("%s fits no single node: vLLM over Ray with %s", spec.name, split)
        return split

    def close(self) -> None:
        self.cluster.close()
