"""The gateway→engine relay against hand-written HTTP answers (chunked, sized, cut short)."""

from __future__ import annotations

import asyncio

import pytest

from famous.serve import relay


async def _serve_once(answer: bytes) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.lower().split(b"\r\n")
        length = int(next(x for x in lines if x.startswith(b"content-length")).split(b":")[1])
        await reader.readexactly(length)
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _run(answer: bytes) -> tuple[int, str, list[bytes]]:
    async def go() -> tuple[int, str, list[bytes]]:
        server, port = await _serve_once(answer)
        async with server:
            resp = await relay.post("127.0.0.1", port, "/v1/x", b'{"a": 1}', {"Accept": "*/*"})
            chunks = [c async for c in resp.chunks()]
            return resp.status, resp.content_type, chunks

    return asyncio.run(go())


def test_chunked_events_pass_through_untouched() -> None:
    events = [b'data: {"x": 1}\n\n', b'data: {"x": 2}\n\n', b"data: [DONE]\n\n"]
    body = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    status, ctype, chunks = _run(head + body)
    assert status == 200
    assert ctype == "text/event-stream"
    assert chunks == events


def test_sized_body() -> None:
    head = (
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
    )
    status, _, chunks = _run(head + b'{"error":1}')
    assert status == 400
    assert b"".join(chunks) == b'{"error":1}'


def test_cut_short_is_an_error() -> None:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    with pytest.raises(relay.RelayError, match=r"mid-answer|broke"):
        _run(head + b"20\r\ndata: only part of it")


def test_engine_not_listening() -> None:
    async def go() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        await relay.post("127.0.0.1", port, "/v1/x", b"{}")

    with pytest.raises(relay.RelayError, match="cannot connect"):
        asyncio.run(go())
