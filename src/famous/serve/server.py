"""Run the gateway in the foreground (``famous serve``): uvicorn around ``create_app``."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from famous.serve.app import DEFAULT_MAX_REQUEST_BYTES, create_app
from famous.serve.models import ModelRegistry, ModelSpec
from famous.serve.protocol import H11_BUFFER_BYTES, protocol_class
from famous.serve.ray_serve.launcher import RayOptions
from famous.serve.request_checks import DEFAULT_READ_TIMEOUT
from famous.serve.scheduler import Scheduler
from famous.services.gateway import running_gateway, stop_orphans
from famous.store import gateway_state as state

if TYPE_CHECKING:
    from types import FrameType

    import uvicorn
    from fastapi import FastAPI


class GatewayConfigError(ValueError):
    """The gateway cannot start with these settings (for example no API key off localhost)."""


@dataclass
class GatewaySettings:
    host: str = state.DEFAULT_HOST
    port: int = state.DEFAULT_PORT
    api_key: str | None = None
    keep_alive: float = 300.0
    max_loaded: int | None = 3
    memory_budget: int | None = None
    startup_timeout: float = 300.0
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    models: list[ModelSpec] = field(default_factory=list)
    use_store: bool = True
    log_level: str = "info"
    drain_timeout: float = 10.0
    read_timeout: float = DEFAULT_READ_TIMEOUT
    #: deploy models on a Ray cluster instead of starting engines here (``--ray``)
    ray: RayOptions | None = None


def check_binding(host: str, api_key: str | None) -> None:
    """Secure default: anything beyond loopback needs an API key."""
    if host not in state.LOCAL_HOSTS and not api_key:
        raise GatewayConfigError(
            f"binding {host} exposes the gateway beyond this machine; set an API key with "
            "--api-key or FAMOUS_API_KEY (or bind 127.0.0.1)"
        )


def build(settings: GatewaySettings) -> FastAPI:
    check_binding(settings.host, settings.api_key)
    models = ModelRegistry(settings.models, use_store=settings.use_store)
    launcher: dict[str, Any] = {}
    if settings.ray is not None:
        from famous.serve.ray_serve.launcher import RayCluster, RayLauncher

        cluster = RayCluster(settings.ray)
        cluster.connect()  # a wrong address fails here, before the gateway binds
        launcher = {
            "launcher": RayLauncher(cluster, settings.startup_timeout),
            "local_memory": False,
        }
    scheduler = Scheduler(
        models,
        keep_alive=settings.keep_alive,
        memory_budget=settings.memory_budget,
        max_loaded=settings.max_loaded,
        startup_timeout=settings.startup_timeout,
        **launcher,
    )
    return create_app(
        scheduler,
        api_key=settings.api_key,
        admin_token=state.admin_token(create=True),
        host=settings.host,
        max_request_bytes=settings.max_request_bytes,
        read_timeout=settings.read_timeout,
    )


def _draining_server(config: uvicorn.Config, app: FastAPI, drain_timeout: float) -> uvicorn.Server:
    """uvicorn's server, telling the app when a signal starts the shutdown: the app gives
    open streams ``drain_timeout`` seconds, then ends them with an error event and [DONE]
    (uvicorn itself would cut them without a word once its graceful timeout passed)."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if not self.should_exit:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    pass
                else:
                    loop.call_soon_threadsafe(app.state.gateway.begin_drain, drain_timeout)
            super().handle_exit(sig, frame)

    return DrainingServer(config)


def run_gateway(settings: GatewaySettings) -> None:
    """Serve until SIGINT/SIGTERM; every engine started here is stopped on the way out."""
    import uvicorn

    app = build(settings)
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # health polls: one line each
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        http=protocol_class(settings.read_timeout),
        h11_max_incomplete_event_size=H11_BUFFER_BYTES,
        timeout_graceful_shutdown=int(settings.drain_timeout) + 5,
    )
    server = _draining_server(config, app, settings.drain_timeout)
    # uvicorn re-raises the signal it caught once it has shut down; with the default
    # SIGTERM action that would kill this process before its state file is removed
    signal.signal(signal.SIGTERM, lambda *_: None)
    if running_gateway() is None:
        for name in stop_orphans(grace=5):
            logging.getLogger("famous.serve").warning(
                "stopped %s: its engine outlived the previous gateway", name
            )
    pid = os.getpid()
    state.write(
        state.GatewayInfo(
            pid=pid,
            host=settings.host,
            port=settings.port,
            started_at=time.time(),
            auth=bool(settings.api_key),
        )
    )
    try:
        server.run()
    finally:
        state.clear(pid)
