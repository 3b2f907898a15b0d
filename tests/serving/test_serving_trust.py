"""The gateway against a hostile web page and a careless client: nothing a request says runs
a program, cross-site and rebinding requests are refused, and malformed input gets a 400
naming the field (never a 500). One real gateway on a free loopback port, as users run it."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serving_harness import Gateway, start_gateway, stop_gateway

from famous.serve.guard import allowed_hosts, check, host_name


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("trust-home")
    gateway = start_gateway(home, "--model", f"tiny={tiny_models['llama']}", "--keep-alive", "-1")
    try:
        yield gateway
    finally:
        stop_gateway(gateway)


@pytest.fixture()
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30, trust_env=False) as client:
        yield client


def _error(resp: httpx.Response) -> dict:
    body = resp.json()
    assert set(body) == {"error"} and "Traceback" not in resp.text, resp.text
    return body["error"]


@pytest.fixture()
def evil(tmp_path: Path) -> tuple[Path, Path]:
    """A program that leaves a mark if anything ever runs it."""
    marker = tmp_path / "it-ran"
    script = tmp_path / "evil.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\nsleep 30\n")
    script.chmod(0o755)
    return script, marker


# ------------------------------------------------------------------------------ credentials


def test_admin_routes_need_the_install_token_even_on_loopback(gw: Gateway, http) -> None:
    token_file = gw.home / "admin-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    for method, path, body in (
        ("GET", "/famous/api/ps", None),
        ("POST", "/famous/api/models", {"name": "x", "path": "/etc/hostname"}),
        ("POST", "/famous/api/load", {"model": "tiny"}),
        ("POST", "/famous/api/stop", {"all": True}),
    ):
        for headers in ({}, {"authorization": "Bearer wrong"}):
            resp = http.request(method, gw.url + path, json=body, headers=headers)
            assert resp.status_code == 401, (path, resp.text)
            assert _error(resp)["code"] == "admin_credential_required"
    assert http.get(gw.url + "/famous/api/ps", headers=gw.admin).status_code == 200
    # inference on loopback stays keyless for local clients
    assert http.get(gw.url + "/v1/models").status_code == 200
    # an unauthenticated caller learns nothing about which files exist
    resp = http.post(gw.url + "/famous/api/models", json={"name": "s", "path": "/etc/shadow"})
    assert resp.status_code == 401


def test_no_request_can_name_a_program_or_enable_pickle(
    gw: Gateway, http, evil: tuple[Path, Path], tiny_models: dict[str, Path]
) -> None:
    script, marker = evil
    model = str(tiny_models["llama"])
    attempts = [
        {"runtime": "llamacpp", "configuration": {"llama_server_path": str(script)}},
        {"runtime": "llamacpp", "configuration": {"Llama-Server-Path": str(script)}},
        {"runtime": "llamacpp", "configuration": {"server": "llama-server", "x": str(script)}},
        {"runtime": "transformers", "configuration": {"allow_pickle": True}},
        {"runtime": "openvino", "configuration": {"cache_dir": "/etc"}},
        {"runtime": "llamacpp", "configuration": {"threads": {"$ref": str(script)}}},
        {"runtime": "llamacpp", "configuration": {"chat_format": "a\nb"}},
        {"runtime": str(script)},
        {"runtime": "llamacpp", "configuration": [str(script)]},
    ]
    for i, attempt in enumerate(attempts):
        body = {"name": f"evil-{i}", "path": model, **attempt}
        resp = http.post(gw.url + "/famous/api/models", json=body, headers=gw.admin)
        assert resp.status_code == 400, (attempt, resp.text)
        error = _error(resp)
        assert error["param"] in ("configuration", "runtime"), error
        load = http.post(gw.url + "/famous/api/load", json={"model": f"evil-{i}"}, headers=gw.admin)
        assert load.status_code == 404, load.text  # nothing was registered
    assert (
        "famous set"
        in _error(
            http.post(
                gw.url + "/famous/api/models",
                json={"name": "e", "path": model, "configuration": {"llama_server_path": "/x"}},
                headers=gw.admin,
            )
        )["message"]
    )
    assert not marker.exists()
    # what a request may set still works
    ok = {"name": "tiny-ctx", "path": model, "configuration": {"ctx-size": 256, "threads": 1}}
    assert http.post(gw.url + "/famous/api/models", json=ok, headers=gw.admin).status_code == 200


# ------------------------------------------------------------------------------ browsers


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""]
)
def test_cross_site_simple_posts_are_refused(gw: Gateway, http, content_type: str) -> None:
    """What a page can POST without a preflight never reaches a route."""
    chat = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]})
    register = json.dumps({"name": "csrf", "path": "/etc/hostname"})
    headers = {"content-type": content_type, **gw.admin} if content_type else gw.admin
    for path, body in (("/v1/chat/completions", chat), ("/famous/api/models", register)):
        resp = http.post(gw.url + path, content=body, headers=headers)
        assert resp.status_code == 415, (path, content_type, resp.text)
        assert _error(resp)["code"] == "unsupported_media_type"
    assert (
        http.post(gw.url + "/famous/api/load", json={"model": "csrf"}, headers=gw.admin).status_code
        == 404
    )


def test_ollama_routes_take_an_untyped_body_from_what_is_not_a_browser(gw: Gateway, http) -> None:
    """Ollama's clients (LiteLLM's ollama providers) send JSON with no Content-Type, as
    Ollama takes it; a browser's cross-site POST carries an Origin, and a typed non-JSON
    body is what a form sends: both stay refused, and no other route takes either."""
    hosts = allowed_hosts("127.0.0.1")
    untyped = {"host": "127.0.0.1", "content-length": "2"}
    assert check("POST", untyped, hosts, "/api/chat") is None
    assert check("POST", untyped, hosts, "/v1/chat/completions").status == 415
    assert check("POST", untyped, hosts, "/famous/api/models").status == 415
    assert (
        check("POST", {**untyped, "content-type": "text/plain"}, hosts, "/api/chat").status == 415
    )
    from_a_page = {**untyped, "origin": "http://127.0.0.1"}  # even an allowed one
    assert check("POST", from_a_page, hosts, "/api/chat").status == 415
    body = json.dumps(
        {"model": "tiny", "prompt": "hi", "stream": False, "options": {"num_predict": 2}}
    )
    resp = http.post(gw.url + "/api/generate", content=body)  # httpx sets no type for bytes
    assert "content-type" not in resp.request.headers
    assert resp.status_code == 200 and resp.json()["done"], resp.text
    plain = http.post(
        gw.url + "/api/generate", content=body, headers={"content-type": "text/plain"}
    )
    assert plain.status_code == 415


@pytest.mark.parametrize(
    "path",
    ["/v1/models", "/famous/api/ps", "/metrics", "/health", "/v1/models/tiny", "/openapi.json"],
)
def test_dns_rebinding_gets_nothing(gw: Gateway, http, path: str) -> None:
    for host in ("evil.example", f"evil.example:{gw.port}", "127.0.0.1.evil.example"):
        resp = http.get(gw.url + path, headers={"host": host, **gw.admin})
        assert resp.status_code == 403, (host, resp.text)
        assert _error(resp)["code"] == "host_not_allowed"
    for host in (f"127.0.0.1:{gw.port}", f"localhost:{gw.port}", "localhost"):
        assert http.get(gw.url + path, headers={"host": host, **gw.admin}).status_code == 200


def test_foreign_origins_are_refused(gw: Gateway, http) -> None:
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    for origin in ("http://evil.example", "null", "file://", f"http://evil.example:{gw.port}"):
        resp = http.post(gw.v1 + "/chat/completions", json=chat, headers={"origin": origin})
        assert resp.status_code == 403, (origin, resp.text)
        assert _error(resp)["code"] == "origin_not_allowed"
        preflight = http.options(
            gw.v1 + "/chat/completions",
            headers={"origin": origin, "access-control-request-method": "POST"},
        )
        assert "access-control-allow-origin" not in preflight.headers
    same = http.post(gw.v1 + "/chat/completions", json=chat, headers={"origin": gw.url})
    assert same.status_code == 200, same.text


# ------------------------------------------------------------------------------ careless clients


def _chat(**fields: object) -> dict:
    return {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], **fields}


HOSTILE_BODIES = {
    "deep-array": b"[" * 100_000 + b"]" * 100_000,
    "deep-object": b'{"model": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001,
    "huge-int-temperature": json.dumps(_chat(temperature=10**400)).encode(),
    "huge-int-top-p": json.dumps(_chat(top_p=-(10**400))).encode(),
    "huge-int-penalty": json.dumps(_chat(presence_penalty=10**400)).encode(),
    "lone-surrogate-model": b'{"model": "\\ud800", "messages": [{"role": "user", "content": "x"}]}',
    "control-char-model": json.dumps(_chat(model="ti\nny")).encode(),
    "huge-model-name": json.dumps(_chat(model="m" * 100_000)).encode(),
    "nan-temperature": b'{"model": "tiny", "messages": [], "temperature": NaN}',
    "not-an-object": b'["model", "tiny"]',
    "invalid-utf8": b'{"model": "\xff\xfe"}',
}


@pytest.mark.parametrize("name", list(HOSTILE_BODIES))
def test_malformed_requests_get_a_400_naming_the_problem(gw: Gateway, http, name: str) -> None:
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        resp = http.post(
            gw.url + path,
            content=HOSTILE_BODIES[name],
            headers={"content-type": "application/json"},
        )
        assert resp.status_code == 400, (name, path, resp.status_code, resp.text[:300])
        _error(resp)
    assert http.get(gw.url + "/health").json()["status"] == "ok"


@pytest.mark.parametrize(
    "body",
    [
        {"model": "\ud800"},
        {"model": "x" * 1000},
        {"model": 7},
        {"all": False},
    ],
    ids=["surrogate", "long", "number", "nothing"],
)
def test_admin_routes_reject_bad_names(gw: Gateway, http, body: dict) -> None:
    raw = json.dumps(body).encode()  # keeps the lone surrogate as an escape
    for path in ("/famous/api/load", "/famous/api/stop"):
        resp = http.post(
            gw.url + path, content=raw, headers={"content-type": "application/json", **gw.admin}
        )
        assert resp.status_code == 400, (path, resp.text)
        assert _error(resp)["param"] == "model"


@pytest.mark.parametrize(
    "name", ["\ud800", "a\nb", "../evil", "a/../../b", "/etc/passwd", "x" * 300, "."]
)
def test_registered_names_are_names(gw: Gateway, http, tiny_models, name: str) -> None:
    """A name with a newline, a lone surrogate or a path in it is refused, by every route
    that takes one, and nothing is registered."""
    register = {"name": name, "path": str(tiny_models["llama"])}
    resp = http.post(
        gw.url + "/famous/api/models",
        content=json.dumps(register).encode(),
        headers={"content-type": "application/json", **gw.admin},
    )
    assert resp.status_code == 400 and _error(resp)["param"] == "name", resp.text
    chat = json.dumps(_chat(model=name)).encode()
    resp = http.post(
        gw.v1 + "/chat/completions", content=chat, headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400 and _error(resp)["param"] == "model", resp.text
    listed = [m["id"] for m in http.get(gw.v1 + "/models").json()["data"]]
    assert name not in listed


# ------------------------------------------------------------------------------ the guard's rules


def test_host_names_and_the_allowed_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert host_name("[::1]:8324") == "::1"
    assert host_name("LocalHost:80") == "localhost"
    assert host_name("127.0.0.1") == "127.0.0.1"
    assert host_name("::1") == "::1"
    monkeypatch.delenv("FAMOUS_ALLOWED_HOSTS", raising=False)
    assert allowed_hosts("127.0.0.1") == {"127.0.0.1", "localhost", "::1"}
    assert "box.lan" in allowed_hosts("box.lan")
    assert allowed_hosts("0.0.0.0") is None  # every name: such a gateway needs an API key
    monkeypatch.setenv("FAMOUS_ALLOWED_HOSTS", "famous.internal, Other:9")
    assert {"famous.internal", "other"} <= allowed_hosts("127.0.0.1")


# ------------------------------------------------------------------------------ engines


def test_fields_an_engine_cannot_survive_never_reach_it(gw: Gateway, http) -> None:
    """A raw llama.cpp grammar with an unbalanced rule segfaults llama_cpp.server; the
    gateway forwards only known fields, so the request is answered and the engine lives."""
    chat = _chat(max_tokens=2, temperature=0)
    assert http.post(gw.v1 + "/chat/completions", json=chat).status_code == 200
    pid = gw.pid_of("tiny")
    hostile = {**chat, "grammar": "root ::= (((", "n_ctx": 10**9, "model_path": "/etc/passwd"}
    resp = http.post(gw.v1 + "/chat/completions", json=hostile)
    assert resp.status_code == 200, resp.text
    assert gw.pid_of("tiny") == pid  # the same engine process, still serving


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"top_k": -1}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"min_p": 1.5}, "min_p"),
        ({"repeat_penalty": -1}, "repeat_penalty"),
        ({"repetition_penalty": 10**400}, "repetition_penalty"),
        ({"logit_bias": {"not-a-token": 1}}, "logit_bias"),
        ({"logit_bias": {"5": 1000}}, "logit_bias"),
        ({"logit_bias": ["5"]}, "logit_bias"),
        ({"messages": [{"role": "tool", "content": "42"}]}, "messages"),
        ({"messages": [{"role": "user", "content": 7}]}, "messages"),
        ({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}, "messages[0].content[0]"),
    ],
)
def test_engine_bound_fields_are_checked_first(gw: Gateway, http, fields: dict, param: str) -> None:
    resp = http.post(gw.v1 + "/chat/completions", json=_chat(max_tokens=2, **fields))
    assert resp.status_code == 400, resp.text
    assert _error(resp)["param"] == param


def test_what_clients_commonly_send_is_understood(gw: Gateway, http) -> None:
    """OpenAI's list-of-parts content (text only) and a NaN-free min_p reach the engine."""
    parts = [{"type": "text", "text": "Say "}, {"type": "text", "text": "hi"}]
    body = _chat(messages=[{"role": "user", "content": parts}], max_tokens=2, min_p=0.05)
    resp = http.post(gw.v1 + "/chat/completions", json=body)
    assert resp.status_code == 200, resp.text
    empty = http.post(gw.v1 + "/completions", json={"model": "tiny", "prompt": ""})
    assert empty.status_code == 400 and _error(empty)["param"] == "prompt"


