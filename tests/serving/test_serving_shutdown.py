"""The gateway under clients that stall, flood it with headers, or are cut off by a shutdown.

A real ``famous serve`` on a free port (llama.cpp's server behind it, the tiny GGUF): SIGTERM
in the middle of a stream ends the stream with an error event and ``[DONE]`` and removes the
gateway's state file; slow clients get 408 once the read timeout passes, without holding up
anyone else; headers over the limit get 431; a body that never comes gets 408 or 413.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
from pathlib import Path

import httpx
import openai
import pytest
from serving_harness import Gateway, start_gateway, stop_gateway

CHAT = [{"role": "user", "content": "Tell me a long story."}]
READ_TIMEOUT = 1.5


def _raw(gw: Gateway, data: bytes, wait: float = 10) -> bytes:
    """Send ``data`` on a fresh connection; everything the gateway answers until it closes."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=wait) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def _status_and_error(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)["error"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]):
    home = tmp_path_factory.mktemp("famous-home")
    gw = start_gateway(
        home,
        "--model",
        f"tiny={tiny_models['llama']}",
        "--read-timeout",
        str(READ_TIMEOUT),
        server="llama-server",
    )
    try:
        yield gw
    finally:
        stop_gateway(gw)


def test_headers_that_never_end_get_408_and_do_not_hold_up_others(gateway: Gateway) -> None:
    """Slowloris: 100 connections each trickle a request head one header at a time and never
    finish it. Every one is answered 408 and closed once the read timeout has passed, while
    /health keeps answering."""
    socks = []
    for _ in range(100):
        sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=30)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        socks.append(sock)
    try:
        started = time.monotonic()
        healthy = 0
        while time.monotonic() - started < READ_TIMEOUT / 2:
            for sock in socks[:10]:
                sock.sendall(b"X-Slow: 1\r\n")
            with httpx.Client(trust_env=False, timeout=5) as http:
                healthy += http.get(gateway.url + "/health").status_code == 200
        assert healthy >= 1
        for sock in socks:
            answer = b""
            while chunk := sock.recv(65536):  # the gateway closes it: recv returns b""
                answer += chunk
            status, error = _status_and_error(answer)
            assert status == 408 and error["code"] == "request_timeout"
    finally:
        for sock in socks:
            sock.close()


def test_a_connection_that_sends_nothing_is_closed(gateway: Gateway) -> None:
    status, error = _status_and_error(_raw(gateway, b""))
    assert status == 408 and "headers" in error["message"]


def test_huge_headers_get_431(gateway: Gateway) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        # it may answer and close before the megabyte is sent
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head)
        answer = sock.recv(65536)
    status, error = _status_and_error(answer)
    assert status == 431 and error["code"] == "headers_too_large"
    # headers near the limit are fine
    with httpx.Client(trust_env=False, timeout=10) as http:
        assert http.get(gateway.url + "/health", headers={"x-big": "a" * 30000}).status_code == 200


def test_a_body_that_stalls_gets_408(gateway: Gateway) -> None:
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"model":'
    )
    status, error = _status_and_error(_raw(gateway, head))
    assert status == 408 and "stalled" in error["message"]


def test_an_impossible_content_length_gets_413_at_once(gateway: Gateway) -> None:
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 99999999999999\r\n\r\n"
    )
    status, error = _status_and_error(_raw(gateway, head))
    assert status == 413 and error["code"] == "request_too_large"


def test_sigterm_mid_stream_ends_it_with_an_error_and_done(
    tmp_path: Path, tiny_models: dict[str, Path]
) -> None:
    home = tmp_path / "home"
    gw = start_gateway(
        home, "--model", f"tiny={tiny_models['llama']}", "--drain-timeout", "1",
        server="llama-server",
    )  # fmt: skip
    try:
        client = openai.OpenAI(base_url=gw.v1, api_key="none", max_retries=0)
        client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=1)
        engine = gw.pid_of("tiny")
        lines: list[bytes] = []
        body = {"model": "tiny", "messages": CHAT, "max_tokens": 100000, "stream": True}
        with (
            httpx.Client(trust_env=False, timeout=60) as http,
            http.stream("POST", gw.v1 + "/chat/completions", json=body) as resp,
        ):
            assert resp.status_code == 200
            for line in resp.iter_lines():
                lines.append(line.encode())
                if len(lines) == 4:  # tokens are flowing: ~100k are still to come
                    os.kill(gw.proc.pid, signal.SIGTERM)
        events = [line[6:] for line in lines if line.startswith(b"data: ")]
        assert events[-1] == b"[DONE]"
        error = json.loads(events[-2])["error"]
        assert error["code"] == "shutting_down"
        assert gw.proc.wait(timeout=30) == 0
        assert not (home / "run" / "gateway.json").exists()
        with pytest.raises(ProcessLookupError):
            os.kill(engine, 0)
    finally:
        stop_gateway(gw)


def test_a_draining_gateway_refuses_new_requests_with_503() -> None:
    """Between the signal and the exit, a request that still reaches the app (one pipelined
    on an open connection) gets 503 shutting_down, which SDKs retry, never a half answer."""
    from famous.serve.app import create_app
    from famous.serve.models import ModelRegistry
    from famous.serve.scheduler import Scheduler

    async def go() -> httpx.Response:
        app = create_app(Scheduler(ModelRegistry([], use_store=False), record=False))
        app.state.gateway.begin_drain(60)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            body = {"model": "tiny", "messages": CHAT}
            return await http.post("/v1/chat/completions", json=body)

    resp = asyncio.run(go())
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "shutting_down"
    assert resp.headers["retry-after"]
