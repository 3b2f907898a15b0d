"""The gateway's HTTP/1.1 connections: uvicorn's h11 protocol with the limits it lacks.

uvicorn waits forever for a request's headers (one byte a minute keeps a connection, so a
thousand slow clients hold a thousand sockets) and answers headers over its buffer with a
bare 400. Here a request's headers must arrive within ``read_timeout`` seconds of its first
byte (or of the connection opening): otherwise 408 and the connection closes; headers over
``max_header_bytes`` get 431. Both answers are OpenAI-shaped errors like every other.
The body's own timeout is the application's (``famous.serve.app.read_body``).
"""

from __future__ import annotations

import asyncio
import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from famous.serve.request_checks import DEFAULT_READ_TIMEOUT

MAX_HEADER_BYTES = 64 * 1024
# h11's own limit, which it answers with a bare 400, only past the point where ours has
# answered 431 (each read adds at most 256 KiB to the buffer)
H11_BUFFER_BYTES = 16 * MAX_HEADER_BYTES

_REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large"}


def error_answer(status: int, message: str, code: str) -> bytes:
    """A complete HTTP/1.1 answer that closes the connection (no request was parsed)."""
    body = json.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "param": None,
                   "code": code}}
    ).encode()  # fmt: skip
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class GatewayProtocol(H11Protocol):
    """One client connection; ``protocol_class`` sets the limits."""

    read_timeout: float = DEFAULT_READ_TIMEOUT
    max_header_bytes: int = MAX_HEADER_BYTES
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        self.conn.receive_data(data)
        self.handle_events()
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            self._disarm()
            return
        # still inside a request's head (the buffer may hold a body only once it is parsed)
        if len(self.conn.trailing_data[0]) > self.max_header_bytes:
            self._refuse(
                431,
                f"the request's headers exceed {self.max_header_bytes} bytes",
                "headers_too_large",
            )
        else:
            self._arm()  # it must be complete in time

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.read_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            return
        if not self.conn.trailing_data[0] and self.cycle is not None:
            return  # between requests of a keep-alive connection: uvicorn's own timer
        self._refuse(
            408,
            f"the request's headers did not arrive within {self.read_timeout:g} s",
            "request_timeout",
        )

    def _refuse(self, status: int, message: str, code: str) -> None:
        self._disarm()
        self.logger.info("closing a connection from %s: %s", self.client, message)
        self.transport.write(error_answer(status, message, code))
        self.transport.close()


def protocol_class(read_timeout: float, max_header_bytes: int = MAX_HEADER_BYTES) -> type:
    """``GatewayProtocol`` with these limits, for ``uvicorn.Config(http=...)``."""
    return type(
        "GatewayProtocol",
        (GatewayProtocol,),
        {"read_timeout": read_timeout, "max_header_bytes": max_header_bytes},
    )
