"""The gateway: OpenAI routes in front of the engines, routed by the request's ``model``.

The gateway checks what it can cheaply (size, JSON, the fields it must understand to route
and to reject nonsense early), forwards only the fields engines are known to handle
(``famous.serve.fields``) to the model's engine, and relays the answer's bytes as they
arrive, server-sent events included. It never re-encodes a token stream.

Admin routes under ``/api/`` (ps, load, stop, register a file) serve the CLI and need a
credential even on loopback: the install's admin token (``FAMOUS_HOME/admin-token``, 0600,
which the CLI reads) or the API key. Every route refuses what a hostile web page could send
from the user's browser: a ``Host`` that is not this gateway (DNS rebinding), a foreign
``Origin``, and bodies that are not ``application/json`` (the "simple" cross-site POSTs).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from famous import __version__
from famous.runtimes import RUNTIMES, get_runtime
from famous.serve import openapi, relay
from famous.serve.catalog import ModelSpec
from famous.serve.errors import APIError, invalid
from famous.serve.fields import OPENAI_RANGES, check_ranges, forwarded
from famous.serve.guard import RequestGuard
from famous.serve.supervisor import Deployment, Supervisor

log = logging.getLogger("famous.serve")

DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024
# A body over the limit is still read (and dropped) up to this size, so the client gets
# its 413 instead of a reset connection while it is still sending.
_DRAIN_CAP = 64 * 1024 * 1024

_ROUTES = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
}


def _shutting_down() -> APIError:
    return APIError(
        503,
        "the gateway is shutting down; this answer is incomplete (send the request again once "
        "famous serve is back)",
        code="shutting_down",
    )


_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


# -- request checks -------------------------------------------------------------------------


async def _chunks(request: Request, idle_timeout: float) -> AsyncIterator[bytes]:
    """The body's chunks; 408 when the client stops sending for ``idle_timeout`` seconds."""
    stream = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(anext(stream), idle_timeout)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise APIError(
                408,
                f"the request body stalled: nothing arrived for {idle_timeout:g} s",
                code="request_timeout",
                headers={"connection": "close"},
            ) from None
        yield chunk


async def _drain(request: Request, already: int, idle_timeout: float) -> None:
    seen = already
    with contextlib.suppress(Exception):
        async for chunk in _chunks(request, idle_timeout):
            seen += len(chunk)
            if seen > _DRAIN_CAP:
                break


def _too_large(size: int, limit: int) -> APIError:
    return APIError(
        413,
        f"the request body is {size} bytes; this gateway accepts at most {limit} bytes "
        "(famous serve --max-request-size)",
        code="request_too_large",
        headers={"connection": "close"},
    )


