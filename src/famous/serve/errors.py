"""The gateway's answers to what went wrong elsewhere: famous's domain errors
(``from_domain``) and an engine's own error answers (``engine_error``), both in OpenAI's
shape (``famous.api_errors``)."""

from __future__ import annotations

import json
import logging
import math
import uuid

from famous.api_errors import APIError, invalid
from famous.errors import FamousError, http_status

__all__ = ["APIError", "engine_error", "from_domain", "invalid"]

log = logging.getLogger("famous.serve")


def from_domain(exc: FamousError) -> APIError:
    """The one mapping of famous's domain errors to answers: the kind gives the status
    (``famous.errors.http_status``); ``code``, ``param``, ``details`` and ``retry_after``
    attributes, where an error has them, fill in the rest."""
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return APIError(
        http_status(exc),
        str(exc),
        code=getattr(exc, "code", None),
        param=getattr(exc, "param", None),
        headers=headers,
        extra=getattr(exc, "details", None),
    )


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
