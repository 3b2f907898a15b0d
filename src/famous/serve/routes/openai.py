"""The OpenAI API: models, chat completions, completions, embeddings.

A request's ``model`` picks the deployment; the body is checked (``request_checks``), cut
down to what engines understand (``fields``) and sent to the engine, whose answer is relayed
as its bytes arrive, server-sent events included (a token stream is never re-encoded).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from famous.serve import openapi, relay, tool_calls
from famous.serve.context import GatewayContext, context
from famous.serve.errors import APIError, engine_error, invalid
from famous.serve.fields import forwarded
from famous.serve.models import ModelSpec
from famous.serve.request_checks import (
    parse_json,
    prefer_wait,
    read_body,
    shutting_down,
    validate,
)
from famous.serve.scheduler import Deployment

router = APIRouter()

_ENGINE_PATHS = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
}


def model_entry(gateway: GatewayContext, spec: ModelSpec) -> dict[str, Any]:
    dep = gateway.scheduler.deployments.get(spec.name)
    entry = spec.describe()
    entry["created"] = int(gateway.started)
    entry["status"] = dep.state if dep else "stopped"
    return entry


@router.get("/v1/models", **openapi.route())
async def list_models(request: Request) -> dict[str, Any]:
    gateway = context(request)
    gateway.authorize(request)
    specs = gateway.scheduler.models.all()
    return {"object": "list", "data": [model_entry(gateway, s) for s in specs]}


@router.get("/v1/models/{model_id:path}", **openapi.route())
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    gateway = context(request)
    gateway.authorize(request)
    return model_entry(gateway, gateway.scheduler.spec_for(model_id))


@router.post("/v1/chat/completions", **openapi.route(openapi.ChatCompletionRequest, streams=True))
async def chat_completions(request: Request) -> Response:
    return await proxy(request, "chat")


@router.post("/v1/completions", **openapi.route(openapi.CompletionRequest, streams=True))
async def completions(request: Request) -> Response:
    return await proxy(request, "completions")


@router.post("/v1/embeddings", **openapi.route(openapi.EmbeddingRequest))
async def embeddings(request: Request) -> Response:
    return await proxy(request, "embeddings")


async def proxy(request: Request, kind: str) -> Response:
    gateway = context(request)
    gateway.authorize(request)
    if gateway.draining:
        raise shutting_down(answer_began=False)
    payload = parse_json(await read_body(request, gateway.max_request_bytes, gateway.read_timeout))
    name = validate(kind, payload)
    checked = forwarded(kind, payload)
    plan = tool_calls.tool_plan(checked) if kind == "chat" else None
    scheduler = gateway.scheduler
    for attempt in (1, 2):
        dep = await scheduler.acquire(name, wait=prefer_wait(request))
        try:
            refuse_unsupported(dep, kind, payload)
            assert dep.process is not None
            wanted = checked
            if plan is not None and plan.applies(dep.process.features):
                if plan.choice != "none":
                    return await gateway_tool_call(gateway, dep, plan, checked)
                wanted = tool_calls.without_tools(checked)
            body = json.dumps(dep.process.adapt_request(kind, wanted)).encode()
            return await forward(gateway, dep, _ENGINE_PATHS[kind], body, request)
        except relay.RelayError:
            # no answer began: when the engine is dead (another request may have crashed
            # it a moment ago), the next acquire restarts it and this request runs once
            # more; a request that kills the engine itself fails on its second try
            scheduler.release(dep)
            message = await scheduler.engine_dropped(dep)
            if attempt == 2 or dep.state != "failed":
                raise APIError(502, message, code="engine_failed") from None
        except BaseException:
            scheduler.release(dep)
            raise
    raise AssertionError("unreachable")


def refuse_unsupported(dep: Deployment, kind: str, payload: dict[str, Any]) -> None:
    """What the model's engine would fail on or get silently wrong is refused, naming it."""
    proc = dep.process
    limits = proc.unsupported if proc is not None else {}
    if not limits or proc is None:
        return
    if kind in limits:
        raise invalid(f"{proc.server} (the engine of {dep.name!r}) cannot {limits[kind]}", "model")
    if "n" in limits and (payload.get("n") or 1) > 1:
        raise invalid(f"{proc.server} (the engine of {dep.name!r}) cannot {limits['n']}", "n")


