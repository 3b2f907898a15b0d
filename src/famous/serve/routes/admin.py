"""What the CLI calls (``/famous/api/*``): running deployments, registering a file, load, stop.
Every route needs the admin credential (``GatewayContext.authorize_admin``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request

from famous.runtimes import RUNTIMES, get_runtime
from famous.serve import openapi
from famous.serve.context import context
from famous.serve.errors import invalid
from famous.serve.models import ModelSpec
from famous.serve.request_checks import check_name, parse_json, prefer_wait, read_body
from famous.serve.routes.openai import model_entry

router = APIRouter()
_ADMIN_BODY_BYTES = 1024 * 1024


async def admin_payload(request: Request) -> dict[str, Any]:
    gateway = context(request)
    gateway.authorize_admin(request)
    return parse_json(await read_body(request, _ADMIN_BODY_BYTES, gateway.read_timeout))


@router.get("/famous/api/ps", **openapi.route(admin=True))
async def ps(request: Request) -> dict[str, Any]:
    gateway = context(request)
    gateway.authorize_admin(request)
    return {"deployments": gateway.scheduler.snapshot()}


def _spec_from(payload: dict[str, Any]) -> ModelSpec:
    """The model a registration asks for; its configuration only what the runtime allows
    requests to set (never an executable, a path or pickle loading)."""
    name = check_name(payload.get("name"), "name", "the model's name in the API")
    path = check_name(payload.get("path"), "path", "a GGUF file or a model directory")
    runtime = payload.get("runtime") or "llamacpp"
    if not isinstance(runtime, str) or runtime not in RUNTIMES:
        raise invalid(f"runtime must be one of {', '.join(sorted(RUNTIMES))}", "runtime")
    engine = payload.get("engine") or runtime
    if not isinstance(engine, str) or len(engine) > 64 or not engine.isprintable():
        raise invalid("engine must be a short name", "engine")
    embedding = payload.get("embedding")
    if embedding is not None and not isinstance(embedding, bool):
        raise invalid("embedding must be true, false or null", "embedding")
    try:
        configuration = get_runtime(runtime).request_configuration(payload.get("configuration"))
    except ValueError as exc:
        raise invalid(str(exc), "configuration") from None
    return ModelSpec(
        name=name,
        path=Path(path),
        runtime=runtime,
        engine=engine,
        configuration=configuration,
        embedding=embedding,
    )


@router.post("/famous/api/models", **openapi.route(openapi.RegisterModelRequest, admin=True))
async def register(request: Request) -> dict[str, Any]:
    spec = _spec_from(await admin_payload(request))
    gateway = context(request)
    try:
        await asyncio.to_thread(gateway.scheduler.models.register, spec)  # walks folders
    except (FileNotFoundError, ValueError) as exc:
        raise invalid(str(exc), "path") from None
    return model_entry(gateway, spec)


@router.post("/famous/api/load", **openapi.route(openapi.LoadRequest, admin=True))
async def load(request: Request) -> dict[str, Any]:
    payload = await admin_payload(request)
    name = check_name(payload.get("model"), "model", "the name of a model to load")
    scheduler = context(request).scheduler
    dep = await scheduler.acquire(name, wait=prefer_wait(request))
    scheduler.release(dep)
    return dep.snapshot()


@router.post("/famous/api/stop", **openapi.route(openapi.StopRequest, admin=True))
async def stop(request: Request) -> dict[str, Any]:
    payload = await admin_payload(request)
    scheduler = context(request).scheduler
    if payload.get("all"):
        return {"stopped": await scheduler.stop_all()}
    name = check_name(payload.get("model"), "model", "a model's name (or all: true)")
    return {"stopped": [name] if await scheduler.stop(name) else []}
