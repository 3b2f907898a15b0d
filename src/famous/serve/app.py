"""The gateway application: OpenAI routes in front of the engines, routed by the request's
``model`` (``routes/``), wired here to one scheduler, its credentials and its limits.

Admin routes under ``/famous/api/`` (ps, load, stop, register a file) serve the CLI, and the
console's (``routes/console``: catalog, pins, pulls, deployments, logs, Hub search) the web
UI; all need a credential even on loopback: the install's admin token
(``FAMOUS_HOME/admin-token``, 0600, which the CLI reads) or the API key. Every route refuses
what a hostile web page could send from the user's browser (``famous.serve.guard``): a
``Host`` that is not this gateway (DNS rebinding), a foreign ``Origin``, and bodies that are
not ``application/json``. The web UI itself (``GET /``, ``routes/web``) is static files.
Every error, whoever raised it, is answered in OpenAI's shape, or on Anthropic's routes in
Anthropic's (``famous.serve.protocols.anthropic.shaped``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from famous import __version__
from famous.errors import FamousError
from famous.serve import openapi
from famous.serve.context import GatewayContext
from famous.serve.errors import APIError, from_domain, invalid
from famous.serve.guard import RequestGuard
from famous.serve.protocols.anthropic import shaped
from famous.serve.request_checks import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_READ_TIMEOUT
from famous.serve.routes import admin, console, ollama, responses, status, web
from famous.serve.routes import anthropic as anthropic_routes
from famous.serve.routes import openai as openai_routes
from famous.serve.scheduler import Scheduler
from famous.store.gateway_state import LOCAL_HOSTS

log = logging.getLogger("famous.serve")

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "create_app"]


def create_app(
    scheduler: Scheduler,
    *,
    api_key: str | None = None,
    admin_token: str | None = None,
    host: str = "127.0.0.1",
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
) -> FastAPI:
    """The gateway application around ``scheduler`` (which it starts and stops), answering
    requests addressed to ``host``. Admin routes take ``admin_token`` or ``api_key``; with
    neither, they refuse every request. A body that stalls for ``read_timeout`` seconds
    gets 408."""
    gateway = GatewayContext(
        scheduler,
        api_key=api_key,
        admin_token=admin_token,
        max_request_bytes=max_request_bytes,
        read_timeout=read_timeout,
        fetch_private_images=host in LOCAL_HOSTS,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await scheduler.start()
        try:
            yield
        finally:
            await asyncio.to_thread(gateway.pulls.close)  # partial files stay to resume
            await scheduler.close()

    app = FastAPI(
        title="famous gateway",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.gateway = gateway
    app.add_middleware(RequestGuard, bound_host=host)
    _answer_errors(app)
    modules = (status, openai_routes, responses, anthropic_routes, admin, console, ollama, web)
    for module in modules:
        app.include_router(module.router)
    app.openapi = lambda: _published_schema(app)  # type: ignore[method-assign]
    return app


def _answer_errors(app: FastAPI) -> None:
    """Every exception becomes an OpenAI-shaped answer; only the gateway's own faults are
    5xx, and they name no more than their type (the log has the traceback)."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return shaped(request.url.path, exc)

    @app.exception_handler(FamousError)
    async def _domain_error(request: Request, exc: FamousError) -> JSONResponse:
        return shaped(request.url.path, from_domain(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = (
            f"no route {request.method} {request.url.path}"
            if exc.status_code in (404, 405)
            else str(exc.detail)
        )
        return shaped(request.url.path, APIError(exc.status_code, message, code="not_found"))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return shaped(request.url.path, invalid(f"invalid request: {exc.errors()}"))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in the gateway")
        message = f"internal gateway error ({type(exc).__name__}); see the gateway log"
        return shaped(request.url.path, APIError(500, message))


def _published_schema(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        schema.setdefault("components", {}).setdefault("schemas", {}).update(openapi.components())
        schema["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key"},
        }
    return app.openapi_schema  # type: ignore[return-value]
