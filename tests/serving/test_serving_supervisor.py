"""Load on demand, keep-alive unload, LRU eviction, memory refusal, auth, and `famous run`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from serving_harness import (
    admin_headers,
    famous_cli,
    famous_env,
    get_json,
    start_gateway,
    stop_gateway,
)

from famous.serve.app import create_app
from famous.serve.errors import APIError, from_domain
from famous.serve.models import ModelRegistry, ModelSpec
from famous.serve.scheduler import NoRoom, Scheduler

CHAT = [{"role": "user", "content": "hello"}]


def _states(gw) -> dict[str, str]:
    return {d["name"]: d["state"] for d in gw.ps()}


@pytest.mark.slow
def test_lru_eviction_and_keep_alive(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    gw = start_gateway(
        tmp_path / "home",
        "--model",
        f"tiny={tiny_models['llama']}",
        "--model",
        f"emb={tiny_models['bert']}",
        "--max-loaded",
        "1",
        "--keep-alive",
        "3",
    )
    try:
        with httpx.Client(timeout=120, trust_env=False) as http:
            resp = http.post(
                gw.v1 + "/chat/completions",
                json={"model": "tiny", "messages": CHAT, "max_tokens": 2},
            )
            assert resp.status_code == 200, resp.text
            assert _states(gw) == {"tiny": "ready"}
            resp = http.post(gw.v1 + "/embeddings", json={"model": "emb", "input": "hi"})
            assert resp.status_code == 200, resp.text
            # Only one model fits (max-loaded 1): the least recently used one was stopped.
            assert _states(gw) == {"tiny": "stopped", "emb": "ready"}
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if _states(gw)["emb"] == "stopped" and "unloaded after 3 s idle" in gw.log():
                break
            time.sleep(0.25)
        assert _states(gw)["emb"] == "stopped"  # unloaded after 3 s idle
        assert "unloaded after 3 s idle" in gw.log()
        status = json.loads(famous_cli(gw.home, "status", "--format", "json").stdout)
        assert {d["name"]: d["status"] for d in status["deployments"]} == {
            "tiny": "stopped",
            "emb": "stopped",
        }
    finally:
        stop_gateway(gw)


def _safetensors_folder(folder: Path, size: int) -> Path:
    """A folder whose weights take ``size`` bytes on disk (sparse: nothing is written)."""
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    with open(folder / "model.safetensors", "wb") as f:
        f.truncate(size)
    return folder


def test_a_gguf_whose_header_cannot_be_read_is_sized_by_its_weights(tmp_path: Path) -> None:
    """Such a file is never registered, but a catalog artifact can still be damaged later:
    the budget then counts at least its weights."""
    from famous.serve.models import DEFAULT_OVERHEAD, estimate_memory

    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF" + b"\xff" * 4096)
    assert estimate_memory(path) == path.stat().st_size + DEFAULT_OVERHEAD


@pytest.mark.parametrize("kind", ["gguf", "safetensors folder"])
def test_model_that_cannot_fit_gets_507(
    tiny_models: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    """The budget applies to every model: a GGUF by its header, anything else by the size
    of its weights."""
    if kind == "gguf":
        path = tiny_models["llama"]
    else:
        path = _safetensors_folder(tmp_path / "st", 16 * 1024**2)
    models = ModelRegistry([ModelSpec(name="tiny", path=path)], use_store=False)
    supervisor = Scheduler(models, memory_budget=64 * 1024**2, record=False)

    async def go() -> APIError:
        with pytest.raises(NoRoom) as info:
            await supervisor.acquire("tiny")
        return from_domain(info.value)  # how the gateway answers it

    err = asyncio.run(go())
    assert err.status == 507
    assert "needs" in err.message and "budget" in err.message
    assert supervisor.deployments["tiny"].process is None  # nothing was started


def test_api_key_is_enforced(tiny_models: dict[str, Path]) -> None:
    models = ModelRegistry([ModelSpec(name="tiny", path=tiny_models["llama"])], use_store=False)
    app = create_app(Scheduler(models, record=False), api_key="sekret")

    async def go() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            resp = await http.get("/v1/models")
            assert resp.status_code == 401
            assert resp.json()["error"]["code"] == "invalid_api_key"
            resp = await http.get("/v1/models", headers={"authorization": "Bearer wrong"})
            assert resp.status_code == 401
            resp = await http.get("/v1/models", headers={"authorization": "Bearer sekret"})
            assert resp.status_code == 200
            assert [m["id"] for m in resp.json()["data"]] == ["tiny"]
            health = await http.get("/health")  # the liveness probe answers everyone
            assert health.status_code == 200 and "models" not in health.json()
            keyed = await http.get("/health", headers={"authorization": "Bearer sekret"})
            assert keyed.json()["models"] == {}

    asyncio.run(go())


def test_binding_beyond_localhost_needs_a_key(tmp_path: Path) -> None:
    result = famous_cli(tmp_path, "serve", "--host", "0.0.0.0", "--port", "1")
    assert result.returncode == 1
    assert "API key" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_famous_run_one_shot(tmp_path: Path, tiny_models: dict[str, Path], monkeypatch) -> None:
    """`famous run` starts a gateway, loads the model (a file, then a cataloged name), answers."""
    home = tmp_path / "home"
    monkeypatch.setenv("FAMOUS_HOME", str(home))
    from famous.hub.pull import import_local

    import_local(tiny_models["llama"], name="tiny-imported")
    gateway_pid = None
    try:
        first = famous_cli(
            home, "run", str(tiny_models["llama"]), "hello there", "--max-tokens", "8", timeout=120
        )
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip()
        assert "llama_cpp.server" in first.stderr
        gateway_pid = json.loads((home / "run" / "gateway.json").read_text())["pid"]
        second = famous_cli(
            home, "run", "tiny-imported", "hello again", "--max-tokens", "8", timeout=120
        )
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip()
        # the same gateway served both
        assert json.loads((home / "run" / "gateway.json").read_text())["pid"] == gateway_pid
        url = json.loads((home / "run" / "gateway.json").read_text())
        ps_url = f"http://127.0.0.1:{url['port']}/famous/api/ps"
        ps = get_json(ps_url, headers=admin_headers(home))["deployments"]
        assert {d["name"] for d in ps if d["state"] == "ready"} == {"tiny-llama", "tiny-imported"}
        stopped = famous_cli(home, "stop", "--all")
        assert stopped.returncode == 0
        assert "stopped tiny-imported" in stopped.stdout
        missing = famous_cli(home, "run", "no-such-model-anywhere", "hi", "--offline", timeout=60)
        assert missing.returncode != 0
        assert "Traceback" not in missing.stderr
        down = famous_cli(home, "stop", "--gateway")
        assert down.returncode == 0, down.stderr
        assert "stopped the gateway" in down.stdout
        assert "not running" in famous_cli(home, "status").stdout
    finally:
        if gateway_pid:
            os.kill(gateway_pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    os.kill(gateway_pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
    assert famous_env(home)["FAMOUS_HOME"] == str(home)


@pytest.mark.slow
def test_engines_orphaned_by_a_killed_gateway_are_stopped(
    tmp_path: Path, tiny_models: dict[str, Path]
) -> None:
    from famous.store.deployments import process_alive

    home = tmp_path / "home"
    first = start_gateway(home, "--model", f"tiny={tiny_models['llama']}")
    try:
        with httpx.Client(timeout=120, trust_env=False) as http:
            body = {"model": "tiny", "messages": CHAT, "max_tokens": 1}
            assert http.post(first.v1 + "/chat/completions", json=body).status_code == 200
        engine = first.pid_of("tiny")
        os.kill(first.proc.pid, signal.SIGKILL)  # no chance to stop its engine
        first.proc.wait(timeout=10)
        status = json.loads(famous_cli(home, "status", "--format", "json").stdout)
        assert status["gateway"]["running"] is False
        second = start_gateway(home, "--model", f"tiny={tiny_models['llama']}")
        try:
            # the kernel's parent-death signal stopped it, or else the new gateway did
            assert not process_alive(engine)
            assert "Traceback" not in second.log()
            status = json.loads(famous_cli(home, "status", "--format", "json").stdout)
            assert {d["name"]: d["status"] for d in status["deployments"]}.get("tiny") != "ready"
        finally:
            stop_gateway(second)
    finally:
        stop_gateway(first)


def test_gguf_headers_are_parsed_once_per_file_version(
    tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory estimates run on every catalog lookup; the GGUF header (the whole vocabulary)
    is read once per file version, not once per request."""
    import shutil

    from famous.formats import gguf_meta
    from famous.serve import models as served_models

    model = tmp_path / "m.gguf"
    shutil.copy(tiny_models["llama"], model)
    reads: list[Path] = []
    real = gguf_meta.read_metadata
    monkeypatch.setattr(gguf_meta, "read_metadata", lambda p: reads.append(p) or real(p))
    first = served_models.estimate_memory(model)
    assert first and first > model.stat().st_size
    for _ in range(5):
        assert served_models.estimate_memory(model) == first
        assert served_models.estimate_memory(model, {"ctx-size": 64}) < first
    assert len(reads) == 1
    shutil.copy(tiny_models["llama"], model)  # rewritten: a new version is read again
    os.utime(model, ns=(1, 1))
    assert served_models.estimate_memory(model) == first
    assert len(reads) == 2