async def forward(
    gateway: GatewayContext, dep: Deployment, path: str, body: bytes, request: Request
) -> Response:
    """Send the checked body to the engine; relay its answer (released when done)."""
    proc = dep.process
    assert proc is not None
    headers = {"Content-Type": "application/json", "Accept": request.headers.get("accept", "*/*")}
    resp = await relay.post(proc.host, proc.port, path, body, headers)  # RelayError: retry
    if resp.content_type.startswith("text/event-stream"):
        return StreamingResponse(
            _relay_stream(gateway, dep, resp),
            status_code=resp.status,
            headers={
                "content-type": resp.content_type,
                "cache-control": "no-cache",
                "x-accel-buffering": "no",
            },
        )
    content = await _read_answer(gateway, dep, resp)
    if resp.status >= 400:
        return engine_error(resp.status, content, dep.name).response()
    return Response(content, status_code=resp.status, media_type=resp.content_type)


async def _read_answer(
    gateway: GatewayContext, dep: Deployment, resp: relay.UpstreamResponse
) -> bytes:
    """A whole (not streamed) engine answer; the deployment is released once it is read."""
    gateway.open_streams.add(resp)
    try:
        content = await resp.read()
    except relay.RelayError:
        if resp.aborted:
            raise shutting_down() from None
        raise APIError(502, gateway.scheduler.engine_broke(dep), code="engine_failed") from None
    finally:
        gateway.open_streams.discard(resp)
        resp.close()
    gateway.scheduler.release(dep)
    return content


async def gateway_tool_call(
    gateway: GatewayContext, dep: Deployment, plan: tool_calls.ToolPlan, body: dict[str, Any]
) -> Response:
    """The gateway handles the tools: the engine answers under the plan's JSON schema (a
    call, or under ``auto`` a call or a text) and the gateway answers in OpenAI's format
    (``famous.serve.tool_calls``)."""
    if (body.get("n") or 1) > 1:
        raise invalid("an answer that may call tools answers one choice: send n=1", "n")
    proc = dep.process
    assert proc is not None
    request = proc.adapt_request("chat", tool_calls.engine_request(plan, body))
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    resp = await relay.post(
        proc.host, proc.port, _ENGINE_PATHS["chat"], json.dumps(request).encode(), headers
    )  # RelayError: retry
    content = await _read_answer(gateway, dep, resp)  # released: answer, do not raise
    if resp.status >= 400:
        return engine_error(resp.status, content, dep.name).response()
    try:
        answer = json.loads(content)
        if not isinstance(answer, dict):
            raise ValueError("not an object")
        text = plan.choice == "auto"
        if not body.get("stream"):
            return JSONResponse(tool_calls.completion(answer, text_allowed=text))
        options = body.get("stream_options")
        usage = isinstance(options, dict) and bool(options.get("include_usage"))
        events = tool_calls.stream_events(answer, include_usage=usage, text_allowed=text)
    except APIError as exc:
        return exc.response()
    except ValueError:
        return APIError(502, "the engine answered something that is not JSON").response()
    return Response(events, media_type="text/event-stream", headers={"cache-control": "no-cache"})


async def _relay_stream(
    gateway: GatewayContext, dep: Deployment, resp: relay.UpstreamResponse
) -> AsyncIterator[bytes]:
    """The engine's events as they arrive; a broken engine or a shutdown ends the stream
    with an error event the client can read."""
    gateway.open_streams.add(resp)
    try:
        async for chunk in resp.chunks():
            yield chunk
    except relay.RelayError:
        if resp.aborted:
            yield shutting_down().sse_event() + b"data: [DONE]\n\n"
        else:
            message = gateway.scheduler.engine_broke(dep) + "; the answer is incomplete"
            yield APIError(502, message, code="engine_failed").sse_event()
    finally:
        gateway.open_streams.discard(resp)
        resp.close()
        gateway.scheduler.release(dep)
