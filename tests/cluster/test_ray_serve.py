"""famous serve --ray on a real two-node Ray cluster (127.0.0.1): the real SmolLM2 GGUF,
pulled by each replica from a local Hub server into its own node's FAMOUS_HOME, served by
llama-server through Ray Serve behind the gateway, and called with the official ``openai``
client. A replica killed mid-stream gives the client an error event, and the next request
is answered by the replica that lives.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import psutil
import pytest

HERE = Path(__file__).resolve().parent
for folder in (HERE.parent / "serving", HERE.parent / "lifecycle", HERE.parent / "realweights"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import serving_harness as harness  # noqa: E402
from hub_server import HubServer, environment  # noqa: E402
from ray_harness import (  # noqa: E402
    RayNode,
    kill_pid,
    launch_node,
    leftover,
    start_ray_gateway,
    wait_port,
    wait_started,
    with_ray_token,
)
from realweights_helpers import CHAT  # noqa: E402

from provision import smollm2_gguf  # noqa: E402

REPO_ID = "test-org/SmolLM2-135M-Instruct-GGUF"
GGUF_NAME = "smollm2-135m-instruct-q4_1.gguf"


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: list[RayNode] = []
        self.gateway: harness.Gateway | None = None
        self.hub = HubServer().start()
        self.env = {**harness.famous_env(root, "llama-server"), **environment(self.hub)}
        self.env.pop("HF_TOKEN", None)
        with_ray_token(self.env, root)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("ray")
    state = Cluster(root)
    state.hub.add_repo(REPO_ID, {GGUF_NAME: smollm2_gguf(), "README.md": b"# SmolLM2\n"})
    try:
        head, address = launch_node("node-a", root, state.env, {"node_a": 1})
        state.nodes.append(head)
        gateway_home = root / "gateway"
        gateway_home.mkdir()
        pull = subprocess.Popen(  # meanwhile the gateway's own catalog gets the model
            [sys.executable, "-m", "famous", "pull", REPO_ID],
            env=_home(state, gateway_home),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_port(address, head)
        worker, _ = launch_node("node-b", root, state.env, {"node_b": 1}, address)
        state.nodes.append(worker)
        _, errors = pull.communicate(timeout=120)
        assert pull.returncode == 0, errors
        wait_started(head)
        args = ["--ray-replicas", "2", "--keep-alive", "-1"]
        state.gateway = start_ray_gateway(_home(state, gateway_home), address, args)
        wait_started(worker)
        yield state
    finally:
        if state.gateway is not None:
            harness.stop_gateway(state.gateway)
        for node in reversed(state.nodes):
            node.stop()
        state.hub.stop()
        assert leftover(state.nodes) == []


def _home(state: Cluster, home: Path) -> dict[str, str]:
    return {**state.env, "FAMOUS_HOME": str(home)}


def _client(state: Cluster) -> openai.OpenAI:
    assert state.gateway is not None
    return openai.OpenAI(base_url=state.gateway.v1, api_key="unused", max_retries=0, timeout=300)


def _replicas(state: Cluster) -> list[dict]:
    out = harness.famous_cli(
        state.gateway.home, "ps", "--format", "json", env=_home(state, state.gateway.home)
    )
    assert out.returncode == 0, out.stderr
    rows = [r for r in json.loads(out.stdout) if r["name"] == REPO_ID]
    assert len(rows) == 1, out.stdout
    return rows[0]["replicas"]


def test_chat_and_stream_through_ray_serve(cluster: Cluster) -> None:
    client = _client(cluster)
    answer = client.chat.completions.create(
        model=REPO_ID, messages=CHAT, max_tokens=24, temperature=0
    )
    assert "Paris" in (answer.choices[0].message.content or "")
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model=REPO_ID, messages=CHAT, max_tokens=24, temperature=0, stream=True
        )
        if chunk.choices
    ]
    assert len(pieces) > 3
    assert "".join(pieces) == answer.choices[0].message.content

    deadline = time.monotonic() + 60
    replicas = _replicas(cluster)
    while len(replicas) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        replicas = _replicas(cluster)
    assert len({r["node_id"] for r in replicas}) == 2, replicas
    source = _sha256(smollm2_gguf())
    for replica in replicas:
        assert replica["engine"] == "cpu" or replica["runtime"] == "llamacpp", replica
        assert replica["server"] == "llama-server", replica
    for node in cluster.nodes:
        mib = node.memory_bytes() / 2**20
        print(f"{node.name}: {mib:.0f} MiB RSS (its Ray processes, the replica, its engine)")
    assert cluster.gateway is not None
    home = cluster.gateway.home
    table = harness.famous_cli(home, "ps", env=_home(cluster, home)).stdout
    for replica in replicas:  # the table lists each replica by node, with its engine
        line = next(ln for ln in table.splitlines() if replica["node_id"][:12] in ln)
        assert replica["engine"] in line and "llama-server" in line, table
    status = json.loads(
        harness.famous_cli(home, "status", "-f", "json", env=_home(cluster, home)).stdout
    )
    assert [(d["name"], d["status"]) for d in status["deployments"]] == [(REPO_ID, "ready")]
    for node in cluster.nodes:  # each node pulled its own verified copy into its own home
        copies = list((node.home / "models").rglob(GGUF_NAME))
        assert len(copies) == 1, f"{node.name}: {copies}"
        assert _sha256(copies[0]) == source


def test_replica_killed_mid_stream(cluster: Cluster) -> None:
    client = _client(cluster)
    replicas = _replicas(cluster)
    assert len(replicas) == 2
    engines = {r["engine_pid"]: r for r in replicas}
    before = {pid: psutil.Process(pid).cpu_times().user for pid in engines}
    stream = client.chat.completions.create(
        model=REPO_ID,
        messages=[{"role": "user", "content": "Write a long story about a lighthouse."}],
        max_tokens=400,
        temperature=0,
        stream=True,
    )
    received = []
    with pytest.raises(openai.APIError) as failure:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
            if len(received) == 5:  # the busy engine is the one streaming: kill its replica
                busy = max(engines, key=lambda p: psutil.Process(p).cpu_times().user - before[p])
                killed = engines[busy]
                kill_pid(killed["pid"])
    assert len(received) >= 5
    message = failure.value.message
    assert f"the engine serving {REPO_ID!r}" in message and "answer is incomplete" in message
    answer = client.chat.completions.create(
        model=REPO_ID, messages=CHAT, max_tokens=24, temperature=0
    )
    assert "Paris" in (answer.choices[0].message.content or "")
    # the killed replica's engine went with it, and ps no longer lists that replica
    assert _gone(killed["engine_pid"], 15), f"engine {killed['engine_pid']} outlived its replica"
    assert killed["replica"] not in {r["replica"] for r in _replicas(cluster)}


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.2)
    return False