def test_an_engine_killed_by_requests_does_not_lock_others_out(gw: Gateway, http) -> None:
    """However often a running engine dies, the next request restarts it at once: only
    engines that fail to start back off."""
    import os
    import signal

    chat = _chat(max_tokens=2, temperature=0)
    assert http.post(gw.v1 + "/chat/completions", json=chat, timeout=120).status_code == 200
    for _ in range(4):
        os.kill(gw.pid_of("tiny"), signal.SIGKILL)
        resp = http.post(gw.v1 + "/chat/completions", json=chat, timeout=120)
        assert resp.status_code == 200, resp.text
    crashes = next(d for d in gw.ps() if d["name"] == "tiny")["crashes"]
    assert crashes >= 4


def test_engines_die_with_a_killed_gateway(
    tmp_path: Path, tiny_models: dict[str, Path], http
) -> None:
    """kill -9 of the gateway leaves no engine behind: the kernel stops them (Linux's
    parent-death signal), without waiting for the next ``famous serve`` to reap them."""
    import time

    from famous.store.deployments import process_alive

    gateway = start_gateway(tmp_path / "home", "--model", f"tiny={tiny_models['llama']}")
    try:
        chat = _chat(max_tokens=1)
        assert http.post(gateway.v1 + "/chat/completions", json=chat).status_code == 200
        engine = gateway.pid_of("tiny")
        gateway.proc.kill()  # SIGKILL: the gateway cannot stop anything itself
        gateway.proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        while process_alive(engine) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not process_alive(engine), "the engine outlived its gateway"
    finally:
        stop_gateway(gateway)


def test_only_models_can_be_registered(gw: Gateway, http, tmp_path: Path) -> None:
    """A file that is no GGUF, or a folder without a config and weights, is refused at
    registration, instead of a load that fails (and is retried by SDKs) later."""
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"\x00" * 1024)
    empty = tmp_path / "empty-folder"
    empty.mkdir()
    for path in ("/etc/hostname", str(fake), str(empty)):
        body = {"name": "not-a-model", "path": path}
        resp = http.post(gw.url + "/famous/api/models", json=body, headers=gw.admin)
        assert resp.status_code == 400, resp.text
        error = _error(resp)
        assert error["param"] == "path" and path in error["message"]
        assert "nothing was registered" in error["message"]
