"""Errors in OpenAI's format: ``{"error": {"message", "type", "param", "code"}}``.

Clients (the official SDKs included) read ``message``; scripts switch on ``code``. The body
never carries a traceback; the gateway's log does.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from typing import Any

from fastapi.responses import JSONResponse

from famous.errors import FamousError, http_status

log = logging.getLogger("famous.serve")

# HTTP status -> OpenAI error "type"
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "server_error",
    504: "server_error",
    507: "server_error",
}


class APIError(Exception):
    """An error the gateway answers with, in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        error = {
            "message": self.message,
            "type": _TYPES.get(self.status, "server_error" if self.status >= 500 else "error"),
            "param": self.param,
            "code": self.code,
            **self.extra,
        }
        return {"error": error}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)

    def sse_event(self) -> bytes:
        """The error as one server-sent event, for a stream that already began."""
        return b"data: " + json.dumps(self.body()).encode() + b"\n\n"


def invalid(message: str, param: str | None = None, code: str = "invalid_value") -> APIError:
    return APIError(400, message, code=code, param=param)


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