async def read_body(request: Request, limit: int, idle_timeout: float = 15.0) -> bytes:
    """The body, or 413 as soon as it is known to exceed ``limit`` (a body a client could
    still be sending is read and dropped first, so that it sees the 413, not a reset)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        if int(declared) <= _DRAIN_CAP:
            await _drain(request, 0, idle_timeout)
        raise _too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in _chunks(request, idle_timeout):
        size += len(chunk)
        if size > limit:
            await _drain(request, size, idle_timeout)
            raise _too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise invalid("the request body is empty; send a JSON object", code="invalid_json")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise invalid("the request body nests JSON too deeply", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise invalid(
            f"the request body must be a JSON object, not {type(payload).__name__}",
            code="invalid_json",
        )
    return payload


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_name(value: Any, field: str, what: str) -> str:
    """A model name that can be stored and echoed: a short string of valid Unicode."""
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"{field} is required: {what}", field)
    if len(value) > 256 or not value.isprintable():
        raise invalid(f"{field} must be at most 256 printable characters", field)
    if field != "path" and (value.startswith("/") or {".", ".."} & set(value.split("/"))):
        raise invalid(f"{field} must be a name like org/model, not a path", field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(f"{field} is not valid Unicode (a lone surrogate)", field) from None
    return value


def validate(kind: str, payload: dict[str, Any]) -> str:
    """Reject what no engine should see; returns the model name. Unknown fields pass through."""
    model = _check_name(payload.get("model"), "model", "the name of a model from GET /v1/models")
    if kind == "chat":
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            raise invalid(
                "messages must be a non-empty list of {role, content} objects", "messages"
            )
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise invalid(f"messages[{i}] must be an object with a string role", "messages")
    elif kind == "completions":
        prompt = payload.get("prompt")
        if prompt is None or not isinstance(prompt, str | list):
            raise invalid("prompt is required: a string or a list of strings or tokens", "prompt")
    elif kind == "embeddings":
        value = payload.get("input")
        if value is None or not isinstance(value, str | list) or value == []:
            raise invalid("input is required: a string or a non-empty list of strings", "input")
    minimum = 0 if kind == "completions" else 1
    for key in ("max_tokens", "max_completion_tokens"):
        if key in payload and payload[key] is not None:
            value = payload[key]
            if not _is_int(value) or value < minimum:
                raise invalid(f"{key} must be an integer >= {minimum}, got {value!r}", key)
    n = payload.get("n")
    if n is not None and (not _is_int(n) or not 1 <= n <= 128):
        raise invalid(f"n must be an integer between 1 and 128, got {n!r}", "n")
    check_ranges(payload, OPENAI_RANGES)
    if "stream" in payload and not isinstance(payload["stream"], bool | None):
        raise invalid(f"stream must be true or false, got {payload['stream']!r}", "stream")
    if "seed" in payload and payload["seed"] is not None and not _is_int(payload["seed"]):
        raise invalid(f"seed must be an integer, got {payload['seed']!r}", "seed")
    stop = payload.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise invalid("stop must be a string or a list of strings", "stop")
    return model


def prefer_wait(request: Request) -> float | None:
    """RFC 7240 ``Prefer: wait=N``: how long the caller will wait for a model to load."""
    header = request.headers.get("prefer")
    if not header:
        return None
    match = _PREFER_WAIT.search(header)
    return float(match.group(1)) if match else None


# -- the app --------------------------------------------------------------------------------


def create_app(
    supervisor: Supervisor,
    *,
    api_key: str | None = None,
    admin_token: str | None = None,
    host: str = "127.0.0.1",
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    read_timeout: float = 15.0,
) -> FastAPI:
    """The gateway application around ``supervisor`` (which it starts and stops), answering
    requests addressed to ``host`` (see ``famous.serve.guard``). Admin routes take
    ``admin_token`` or ``api_key``; with neither, they refuse every request. A body that
    stalls for ``read_timeout`` seconds gets 408."""
    state: dict[str, Any] = {"started": time.time(), "draining": False}
    open_streams: set[relay.UpstreamResponse] = set()

    def begin_drain(grace: float) -> None:
        """Shutting down: streams still open after ``grace`` seconds are ended (an error
        event, then [DONE]) so that their clients learn why, and the shutdown can go on."""
        state["draining"] = True

        def end_streams() -> None:
            for resp in list(open_streams):
                resp.abort()

        asyncio.get_running_loop().call_later(grace, end_streams)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await supervisor.start()
        try:
            yield
        finally:
            await supervisor.close()

    app = FastAPI(
        title="famous gateway",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.supervisor = supervisor
    app.state.begin_drain = begin_drain
    app.add_middleware(RequestGuard, bound_host=host)

    def error_response(exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(APIError)
    async def _api_error(_request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = (
            f"no route {request.method} {request.url.path}"
            if exc.status_code in (404, 405)
            else str(exc.detail)
        )
        return error_response(APIError(exc.status_code, message, code="not_found"))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(invalid(f"invalid request: {exc.errors()}"))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in the gateway")
        return error_response(
            APIError(500, f"internal gateway error ({type(exc).__name__}); see the gateway log")
        )

    def bearer(request: Request) -> bytes:
        header = request.headers.get("authorization", "")
        return (header[7:].strip() if header.lower().startswith("bearer ") else "").encode()

    def authorize(request: Request) -> None:
        if api_key and not hmac.compare_digest(bearer(request), api_key.encode()):
            raise APIError(
                401,
                "a valid API key is required: send 'Authorization: Bearer <key>'",
                code="invalid_api_key",
            )

    def authorize_admin(request: Request) -> None:
        """Admin routes: the API key, or the install's admin token (the CLI sends it)."""
        token = bearer(request)
        if not any(hmac.compare_digest(token, k.encode()) for k in (api_key, admin_token) if k):
            raise APIError(
                401,
                "admin routes need a credential: 'Authorization: Bearer <API key or the "
                "admin token in FAMOUS_HOME/admin-token>' (the famous CLI sends it)",
                code="admin_credential_required",
            )

    @app.get("/metrics", **openapi.route(media_type="text/plain"))
    async def metrics(request: Request) -> Response:
        """Prometheus text: per-model requests, in-flight requests, state and load time."""
        authorize(request)
        lines = [
            "# TYPE famous_requests_total counter",
            "# TYPE famous_active_requests gauge",
            "# TYPE famous_model_loaded gauge",
            "# TYPE famous_model_load_seconds gauge",
            "# TYPE famous_engine_failures gauge",
            "# TYPE famous_engine_crashes counter",
        ]
        for dep in supervisor.deployments.values():
            escaped = dep.name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            label = f'{{model="{escaped}"}}'
            lines += [
                f"famous_requests_total{label} {dep.requests}",
                f"famous_active_requests{label} {dep.active}",
                f"famous_model_loaded{label} {1 if dep.state == 'ready' else 0}",
                f"famous_model_load_seconds{label} {dep.last_load_seconds or 0:.3f}",
                f"famous_engine_failures{label} {len(dep.failures)}",
                f"famous_engine_crashes{label} {dep.crashes}",
            ]
        return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    @app.get("/health", **openapi.route())
    async def health(request: Request) -> dict[str, Any]:
        """Always answers (it is the liveness probe); which models exist only with the key."""
        answer: dict[str, Any] = {
            "status": "ok",
            "version": __version__,
            "uptime_seconds": round(time.time() - state["started"], 1),
        }
        if not api_key or hmac.compare_digest(bearer(request), api_key.encode()):
            answer["models"] = {d["name"]: d["state"] for d in supervisor.snapshot()}
        return answer

    def model_entry(spec: ModelSpec) -> dict[str, Any]:
        dep = supervisor.deployments.get(spec.name)
        entry = spec.describe()
        entry["created"] = int(state["started"])
        entry["status"] = dep.state if dep else "stopped"
        return entry

    @app.get("/v1/models", **openapi.route())
    async def list_models(request: Request) -> dict[str, Any]:
        authorize(request)
        return {"object": "list", "data": [model_entry(s) for s in supervisor.catalog.all()]}

    @app.get("/v1/models/{model_id:path}", **openapi.route())
    async def get_model(model_id: str, request: Request) -> dict[str, Any]:
        authorize(request)
        return model_entry(supervisor.spec_for(model_id))

    async def proxy(request: Request, kind: str) -> Response:
        authorize(request)
        if state["draining"]:
            raise APIError(
                503, "the gateway is shutting down", code="shutting_down",
                headers={"connection": "close", "retry-after": "5"},
            )  # fmt: skip
        body = await read_body(request, max_request_bytes, read_timeout)
        payload = parse_json(body)
        name = validate(kind, payload)
        body = json.dumps(forwarded(kind, payload)).encode()
        for attempt in (1, 2):
            dep = await supervisor.acquire(name, wait=prefer_wait(request))
            try:
                return await forward(dep, _ROUTES[kind], body, request)
            except relay.RelayError:
                # no answer began: when the engine is dead (another request may have crashed
                # it a moment ago), the next acquire restarts it and this request runs once
                # more; a request that kills the engine itself fails on its second try
                supervisor.release(dep)
                message = await supervisor.engine_dropped(dep)
                if attempt == 2 or dep.state != "failed":
                    raise APIError(502, message, code="engine_failed") from None
            except BaseException:
                supervisor.release(dep)
                raise
        raise AssertionError("unreachable")

    async def forward(dep: Deployment, path: str, body: bytes, request: Request) -> Response:
        """Send the checked body to the engine; relay its answer (released when done)."""
        proc = dep.process
        assert proc is not None
        headers = {
            "Content-Type": "application/json",
            "Accept": request.headers.get("accept", "*/*"),
        }
        resp = await relay.post(proc.host, proc.port, path, body, headers)  # RelayError: retry
        content_type = resp.content_type
        if content_type.startswith("text/event-stream"):

            async def pass_through() -> AsyncIterator[bytes]:
                open_streams.add(resp)
                try:
                    async for chunk in resp.chunks():
                        yield chunk
                except relay.RelayError:
                    if resp.aborted:
                        yield _shutting_down().sse_event() + b"data: [DONE]\n\n"
                    else:
                        message = supervisor.engine_broke(dep) + "; the answer is incomplete"
                        yield APIError(502, message, code="engine_failed").sse_event()
                finally:
                    open_streams.discard(resp)
                    resp.close()
                    supervisor.release(dep)

            return StreamingResponse(
                pass_through(),
                status_code=resp.status,
                headers={
                    "content-type": content_type,
                    "cache-control": "no-cache",
                    "x-accel-buffering": "no",
                },
            )
        open_streams.add(resp)
        try:
            content = await resp.read()
        except relay.RelayError:
            if resp.aborted:
                raise _shutting_down() from None
            raise APIError(502, supervisor.engine_broke(dep), code="engine_failed") from None
        finally:
            open_streams.discard(resp)
            resp.close()
        supervisor.release(dep)
        if resp.status >= 400:
            return error_response(engine_error(resp.status, content, dep.name))
        return Response(content, status_code=resp.status, media_type=content_type)

    @app.post("/v1/chat/completions", **openapi.route(openapi.ChatCompletionRequest, streams=True))
    async def chat_completions(request: Request) -> Response:
        return await proxy(request, "chat")

    @app.post("/v1/completions", **openapi.route(openapi.CompletionRequest, streams=True))
    async def completions(request: Request) -> Response:
        return await proxy(request, "completions")

    @app.post("/v1/embeddings", **openapi.route(openapi.EmbeddingRequest))
    async def embeddings(request: Request) -> Response:
        return await proxy(request, "embeddings")

    # -- admin routes for the CLI ---------------------------------------------------------

    async def admin_payload(request: Request) -> dict[str, Any]:
        authorize_admin(request)
        return parse_json(await read_body(request, 1024 * 1024, read_timeout))

    @app.get("/api/ps", **openapi.route(admin=True))
    async def ps(request: Request) -> dict[str, Any]:
        authorize_admin(request)
        return {"deployments": supervisor.snapshot()}

    @app.post("/api/models", **openapi.route(openapi.RegisterModelRequest, admin=True))
    async def register(request: Request) -> dict[str, Any]:
        payload = await admin_payload(request)
        name = _check_name(payload.get("name"), "name", "the model's name in the API")
        path = _check_name(payload.get("path"), "path", "a GGUF file or a model directory")
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
        spec = ModelSpec(
            name=name,
            path=Path(path),
            runtime=runtime,
            engine=engine,
            configuration=configuration,
            embedding=embedding,
        )
        try:
            await asyncio.to_thread(supervisor.catalog.register, spec)  # walks folders
        except (FileNotFoundError, ValueError) as exc:
            raise invalid(str(exc), "path") from None
        return model_entry(spec)

    @app.post("/api/load", **openapi.route(openapi.LoadRequest, admin=True))
    async def load(request: Request) -> dict[str, Any]:
        payload = await admin_payload(request)
        name = _check_name(payload.get("model"), "model", "the name of a model to load")
        dep = await supervisor.acquire(name, wait=prefer_wait(request))
        supervisor.release(dep)
        return dep.snapshot()

    @app.post("/api/stop", **openapi.route(openapi.StopRequest, admin=True))
    async def stop(request: Request) -> dict[str, Any]:
        payload = await admin_payload(request)
        if payload.get("all"):
            return {"stopped": await supervisor.stop_all()}
        name = _check_name(payload.get("model"), "model", "a model's name (or all: true)")
        return {"stopped": [name] if await supervisor.stop(name) else []}

    def published_schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                openapi.components()
            )
            schema["components"]["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}
            }
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = published_schema  # type: ignore[method-assign]
    return app


