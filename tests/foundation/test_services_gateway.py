"""Gateway lifecycle services without a gateway: orphans, engine health routes, the client."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from famous.services import deployments, gateway
from famous.services.gateway_client import (
    GatewayClient,
    GatewayError,
    GatewayNotFound,
    StreamInterrupted,
    _pieces,
)
from famous.store import db
from famous.store import deployments as rows


def _sleeper(*argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", *argv], start_new_session=True
    )


def _record(name: str, pid: int, port: int, status: str = "ready") -> None:
    conn = db.connect(create=True)
    assert conn is not None
    try:
        row = rows.DeploymentRecord(name, "e", "llamacpp", status, rows.now_iso(), pid=pid)
        row.port = port
        rows.upsert(conn, row)
    finally:
        conn.close()


def _statuses() -> dict[str, str]:
    return {r.name: r.status for r in rows.read_all()}


def test_stop_orphans_stops_engines_and_leaves_recycled_pids_alone() -> None:
    engine, other, stranger = _sleeper("--port", "40001"), _sleeper("--port", "40002"), _sleeper()
    try:
        _record("a", engine.pid, 40001)
        _record("b", other.pid, 40002)
        _record("c", stranger.pid, 40003)  # the pid now belongs to something else
        assert gateway.stop_orphans("a", grace=2) == ["a"]
        assert engine.wait(timeout=10) is not None
        assert _statuses() == {"a": "stopped", "b": "ready", "c": "ready"}
        assert gateway.stop_orphans(grace=2) == ["b"]
        assert other.wait(timeout=10) is not None
        assert stranger.poll() is None
        assert _statuses() == {"a": "stopped", "b": "stopped", "c": "stopped"}
    finally:
        for proc in (engine, other, stranger):
            proc.kill()
            proc.wait()


def test_stop_orphans_without_a_catalog_creates_none(famous_home) -> None:
    assert gateway.stop_orphans() == []
    assert not (famous_home / "catalog.db").exists()


def test_no_gateway_recorded_means_none_running() -> None:
    assert gateway.running_gateway() is None


@pytest.mark.parametrize(
    "runtime,server,path",
    [
        ("llamacpp", "llama-server", "/health"),
        ("llamacpp", "llama_cpp.server", "/v1/models"),
        ("vllm", "vllm serve", "/health"),
        ("famous-native", "famous.runtimes.workers.native", "/v1/models"),
        ("no-such-runtime", None, "/v1/models"),
    ],
)
def test_engine_health_uses_the_adapters_route(runtime: str, server: str, path: str) -> None:
    assert deployments.health_path(runtime, server) == path


def test_chat_stream_pieces_and_error_events() -> None:
    def events(*items: object) -> Iterator[str]:
        for item in items:
            yield item if isinstance(item, str) else "data: " + json.dumps(item)

    delta = {"choices": [{"delta": {"content": "Hi"}}]}
    assert list(_pieces(events(": ping", delta, {"choices": []}, "data: [DONE]", delta))) == ["Hi"]
    broken = _pieces(events(delta, {"error": {"message": "engine died"}}))
    assert next(broken) == "Hi"
    with pytest.raises(StreamInterrupted, match="engine died"):
        next(broken)


class _Gateway(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, str | None, object]]] = []

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        payload = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.seen.append(("POST", self.path, self.headers.get("authorization"), payload))
        if self.path == "/famous/api/load" and payload["model"] == "missing":
            self._answer(404, {"error": {"message": "no model 'missing'"}})
        elif self.path == "/famous/api/stop":
            self._answer(200, {"stopped": ["m"]})
        elif self.path == "/famous/api/models":
            self._answer(400, {"error": {"message": "no such file"}})
        else:
            self._answer(200, {"runtime": "llamacpp"})

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, self.headers.get("authorization"), None))
        self._answer(200, {"status": "ok"})


@pytest.fixture
def fake_gateway() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Gateway.seen = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_client_calls_the_admin_routes_with_the_admin_token(fake_gateway, monkeypatch) -> None:
    from famous.store.gateway_state import admin_token

    monkeypatch.delenv("FAMOUS_API_KEY", raising=False)
    token = admin_token(create=True)
    client = GatewayClient(fake_gateway)
    assert client.healthy()
    assert client.load("m") == {"runtime": "llamacpp"}
    assert client.stop() == ["m"]
    with pytest.raises(GatewayNotFound, match="no model 'missing'"):
        client.load("missing")
    with pytest.raises(GatewayError, match="no such file") as refused:
        client.register_model("m", "/nowhere")
    assert not isinstance(refused.value, GatewayNotFound)
    assert [(m, p, auth) for m, p, auth, _ in _Gateway.seen] == [
        ("GET", "/health", f"Bearer {token}"),
        ("POST", "/famous/api/load", f"Bearer {token}"),
        ("POST", "/famous/api/stop", f"Bearer {token}"),
        ("POST", "/famous/api/load", f"Bearer {token}"),
        ("POST", "/famous/api/models", f"Bearer {token}"),
    ]
    assert _Gateway.seen[2][3] == {"all": True}
    keyed = GatewayClient(fake_gateway, api_key="k")
    assert keyed.ps() == {"status": "ok"}
    assert _Gateway.seen[-1][1:3] == ("/famous/api/ps", "Bearer k")


def test_nothing_listening_is_not_healthy() -> None:
    from famous.runtimes.base import free_port

    assert not GatewayClient(f"http://127.0.0.1:{free_port()}").healthy(timeout=0.5)
