"""A lean HTTP/1.1 client for the hop from the gateway to an engine on 127.0.0.1.

Streaming is where the gateway's cost shows: every token is one server-sent event. Replacing
httpx (→ httpcore → h11) on this hop with this relay, which reads the engine's chunked body
straight off an asyncio stream and hands the payload bytes on untouched, cut the gateway's
CPU per streamed token from ~260 to ~150 µs in benchmarks/gateway_overhead.py.
It only talks to engines famous itself launched: one request per connection
(``Connection: close``), a body of known length, a chunked or sized or close-delimited answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

_READ_LIMIT = 1 << 20


class RelayError(ConnectionError):
    """The engine closed or broke the connection, or spoke HTTP this relay cannot parse."""


class UpstreamResponse:
    """Status and headers of the engine's answer; the body is read with ``chunks``/``read``."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        status: int,
        headers: dict[str, str],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.status = status
        self.headers = headers
        self.aborted = False

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "application/json")

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (de-chunked; otherwise unchanged)."""
        reader = self._reader
        try:
            if "chunked" in self.headers.get("transfer-encoding", "").lower():
                while True:
                    line = await reader.readline()
                    if not line.endswith(b"\n"):
                        raise RelayError("the engine closed the connection mid-answer")
                    size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        break
                    data = await reader.readexactly(size + 2)  # payload + CRLF
                    yield data[:-2]
            elif "content-length" in self.headers:
                remaining = int(self.headers["content-length"])
                while remaining > 0:
                    data = await reader.read(min(remaining, 65536))
                    if not data:
                        raise RelayError("the engine closed the connection mid-answer")
                    remaining -= len(data)
                    yield data
            else:
                while data := await reader.read(65536):
                    yield data
        except (OSError, ValueError, EOFError) as exc:  # IncompleteReadError is an EOFError
            raise RelayError(f"the engine connection broke: {exc}") from exc
        finally:
            self.close()
        if self.aborted:
            raise RelayError("the gateway ended this answer")

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    def close(self) -> None:
        self._writer.close()

    def abort(self) -> None:
        """End the answer now (the gateway is shutting down): ``chunks`` raises RelayError."""
        self.aborted = True
        self._writer.close()


async def post(
    host: str,
    port: int,
    path: str,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    connect_timeout: float = 10.0,
) -> UpstreamResponse:
    """Send one POST and read the status line and headers of the answer."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=_READ_LIMIT), connect_timeout
        )
    except (OSError, TimeoutError) as exc:
        raise RelayError(f"cannot connect to the engine at {host}:{port}: {exc}") from exc
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        status_line = await reader.readline()
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise RelayError(f"the engine answered something that is not HTTP: {status_line!r}")
        status = int(parts[1])
        response_headers: dict[str, str] = {}
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise RelayError("the engine closed the connection before its headers ended")
            name, _, value = line.decode("latin-1").partition(":")
            response_headers[name.strip().lower()] = value.strip()
    except (OSError, ValueError, EOFError) as exc:
        writer.close()
        raise RelayError(f"the engine connection broke: {exc}") from exc
    except BaseException:
        writer.close()
        raise
    return UpstreamResponse(reader, writer, status, response_headers)
