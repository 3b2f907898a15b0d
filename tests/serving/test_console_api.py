"""The web console's JSON API (``/famous/api/...``) on a real ``famous serve`` with its own
FAMOUS_HOME (its SQLite catalog read back here), llama-server behind it and a local
Hub-protocol server: the session, the machine, the catalog with engines scored here, pins
that change what ``famous engines`` selects, pulls with progress, cancel and resume by
``Range``, removing what is installed, deployments with the engine's own health, logs
polled by offset, Hub search; and what a hostile client sends to each route."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from serving_harness import Gateway, famous_cli, local_hub, serving_from_hub

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

API = "/famous/api"
PACKAGE = "qwen2.5-0.5b-instruct"
BIG = "tiny-chat-f16.gguf"  # the variant the cancel test pulls slowly
PADDING = 2 << 20


@pytest.fixture(scope="module")
def hub(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Two repos: a small GGUF, and one whose f16 file is big (the tiny llama padded) so a
    throttled download of it can be cancelled halfway; the header probe reads the small
    q8_0 file of the same repo, which is never throttled."""
    small = tiny_models["llama"]
    big = tmp_path_factory.mktemp("hub") / BIG
    big.write_bytes(small.read_bytes() + b"\0" * PADDING)
    repos = {
        "org/Tiny-Chat-GGUF": {"tiny-chat-q8_0.gguf": small},
        "org/Slow-Chat-GGUF": {"tiny-chat-q8_0.gguf": small, BIG: big},
    }
    with local_hub(repos, {"org/Slow-Chat-GGUF": {"downloads": 5}}) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path], hub
) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("famous-home")
    with serving_from_hub(home, {"tiny": tiny_models["llama"]}, hub) as gw:
        yield gw


@pytest.fixture(scope="module")
def api(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=gateway.url + API, headers=gateway.admin, timeout=60, trust_env=False
    ) as client:
        yield client


def _ok(resp: httpx.Response, status: int = 200) -> dict:
    assert resp.status_code == status, resp.text[:2000]
    return resp.json()


