"""OpenAI's Responses API: ``POST /v1/responses`` answered through the chat route
(``famous.serve.routes.openai.answer``), translated by ``famous.serve.protocols.responses``;
``GET`` and ``DELETE /v1/responses/{id}`` and ``GET /v1/responses/{id}/input_items`` on the
stored ones (``famous.store.responses``).

A stream is translated chunk by chunk as the engine sends it; the answer is stored (unless
``store: false``) once it is whole, so a broken stream stores nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from famous.serve import openapi, sse
from famous.serve.context import context
from famous.serve.errors import APIError
from famous.serve.protocols import responses as protocol
from famous.serve.request_checks import parse_json, read_body, shutting_down
from famous.serve.routes.openai import answer
from famous.store.responses import ResponseStore

router = APIRouter()
log = logging.getLogger("famous.serve")


def _store(request: Request) -> ResponseStore:
    """The gateway's store of responses, opened on first use (under FAMOUS_HOME)."""
    state = request.app.state
    if getattr(state, "responses", None) is None:
        state.responses = ResponseStore()
    return state.responses


def _keep(store: ResponseStore, result: dict[str, Any], conversation: list[Any]) -> None:
    """Store an answer; a store that cannot be written (disk full) costs the client its
    follow-ups, not the answer it is waiting for."""
    try:
        store.put(result, conversation)
    except sqlite3.Error as exc:
        log.warning("response %s not stored in %s: %s", result["id"], store.path, exc)


def _not_found(response_id: str, param: str | None = None) -> APIError:
    code = "previous_response_not_found" if param else "not_found"
    what = "previous response" if param else "response"
    message = f"no {what} with id {response_id!r} (never stored, deleted or expired)"
    return APIError(404, message, code=code, param=param)


@router.post("/v1/responses", **openapi.route(openapi.ResponsesRequest, streams=True))
async def create_response(request: Request) -> Response:
    """A model response to the input (and the stored conversation it continues)."""
    gateway = context(request)
    gateway.authorize(request)
    if gateway.draining:
        raise shutting_down(answer_began=False)
    payload = parse_json(await read_body(request, gateway.max_request_bytes, gateway.read_timeout))
    turn = protocol.parse(payload)
    store = _store(request)
    history: list[dict[str, Any]] = []
    if turn.previous_response_id is not None:
        found = store.get(turn.previous_response_id)
        if found is None:
            raise _not_found(turn.previous_response_id, "previous_response_id")
        history = found[1]
    body = protocol.chat_body(turn, history)
    try:
        chat = await answer(request, "chat", body)
    except APIError as exc:
        raise protocol.renamed(exc) from None
    if chat.status_code >= 400:
        return _renamed_answer(chat)
    if not turn.stream:
        result = protocol.answered(turn, _json(chat))
        if turn.store:
            _keep(store, result, protocol.conversation(history, turn, result))
        return JSONResponse(result)
    events = _translated(protocol.ResponseStream(turn), _chunks(chat), store, history)
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


def _json(chat: Response) -> dict[str, Any]:
    try:
        completion = json.loads(bytes(chat.body))
    except (AttributeError, ValueError):
        completion = None
    if not isinstance(completion, dict):
        raise APIError(502, "the engine's chat answer is not a JSON object", code="engine_error")
    return completion


def _renamed_answer(chat: Response) -> Response:
    """An error answer of the chat route, its field named as the client sent it."""
    if isinstance(chat, StreamingResponse):
        return chat
    try:
        error = json.loads(bytes(chat.body))["error"]
    except (ValueError, KeyError, TypeError):
        return chat
    renamed = protocol.renamed(
        APIError(
            chat.status_code,
            str(error.get("message")),
            code=error.get("code"),
            param=error.get("param"),
        )
    )
    return renamed.response()


async def _chunks(chat: Response) -> AsyncIterator[bytes]:
    """The chat answer's bytes as they come (a gateway-made stream is one body)."""
    if not isinstance(chat, StreamingResponse):
        yield bytes(chat.body)
        return
    iterator = chat.body_iterator
    try:
        async for chunk in iterator:
            yield chunk if isinstance(chunk, bytes) else str(chunk).encode()
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()  # the deployment is released even when the client left


async def _translated(
    stream: protocol.ResponseStream,
    chunks: AsyncIterator[bytes],
    store: ResponseStore,
    history: list[dict[str, Any]],
) -> AsyncIterator[bytes]:
    yield stream.opening()
    reader = sse.EventReader()
    async with contextlib.aclosing(chunks):
        async for piece in chunks:
            for chunk in sse.chunks(reader, piece):
                events = stream.feed(chunk)
                if events:
                    yield events
            if stream.broken:
                return
    closing = stream.closing()
    if stream.turn.store and stream.final is not None:  # before the last event: a client
        # that has it may continue from it at once
        _keep(store, stream.final, protocol.conversation(history, stream.turn, stream.final))
    yield closing


@router.get("/v1/responses/{response_id}", **openapi.route())
async def get_response(response_id: str, request: Request) -> dict[str, Any]:
    """A stored response."""
    context(request).authorize(request)
    found = _store(request).get(response_id)
    if found is None:
        raise _not_found(response_id)
    return found[0]


@router.get("/v1/responses/{response_id}/input_items", **openapi.route(query=openapi.ITEM_PAGE))
async def list_input_items(response_id: str, request: Request) -> dict[str, Any]:
    """The items a stored response was given (earlier turns and its input), a page at a
    time, as OpenAI's ``client.responses.input_items.list`` reads them."""
    context(request).authorize(request)
    found = _store(request).get(response_id)
    if found is None:
        raise _not_found(response_id)
    return protocol.input_items(found[0], found[1], request.query_params)


@router.delete("/v1/responses/{response_id}", **openapi.route())
async def delete_response(response_id: str, request: Request) -> dict[str, Any]:
    """Forget a stored response (a follow-up can no longer continue it)."""
    context(request).authorize(request)
    if not _store(request).delete(response_id):
        raise _not_found(response_id)
    return {"id": response_id, "object": "response.deleted", "deleted": True}
