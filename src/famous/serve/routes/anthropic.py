"""Anthropic's Messages API: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

Each request is translated onto an OpenAI chat body (``famous.serve.protocols.anthropic``)
and answered by the gateway's one path (``famous.serve.routes.openai.answer``); the engine's
stream is translated as it arrives. ``x-api-key`` carries the API key as well as
``Authorization: Bearer``; ``anthropic-version`` is accepted and not required; every error
is answered in Anthropic's shape (the app's handlers see the path:
``famous.serve.protocols.anthropic.shaped``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from famous.serve import openapi, sse
from famous.serve.context import context
from famous.serve.errors import APIError
from famous.serve.protocols import anthropic
from famous.serve.request_checks import parse_json, read_body, shutting_down
from famous.serve.routes.openai import answer

router = APIRouter()
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def _payload(request: Request) -> dict[str, Any]:
    gateway = context(request)
    gateway.authorize(request, x_api_key=True)
    if gateway.draining:
        raise shutting_down(answer_began=False)
    return parse_json(await read_body(request, gateway.max_request_bytes, gateway.read_timeout))


@router.post(
    "/v1/messages/count_tokens", **openapi.route(openapi.CountTokensRequest, anthropic=True)
)
async def count_tokens(request: Request) -> Response:
    """``{input_tokens}``: the engine's own count of the request's prompt."""
    ask = anthropic.to_openai(await _payload(request), count=True)
    return JSONResponse({"input_tokens": await _prompt_tokens(request, ask.body)})


async def _prompt_tokens(request: Request, body: dict[str, Any]) -> int:
    """The engine's count of ``body``'s prompt: ``usage.prompt_tokens`` of a one-token
    answer to it (the engine keeps the prompt's cache for the answer that follows)."""
    counting = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    counting = anthropic.counting_request({**counting, "max_tokens": 1})
    resp = await answer(request, "chat", counting)
    content = await _body(resp)
    if resp.status_code >= 400:
        raise anthropic.openai_error(resp.status_code, content)
    try:
        count = json.loads(content)["usage"]["prompt_tokens"]
    except (ValueError, KeyError, TypeError):
        count = None
    if not isinstance(count, int):
        raise APIError(502, "the engine did not count the prompt's tokens")
    return count


@router.post("/v1/messages", **openapi.route(openapi.MessagesRequest, streams=True, anthropic=True))
async def messages(request: Request) -> Response:
    """Anthropic's Messages API (stream or not)."""
    ask = anthropic.to_openai(await _payload(request))
    known = await _prompt_tokens(request, ask.body) if ask.stream else None
    resp = await answer(request, "chat", ask.body)
    if resp.status_code >= 400:
        raise anthropic.openai_error(resp.status_code, await _body(resp))
    translator = anthropic.Translator(ask.model, ask.stop_sequences, input_tokens=known)
    if ask.stream:
        events = _events(translator, resp)
        return StreamingResponse(events, media_type="text/event-stream", headers=_SSE_HEADERS)
    start = translator.start()[0]
    folded: list[dict[str, Any]] = []
    async with contextlib.aclosing(_translated(translator, resp)) as events:
        async for event in events:
            if event["type"] == "error":
                status = 503 if event["error"]["type"] == "overloaded_error" else 502
                raise APIError(status, event["error"]["message"])
            folded.append(event)
    if translator.input_tokens is None:  # a stop sequence ended it before the usage came
        translator.input_tokens = await _prompt_tokens(request, ask.body)
        folded[-2]["usage"]["input_tokens"] = translator.input_tokens
    return JSONResponse(anthropic.fold(start, folded))


async def _chunks(resp: Response) -> AsyncIterator[bytes]:
    if isinstance(resp, StreamingResponse):
        async with contextlib.aclosing(resp.body_iterator) as body:  # type: ignore[type-var]
            async for chunk in body:
                yield chunk if isinstance(chunk, bytes) else str(chunk).encode()
    else:  # the gateway's own answer (a tool call), whole
        yield bytes(resp.body)


async def _body(resp: Response) -> bytes:
    """The whole answer (read to its end, so that a stream releases its engine)."""
    async with contextlib.aclosing(_chunks(resp)) as chunks:
        return b"".join([chunk async for chunk in chunks])


async def _translated(
    translator: anthropic.Translator, resp: Response
) -> AsyncIterator[dict[str, Any]]:
    """The OpenAI answer's chunks as Anthropic events, translated as each arrives; the
    engine's answer is closed once a stop sequence ended the message. Events from
    ``start`` on are the caller's; an engine that broke off ends with an ``error``."""
    reader = sse.EventReader()
    async with contextlib.aclosing(_chunks(resp)) as pieces:
        async for piece in pieces:
            for parsed in sse.chunks(reader, piece):
                if parsed is None:  # [DONE]
                    break
                failed = anthropic.stream_error(parsed)
                if failed is not None:
                    yield failed
                    return
                for event in translator.feed(parsed):
                    yield event
                if translator.done:
                    break
            if translator.done:
                break
    for event in translator.finish():
        yield event


async def _events(translator: anthropic.Translator, resp: Response) -> AsyncIterator[bytes]:
    for event in translator.start():
        yield anthropic.sse(event)
    async with contextlib.aclosing(_translated(translator, resp)) as events:
        async for event in events:
            yield anthropic.sse(event)