def engine_error(status: int, content: bytes, model: str = "") -> APIError:
    """An engine's error answer in OpenAI's shape (engines disagree on theirs).

    A client never sees an engine's traceback: its last line stays in the message, the whole
    answer goes to the gateway's log under an error id the message names. An engine that
    answers 500 and lives on failed on this request (the gateway checked what it could), so
    the client gets a 400 its SDK will not retry; 501 and 503 keep their meaning, and any
    other 5xx is a 502.
    """
    raw = content.decode("utf-8", errors="replace")
    message = raw[:2000]
    code = None
    try:
        data = json.loads(content)
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            code = err.get("code") if isinstance(err.get("code"), str) else None
        elif isinstance(err, str):
            message = err
        elif "detail" in data:  # FastAPI validation errors (llama-cpp-python)
            message = f"the engine rejected the request: {data['detail']}"
    if "Traceback (most recent call last)" in message or status >= 500:
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        error_id = uuid.uuid4().hex[:12]
        log.warning("engine error %s from %s (HTTP %s): %s", error_id, model, status, raw[:20000])
        last = lines[-1][:300] if lines else "no message"
        message = f"the engine failed on this request: {last} (error {error_id} in the gateway log)"
    # A 422 from a FastAPI engine is a bad request to an OpenAI client.
    if status in (422, 500):
        status = 400
    elif status > 500 and status not in (501, 503):
        status = 502
    return APIError(status, message, code=code or "engine_error")
