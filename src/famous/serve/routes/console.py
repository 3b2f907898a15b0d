"""The web console's JSON API (``/famous/api/...``): the session, the machine, the catalog
of models with their engines scored here and the user's pin, pulls with progress and
cancel, removing what is installed, the running deployments with their health and logs,
and Hub search. Every route needs the admin credential, reads included; the work is the
services' (``famous.services.catalog``, ``pulls``, ``deployments``, ``lifecycle``), the same
code the CLI prints, and whatever blocks (detection, selection, the Hub, the disk, engine
health probes) runs in a thread.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from famous import __version__
from famous.errors import FamousError, http_status
from famous.hub.errors import HubError
from famous.plain import to_plain
from famous.serve import openapi
from famous.serve.context import GatewayContext, context
from famous.serve.errors import APIError, invalid
from famous.serve.protocols.ollama_pull import check_pull_name
from famous.serve.request_checks import check_name
from famous.serve.routes.admin import admin_payload
from famous.services import catalog, deployments, lifecycle
from famous.services.machine import detect_machine
from famous.services.pulls import PullRecord

router = APIRouter()
_API = "/famous/api"
_MAX_OFFSET = 2**62
_SHORT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


def _admin(request: Request) -> GatewayContext:
    gateway = context(request)
    gateway.authorize_admin(request)
    return gateway


def _model(value: str) -> str:
    return check_name(value, "model", "a model's name, URL-encoded in the path")


def _short(value: Any, field: str, what: str) -> str | None:
    """An optional short name (an engine, a variant, a format)."""
    if value is None:
        return None
    if not isinstance(value, str) or not _SHORT.match(value):
        allowed = "up to 64 letters, digits, '.', '_', '+', '-'"
        raise invalid(f"{field} must be {what}: {allowed}", field)
    return value


def _int_query(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw) if len(raw) <= 20 else None
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise invalid(f"{name} must be a whole number from {low} to {high}", name)
    return value


def _bounded(low: int, high: int = _MAX_OFFSET) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high}


def _not_found(message: str, code: str = "not_found") -> APIError:
    return APIError(404, message, code=code)


def _running(gateway: GatewayContext) -> set[str]:
    return {
        d.name for d in gateway.scheduler.deployments.values() if d.state in ("starting", "ready")
    }


# -- session and machine ---------------------------------------------------------------------


@router.get(f"{_API}/session", **openapi.route(admin=True))
async def session(request: Request) -> dict[str, Any]:
    """The UI's login check: 401 ``admin_credential_required`` without the credential."""
    from famous.store.paths import famous_home

    gateway = _admin(request)
    return {
        "version": __version__,
        "api_key_required": bool(gateway.api_key),
        "home": str(famous_home()),
    }


@router.get(f"{_API}/machine", **openapi.route(admin=True))
async def machine(request: Request) -> dict[str, Any]:
    """What ``famous show-machine --format json`` prints."""
    _admin(request)
    return {"machine": to_plain(await asyncio.to_thread(detect_machine))}


# -- catalog and pins ------------------------------------------------------------------------


@router.get(f"{_API}/catalog", **openapi.route(admin=True))
async def catalog_list(request: Request) -> dict[str, Any]:
    gateway = _admin(request)
    return {"models": await asyncio.to_thread(catalog.catalog, _running(gateway))}


def _detail(name: str) -> dict[str, Any]:
    from famous.services.selection import machine_report

    return catalog.model_detail(name, machine_report())


@router.get(f"{_API}/catalog/{{model:path}}", **openapi.route(admin=True))
async def catalog_model(request: Request, model: str) -> dict[str, Any]:
    """show-model's data, every engine scored here (devices, memory, reasons), the pin and
    what is installed; 404 ``model_not_found``."""
    _admin(request)
    return await asyncio.to_thread(_detail, _model(model))


def _package(name: str) -> Any:
    package = catalog.named_package(name)
    if package is None:
        raise catalog.ModelUnknown(name)
    return package


def _pin(name: str, engine: str, force: bool) -> dict[str, Any]:
    from famous.services.selection import machine_report

    return catalog.pin(_package(name), engine, machine_report(), force=force)


@router.put(f"{_API}/catalog/{{model:path}}/pin", **openapi.route(openapi.PinRequest, admin=True))
async def pin(request: Request, model: str) -> dict[str, Any]:
    """Pin an engine (``famous use-engine``): 400 for an engine the package lacks, 409
    ``engine_incompatible`` for one that cannot run here unless ``force``."""
    payload = await admin_payload(request)
    name = _model(model)
    engine = _short(payload.get("engine"), "engine", "an engine of the model")
    if engine is None:
        raise invalid("engine is required: the engine to pin", "engine")
    force = payload.get("force", False)
    if not isinstance(force, bool):
        raise invalid("force must be true or false", "force")
    return {"pinned": await asyncio.to_thread(_pin, name, engine, force)}