def _error(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text[:2000]
    error = resp.json()["error"]
    assert isinstance(error["message"], str) and "Traceback" not in resp.text
    return error


def _wait_pull(api: httpx.Client, pull_id: str, until: object, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        pull = _ok(api.get(f"/pulls/{pull_id}"))["pull"]
        if until(pull) or time.monotonic() > deadline:  # type: ignore[operator]
            return pull
        time.sleep(0.05)


# -- session, machine, catalog -------------------------------------------------------------


def test_session_and_machine(api: httpx.Client, gateway: Gateway) -> None:
    session = _ok(api.get("/session"))
    assert session["api_key_required"] is False and session["version"]
    assert Path(session["home"]) == gateway.home
    machine = _ok(api.get("/machine"))["machine"]
    cli = famous_cli(gateway.home, "show-machine", "--format", "json")
    assert cli.returncode == 0, cli.stderr
    shown = json.loads(cli.stdout)
    assert machine.keys() == shown.keys() and machine["architecture"] == shown["architecture"]
    assert [c["model_name"] for c in machine["cpus"]] == [c["model_name"] for c in shown["cpus"]]
    assert machine["memory"]["total_bytes"] == shown["memory"]["total_bytes"]


def test_catalog_lists_packages_and_explains_engines(api: httpx.Client) -> None:
    models = {m["name"]: m for m in _ok(api.get("/catalog"))["models"]}
    entry = models[PACKAGE]
    assert entry["source"] == "builtin" and entry["summary"] and entry["installed"] is False
    assert entry["pinned"] is None and entry["running"] is False
    detail = _ok(api.get(f"/catalog/{PACKAGE}"))
    assert detail["model"]["model"]["name"] == PACKAGE and detail["installed"] == []
    engines = {e["engine"]: e for e in detail["engines"]}
    assert "cpu" in engines and "mlx" in engines
    for engine in engines.values():
        assert {"vendor", "summary", "runtime", "verdict", "score", "option"} <= engine.keys()
        assert engine["devices"] and all(
            {"group", "requirement", "matched", "reasons"} <= d.keys() for d in engine["devices"]
        )
        for memory in engine["memory"]:
            assert memory["explain"].startswith(memory["variant"] + ": needs ")
            assert isinstance(memory["fits"], bool)
    mlx = engines["mlx"]  # Apple silicon only: never on the Linux machines the suite runs on
    assert mlx["compatible"] is False and mlx["reasons"] and mlx["verdict"] == "no"
    assert sum(e["selected"] for e in engines.values()) == 1


def _cli_selected(gateway: Gateway) -> str | None:
    shown = famous_cli(gateway.home, "engines", PACKAGE, "--format", "json")
    return next((e["engine"] for e in json.loads(shown.stdout) if e["selected"]), None)


def test_pin_then_unpin_changes_what_famous_engines_selects(
    api: httpx.Client, gateway: Gateway
) -> None:
    detail = _ok(api.get(f"/catalog/{quote(PACKAGE, safe='')}"))
    auto = detail["selected"]
    assert auto == _cli_selected(gateway)
    others = [e for e in detail["engines"] if e["engine"] != auto]
    other = next((e for e in others if e["compatible"]), None)
    error = _error(api.put(f"/catalog/{PACKAGE}/pin", json={"engine": "mlx"}), 409)
    assert error["code"] == "engine_incompatible"
    if other is None:  # a machine where one engine runs: pin an incompatible one by force
        other, body = {"engine": "mlx"}, {"engine": "mlx", "force": True}
    else:
        body = {"engine": other["engine"]}
    pinned = _ok(api.put(f"/catalog/{PACKAGE}/pin", json=body))["pinned"]
    assert pinned["engine"] == other["engine"] and pinned["forced"] is bool(body.get("force"))
    assert _cli_selected(gateway) == other["engine"]
    again = _ok(api.get(f"/catalog/{PACKAGE}"))
    assert again["pinned"]["engine"] == other["engine"] and again["selected"] == other["engine"]
    assert {m["name"]: m for m in _ok(api.get("/catalog"))["models"]}[PACKAGE]["pinned"] == (
        other["engine"]
    )
    assert _ok(api.delete(f"/catalog/{PACKAGE}/pin")) == {"pinned": None}
    assert _cli_selected(gateway) == auto
    assert _ok(api.get(f"/catalog/{PACKAGE}"))["pinned"] is None


def test_pin_refuses_an_engine_the_package_lacks(api: httpx.Client) -> None:
    error = _error(api.put(f"/catalog/{PACKAGE}/pin", json={"engine": "warp-drive"}), 400)
    assert error["param"] == "engine" and "warp-drive" in error["message"]
    for bad in ({}, {"engine": 5}, {"engine": "../cpu"}, {"engine": "cpu", "force": "yes"}):
        assert _error(api.put(f"/catalog/{PACKAGE}/pin", json=bad), 400)["param"] in (
            "engine",
            "force",
        )
    assert _error(api.put("/catalog/no-such-model/pin", json={"engine": "cpu"}), 404)["code"] == (
        "model_not_found"
    )


def test_unknown_model_is_404(api: httpx.Client) -> None:
    assert _error(api.get("/catalog/no-such-model"), 404)["code"] == "model_not_found"
    assert _error(api.get(f"/catalog/{quote('org/none', safe='')}"), 404)["code"] == (
        "model_not_found"
    )


# -- pulls -----------------------------------------------------------------------------------


def test_pull_from_the_hub_registers_the_artifact(api: httpx.Client, hub, gateway: Gateway) -> None:
    from famous.store.artifacts import list_artifacts

    started = api.post("/pulls", json={"model": "org/Tiny-Chat-GGUF"})
    pull = _ok(started, 202)["pull"]
    assert pull["state"] == "running" and pull["model"] == "org/Tiny-Chat-GGUF"
    done = _wait_pull(api, pull["id"], lambda p: p["state"] != "running")
    assert done["state"] == "done", done
    size = hub.repos["org/Tiny-Chat-GGUF"].files["tiny-chat-q8_0.gguf"].size
    assert done["total_bytes"] == done["done_bytes"] == size
    assert done["files"] == [{"name": "tiny-chat-q8_0.gguf", "total": size, "done": size}]
    assert done["error"] is None and done["finished_at"] and done["resumable"] is False
    assert done["rate_bytes_per_s"] is None and done["eta_s"] is None
    [artifact] = list_artifacts("org/Tiny-Chat-GGUF")
    assert done["result"]["artifact"]["id"] == artifact.id
    assert (done["engine"], done["variant"]) == (artifact.engine, artifact.variant)
    listed = _ok(api.get("/pulls"))["pulls"]
    assert pull["id"] in [p["id"] for p in listed]
    models = {m["name"]: m for m in _ok(api.get("/catalog"))["models"]}
    assert models["org/Tiny-Chat-GGUF"]["source"] == "pulled"
    assert models["org/Tiny-Chat-GGUF"]["installed"] is True
    detail = _ok(api.get(f"/catalog/{quote('org/Tiny-Chat-GGUF', safe='')}"))
    assert detail["installed"][0]["id"] == artifact.id and detail["engines"] == []
    # pulled again: already installed, nothing fetched
    again = _ok(api.post("/pulls", json={"model": "org/Tiny-Chat-GGUF"}), 202)["pull"]
    again = _wait_pull(api, again["id"], lambda p: p["state"] != "running")
    assert again["state"] == "done" and again["result"]["reused"] is True
    assert again["total_bytes"] == again["done_bytes"] == 0
    removed = _ok(api.delete(f"/installed/{quote('org/Tiny-Chat-GGUF', safe='')}"))["removed"]
    assert [a["id"] for a in removed] == [artifact.id] and not Path(artifact.path).exists()
    assert list_artifacts("org/Tiny-Chat-GGUF") == []
    error = _error(api.delete(f"/installed/{quote('org/Tiny-Chat-GGUF', safe='')}"), 404)
    assert "not installed" in error["message"]


def test_cancel_mid_download_then_resume_by_range(api: httpx.Client, hub) -> None:
    from famous.hub.names import repo_dirname
    from famous.store.artifacts import list_artifacts
    from famous.store.locks import try_held
    from famous.store.paths import models_dir

    repo = hub.repos["org/Slow-Chat-GGUF"]
    big = repo.files[BIG]
    hub.faults.rate[BIG] = 200_000  # about 12 s for the whole file
    try:
        body = {"model": "org/Slow-Chat-GGUF", "variant": "F16"}
        pull = _ok(api.post("/pulls", json=body), 202)["pull"]
        same = _ok(api.post("/pulls", json=body), 200)["pull"]
        assert same["id"] == pull["id"]
        moving = _wait_pull(api, pull["id"], lambda p: p["done_bytes"] > 100_000)
        assert moving["state"] == "running" and moving["total_bytes"] == big.size, moving
        assert moving["files"][0]["name"] == BIG
        assert moving["rate_bytes_per_s"] and moving["eta_s"] is not None, moving
        cancelled = _ok(api.delete(f"/pulls/{pull['id']}"))["pull"]
    finally:
        hub.faults.clear()
    assert cancelled["state"] == "cancelled", cancelled
    assert cancelled["resumable"] is True and cancelled["finished_at"]
    kept = cancelled["done_bytes"]
    assert 100_000 < kept < big.size
    assert list_artifacts("org/Slow-Chat-GGUF") == []  # nothing registered
    [dest] = (models_dir() / "hub" / repo_dirname("org/Slow-Chat-GGUF")).iterdir()
    assert any((dest / ".famous" / "partial").iterdir())  # the partial file stayed
    with try_held(str(dest)) as free:
        assert free, "the cancelled pull left its lock held"
    resumed = _ok(api.post("/pulls", json=body), 202)["pull"]
    assert resumed["id"] != pull["id"]
    done = _wait_pull(api, resumed["id"], lambda p: p["state"] != "running")
    assert done["state"] == "done", done
    assert done["done_bytes"] == done["total_bytes"] == big.size
    [artifact] = list_artifacts("org/Slow-Chat-GGUF")
    assert artifact.variant == dest.name
    data = (Path(artifact.root) / BIG).read_bytes()
    assert hashlib.sha256(data).hexdigest() == big.sha256
    gets = [
        (rng, n) for rng, n in hub.bytes_sent(big.sha256) if not (rng or "").startswith("bytes=0-")
    ]
    assert gets[-1][0] == f"bytes={kept}-", gets  # resumed where it stopped
    assert gets[-1][1] == big.size - kept
    assert _ok(api.delete(f"/pulls/{pull['id']}"))["pull"]["state"] == "cancelled"  # as it ended
    assert _ok(api.delete(f"/pulls/{resumed['id']}"))["pull"]["state"] == "done"


def test_pull_of_an_unknown_model(api: httpx.Client) -> None:
    error = _error(api.post("/pulls", json={"model": "no-such-package"}), 404)
    assert error["code"] == "model_not_found" and "no-such-package" in error["message"]
    pull = _ok(api.post("/pulls", json={"model": "org/Does-Not-Exist"}), 202)["pull"]
    failed = _wait_pull(api, pull["id"], lambda p: p["state"] != "running")
    assert failed["state"] == "failed" and "org/Does-Not-Exist" in failed["error"], failed
    assert failed["resumable"] is False
    assert _error(api.get("/pulls/pull-0-nope"), 404)["code"] == "pull_not_found"
    assert _error(api.delete("/pulls/pull-0-nope"), 404)["code"] == "pull_not_found"


# -- deployments and logs ----------------------------------------------------------------------


def test_deployments_health_and_logs(api: httpx.Client, gateway: Gateway) -> None:
    _ok(api.post("/load", json={"model": "tiny"}))
    [dep] = [d for d in _ok(api.get("/deployments"))["deployments"] if d["model"] == "tiny"]
    assert dep["state"] == "ready" and dep["health"] == "ok", dep
    assert dep["pid"] and dep["port"] and dep["server"] == "llama-server"
    assert isinstance(dep["requests"], int) and dep["uptime_s"] is not None
    assert dep["memory_bytes"] and dep["memory_bytes"] > 0
    error = _error(api.delete("/installed/tiny"), 409)
    assert error["code"] == "model_running"
    first = _ok(api.get("/deployments/tiny/logs", params={"tail": 5}))
    assert 0 < len(first["lines"]) <= 5 and first["offset"] > 0
    log = Path(dep["log_path"])
    assert first["offset"] <= log.stat().st_size
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    assert httpx.post(gateway.v1 + "/chat/completions", json=chat, timeout=60).status_code == 200
    deadline = time.monotonic() + 10
    while log.stat().st_size == first["offset"] and time.monotonic() < deadline:
        time.sleep(0.1)
    new = _ok(api.get("/deployments/tiny/logs", params={"after": first["offset"]}))
    written = log.read_bytes()[first["offset"] : new["offset"]]
    assert new["lines"] == written.decode("utf-8", "replace").splitlines()
    assert new["lines"] and new["offset"] > first["offset"]
    later = _ok(api.get("/deployments/tiny/logs", params={"after": new["offset"]}))
    assert later["offset"] >= new["offset"]
    beyond = _ok(api.get("/deployments/tiny/logs", params={"after": 10**12, "tail": 3}))
    assert len(beyond["lines"]) <= 3 and beyond["offset"] <= log.stat().st_size
    for bad in ({"after": -1}, {"after": "abc"}, {"tail": -5}, {"tail": 10**9}, {"after": "1e3"}):
        assert _error(api.get("/deployments/tiny/logs", params=bad), 400)["param"] in (
            "after",
            "tail",
        )
    assert _error(api.get("/deployments/nobody/logs"), 404)["code"] == "log_not_found"
    # since (Ray replicas' offsets, famous logs --follow) goes with after; a model on this
    # machine has no replicas: the answer is the gateway log's alone
    local = _ok(api.get("/deployments/tiny/logs", params={"after": new["offset"], "since": ""}))
    assert "replicas" not in local and local["offset"] >= new["offset"]
    many = ",".join(f"r{i}:0" for i in range(300))
    for since in (
        "r1",
        "r1:-1",
        "r1:1e3",
        "../x:1",
        "r1:" + "9" * 30,
        "r1:9223372036854775807",
        many,
        "r1:0\n",
        "r1:\u00b2",
        "a\x00b:1",
        "r:1," + "x" * 17_000,
        ":1",
    ):
        resp = api.get("/deployments/tiny/logs", params={"after": 0, "since": since})
        assert _error(resp, 400)["param"] == "since", since[:40]
    resp = api.get("/deployments/tiny/logs", params={"since": "r1:0"})
    assert _error(resp, 400)["param"] == "since"  # without after


# -- the Hub -----------------------------------------------------------------------------------


def test_hub_search(api: httpx.Client) -> None:
    hits = _ok(api.get("/hub/search", params={"q": "chat", "format": "gguf", "limit": 5}))["hits"]
    assert [h["repo_id"] for h in hits] == ["org/Slow-Chat-GGUF", "org/Tiny-Chat-GGUF"]
    assert all("gguf" in h["formats"] for h in hits)
    one = _ok(api.get("/hub/search", params={"q": "chat", "limit": 1}))["hits"]
    assert len(one) == 1
    assert _ok(api.get("/hub/search", params={"q": "nothing-like-it"}))["hits"] == []
    for bad in (
        {"q": ""},
        {"q": "   "},
        {"q": "chat", "limit": 0},
        {"q": "chat", "limit": 10**9},
        {"q": "chat", "limit": "abc"},
        {"q": "chat", "limit": 101},
        {"q": "x" * 10_000},
        {"q": "a\x00b"},
        {"q": "chat", "format": "../gguf"},
    ):
        assert _error(api.get("/hub/search", params=bad), 400)["param"] in ("q", "limit", "format")
    assert _error(api.get("/hub/search"), 400)["param"] == "q"


# -- attacks -----------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/session", None),
    ("GET", "/machine", None),
    ("GET", "/catalog", None),
    ("GET", f"/catalog/{PACKAGE}", None),
    ("PUT", f"/catalog/{PACKAGE}/pin", {"engine": "cpu"}),
    ("DELETE", f"/catalog/{PACKAGE}/pin", None),
    ("POST", "/pulls", {"model": "org/Tiny-Chat-GGUF"}),
    ("GET", "/pulls", None),
    ("GET", "/pulls/pull-1", None),
    ("DELETE", "/pulls/pull-1", None),
    ("DELETE", "/installed/tiny", None),
    ("GET", "/deployments", None),
    ("GET", "/deployments/tiny/logs", None),
    ("GET", "/deployments/tiny/logs?after=0&since=r1:0", None),
    ("GET", "/hub/search?q=chat", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_every_route_needs_the_credential(
    gateway: Gateway, method: str, path: str, body: dict | None
) -> None:
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic x"}):
        resp = httpx.request(method, gateway.url + API + path, json=body, headers=headers)
        assert _error(resp, 401)["code"] == "admin_credential_required"


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_every_route_refuses_foreign_hosts_and_origins(
    gateway: Gateway, method: str, path: str, body: dict | None
) -> None:
    url = gateway.url + API + path
    for extra in ({"host": "evil.example"}, {"origin": "http://evil.example"}):
        resp = httpx.request(method, url, json=body, headers={**gateway.admin, **extra})
        assert _error(resp, 403)["code"] in ("host_not_allowed", "origin_not_allowed")
    if body is not None:
        raw = json.dumps(body).encode()
        for kind in ("text/plain", "application/x-www-form-urlencoded", ""):
            headers = {**gateway.admin, "content-type": kind}
            resp = httpx.request(method, url, content=raw, headers=headers)
            assert _error(resp, 415)["code"] == "unsupported_media_type"


BAD_NAMES = ["..", "a/../b", "../etc", "/etc/passwd", "a\x00b", "x" * 10_000, "a\nb", "~root"]
BAD_NAMES += ["0" * 256, "org/" + "0" * 252]  # short enough for famous, too long for a file name


@pytest.mark.parametrize("name", BAD_NAMES)
def test_hostile_model_names(api: httpx.Client, name: str) -> None:
    quoted = quote(name, safe="")
    answers = [
        api.get(f"/catalog/{quoted}"),
        api.put(f"/catalog/{quoted}/pin", json={"engine": "cpu"}),
        api.delete(f"/catalog/{quoted}/pin"),
        api.delete(f"/installed/{quoted}"),
        api.get(f"/deployments/{quoted}/logs"),
        api.post("/pulls", json={"model": name}),
    ]
    for resp in answers:
        assert resp.status_code in (400, 404), (name[:40], resp.request.url, resp.text[:300])
        assert "Traceback" not in resp.text
    assert not any(p["model"] == name for p in _ok(api.get("/pulls"))["pulls"])


def test_hostile_pull_bodies(api: httpx.Client) -> None:
    for body, field in (
        ({}, "model"),
        ({"model": 5}, "model"),
        ({"model": ["org/x"]}, "model"),
        ({"model": "org/Tiny-Chat-GGUF", "engine": "../x"}, "engine"),
        ({"model": "org/Tiny-Chat-GGUF", "variant": {"a": 1}}, "variant"),
        ({"model": "org/Tiny-Chat-GGUF", "variant": "x" * 100}, "variant"),
    ):
        assert _error(api.post("/pulls", json=body), 400)["param"] == field
    deep = b'{"model": "org/Tiny-Chat-GGUF", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    pulls = {p["id"] for p in _ok(api.get("/pulls"))["pulls"]}
    for raw in (b"", b"{", b"[]", b'"x"', b'{"model": 1e999}', deep):
        resp = api.post("/pulls", content=raw, headers={"content-type": "application/json"})
        assert _error(resp, 400)
    before = _ok(api.get(f"/catalog/{PACKAGE}"))["pinned"]
    resp = api.put(
        f"/catalog/{PACKAGE}/pin",
        content=deep.replace(b'"model": "org/Tiny-Chat-GGUF"', b'"engine": "cpu"'),
        headers={"content-type": "application/json"},
    )
    assert _error(resp, 400)
    assert _ok(api.get(f"/catalog/{PACKAGE}"))["pinned"] == before
    assert {p["id"] for p in _ok(api.get("/pulls"))["pulls"]} == pulls  # none started one


def test_published_in_the_openapi_document(gateway: Gateway) -> None:
    schema = httpx.get(gateway.url + "/openapi.json").json()
    paths = schema["paths"]
    for method, path in (
        ("put", f"{API}/catalog/{{model}}/pin"),
        ("post", f"{API}/pulls"),
        ("delete", f"{API}/pulls/{{pull_id}}"),
        ("get", f"{API}/deployments/{{model}}/logs"),
        ("get", f"{API}/hub/search"),
    ):
        assert paths[path][method]["security"] == [{"bearer": []}], path
    body = paths[f"{API}/pulls"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"].endswith("/PullRequest")
    assert "PinRequest" in schema["components"]["schemas"]
