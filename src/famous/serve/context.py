"""What every route of one gateway shares: its scheduler, credentials, limits, open streams.

The app keeps one ``GatewayContext`` on ``app.state.gateway``; routes reach it through
``context(request)``. Credentials: inference routes need the API key only when the gateway
has one; admin routes need the API key or the install's admin token (the CLI sends it).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import dataclass, field

from fastapi import Request

from famous.serve import relay
from famous.serve.errors import APIError
from famous.serve.request_checks import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_READ_TIMEOUT
from famous.serve.scheduler import Scheduler
from famous.services.pulls import PullRegistry


def bearer(request: Request) -> bytes:
    header = request.headers.get("authorization", "")
    return (header[7:].strip() if header.lower().startswith("bearer ") else "").encode()


@dataclass
class GatewayContext:
    scheduler: Scheduler
    api_key: str | None = None
    admin_token: str | None = None
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    read_timeout: float = DEFAULT_READ_TIMEOUT
    started: float = field(default_factory=time.time)
    draining: bool = False
    #: image URLs may point at private addresses: true when the gateway listens on loopback
    #: only (``famous.serve.images``)
    fetch_private_images: bool = False
    open_streams: set[relay.UpstreamResponse] = field(default_factory=set)
    #: the console's background pulls (``/famous/api/pulls``)
    pulls: PullRegistry = field(default_factory=PullRegistry)

    def has_key(self, request: Request, x_api_key: bool = False) -> bool:
        """The request carries the API key (always true when the gateway has none): as a
        bearer token, or where ``x_api_key`` (Anthropic's clients) in ``x-api-key``."""
        if not self.api_key:
            return True
        key = self.api_key.encode()
        sent = request.headers.get("x-api-key", "").strip().encode() if x_api_key else b""
        return hmac.compare_digest(bearer(request), key) or (
            bool(sent) and hmac.compare_digest(sent, key)
        )

    def authorize(self, request: Request, x_api_key: bool = False) -> None:
        if not self.has_key(request, x_api_key):
            how = "'x-api-key: <key>' or " if x_api_key else ""
            raise APIError(
                401,
                f"a valid API key is required: send {how}'Authorization: Bearer <key>'",
                code="invalid_api_key",
            )

    def authorize_admin(self, request: Request) -> None:
        token = bearer(request)
        keys = [k for k in (self.api_key, self.admin_token) if k]
        if not any(hmac.compare_digest(token, k.encode()) for k in keys):
            raise APIError(
                401,
                "admin routes need a credential: 'Authorization: Bearer <API key or the "
                "admin token in FAMOUS_HOME/admin-token>' (the famous CLI sends it)",
                code="admin_credential_required",
            )

    def begin_drain(self, grace: float) -> None:
        """Shutting down: streams still open after ``grace`` seconds are ended (an error
        event, then [DONE]) so that their clients learn why, and the shutdown can go on."""
        self.draining = True

        def end_streams() -> None:
            for resp in list(self.open_streams):
                resp.abort()

        asyncio.get_running_loop().call_later(grace, end_streams)


def context(request: Request) -> GatewayContext:
    return request.app.state.gateway