@router.delete(f"{_API}/catalog/{{model:path}}/pin", **openapi.route(admin=True))
async def unpin(request: Request, model: str) -> dict[str, Any]:
    """Back to automatic choice (``famous use-engine MODEL --auto``)."""
    _admin(request)
    name = _model(model)
    await asyncio.to_thread(lambda: catalog.unpin(_package(name).name))
    return {"pinned": None}


# -- pulls -----------------------------------------------------------------------------------


def _pull(rec: PullRecord) -> dict[str, Any]:
    return {"pull": rec.snapshot()}


def _check_pullable(name: str) -> None:
    """A package name must name a package (404 now, not a failed pull later); a repo is
    looked up by the pull itself."""
    from famous.hub.names import parse_reference

    ref = parse_reference(name)
    if ref.kind == "package" and catalog.named_package(ref.name) is None:
        raise catalog.ModelUnknown(ref.name)


@router.post(f"{_API}/pulls", **openapi.route(openapi.PullRequest, admin=True))
async def start_pull(request: Request) -> JSONResponse:
    """202 with the new pull; 200 with the running one when the model is already pulling."""
    payload = await admin_payload(request)
    gateway = context(request)
    name = check_name(payload.get("model"), "model", "a package name or ORG/NAME[:QUANT]")
    check_pull_name(name)
    engine = _short(payload.get("engine"), "engine", "an engine of the model")
    variant = _short(payload.get("variant"), "variant", "a variant (Q4_K_M, bf16…)")
    try:
        await asyncio.to_thread(_check_pullable, name)
    except FamousError as exc:
        if isinstance(exc, catalog.ModelUnknown):
            raise
        raise invalid(str(exc), "model") from None
    rec, created = gateway.pulls.start(name, engine, variant)
    return JSONResponse(_pull(rec), status_code=202 if created else 200)


@router.get(f"{_API}/pulls", **openapi.route(admin=True))
async def list_pulls(request: Request) -> dict[str, Any]:
    gateway = _admin(request)
    return {"pulls": [rec.snapshot() for rec in gateway.pulls.all()]}


def _pull_id(value: str) -> str:
    if len(value) > 64 or not value.isprintable():
        raise invalid("not a pull id", "id")
    return value


@router.get(f"{_API}/pulls/{{pull_id}}", **openapi.route(admin=True))
async def get_pull(request: Request, pull_id: str) -> dict[str, Any]:
    gateway = _admin(request)
    rec = gateway.pulls.get(_pull_id(pull_id))
    if rec is None:
        raise _not_found(f"no pull {pull_id!r}", "pull_not_found")
    return _pull(rec)


@router.delete(f"{_API}/pulls/{{pull_id}}", **openapi.route(admin=True))
async def cancel_pull(request: Request, pull_id: str) -> dict[str, Any]:
    """Stops the pull and answers once its download threads stopped (state ``cancelled``;
    the partial files stay: a new POST resumes). A finished pull is answered as it is."""
    gateway = _admin(request)
    rec = await asyncio.to_thread(gateway.pulls.cancel, _pull_id(pull_id))
    if rec is None:
        raise _not_found(f"no pull {pull_id!r}", "pull_not_found")
    return _pull(rec)


# -- installed -------------------------------------------------------------------------------


_NAME = {"type": "string", "maxLength": 64}
_ENGINE = openapi.query("engine", "only this engine's artifacts", _NAME)
_VARIANT = openapi.query("variant", "only this variant", _NAME)
_TAIL = openapi.query("tail", "how many last lines (default 200)", _bounded(0, 10_000))
_AFTER = openapi.query("after", "the offset of the last answer: what came since", _bounded(0))
_SINCE = openapi.query(
    "since",
    "with after, for a model on Ray: REPLICA:OFFSET,... (the replicas' last offsets); each "
    "replica's lines since its offset come back, a replica not named from its log's start",
    {"type": "string", "maxLength": 16_384},
)
_Q = openapi.query("q", "words to look for (required)", {"type": "string", "maxLength": 200})
_FORMAT = openapi.query("format", "only repos holding this format (gguf, mlx…)", _NAME)
_LIMIT = openapi.query("limit", "how many hits (default 20)", _bounded(1, 100))


@router.delete(
    f"{_API}/installed/{{model:path}}", **openapi.route(admin=True, query=[_ENGINE, _VARIANT])
)
async def remove(request: Request, model: str) -> dict[str, Any]:
    """``famous rm MODEL``: 409 while the model runs or is being pulled, 404 when nothing
    of it is installed."""
    from famous.store.artifacts import ArtifactInUse

    gateway = _admin(request)
    name = _model(model)
    engine = _short(request.query_params.get("engine"), "engine", "an engine of the model")
    variant = _short(request.query_params.get("variant"), "variant", "an installed variant")
    if name in _running(gateway):
        raise APIError(
            409, f"{name} is running; stop it first (POST /famous/api/stop)", code="model_running"
        )
    if any(r.running and r.model == name for r in gateway.pulls.all()):
        raise APIError(409, f"{name} is being pulled; cancel the pull first", code="pull_running")
    try:
        removed = await asyncio.to_thread(lifecycle.remove_installed, name, engine, variant)
    except ArtifactInUse as exc:
        raise APIError(409, str(exc), code="model_running") from None
    return {"removed": to_plain(removed)}


