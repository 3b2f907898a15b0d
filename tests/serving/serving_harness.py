"""The serving tests' harness: tiny GGUF models and a real gateway on a free local port.

A module of its own name (not ``conftest``) so that test modules here and in other folders
(the engine tests) import its helpers the same way whatever pytest collects first. Every
process a test starts is stopped by the fixture that started it (the gateway stops its
engines on SIGTERM; teardown then checks that every recorded engine pid is gone).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest
from tiny_gguf import write_bert, write_bert_reranker, write_llama

from famous.runtimes.base import free_port, stop_process
from provision import llama_server

# llama.cpp's own server, built once per machine by the suite (tests/provision.py) with
# famous's install-component code, is handed to the test gateways explicitly: they run with
# their own FAMOUS_HOME.
NATIVE = llama_server()

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
LIFECYCLE = REPO / "tests" / "lifecycle"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("gguf")
    return {
        "llama": write_llama(folder / "tiny-llama.gguf"),
        "bert": write_bert(folder / "tiny-bert.gguf"),
        "reranker": write_bert_reranker(folder / "tiny-reranker.gguf"),
    }


def famous_env(home: Path, server: str = "llama-cpp-python") -> dict[str, str]:
    env = dict(os.environ)
    env["FAMOUS_HOME"] = str(home)
    env["FAMOUS_LLAMACPP_SERVER"] = server
    env["FAMOUS_LLAMA_SERVER"] = str(NATIVE)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("FAMOUS_API_KEY", None)
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        env.pop(proxy, None)
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


def famous_cli(
    home: Path, *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``famous`` command (a subprocess, as a user would, with no input);
    ``env`` replaces the environment made for ``home``."""
    return subprocess.run(
        [sys.executable, "-m", "famous", *args],
        env=env if env is not None else famous_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def get_json(url: str, timeout: float = 5, headers: dict[str, str] | None = None) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as resp:
        return json.loads(resp.read())


def admin_headers(home: Path) -> dict[str, str]:
    """The credential the CLI sends to a gateway's admin routes: its install's admin token."""
    return {"authorization": f"Bearer {(home / 'admin-token').read_text().strip()}"}


@dataclass
class Gateway:
    url: str
    port: int
    home: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    engine_pids: set[int] = field(default_factory=set)
    server: str = "llama_cpp.server"

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    @property
    def admin(self) -> dict[str, str]:
        return admin_headers(self.home)

    def ps(self) -> list[dict]:
        deployments = get_json(self.url + "/famous/api/ps", headers=self.admin)["deployments"]
        self.engine_pids.update(d["pid"] for d in deployments if d.get("pid"))
        return deployments

    def pid_of(self, name: str) -> int:
        dep = next(d for d in self.ps() if d["name"] == name)
        assert dep["pid"], dep
        return int(dep["pid"])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_gateway(home: Path, *args: str, server: str = "llama-cpp-python") -> Gateway:
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = home / "gateway-test.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "famous", "serve", "--port", str(port), *args],
            env=famous_env(home, server),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    gw = Gateway(url=f"http://127.0.0.1:{port}", port=port, home=home, proc=proc, log_path=log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited early:\n{gw.log()}")
        try:
            if get_json(gw.url + "/health", timeout=1)["status"] == "ok":
                return gw
        except OSError:
            time.sleep(0.1)
    stop_gateway(gw)
    raise RuntimeError(f"gateway did not answer /health in 30 s:\n{gw.log()}")


def stop_gateway(gw: Gateway) -> None:
    """SIGTERM the gateway (it stops its engines), then make sure no engine survived."""
    with contextlib.suppress(OSError):
        gw.ps()
    if gw.proc.poll() is None:
        os.killpg(gw.proc.pid, signal.SIGTERM)
        try:
            gw.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(gw.proc.pid, signal.SIGKILL)
            gw.proc.wait(timeout=10)
    survivors = []
    for pid in gw.engine_pids:
        if stop_process(pid, grace=5) is not None:
            survivors.append(pid)
    assert not survivors, f"engine processes outlived the gateway: {survivors}"


def hub_server_module() -> ModuleType:
    """The lifecycle tests' Hub-protocol server (``tests/lifecycle/hub_server.py``), loaded
    under a name of its own so that it is one module whichever folder pytest collects."""
    if "hub_server_for_run" in sys.modules:
        return sys.modules["hub_server_for_run"]
    spec = importlib.util.spec_from_file_location("hub_server_for_run", LIFECYCLE / "hub_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["hub_server_for_run"] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def serving(
    home: Path, models: dict[str, Path], server: str = "llama-server", *extra: str
) -> Iterator[Gateway]:
    """A gateway serving ``models`` (name → GGUF), kept loaded, stopped on leaving;
    ``extra``: more ``famous serve`` arguments."""
    args = [arg for name, path in models.items() for arg in ("--model", f"{name}={path}")]
    gw = start_gateway(home, *args, "--keep-alive", "-1", *extra, server=server)
    try:
        yield gw
    finally:
        stop_gateway(gw)


@contextlib.contextmanager
def local_hub(
    repos: dict[str, dict[str, bytes | Path]], options: dict[str, dict] | None = None
) -> Iterator[object]:
    """A started local Hub-protocol server holding ``repos`` (id -> {path: bytes or
    file}); ``options``: add_repo's keywords per repo id (downloads, tags…)."""
    server = hub_server_module().HubServer().start()
    for repo_id, files in repos.items():
        server.add_repo(repo_id, files, **(options or {}).get(repo_id, {}))
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def serving_from_hub(
    home: Path, models: dict[str, Path], hub: object, server: str = "llama-server"
) -> Iterator[Gateway]:
    """``serving``, its Hub the local Hub-protocol server ``hub`` (no token); this process
    reads the same FAMOUS_HOME meanwhile, so a test can check the gateway's catalog."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in hub_server_module().environment(hub).items():
            mp.setenv(key, value)
        mp.delenv("HF_TOKEN", raising=False)
        mp.setenv("FAMOUS_HOME", str(home))
        with serving(home, models, server) as gw:
            yield gw


SERVERS = {"llama-cpp-python": "llama_cpp.server", "llama-server": "llama-server"}


@pytest.fixture(scope="module", params=list(SERVERS))
def gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_models: dict[str, Path],
) -> Iterator[Gateway]:
    """A gateway serving the tiny chat and embedding models, once per llama.cpp server."""
    home = tmp_path_factory.mktemp("famous-home")
    gw = start_gateway(
        home,
        "--model",
        f"tiny={tiny_models['llama']}",
        "--model",
        f"emb={tiny_models['bert']}",
        "--keep-alive",
        "-1",
        server=request.param,
    )
    gw.server = SERVERS[request.param]
    try:
        yield gw
    finally:
        stop_gateway(gw)
