"""The OpenAI API: models, chat completions, completions, embeddings, and rerank.

A request's ``model`` picks the deployment; the body is checked (``request_checks``), cut
down to what engines understand (``fields``) and sent to the engine, whose answer is relayed
as its bytes arrive, server-sent events included (a token stream is never re-encoded).
Rerank (Cohere's and Jina's API, which OpenAI has none of) and forced tool calls are the
exceptions: the gateway reads the engine's answer and writes its own.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from famous.runtimes.base import EngineProcess
from famous.serve import images, openapi, relay, rerank, stream_usage, tool_calls
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
    "rerank": "/v1/rerank",
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


@router.post("/v1/rerank", **openapi.route(openapi.RerankRequest))
async def rerank_documents(request: Request) -> Response:
    """Cohere's and Jina's rerank: the documents by relevance to the query."""
    return await proxy(request, "rerank")


async def proxy(request: Request, kind: str) -> Response:
    """An OpenAI route: the body read, checked and answered (``answer``)."""
    gateway = context(request)
    gateway.authorize(request)
    if gateway.draining:
        raise shutting_down(answer_began=False)
    payload = parse_json(await read_body(request, gateway.max_request_bytes, gateway.read_timeout))
    return await answer(request, kind, payload)


async def answer(request: Request, kind: str, payload: dict[str, Any]) -> Response:
    """The gateway's one way to answer an OpenAI request body of ``kind`` (chat,
    completions, embeddings, rerank): checked, scheduled, normalised and relayed. A JSON
    ``Response``, or for a stream a ``StreamingResponse`` of OpenAI's server-sent events.
    Other protocols (``famous.serve.protocols``) translate onto it; the caller has
    authorized the request. Raises ``APIError`` for what OpenAI answers with an error."""
    gateway = context(request)
    name = validate(kind, payload)
    checked = forwarded(kind, payload)
    plan = tool_calls.tool_plan(checked) if kind == "chat" else None
    scheduler = gateway.scheduler
    for attempt in (1, 2):
        dep = await scheduler.acquire(name, wait=prefer_wait(request))
        try:
            refuse_unsupported(dep, kind, checked)
            assert dep.process is not None
            if kind == "chat" and images.has_remote(checked):  # once: a retry reuses them
                checked = await images.inline_remote(checked, gateway.fetch_private_images)
            wanted = checked
            if plan is not None and plan.applies(dep.process.features):
                if plan.choice != "none":
                    return await gateway_tool_call(gateway, dep, plan, checked)
                wanted = tool_calls.without_tools(checked)
            if kind == "rerank":
                return await reranked(gateway, dep, checked, payload)
            engine_body = dep.process.adapt_request(kind, wanted)
            counted = None
            if stream_usage.wants_usage(engine_body):
                counted = stream_usage.prompt_request(engine_body)
            body = json.dumps(engine_body).encode()
            return await forward(gateway, dep, _ENGINE_PATHS[kind], body, request, counted)
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


def refuse_unsupported(dep: Deployment, kind: str, body: dict[str, Any]) -> None:
    """What the model's engine would fail on or get silently wrong in ``body`` (the
    checked request) is refused, naming it."""
    proc = dep.process
    limits = proc.unsupported if proc is not None else {}
    if not limits or proc is None:
        return
    if kind in limits:
        raise invalid(f"{proc.server} (the engine of {dep.name!r}) cannot {limits[kind]}", "model")
    if "images" in limits and kind == "chat" and images.has_images(body):
        what = f"{proc.server} (the engine of {dep.name!r}) cannot {limits['images']}"
        raise invalid(what, "messages")
    if "n" in limits and (body.get("n") or 1) > 1:
        raise invalid(f"{proc.server} (the engine of {dep.name!r}) cannot {limits['n']}", "n")


async def forward(
    gateway: GatewayContext,
    dep: Deployment,
    path: str,
    body: bytes,
    request: Request,
    counted: dict[str, Any] | None = None,
) -> Response:
    """Send the checked body to the engine; relay its answer (released when done).
    ``counted``: the engine sends no usage chunk, so the gateway adds one, asking for the
    prompt's count with this request (``famous.serve.stream_usage``)."""
    proc = dep.process
    assert proc is not None
    headers = {"Content-Type": "application/json", "Accept": request.headers.get("accept", "*/*")}
    resp = await relay.post(proc.host, proc.port, proc.path_prefix + path, body, headers)  # retry
    if resp.content_type.startswith("text/event-stream"):
        events = (
            _relay_stream(gateway, dep, resp)
            if counted is None
            else _relay_counted(gateway, dep, resp, path, counted)
        )
        return StreamingResponse(
            events,
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


async def _engine_json(
    gateway: GatewayContext, dep: Deployment, kind: str, body: dict[str, Any]
) -> dict[str, Any] | Response:
    """The engine's whole JSON answer to ``body``, or the error to answer (the deployment
    is released once the answer is read: from then on, answer, do not raise)."""
    proc = dep.process
    assert proc is not None
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    path = proc.path_prefix + _ENGINE_PATHS[kind]
    resp = await relay.post(proc.host, proc.port, path, json.dumps(body).encode(), headers)
    # RelayError: retry
    content = await _read_answer(gateway, dep, resp)
    if resp.status >= 400:
        return engine_error(resp.status, content, dep.name).response()
    try:
        answer = json.loads(content)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return APIError(502, "the engine answered something that is not a JSON object").response()
    return answer


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
    answer = await _engine_json(gateway, dep, "chat", request)
    if isinstance(answer, Response):
        return answer
    try:
        text = plan.choice == "auto"
        if not body.get("stream"):
            return JSONResponse(tool_calls.completion(answer, text_allowed=text))
        options = body.get("stream_options")
        usage = isinstance(options, dict) and bool(options.get("include_usage"))
        events = tool_calls.stream_events(answer, include_usage=usage, text_allowed=text)
    except APIError as exc:
        return exc.response()
    return Response(events, media_type="text/event-stream", headers={"cache-control": "no-cache"})


async def _relay_counted(
    gateway: GatewayContext,
    dep: Deployment,
    resp: relay.UpstreamResponse,
    path: str,
    counted: dict[str, Any],
) -> AsyncIterator[bytes]:
    """The stream with OpenAI's usage chunk added before ``[DONE]``."""
    counter = stream_usage.UsageCounter()
    proc = dep.process
    assert proc is not None
    try:
        async with contextlib.aclosing(_relay_stream(gateway, dep, resp, release=False)) as events:
            async for chunk in events:
                passed = counter.feed(chunk)
                if passed:
                    yield passed
        if counter.finished:  # else it broke off, and the error event has been sent
            prompt = None if counter.engine_usage else await _prompt_tokens(proc, path, counted)
            yield counter.closing(prompt)
    finally:
        gateway.scheduler.release(dep)


async def _prompt_tokens(proc: EngineProcess, path: str, counted: dict[str, Any]) -> int | None:
    """The engine's count of the prompt, from a one-token answer to the same request."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    try:
        url = proc.path_prefix + path
        asked = await relay.post(proc.host, proc.port, url, json.dumps(counted).encode(), headers)
        try:
            return stream_usage.prompt_tokens(await asked.read())
        finally:
            asked.close()
    except relay.RelayError:
        return None


async def reranked(
    gateway: GatewayContext, dep: Deployment, body: dict[str, Any], payload: dict[str, Any]
) -> Response:
    """The engine scores every document of ``body``; the gateway sorts them and applies
    the request's ``top_n`` and ``return_documents`` (``famous.serve.rerank``)."""
    assert dep.process is not None
    answer = await _engine_json(gateway, dep, "rerank", dep.process.adapt_request("rerank", body))
    if isinstance(answer, Response):
        return answer
    try:
        result = rerank.answer(
            dep.name,
            answer,
            body["documents"],
            top_n=payload.get("top_n"),
            return_documents=bool(payload.get("return_documents")),
        )
    except ValueError as exc:
        message = f"the engine's rerank answer cannot be read: {exc}"
        return APIError(502, message, code="engine_error").response()
    return JSONResponse(result)


async def _relay_stream(
    gateway: GatewayContext, dep: Deployment, resp: relay.UpstreamResponse, release: bool = True
) -> AsyncIterator[bytes]:
    """The engine's events as they arrive; a broken engine or a shutdown ends the stream
    with an error event the client can read. The deployment is released at the end unless
    the caller still needs it (``release=False``)."""
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
        if release:
            gateway.scheduler.release(dep)