# -- deployments -----------------------------------------------------------------------------


@router.get(f"{_API}/deployments", **openapi.route(admin=True))
async def list_deployments(request: Request) -> dict[str, Any]:
    """The gateway's deployments with the health each engine process answers."""
    gateway = _admin(request)
    snapshot = gateway.scheduler.snapshot()
    return {"deployments": await asyncio.to_thread(deployments.gateway_deployments, snapshot)}


def _log_path(gateway: GatewayContext, name: str) -> Any:
    from pathlib import Path

    dep = gateway.scheduler.deployments.get(name)
    if dep is not None:
        path = Path(dep.snapshot()["log_path"])
        if path.exists():
            return path
    return deployments.log_of(name)


@router.get(
    f"{_API}/deployments/{{model:path}}/logs",
    **openapi.route(admin=True, query=[_TAIL, _AFTER, _SINCE]),
)
async def logs(request: Request, model: str) -> dict[str, Any]:
    """The last ``tail`` lines and the byte offset after them; with ``after=OFFSET``, the
    lines written since (poll with the answer's offset), and with ``since`` too, each Ray
    replica's lines since its own offset. 404 when the model has no log."""
    gateway = _admin(request)
    name = _model(model)
    tail = _int_query(request, "tail", 200, 0, 10_000)
    after = _int_query(request, "after", None, 0, _MAX_OFFSET)
    since = _since_query(request)
    if since is not None and after is None:
        raise invalid("since goes with after (the gateway log's offset)", "since")

    def read() -> dict[str, Any]:
        try:
            path = _log_path(gateway, name)
        except FamousError as exc:
            raise _not_found(str(exc), "log_not_found") from None
        lines, offset = deployments.read_log(path, tail or 0, after)
        answer: dict[str, Any] = {"lines": lines, "offset": offset}
        replicas = None
        if after is None or since is not None:
            replicas = _replica_logs(gateway, name, tail or 0, since)
        if replicas is not None:
            answer["replicas"] = replicas
        return answer

    return await asyncio.to_thread(read)


def _replica_logs(
    gateway: GatewayContext, name: str, tail: int, since: dict[str, int] | None
) -> list[dict[str, Any]] | None:
    """For a model on Ray: each replica's engine log tail (or what came since ``since``),
    read on its node; else None."""
    from famous.serve.ray_serve.launcher import RayEngine

    dep = gateway.scheduler.deployments.get(name)
    proc = dep.process if dep is not None and dep.state in ("starting", "ready") else None
    return proc.replica_logs(tail, since) if isinstance(proc, RayEngine) else None


_REPLICA_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_OFFSET = re.compile(r"^[0-9]{1,19}$")
_MAX_SINCE = 256


def _since_query(request: Request) -> dict[str, int] | None:
    """``since=REPLICA:OFFSET,...`` (empty: no replica seen yet), checked; None if absent."""
    raw = request.query_params.get("since")
    if raw is None:
        return None
    since: dict[str, int] = {}
    items = [item for item in raw.split(",") if item] if len(raw) <= 16_384 else None
    if items is None or len(items) > _MAX_SINCE:
        raise invalid(f"since names at most {_MAX_SINCE} replicas (16 KiB)", "since")
    for item in items:
        replica, _, offset = item.rpartition(":")
        if not _REPLICA_ID.fullmatch(replica) or not _OFFSET.fullmatch(offset):
            raise invalid("since must be REPLICA:OFFSET,... (Ray replica ids)", "since")
        if int(offset) > _MAX_OFFSET:
            raise invalid(f"since: an offset is above {_MAX_OFFSET}", "since")
        since[replica] = int(offset)
    return since


# -- the Hub ---------------------------------------------------------------------------------


@router.get(f"{_API}/hub/search", **openapi.route(admin=True, query=[_Q, _FORMAT, _LIMIT]))
async def hub_search(request: Request) -> dict[str, Any]:
    """``famous search``: 400 for an empty ``q`` or a ``limit`` outside 1..100."""
    from famous.hub.search import search

    _admin(request)
    query = (request.query_params.get("q") or "").strip()
    if not query or len(query) > 200 or not query.isprintable():
        raise invalid("q is required: up to 200 printable characters to look for", "q")
    model_format = _short(request.query_params.get("format") or None, "format", "a model format")
    limit = _int_query(request, "limit", 20, 1, 100)
    try:
        hits = await asyncio.to_thread(search, query, format=model_format, limit=limit or 20)
    except HubError as exc:  # the Hub (or a mirror) failed: its fault, not the gateway's
        status = http_status(exc)
        raise APIError(502 if status >= 500 else status, str(exc), code="hub_error") from None
    return {"hits": to_plain(hits)}
