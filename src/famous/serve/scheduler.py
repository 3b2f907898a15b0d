"""The scheduler: starts engines on demand, watches them, unloads idle ones, evicts by LRU.

It knows nothing of HTTP: it raises famous's domain errors (``ModelNotFound``,
``ModelLoading``, ``NoRoom``, ``EngineFailed``), which ``famous.serve.errors`` turns into
answers, and it starts engines through the ``launcher`` it is given (``launch_engine`` by
default, a fake engine in unit tests).

One ``Deployment`` per model name. A request ``acquire``s it (starting the engine when it is
not running, and waiting or not, as the caller prefers) and ``release``s it when its answer
is done. A monitor task notices dead engines (marked ``failed`` with their exit status; the
next request restarts them, with back-off after repeated failed starts) and unloads
deployments idle longer than ``keep_alive``. Memory: before a start, least-recently-used
idle deployments are stopped until the new model's estimate fits the budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from famous.errors import NotFound, Unavailable
from famous.runtimes import (
    EngineError,
    EngineProcess,
    LaunchSpec,
    RuntimeNotInstalled,
    get_runtime,
)
from famous.serve.models import ModelRegistry, ModelSpec
from famous.store.deployments import DeploymentRecord, log_path_for, now_iso
from famous.units import format_size

log = logging.getLogger("famous.serve")

# Back-off after repeated start failures: the Nth failure within the window waits 2**(N-3) s.
# An engine that crashes while serving (a request it could not survive) restarts at once:
# backing off then would lock every other client out because of one bad request.
FAILURE_WINDOW = 60.0
FAILURES_BEFORE_BACKOFF = 3
MAX_BACKOFF = 30.0


# -- what can go wrong, in the scheduler's own terms --------------------------------------


class ModelNotFound(NotFound):
    code = "model_not_found"
    param = "model"

    def __init__(self, name: str, available: list[str]) -> None:
        listing = ", ".join(available) if available else "none (pull one with famous pull)"
        super().__init__(f"model {name!r} is not available; available models: {listing}")
        self.details = {"available": available}


class ModelLoading(Unavailable):
    """Still starting; the caller chose not to wait longer."""

    code = "model_loading"


class NoRoom(Unavailable):
    """The model cannot be loaded within the memory budget or the loaded-model limit."""

    code = "insufficient_memory"
    status = 507


class EngineFailed(Unavailable):
    """The engine could not start (``code`` says how), or failed too often to retry yet."""

    def __init__(self, message: str, code: str, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.code = code


def launch_engine(spec: ModelSpec) -> EngineProcess:
    """Start ``spec``'s engine with its runtime's adapter (blocking: run it in a thread).

    A pulled model's engine may need variables on this machine's GPU (ROCm's gfx override
    for RDNA2); they are worked out here, once per launch, not on every lookup."""
    from famous.services.environment import artifact_environment

    env = artifact_environment(spec.package, spec.engine) if spec.package else {}
    adapter = get_runtime(spec.runtime, spec.configuration)
    return adapter.launch(
        LaunchSpec(
            name=spec.name,
            model_path=spec.path,
            configuration=spec.configuration,
            embedding=bool(spec.embedding),
            log_path=log_path_for(spec.name),
            env=env or None,
        )
    )


@dataclass
class Deployment:
    """A model's engine process and what the scheduler knows about it."""

    spec: ModelSpec
    state: str = "stopped"  # stopped | starting | ready | failed
    process: EngineProcess | None = None
    active: int = 0
    last_used: float = field(default_factory=time.monotonic)
    load_task: asyncio.Task[None] | None = None
    load_started: float | None = None
    last_load_seconds: float | None = None
    error: str | None = None
    exit_code: int | None = None
    failures: list[float] = field(default_factory=list)  # failed starts: these back off
    crashes: int = 0  # a running engine that died (often one request's doing): no back-off
    requests: int = 0

    @property
    def name(self) -> str:
        return self.spec.name

    def snapshot(self) -> dict[str, Any]:
        proc = self.process
        running = proc is not None and self.state in ("starting", "ready")
        return {
            "name": self.name,
            "state": self.state,
            "engine": self.spec.engine,
            "runtime": self.spec.runtime,
            "server": proc.server if proc else None,
            "server_reason": proc.reason if proc else None,
            "pid": proc.pid if running and proc else None,
            "port": proc.port if running and proc else None,
            "url": proc.base_url if running and proc else None,
            "active_requests": self.active,
            "requests": self.requests,
            "idle_seconds": round(time.monotonic() - self.last_used, 1),
            "memory_estimate_bytes": self.spec.memory_bytes,
            "uptime_seconds": round(time.time() - proc.started_at, 1) if running and proc else None,
            "log_path": str(proc.log_path) if proc else str(log_path_for(self.name)),
            "error": self.error,
            "exit_code": self.exit_code,
            "crashes": self.crashes,
            "replicas": proc.placement() if running and proc else None,
        }


