"""What the gateway checks before a request reaches an engine: the body's size and arrival
(413, 408), that it is a JSON object, and the fields it must understand to route a request
and to refuse nonsense early. Unknown fields pass here; ``famous.serve.fields`` decides which
reach the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request

from famous.serve.errors import APIError, invalid
from famous.serve.fields import OPENAI_RANGES, check_ranges
from famous.serve.schema_limits import check_request_schemas

DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024
# seconds a client may take to send a request's head, or pause while sending its body
DEFAULT_READ_TIMEOUT = 15.0
# documents one rerank request may rank (each is one engine task)
MAX_RERANK_DOCUMENTS = 1000
# A body over the limit is still read (and dropped) up to this size, so the client gets
# its 413 instead of a reset connection while it is still sending.
_DRAIN_CAP = 64 * 1024 * 1024
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


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


async def read_body(
    request: Request, limit: int, idle_timeout: float = DEFAULT_READ_TIMEOUT
) -> bytes:
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


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} is too large for a float")
    return value


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def parse_json(body: bytes) -> dict[str, Any]:
    """The body as a JSON object: strict JSON (no NaN / Infinity, no float overflowing to
    infinity, whatever field it is in), with a 400 saying what is wrong."""
    if not body.strip():
        raise invalid("the request body is empty; send a JSON object", code="invalid_json")
    try:
        payload = json.loads(body, parse_float=_finite, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise invalid("the request body nests JSON too deeply", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise invalid(
            f"the request body must be a JSON object, not {type(payload).__name__}",
            code="invalid_json",
        )
    if _deeper_than(payload, MAX_JSON_DEPTH):
        raise invalid(
            f"the request body nests JSON deeper than {MAX_JSON_DEPTH} levels", code="invalid_json"
        )
    return payload


MAX_JSON_DEPTH = 256  # far beyond any API body; the parser's recursion limit is no bound


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = (
            node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        )
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_name(value: Any, field: str, what: str) -> str:
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


def _check_chat(payload: dict[str, Any]) -> None:
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages must be a non-empty list of {role, content} objects", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise invalid(f"messages[{i}] must be an object with a string role", "messages")


def _check_completion(payload: dict[str, Any]) -> None:
    prompt = payload.get("prompt")
    if prompt is None or not isinstance(prompt, str | list):
        raise invalid("prompt is required: a string or a list of strings or tokens", "prompt")


def _check_embedding(payload: dict[str, Any]) -> None:
    value = payload.get("input")
    if value is None or not isinstance(value, str | list) or value == []:
        raise invalid("input is required: a string or a non-empty list of strings", "input")


def _check_rerank(payload: dict[str, Any]) -> None:
    query = payload.get("query")
    if not isinstance(query, str) or not query:
        raise invalid("query is required: the text to rank the documents against", "query")
    documents = payload.get("documents")
    if not isinstance(documents, list) or not 1 <= len(documents) <= MAX_RERANK_DOCUMENTS:
        raise invalid(f"documents must be a list of 1 to {MAX_RERANK_DOCUMENTS} texts", "documents")
    for i, document in enumerate(documents):
        text = document.get("text") if isinstance(document, dict) else document
        if not isinstance(text, str):
            raise invalid(f"documents[{i}] must be a string or an object with a text", "documents")
    top_n = payload.get("top_n")
    if top_n is not None and (not _is_int(top_n) or top_n < 1):
        raise invalid(f"top_n must be an integer >= 1, got {top_n!r}", "top_n")
    wanted = payload.get("return_documents")
    if wanted is not None and not isinstance(wanted, bool):
        raise invalid(f"return_documents must be true or false, got {wanted!r}", "return_documents")


_CHECK_KIND = {
    "chat": _check_chat,
    "completions": _check_completion,
    "embeddings": _check_embedding,
    "rerank": _check_rerank,
}


def _check_counts(payload: dict[str, Any], minimum_tokens: int) -> None:
    for key in ("max_tokens", "max_completion_tokens"):
        value = payload.get(key)
        if value is not None and (not _is_int(value) or value < minimum_tokens):
            raise invalid(f"{key} must be an integer >= {minimum_tokens}, got {value!r}", key)
    n = payload.get("n")
    if n is not None and (not _is_int(n) or not 1 <= n <= 128):
        raise invalid(f"n must be an integer between 1 and 128, got {n!r}", "n")


def _check_flags(payload: dict[str, Any]) -> None:
    if "stream" in payload and not isinstance(payload["stream"], bool | None):
        raise invalid(f"stream must be true or false, got {payload['stream']!r}", "stream")
    seed = payload.get("seed")
    if seed is not None and not _is_int(seed):
        raise invalid(f"seed must be an integer, got {seed!r}", "seed")
    stop = payload.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise invalid("stop must be a string or a list of strings", "stop")


def validate(kind: str, payload: dict[str, Any]) -> str:
    """Reject what no engine should see; returns the model name. Unknown fields pass through."""
    model = check_name(payload.get("model"), "model", "the name of a model from GET /v1/models")
    _CHECK_KIND[kind](payload)
    if kind == "rerank":  # no tokens to count, nothing sampled: its checks are all above
        return model
    _check_counts(payload, minimum_tokens=0 if kind == "completions" else 1)
    check_ranges(payload, OPENAI_RANGES)
    _check_flags(payload)
    check_request_schemas(payload)
    return model


def prefer_wait(request: Request) -> float | None:
    """RFC 7240 ``Prefer: wait=N``: how long the caller will wait for a model to load."""
    header = request.headers.get("prefer")
    if not header:
        return None
    match = _PREFER_WAIT.search(header)
    return float(match.group(1)) if match else None


def shutting_down(answer_began: bool = True) -> APIError:
    """503 while the gateway drains: for a new request (SDKs retry it, on a fresh
    connection), or for an answer it had to cut short."""
    if not answer_began:
        return APIError(
            503,
            "the gateway is shutting down",
            code="shutting_down",
            headers={"connection": "close", "retry-after": "5"},
        )
    return APIError(
        503,
        "the gateway is shutting down; this answer is incomplete (send the request again once "
        "famous serve is back)",
        code="shutting_down",
    )