class Scheduler:
    """Owns every engine process the gateway started."""

    def __init__(
        self,
        models: ModelRegistry,
        *,
        launcher: Callable[[ModelSpec], EngineProcess] = launch_engine,
        keep_alive: float = 300.0,
        memory_budget: int | None = None,
        max_loaded: int | None = 3,
        startup_timeout: float = 300.0,
        stop_grace: float = 10.0,
        monitor_interval: float = 0.25,
        record: bool = True,
        local_memory: bool = True,
    ) -> None:
        self.models = models
        self.launcher = launcher
        self.keep_alive = keep_alive
        self.memory_budget = memory_budget
        self.max_loaded = max_loaded
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self.monitor_interval = monitor_interval
        self.record = record
        #: the engines run on this machine: check its free memory before a start (a
        #: launcher that places them elsewhere, Ray's, leaves that to its placement)
        self.local_memory = local_memory
        self.deployments: dict[str, Deployment] = {}
        #: a model's own keep-alive, set by a request (Ollama's ``keep_alive``)
        self.keep_alive_for: dict[str, float] = {}
        self._monitor: asyncio.Task[None] | None = None
        self._room = asyncio.Lock()  # one eviction decision at a time
        self._conn: Any = None

    # -- lifecycle of the scheduler itself -------------------------------------------------

    async def start(self) -> None:
        if self._monitor is None:
            self._monitor = asyncio.create_task(self._watch(), name="famous-scheduler")

    async def close(self) -> None:
        """Stop every engine (the gateway is going away) and the monitor."""
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        await self.stop_all()
        close = getattr(self.launcher, "close", None)
        if close is not None:
            await asyncio.to_thread(close)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- requests ----------------------------------------------------------------------------

    def spec_for(self, name: str) -> ModelSpec:
        spec = self.models.get(name)
        if spec is None:
            raise ModelNotFound(name, self.models.names())
        return spec

    async def acquire(self, name: str, wait: float | None = None) -> Deployment:
        """A ready deployment of ``name`` with one more active request.

        ``wait``: None waits for a start up to the startup timeout; a number of seconds waits
        at most that long (0: not at all), then raises ``ModelLoading`` with a retry time.
        """
        spec = self.spec_for(name)
        dep = self.deployments.get(name)
        if dep is None:
            dep = self.deployments[name] = Deployment(spec)
        elif dep.state in ("stopped", "failed") and dep.load_task is None:
            dep.spec = spec  # pick up a re-pulled artifact or a changed configuration
        while True:
            if dep.state == "ready" and dep.process is not None:
                if dep.process.alive():
                    dep.active += 1
                    dep.requests += 1
                    dep.last_used = time.monotonic()
                    return dep
                self._mark_failed(dep)
            if dep.load_task is None:
                self._check_backoff(dep)
                dep.load_task = asyncio.create_task(self._load(dep), name=f"load {name}")
            task = dep.load_task
            try:
                if wait is None:
                    await asyncio.shield(task)
                else:
                    await asyncio.wait_for(asyncio.shield(task), timeout=max(wait, 0.0))
            except TimeoutError:
                raise ModelLoading(
                    f"model {name!r} is loading; retry in a few seconds",
                    retry_after=self._retry_after(dep),
                ) from None
            except RuntimeNotInstalled as exc:
                raise EngineFailed(str(exc), "engine_not_installed") from None
            except EngineError as exc:
                # the caller gets one line; the log tail, pids and ports stay in the logs
                lines = getattr(exc, "log_lines", None) or []
                reason = next((ln.strip() for ln in reversed(lines) if ln.strip()), "")
                reason = reason or str(exc).splitlines()[0]
                message = f"model {name!r} could not start: {reason[:300]} (famous logs {name})"
                raise EngineFailed(message, "engine_failed") from None

    def release(self, dep: Deployment) -> None:
        dep.active = max(0, dep.active - 1)
        dep.last_used = time.monotonic()

    async def engine_dropped(self, dep: Deployment, grace: float = 1.0) -> str:
        """A connection to the engine broke before any answer: give a dying engine ``grace``
        seconds to exit (a killed process closes its sockets before it can be reaped), then
        ``engine_broke``."""
        proc = dep.process
        deadline = time.monotonic() + grace
        while proc is not None and proc.alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.engine_broke(dep)

    def engine_broke(self, dep: Deployment) -> str:
        """Called when a proxied request failed: if the engine died, mark it failed now."""
        proc = dep.process
        if proc is not None and not proc.alive() and dep.state == "ready":
            self._mark_failed(dep)
        code = proc.returncode() if proc is not None else None
        if code is not None:
            return f"the engine serving {dep.name!r} exited (status {code}) during the request"
        return f"the engine serving {dep.name!r} broke the connection during the request"

    # -- starting and stopping ---------------------------------------------------------------

    def _retry_after(self, dep: Deployment) -> int:
        expected = dep.last_load_seconds or 2.0
        elapsed = time.monotonic() - (dep.load_started or time.monotonic())
        return max(1, int(expected - elapsed + 0.999))

    def _check_backoff(self, dep: Deployment) -> None:
        now = time.monotonic()
        dep.failures = [t for t in dep.failures if now - t < FAILURE_WINDOW]
        if len(dep.failures) < FAILURES_BEFORE_BACKOFF:
            return
        delay = min(MAX_BACKOFF, 2.0 ** (len(dep.failures) - FAILURES_BEFORE_BACKOFF))
        remaining = dep.failures[-1] + delay - now
        if remaining > 0:
            raise EngineFailed(
                f"model {dep.name!r} failed {len(dep.failures)} times in the last minute "
                f"({dep.error or 'see famous logs'}); retrying after {remaining:.0f} s",
                "engine_backoff",
                retry_after=max(1, int(remaining + 0.999)),
            )

    async def _load(self, dep: Deployment) -> None:
        spec = dep.spec
        dep.state = "starting"
        dep.error = None
        dep.exit_code = None
        dep.load_started = time.monotonic()
        try:
            await self._make_room(dep)
            proc = await asyncio.to_thread(self.launcher, spec)
            dep.process = proc
            self._record(dep, "starting")
            log.info(
                "starting %s: %s (pid %s, port %s)", spec.name, proc.server, proc.pid, proc.port
            )
            await proc.wait_healthy_async(self.startup_timeout)
        except NoRoom:
            dep.state = "stopped"  # it never started: not a failure of the engine
            dep.load_task = None
            raise
        except BaseException as exc:
            dep.state = "failed"
            dep.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            dep.failures.append(time.monotonic())
            if dep.process is not None:
                dep.exit_code = await asyncio.to_thread(dep.process.stop, self.stop_grace)
            self._record(dep, "failed")
            log.warning("%s failed to start: %s", spec.name, exc)
            raise
        finally:
            dep.load_task = None
        dep.state = "ready"
        dep.last_used = time.monotonic()
        dep.last_load_seconds = time.monotonic() - dep.load_started
        self._record(dep, "ready")
        log.info("%s ready in %.1f s", spec.name, dep.last_load_seconds)

    def _loaded(self, exclude: Deployment | None = None) -> list[Deployment]:
        return [
            d
            for d in self.deployments.values()
            if d is not exclude and d.state in ("starting", "ready") and d.process is not None
        ]

    def _fits(self, dep: Deployment) -> tuple[bool, str]:
        need = dep.spec.memory_bytes or 0
        loaded = self._loaded(exclude=dep)
        if self.max_loaded is not None and len(loaded) >= self.max_loaded:
            return False, f"{len(loaded)} models are loaded (max-loaded-models {self.max_loaded})"
        if self.memory_budget is not None:
            used = sum(d.spec.memory_bytes or 0 for d in loaded)
            if used + need > self.memory_budget:
                return False, (
                    f"{dep.name!r} needs {format_size(need)}; the budget is "
                    f"{format_size(self.memory_budget)} and {format_size(used)} is in use"
                )
            return True, ""
        if not self.local_memory:
            return True, ""
        try:
            import psutil

            available = psutil.virtual_memory().available
        except Exception:
            return True, ""
        from famous.services.variants import load_refusal

        why = load_refusal(dep.name, dep.spec.engine, need, available)
        return why is None, why or ""

    async def _make_room(self, dep: Deployment) -> None:
        """Stop least-recently-used idle deployments until ``dep`` fits (``NoRoom`` when it
        cannot)."""
        async with self._room:
            need = dep.spec.memory_bytes or 0
            if self.memory_budget is not None and need > self.memory_budget:
                raise NoRoom(
                    f"model {dep.name!r} needs {format_size(need)} but the gateway's memory "
                    f"budget is {format_size(self.memory_budget)}; choose a smaller variant"
                )
            while True:
                fits, why = self._fits(dep)
                if fits:
                    return
                idle = sorted(
                    (d for d in self._loaded(exclude=dep) if d.active == 0 and d.state == "ready"),
                    key=lambda d: d.last_used,
                )
                if not idle:
                    raise NoRoom(f"cannot load {dep.name!r}: {why}, and every loaded model is busy")
                victim = idle[0]
                log.info("evicting %s (least recently used) to load %s", victim.name, dep.name)
                await self._stop(victim, reason="evicted")

    async def _stop(self, dep: Deployment, reason: str = "stopped") -> None:
        proc = dep.process
        dep.state = "stopped"
        if proc is not None:
            dep.exit_code = await asyncio.to_thread(proc.stop, self.stop_grace)
        self._record(dep, "stopped")
        log.info("%s %s", dep.name, reason)

    async def stop(self, name: str) -> bool:
        """Stop one model's engine; False when it was not running."""
        dep = self.deployments.get(name)
        if dep is None:
            return False
        task = dep.load_task
        if task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(task)
        if dep.state not in ("ready", "starting"):
            return False
        await self._stop(dep)
        return True

    async def stop_all(self) -> list[str]:
        stopped = []
        for name in list(self.deployments):
            if await self.stop(name):
                stopped.append(name)
        return stopped

    def snapshot(self) -> list[dict[str, Any]]:
        return [d.snapshot() for d in sorted(self.deployments.values(), key=lambda d: d.name)]

    # -- watching ----------------------------------------------------------------------------

    def _mark_failed(self, dep: Deployment) -> None:
        proc = dep.process
        dep.exit_code = proc.returncode() if proc is not None else None
        dep.state = "failed"
        dep.error = f"the engine process exited with status {dep.exit_code}"
        dep.crashes += 1  # the next request restarts it at once; only failed starts back off
        self._record(dep, "failed")
        log.warning("%s: %s", dep.name, dep.error)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.monitor_interval)
            try:
                await self.check_engines()
            except Exception:  # the monitor must never die
                log.exception("scheduler check failed")

    def set_keep_alive(self, name: str, keep: float) -> None:
        """A request's ``keep_alive`` for ``name`` (Ollama's), from now on; a launcher that
        cannot honour it (Ray autoscaling to zero, past its down-scale delay) refuses it."""
        self.spec_for(name)  # a known model: the table holds no made-up names
        check = getattr(self.launcher, "check_keep_alive", None)
        if check is not None:
            check(name, keep)
        self.keep_alive_for[name] = keep

    def keep_alive_of(self, name: str) -> float:
        """Seconds ``name`` stays loaded once idle (negative: until stopped)."""
        return self.keep_alive_for.get(name, self.keep_alive)

    async def check_engines(self) -> None:
        """Mark dead engines failed; unload those idle longer than keep-alive."""
        now = time.monotonic()
        for dep in list(self.deployments.values()):
            if dep.state != "ready" or dep.process is None:
                continue
            keep = self.keep_alive_of(dep.name)
            # an engine that scales itself (Ray's autoscaling) removes its idle replicas, unless
            # a request asked for its own keep-alive (``set_keep_alive``)
            idles_itself = getattr(dep.process, "scales_itself", False)
            ours = not idles_itself or dep.name in self.keep_alive_for
            if not dep.process.alive():
                self._mark_failed(dep)
            elif keep >= 0 and ours and dep.active == 0 and now - dep.last_used > keep:
                await self._stop(dep, reason=f"unloaded after {keep:g} s idle")

    # -- the catalog's deployments table ---------------------------------------------------

    def _record(self, dep: Deployment, status: str) -> None:
        if not self.record:
            return
        from famous.store import db
        from famous.store import deployments as rows

        proc = dep.process
        try:
            if self._conn is None:
                self._conn = db.connect(create=True)
            rows.upsert(
                self._conn,
                DeploymentRecord(
                    name=dep.name,
                    engine=dep.spec.engine,
                    runtime=dep.spec.runtime,
                    server=proc.server if proc else None,
                    server_reason=proc.reason if proc else None,
                    pid=proc.pid if proc else None,
                    port=proc.port if proc else None,
                    status=status,
                    log_path=str(proc.log_path if proc else log_path_for(dep.name)),
                    started_at=(
                        datetime.fromtimestamp(proc.started_at, UTC).isoformat(timespec="seconds")
                        if proc
                        else None
                    ),
                    updated_at=now_iso(),
                    artifact_id=dep.spec.artifact_id,
                ),
            )
        except Exception as exc:  # bookkeeping must never break serving
            log.warning("could not record deployment %s: %s", dep.name, exc)
